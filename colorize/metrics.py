"""Colorization metrics on RGB batches (B,3,H,W) in [0,1], computed on the device of the inputs.

Per image: PSNR on RGB, PSNR on ab alone, SSIM, colourfulness (CF) and its difference to the ground
truth, LPIPS. Per set: FID. All but CF come from torchmetrics. LPIPS and FID need backbone weights
that torchvision / torch-fidelity download into `$TORCH_HOME/hub/checkpoints` on first use; when
they can't be had, the metric is reported as `Skipped(reason)`, never as a number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from fastai.learner import Metric
from torch import nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

from .lab import lab_net_to_rgb, rgb_to_lab_net

logger = logging.getLogger(__name__)

AB_DATA_RANGE = 2.0  # PSNR on ab is taken on ab/110 (colorize.lab), which spans about [-1, 1] over sRGB
SSIM_SIGMA = 1.5  # Wang et al. 2004
SSIM_BORDER = 5  # half the Gaussian window torchmetrics and skimage use: int(3.5 * sigma + 0.5)


@dataclass(frozen=True)
class Skipped:
    """A metric that was not computed, and why: deliberately not a number (float() of it fails)."""

    reason: str

    def __str__(self) -> str:
        return f"skipped ({self.reason})"


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    """Raise a ValueError unless both are RGB batches (B,3,H,W) of the same shape."""
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 3:
        raise ValueError(
            f"expected prediction and target as RGB batches (B,3,H,W) of the same shape, got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}; turn (L, ab) into RGB with "
            "colorize.lab.lab_net_to_rgb first"
        )


def psnr_rgb(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB on RGB in [0,1] (data_range 1): (B,3,H,W) x2 -> (B,)."""
    _check_pair(pred, target)
    return peak_signal_noise_ratio(
        pred.float(), target.float(), data_range=1.0, reduction="none", dim=(1, 2, 3)
    )


def psnr_ab(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB on the ab channels alone, as ab/110 with data_range 2: (B,3,H,W) x2 -> (B,).

    Equal to PSNR on raw Lab a,b with a peak of 220; the lower it is, the larger the colour error.
    """
    _check_pair(pred, target)
    ab_pred, ab_target = rgb_to_lab_net(pred)[1], rgb_to_lab_net(target)[1]  # (B,2,H,W) ab/110
    return peak_signal_noise_ratio(
        ab_pred, ab_target, data_range=AB_DATA_RANGE, reduction="none", dim=(1, 2, 3)
    )


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM on RGB in [0,1] (Gaussian window sigma 1.5, 11x11; data_range 1): -> (B,).

    Averaged over the interior only, dropping the border where the window overhangs the image, as
    Wang et al.'s reference code and `skimage.metrics.structural_similarity` do (torchmetrics' own
    mean includes reflect-padded borders and reads a few thousandths lower).
    """
    _check_pair(pred, target)
    if min(pred.shape[-2:]) <= 2 * SSIM_BORDER:
        raise ValueError(
            f"SSIM needs images larger than {2 * SSIM_BORDER} pixels a side, got {tuple(pred.shape)}"
        )
    _, ssim_map = structural_similarity_index_measure(
        pred.float(), target.float(), sigma=SSIM_SIGMA, data_range=1.0, reduction="none", return_full_image=True
    )  # (B,3,H,W) SSIM map
    b = SSIM_BORDER
    return ssim_map[..., b:-b, b:-b].mean(dim=(1, 2, 3))


def colorfulness(rgb: torch.Tensor) -> torch.Tensor:
    """Per-image colourfulness CF of Hasler & Suesstrunk (2003): (B,3,H,W) in [0,1] -> (B,).

    On 0-255 values, rg = R - G and yb = (R + G)/2 - B;
    CF = sqrt(std_rg^2 + std_yb^2) + 0.3 * sqrt(mean_rg^2 + mean_yb^2), population std over pixels.
    A grayscale image has CF 0.
    """
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"expected an RGB batch (B,3,H,W) in [0,1], got shape {tuple(rgb.shape)}")
    r, g, b = (rgb.float() * 255.0).unbind(dim=1)  # each (B,H,W) in [0,255]
    rg, yb = r - g, 0.5 * (r + g) - b
    std = (rg.var(dim=(1, 2), correction=0) + yb.var(dim=(1, 2), correction=0)).sqrt()
    mean = (rg.mean(dim=(1, 2)).square() + yb.mean(dim=(1, 2)).square()).sqrt()
    return std + 0.3 * mean


def delta_colorfulness(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image CF(pred) - CF(target): negative = duller than the ground truth, positive = more vivid."""
    _check_pair(pred, target)
    return colorfulness(pred) - colorfulness(target)


def _build_or_skip(name: str, factory):
    """Build a metric whose backbone weights may need a download; a `Skipped` when they can't be had."""
    try:
        return factory()
    except ModuleNotFoundError as e:
        reason = f"{name} needs a package that is not installed: {e}"
    except OSError as e:  # urllib's URLError, timeouts, refused connections, unwritable cache
        reason = (
            f"{name} backbone weights could not be downloaded ({type(e).__name__}: {e}); run once with network "
            "access or put the weight file in torch's hub cache ($TORCH_HOME/hub/checkpoints, by default "
            "~/.cache/torch/hub/checkpoints)"
        )
    logger.warning("%s skipped: %s", name, reason)
    return Skipped(reason)


class ColorMetrics:
    """Accumulates colorization metrics over batches: `update(pred, target)` per batch, then `compute()`.

    lpips_net: torchmetrics LPIPS backbone ("alex", "vgg", "squeeze"), or None to skip LPIPS.
    fid_feature: Inception-v3 feature layer (64, 192, 768, 2048; needs torch-fidelity), an
        `nn.Module` mapping (B,3,H,W) float in [0,1] to (B,d) features, or None to skip FID.
    Backbones are built once here; `reset()` clears the accumulated values for the next model.
    """

    def __init__(self, lpips_net: str | None = "alex", fid_feature: int | nn.Module | None = 2048):
        self.lpips = (
            Skipped("disabled by the caller")
            if lpips_net is None
            else _build_or_skip(
                "LPIPS",
                lambda: LearnedPerceptualImagePatchSimilarity(
                    net_type=lpips_net, reduction="none", normalize=True
                ),
            )
        )
        self.fid = (
            Skipped("disabled by the caller")
            if fid_feature is None
            else _build_or_skip(
                "FID", lambda: FrechetInceptionDistance(feature=fid_feature, normalize=True)
            )
        )
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far (the backbones stay loaded)."""
        self._values: dict[str, list[torch.Tensor]] = {}
        for metric in (self.lpips, self.fid):
            if not isinstance(metric, Skipped):
                metric.reset()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: pred and target RGB (B,3,H,W) in [0,1], on any device (metrics follow it)."""
        _check_pair(pred, target)
        pred, target = pred.float(), target.float()
        cf_pred, cf_target = colorfulness(pred), colorfulness(target)
        batch = {
            "psnr_rgb": psnr_rgb(pred, target),
            "psnr_ab": psnr_ab(pred, target),
            "ssim": ssim(pred, target),
            "colorfulness": cf_pred,
            "colorfulness_target": cf_target,
            "delta_colorfulness": cf_pred - cf_target,
        }
        for name, values in batch.items():
            self._values.setdefault(name, []).append(values.detach())
        if not isinstance(self.lpips, Skipped):
            self.lpips.to(pred.device).update(pred, target)
        if not isinstance(self.fid, Skipped):
            self.fid.to(pred.device)
            self.fid.update(target, real=True)
            self.fid.update(pred, real=False)

    def per_image(self) -> dict[str, torch.Tensor]:
        """Per-image values (N,) on the CPU in update order; the lowest `psnr_ab` = largest colour error."""
        if not self._values:
            raise RuntimeError("no images yet: call update(pred, target) before per_image()/compute()")
        values = {name: torch.cat(chunks).cpu() for name, chunks in self._values.items()}
        if not isinstance(self.lpips, Skipped):
            values["lpips"] = self.lpips.compute().reshape(-1).cpu()
        return values

    def compute(self) -> dict[str, float | int | Skipped]:
        """Means over all images (PSNRs are per image, then averaged), FID over the set, and `n_images`."""
        values = self.per_image()
        result: dict[str, float | int | Skipped] = {"n_images": len(values["psnr_rgb"])}
        result.update({name: v.mean().item() for name, v in values.items()})
        result.setdefault("lpips", self.lpips)
        result["fid"] = self._compute_fid(result["n_images"])
        return result

    def _compute_fid(self, n_images: int) -> float | Skipped:
        """FID of the predictions against the targets, or why it was skipped."""
        if isinstance(self.fid, Skipped):
            return self.fid
        if n_images < 2:
            return Skipped(f"FID needs at least 2 images, got {n_images}")
        return self.fid.compute().item()


class ColorPSNR(Metric):
    """The validation metric of every stage: mean per-image `psnr_rgb` of (L, predicted ab) against (L, true ab)."""

    def reset(self):
        self.total, self.count = 0.0, 0

    def accumulate(self, learn):
        L, pred, targ = learn.xb[0][:, :1], learn.pred, learn.yb[0]  # (B,1,H,W) lightness, (B,2,H,W) x2
        psnr = learn.to_detach(psnr_rgb(lab_net_to_rgb(L, pred), lab_net_to_rgb(L, targ)))  # (B,), every process's
        self.total += psnr.sum().item()
        self.count += psnr.numel()

    @property
    def value(self):
        return self.total / self.count if self.count else None

    @property
    def name(self):
        return "psnr"

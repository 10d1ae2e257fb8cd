"""RGB <-> CIE Lab on batched tensors, and the network scaling of L and ab.

This module is the ONLY place the scaling constants live: the generator sees L/50 - 1 in [-1, 1]
and predicts ab/110 (roughly [-1, 1] for the sRGB gamut). The hint map a hint-taking generator also
sees is encoded here too (`encode_hints`, `generator_input`). The conversion itself is kornia's
(sRGB with its gamma, D65 white, the same formulas as `skimage.color.rgb2lab`).
"""

from __future__ import annotations

import numpy as np
import torch
from fastai.vision.all import ItemTransform, TensorImage
from kornia.color import lab_to_rgb, rgb_to_lab
from PIL import Image

L_SCALE = 50.0  # L in [0, 100] -> L/50 - 1 in [-1, 1]
AB_SCALE = 110.0  # a, b in about [-110, 110] over sRGB -> ab/110 in about [-1, 1]


def rgb_to_lab_net(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,3,H,W) RGB in [0,1] -> L (B,1,H,W) in [-1,1] and ab (B,2,H,W) scaled by 1/110."""
    lab = rgb_to_lab(rgb.float())
    return lab[:, :1] / L_SCALE - 1.0, lab[:, 1:] / AB_SCALE


GAMUT_STEPS = 10  # bisection steps on the chroma scale: 1/1024 of it, under 0.15 ab units, finer than 8-bit output
GAMUT_TOL = 1e-4  # sRGB this close outside [0, 1] is float noise at the cube's faces: clipped, not desaturated


def lab_net_to_rgb(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """L (B,1,H,W) in [-1,1] and ab (B,2,H,W) scaled by 1/110 -> RGB (B,3,H,W) in [0,1] with exactly that L.

    Where (L, ab) lies outside the sRGB gamut, the chroma is reduced (hue and L kept) until the colour
    fits, instead of clipping RGB, which would change the lightness: the output's CIE L equals `L` to
    within float (and, once stored, 8-bit) rounding for ANY prediction. The fitting scale is found per
    pixel by bisection on [0, 1] (gray, scale 0, always fits), only for the pixels that need it.
    """
    lab = torch.cat([(L.float() + 1.0) * L_SCALE, ab.float() * AB_SCALE], dim=1)  # (B,3,H,W) CIE Lab
    rgb = lab_to_rgb(lab, clip=False)
    outside = ((rgb < -GAMUT_TOL) | (rgb > 1 + GAMUT_TOL)).any(dim=1)  # (B,H,W)
    if outside.any():
        rgb = rgb.permute(0, 2, 3, 1).contiguous()  # (B,H,W,3): pixels in rows, for the masked ones
        rgb[outside] = _fit_chroma(lab.permute(0, 2, 3, 1)[outside])
        rgb = rgb.permute(0, 3, 1, 2)
    return rgb.clamp_(0.0, 1.0)


# kornia's lab_to_rgb (kornia/color/lab.py, `_lab_to_rgb`) up to linear RGB: D65 white and its XYZ -> linear sRGB
# matrix. The gamut test needs no more: sRGB's transfer function maps [0, 1] onto [0, 1] and is monotonic, so a
# colour fits in sRGB exactly when it fits in linear RGB, and each bisection step skips the gamma's pow.
_D65 = (0.95047, 1.0, 1.08883)
_XYZ_TO_LINEAR = ((3.2404813432005266, -1.5371515162713185, -0.4985363261688878),
                  (-0.9692549499965682, 1.8759900014898907, 0.0415559265582928),
                  (0.0556466391351772, -0.2040413383665112, 1.0573110696453443))


def _fit_chroma(lab: torch.Tensor) -> torch.Tensor:
    """Out-of-gamut Lab colours (N,3) -> sRGB (N,3) of (L, s * ab), s in [0,1] the largest that fits (bisection)."""
    lo = torch.zeros(len(lab), 1, device=lab.device)  # scales that fit: gray always does
    hi = torch.ones_like(lo)  # scales that don't: the colour itself is outside
    L, ab = lab[:, :1], lab[:, 1:]
    fy = (L + 16.0) / 116.0  # (N,1): the same for every scale
    white = lab.new_tensor(_D65)
    to_linear = lab.new_tensor(_XYZ_TO_LINEAR).T

    def fits(s):  # (N,1) scales -> (N,1) bool: (L, s*ab) inside linear sRGB, kornia's arithmetic
        f = torch.cat([fy + s * ab[:, :1] / 500.0, fy, (fy - s * ab[:, 1:] / 200.0).clamp(min=0.0)], dim=1)
        linear = (torch.where(f > 0.2068966, f.pow(3), (f - 4.0 / 29.0) / 7.787) * white) @ to_linear
        return ((linear >= -GAMUT_TOL) & (linear <= 1 + GAMUT_TOL)).all(dim=1, keepdim=True)

    for _ in range(GAMUT_STEPS):
        mid = (lo + hi) / 2
        ok = fits(mid)
        lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
    return lab_to_rgb(torch.cat([L, lo * ab], dim=1).T[None, :, :, None], clip=False)[0, :, :, 0].T


def gray_rgb(L: torch.Tensor) -> torch.Tensor:
    """L (B,1,H,W) in [-1,1] -> the gray picture it is, RGB (B,3,H,W) in [0,1]: (L, ab = 0) back to RGB.

    What the model sees, and the grayscale baseline a colorizer has to beat. (PIL's `convert("L")`
    is a luma of gamma-encoded RGB, not CIE L: close, but not the model's input.)
    """
    return lab_net_to_rgb(L, L.new_zeros(L.shape[0], 2, *L.shape[2:]))


def gray_photo(image: Image.Image) -> Image.Image:
    """A photo (PIL, any size) as the gray picture of its own lightness (`gray_rgb`), an RGB PIL image."""
    return Image.fromarray(rgb_to_pixels(gray_rgb(rgb_to_lightness(pixels_to_rgb(image.convert("RGB")))))[0])


def pixels_to_rgb(pixels, device=None) -> torch.Tensor:
    """uint8 pixels (H,W,3) or (B,H,W,3) (an array, or a PIL image) -> RGB (B,3,H,W) float in [0,1] on `device`."""
    t = torch.tensor(np.asarray(pixels), device=device)  # a copy: PIL arrays are read-only
    return (t[None] if t.dim() == 3 else t).permute(0, 3, 1, 2).float().div_(255)


def rgb_to_pixels(rgb: torch.Tensor) -> np.ndarray:
    """RGB (B,3,H,W) in [0,1] -> uint8 pixels (B,H,W,3) on the CPU, rounded."""
    return rgb.mul(255).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def rgb_to_lightness(rgb: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) RGB in [0,1] -> network L (B,1,H,W) in [-1,1]: what a grayscale photo keeps."""
    return rgb_to_lab_net(rgb)[0]


HINT_CHANNELS = 3  # hint a, hint b (ab/110 where a hint is, 0 elsewhere), mask (1 where a hint is, 0 elsewhere)


def encode_hints(ab: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The hint map: ab (B,2,H,W) scaled by 1/110 and mask (B,1,H,W) (1 where hinted) -> (B,3,H,W) =
    (hint a, hint b, mask), the hint's ab where the mask is 1 and 0 elsewhere.

    The encoding of Zhang et al. 2017 (richzhang/colorization-pytorch feeds cat(L, hint ab, mask) to its
    generator), with the mask at 0/1 rather than their -0.5/+0.5 (`--mask_cent 0.5`).
    """
    mask = mask.to(ab.dtype)
    return torch.cat([ab * mask, mask], dim=1)


def generator_input(L: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:
    """What a hint-taking generator sees: cat(L, hint map) (B,4,H,W). L (B,1,H,W) in [-1,1]; hints the
    (B,3,H,W) map of `encode_hints`, or None for no hints (an all-zero map: automatic colorization)."""
    if hints is None:
        hints = L.new_zeros(L.shape[0], HINT_CHANNELS, *L.shape[2:])
    if hints.shape[1] != HINT_CHANNELS or hints.shape[0] != L.shape[0] or hints.shape[2:] != L.shape[2:]:
        raise ValueError(f"hint map {tuple(hints.shape)} does not fit L {tuple(L.shape)}: expected "
                         f"({L.shape[0]},{HINT_CHANNELS},{L.shape[2]},{L.shape[3]}) from encode_hints")
    return torch.cat([L, hints.to(L.dtype)], dim=1)


class LabSplit(ItemTransform):
    """Batch transform on the device: a batch `(rgb,)` in [0,1] becomes `(L, ab)` for the learner.

    `decodes` puts the pair back together as RGB so `show_batch`/`show_results` show photos.
    """

    order = 90  # after IntToFloatTensor (10) and fastai's augmentations

    def encodes(self, b):
        (rgb,) = b[:1]  # (B,3,H,W) float in [0,1]
        L, ab = rgb_to_lab_net(rgb)
        return (TensorImage(L), TensorImage(ab)) + tuple(b[1:])

    def decodes(self, b):
        L, ab = b[:2]
        return (TensorImage(lab_net_to_rgb(L, ab)),) + tuple(b[2:])

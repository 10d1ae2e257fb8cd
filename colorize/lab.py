"""RGB <-> CIE Lab on batched tensors, and the network scaling of L and ab.

This module is the ONLY place the scaling constants live: the generator sees L/50 - 1 in [-1, 1]
and predicts ab/110 (roughly [-1, 1] for the sRGB gamut). The hint map a hint-taking generator also
sees is encoded here too (`encode_hints`, `generator_input`). The conversion itself is kornia's
(sRGB with its gamma, D65 white, the same formulas as `skimage.color.rgb2lab`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from fastai.vision.all import ItemTransform, TensorImage
from kornia.color import linear_rgb_to_rgb, rgb_to_lab
from PIL import Image

L_SCALE = 50.0  # L in [0, 100] -> L/50 - 1 in [-1, 1]
AB_SCALE = 110.0  # a, b in about [-110, 110] over sRGB -> ab/110 in about [-1, 1]


def rgb_to_lab_net(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,3,H,W) RGB in [0,1] -> L (B,1,H,W) in [-1,1] and ab (B,2,H,W) scaled by 1/110."""
    lab = rgb_to_lab(rgb.float())
    return lab[:, :1] / L_SCALE - 1.0, lab[:, 1:] / AB_SCALE


GAMUT_TOL = 1e-4  # linear sRGB this close outside [0, 1] is float noise at the cube's faces: clipped, not desaturated
GAMUT_ROWS, GAMUT_HUES = 257, 720  # the chroma table: L every 100/256, hue every half degree (185k entries)
GAMUT_MARGIN = 0.1  # ab units below the table's interpolated chroma: on 400k random (L, hue) its interpolation
                    # overshoots the largest chroma that fits at 0.08% of them (by the gamut's sharp ridges)
GAMUT_STEPS = 10  # bisection steps on the chroma scale for those: 1/1024 of it, finer than 8-bit output
TABLE_STEPS = 24  # bisection steps per table entry, on [0, 200] ab units: 1.2e-5 of a unit


def lab_net_to_rgb(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """L (B,1,H,W) in [-1,1] and ab (B,2,H,W) scaled by 1/110 -> RGB (B,3,H,W) in [0,1] with exactly that L.

    Where (L, ab) lies outside the sRGB gamut, the chroma is reduced (hue and L kept) until the colour
    fits, instead of clipping RGB, which would change the lightness: the output's CIE L equals `L` to
    within float (and, once stored, 8-bit) rounding for ANY prediction. The chroma is capped at the largest
    that fits at the pixel's L and hue, read from a table (`max_chroma_table`, interpolated, kept on the safe
    side): a few operations per pixel outside, however far outside. The rare colour the table still leaves
    outside (by the gamut's sharp ridges) is fitted by bisection.
    """
    lab = torch.cat([(L.float() + 1.0) * L_SCALE, ab.float() * AB_SCALE], dim=1)  # (B,3,H,W) CIE Lab
    linear = _lab_to_linear(lab)  # (B,3,H,W) linear sRGB, unclipped
    b, y, x = _outside(linear)[:, 0].nonzero(as_tuple=True)  # the pixels outside, (N,) each
    if len(b):
        linear[b, :, y, x] = _fit_gamut(lab[b, :, y, x])  # (N,3) rows
    return linear_rgb_to_rgb(linear.clamp_(0.0, 1.0)).clamp_(0.0, 1.0)


def _fit_gamut(lab: torch.Tensor) -> torch.Tensor:
    """Out-of-gamut CIE Lab colours (N,3) -> linear sRGB (N,3) with the chroma capped at the table's (bisection for
    the few it misses)."""
    lab = torch.cat([lab[:, :1], _cap_chroma(lab)], dim=1)
    linear = _lab_to_linear(lab, dim=-1)
    missed = _outside(linear, dim=-1)[:, 0]  # (N,): by the gamut's sharp ridges
    if missed.any():
        linear[missed] = _lab_to_linear(_fit_chroma(lab[missed]), dim=-1)
    return linear


# kornia's lab_to_rgb (kornia/color/lab.py, `_lab_to_rgb`, and `xyz_to_rgb`) up to linear RGB: D65 white and its
# XYZ -> linear sRGB matrix; kornia's `linear_rgb_to_rgb` then applies sRGB's transfer function, which maps [0, 1]
# onto [0, 1] and is monotonic: a colour fits in sRGB exactly when it fits in linear RGB.
_D65 = (0.95047, 1.0, 1.08883)
_XYZ_TO_LINEAR = ((3.2404813432005266, -1.5371515162713185, -0.4985363261688878),
                  (-0.9692549499965682, 1.8759900014898907, 0.0415559265582928),
                  (0.0556466391351772, -0.2040413383665112, 1.0573110696453443))


def _lab_to_linear(lab: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """CIE Lab, channels along `dim` -> linear sRGB in the same layout, unclipped (kornia's arithmetic)."""
    L, a, b = lab.unbind(dim)
    fy = (L + 16.0) / 116.0
    f = torch.stack([fy + a / 500.0, fy, (fy - b / 200.0).clamp(min=0.0)], dim=dim)
    xyz = torch.where(f > 0.2068966, f.pow(3), (f - 4.0 / 29.0) / 7.787).unbind(dim)
    x, y, z = (c * w for c, w in zip(xyz, _D65))
    return torch.stack([m[0] * x + m[1] * y + m[2] * z for m in _XYZ_TO_LINEAR], dim=dim)


def _outside(linear: torch.Tensor, dim: int = 1, tol: float = GAMUT_TOL) -> torch.Tensor:
    """Where linear sRGB colours (channels along `dim`, kept as a dimension of 1) lie outside [0, 1] by over `tol`."""
    return ((linear < -tol) | (linear > 1 + tol)).any(dim=dim, keepdim=True)


def _cap_chroma(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab colours (N,3) -> their ab (N,2) with the chroma at most the table's largest in gamut at that L and hue,
    less GAMUT_MARGIN."""
    L, a, b = lab.unbind(-1)
    chroma = torch.hypot(a, b)  # (N,)
    # the table as a picture (1,1,rows=L,cols=hue) sampled at x = hue/pi in [-1, 1] (both ends the same hue), y =
    # L/50 - 1; bilinear, L clamped to [0, 100] at the border
    grid = torch.stack([torch.atan2(b, a) / torch.pi, L / L_SCALE - 1.0], dim=-1)[None, None]  # (1,1,N,2)
    table = max_chroma_table(lab.device, lab.dtype)[None, None]
    fits = F.grid_sample(table, grid, mode="bilinear", padding_mode="border", align_corners=True)[0, 0, 0]  # (N,)
    return lab[:, 1:] * ((fits - GAMUT_MARGIN).clamp_(min=0.0) / chroma.clamp(min=1e-6)).clamp_(max=1.0)[:, None]


def max_chroma(L: torch.Tensor, hue: torch.Tensor, steps: int = TABLE_STEPS) -> torch.Tensor:
    """The largest chroma (ab units) in the sRGB gamut at CIE lightness `L` along `hue` (radians), by bisection on
    [0, 200] (every sRGB colour's chroma is under 134), inside linear sRGB's [0, 1] without tolerance: any shapes
    that broadcast."""
    L, hue = torch.broadcast_tensors(L, hue)
    lo, hi = torch.zeros_like(L), torch.full_like(L, 200.0)  # chromas that fit (gray), and that don't
    cos, sin = hue.cos(), hue.sin()
    for _ in range(steps):
        mid = (lo + hi) / 2
        ok = ~_outside(_lab_to_linear(torch.stack([L, mid * cos, mid * sin], dim=-1), dim=-1), dim=-1, tol=0.0)[..., 0]
        lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
    return lo


_TABLES: dict[tuple, torch.Tensor] = {}


def max_chroma_table(device=None, dtype=torch.float32) -> torch.Tensor:
    """(GAMUT_ROWS, GAMUT_HUES + 1) the largest chroma in gamut at L = 0..100 (rows) and hue = -pi..pi (columns, the
    last the first again); computed once in float64 on the CPU (a fraction of a second), kept per device and dtype."""
    key = (torch.device(device or "cpu"), dtype)
    if key not in _TABLES:
        exact = torch.device("cpu"), torch.float64
        if exact not in _TABLES:
            L = torch.linspace(0.0, 100.0, GAMUT_ROWS, dtype=torch.float64)[:, None]
            hue = torch.linspace(-torch.pi, torch.pi, GAMUT_HUES + 1, dtype=torch.float64)[None]
            _TABLES[exact] = max_chroma(L, hue)
        _TABLES[key] = _TABLES[exact].to(*key)
    return _TABLES[key]


def _fit_chroma(lab: torch.Tensor) -> torch.Tensor:
    """Out-of-gamut CIE Lab colours (N,3) -> (L, s * ab) (N,3), s in [0,1] the largest that fits (bisection)."""
    lo = torch.zeros(len(lab), 1, device=lab.device, dtype=lab.dtype)  # scales that fit: gray always does
    hi = torch.ones_like(lo)  # scales that don't: the colour itself is outside
    L, ab = lab[:, :1], lab[:, 1:]
    for _ in range(GAMUT_STEPS):
        mid = (lo + hi) / 2
        ok = ~_outside(_lab_to_linear(torch.cat([L, mid * ab], dim=1), dim=-1), dim=-1)
        lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
    return torch.cat([L, lo * ab], dim=1)


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

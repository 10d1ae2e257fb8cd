"""Spreading colours along lightness: a few colour hints become colour over the regions they sit in.

Two propagators, one idea (neighbouring pixels of similar lightness get similar colours):
  - `levin`: Levin, Lischinski & Weiss 2004, "Colorization using Optimization", as their code does it
    (colorization/getColorExposure.m): each unhinted pixel's chroma is the weighted mean of its 3x3
    neighbours', with weights exp(-(Y_r - Y_s)^2 / sigma) normalised per pixel, sigma = 0.6 x the
    window's variance of Y (floored so the closest neighbour keeps a weight of at least 0.01, and at
    2e-6); hinted pixels are hard constraints. One sparse linear system, solved once per chroma channel.
    Exact, and slow: refused above `LEVIN_MAX_PIXELS`. Unlike theirs, each free pixel is also pulled weakly
    toward the prediction (`levin_pull`, a screened system): with a single hint their system's answer is
    a constant shift of the whole photo; with the pull, a hint's colour fades with distance and is held
    back at strong lightness edges.
  - `fast` (default): the residual (hint - prediction) at the hinted pixels spread by normalised
    convolution, smooth(residual * mask) / (smooth(mask) + eps), with an edge-aware global smoother
    guided by L (Min et al. 2014, "Fast Global Image Smoothing Based on Weighted Least Squares":
    OpenCV's `ximgproc.fastGlobalSmootherFilter`), added to the prediction. eps is a confidence floor:
    where the smoothed mask is not well above it (far from every hint, or behind a strong lightness edge
    that holds the mask back), the hint's colour fades back to the prediction. `reach` scales eps down:
    how far a hint's colour travels before the prediction takes over again.
Both start from the model's prediction (zeros = from gray, Levin et al.'s own setting) and propagate the
residual, so a pixel far from every hint keeps the model's colour and a hinted pixel gets exactly its hint.
`crossing_share` measures how much of a hint's change lands across a lightness edge (benchmarks/hint_edges.py).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

LEVIN_MAX_PIXELS = 256 * 256  # the sparse LU of a 256x256 photo takes a few seconds on a CPU; larger: use `fast`
LEVIN_MIN_WEIGHT = 0.01  # Levin et al.'s code: sigma at least -min((Y_s - Y_r)^2) / log(0.01)
LEVIN_VAR_SCALE = 0.6  # Levin et al.'s code: csig = c_var * 0.6
LEVIN_MIN_SIGMA = 2e-6  # Levin et al.'s code: csig at least 0.000002 (Y in [0, 1])
FGS_LAMBDA = 1e3  # smoothness of the Fast Global Smoother at FGS_SIZE px (the prototype's): how far it reaches
FGS_SIZE = 256  # ... its reach grows as sqrt(lambda) px, so lambda scales with the square of the photo's size
FGS_SIGMA_COLOR = 4.0  # its edge sensitivity, in L scaled to 0..255: a step of ~1.5 L units already slows a hint
FGS_EPS = 3e-4  # normalised convolution's confidence floor at reach 1: where smooth(mask) is not well above it, the
# hint's colour fades back to the prediction (with FGS_SIGMA_COLOR, under 10% of a hint's change crosses a soft
# 20-30 L-unit edge in a textured photo: benchmarks/hint_edges.py)
LEVIN_PULL = 1e-4  # the weak pull of the residual toward zero at every free pixel, at FGS_SIZE px and reach 1


def _hint_mask(hints: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) hint map -> (B,1,H,W) bool, True where a hint is."""
    return hints[:, 2:3] > 0.5


def propagate(L: torch.Tensor, ab: torch.Tensor, hints: torch.Tensor, method: str,
              reach: float = 1.0) -> torch.Tensor:
    """Colour hints spread along lightness over a prediction.

    L (B,1,H,W) in [-1,1] (network L); ab (B,2,H,W) ab/110, the prediction (zeros: start from gray);
    hints (B,3,H,W) the map of `lab.encode_hints` (hint a, hint b, mask); `method` one of `config.PROPAGATIONS`
    (the default is `inference.Rendering`'s). Returns (B,2,H,W) ab/110 on
    ab's device and dtype, equal to the hint at every hinted pixel; with no hint (or `method="off"`) ab
    itself, unchanged. `reach` (> 0): how far a hint's colour travels before it fades back to the
    prediction; 1 is the default, larger carries colour further from the hints, smaller keeps it near them;
    `math.inf` never fades (`levin`: exactly Levin et al.'s system).
    """
    if method not in PROPAGATORS:
        raise ValueError(f"unknown propagation {method!r}: choose one of {', '.join(PROPAGATORS)}")
    if not reach > 0:
        raise ValueError(f"reach {reach}: it must be > 0 (1 is the default; larger carries hints' colour further)")
    if L.dim() != 4 or L.shape[1] != 1 or ab.shape[1] != 2 or hints.shape[1] != 3 \
            or not (L.shape[2:] == ab.shape[2:] == hints.shape[2:]) or not (L.shape[0] == ab.shape[0] == hints.shape[0]):
        raise ValueError(f"propagate takes L (B,1,H,W), ab (B,2,H,W) and hints (B,3,H,W) of one size; got "
                         f"{tuple(L.shape)}, {tuple(ab.shape)}, {tuple(hints.shape)}")
    mask = _hint_mask(hints)
    spread_of = PROPAGATORS[method]
    if spread_of is None or not mask.any():
        return ab
    if method == "levin":
        check_levin_size(*L.shape[2:])
    out = []
    for i in range(L.shape[0]):
        y = ((L[i, 0].detach().float().cpu().numpy() + 1) / 2).astype(np.float64)  # (H,W) L/100 in [0,1]
        pred = ab[i].detach().float().cpu().numpy().transpose(1, 2, 0)  # (H,W,2) ab/110
        hint = hints[i, :2].detach().float().cpu().numpy().transpose(1, 2, 0)  # (H,W,2)
        m = mask[i, 0].cpu().numpy()  # (H,W) bool
        residual = np.where(m[..., None], hint - pred, 0.0)  # (H,W,2), zero where no hint
        result = np.where(m[..., None], hint, pred + spread_of(y, residual, m, reach))  # hints exactly at their pixels
        out.append(torch.from_numpy(result.transpose(2, 0, 1).astype(np.float32)))
    return torch.stack(out).to(device=ab.device, dtype=ab.dtype)


# ---------------------------------------------------------------------------------------------- fast


def fast_spread(y: np.ndarray, residual: np.ndarray, mask: np.ndarray, reach: float = 1.0) -> np.ndarray:
    """The residual at hinted pixels spread along lightness by normalised convolution with the Fast Global Smoother.

    y (H,W) lightness in [0,1]; residual (H,W,C) (zero where no hint); mask (H,W) bool. Returns (H,W,C)
    float64: smooth(residual) / (smooth(mask) + eps), eps = FGS_EPS / reach; the smoother's lambda is
    FGS_LAMBDA at FGS_SIZE px and scales with the photo's area, so a hint reaches as far across any size.
    """
    guide = np.clip(np.rint(y * 255), 0, 255).astype(np.uint8)  # (H,W) L as 0..255
    m = mask.astype(np.float32)
    lam = FGS_LAMBDA * (max(y.shape) / FGS_SIZE) ** 2  # the same reach, as a fraction of the photo, at any size

    def smooth(x: np.ndarray) -> np.ndarray:
        return cv2.ximgproc.fastGlobalSmootherFilter(guide, x.astype(np.float32), lam, FGS_SIGMA_COLOR)

    weight = smooth(m)  # (H,W)
    spread = np.stack([smooth(residual[..., c]) for c in range(residual.shape[-1])], axis=-1)  # (H,W,C)
    return spread.astype(np.float64) / (np.maximum(weight, 0.0)[..., None] + FGS_EPS / reach)


# --------------------------------------------------------------------------------------------- levin


def check_levin_size(height: int, width: int) -> None:
    """Refuse a photo too large for the exact solver, naming the fast one."""
    if height * width > LEVIN_MAX_PIXELS:
        raise ValueError(f"propagation 'levin' solves one sparse system per chroma channel and takes photos up to "
                         f"{LEVIN_MAX_PIXELS} pixels (256x256); this one is {height}x{width}: use propagation "
                         f"'fast' (the default), or a smaller render size")


_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]  # the 3x3 window's neighbours


def levin_weights(y: np.ndarray) -> scipy.sparse.csr_matrix:
    """Levin et al.'s affinities: W (N,N), N = H*W pixels in row-major order, W[r, s] the weight of neighbour s
    in pixel r's colour (3x3 window, zero diagonal, each row sums to 1). y (H,W) lightness in [0,1].

    w_rs = exp(-(y_s - y_r)^2 / sigma_r), sigma_r = 0.6 * var(window of r, r included), floored at
    -min_s (y_s - y_r)^2 / log(0.01) and at 2e-6, then normalised over the neighbours s.
    """
    y = np.asarray(y, dtype=np.float64)
    H, W = y.shape
    pad = np.pad(y, 1)
    inside = np.pad(np.ones((H, W), bool), 1)
    nb = np.stack([pad[1 + dy:1 + dy + H, 1 + dx:1 + dx + W] for dy, dx in _OFFSETS])  # (8,H,W) neighbour Y
    valid = np.stack([inside[1 + dy:1 + dy + H, 1 + dx:1 + dx + W] for dy, dx in _OFFSETS])  # (8,H,W)
    count = 1 + valid.sum(0)
    mean = (y + (nb * valid).sum(0)) / count
    var = ((y - mean) ** 2 + (((nb - mean) ** 2) * valid).sum(0)) / count  # the window's variance, r included
    d2 = (nb - y) ** 2  # (8,H,W)
    closest = np.where(valid, d2, np.inf).min(0)
    sigma = np.maximum(LEVIN_VAR_SCALE * var, -closest / math.log(LEVIN_MIN_WEIGHT))
    sigma = np.maximum(sigma, LEVIN_MIN_SIGMA)
    w = np.exp(-d2 / sigma) * valid
    w /= w.sum(0)
    idx = np.arange(H * W).reshape(H, W)
    pad_idx = np.pad(idx, 1)
    cols = np.stack([pad_idx[1 + dy:1 + dy + H, 1 + dx:1 + dx + W] for dy, dx in _OFFSETS])  # (8,H,W)
    rows = np.broadcast_to(idx, cols.shape)
    keep = valid.ravel()
    return scipy.sparse.csr_matrix((w.ravel()[keep], (rows.ravel()[keep], cols.ravel()[keep])), shape=(H * W, H * W))


def levin_matrix(y: np.ndarray, mask: np.ndarray, pull: float = 0.0) -> scipy.sparse.csr_matrix:
    """Levin et al.'s system matrix A (N,N): row r is (1 + pull) x_r - sum_s W[r,s] x_s for an unhinted pixel, x_r
    for a hinted one.

    y (H,W) lightness in [0,1]; mask (H,W) bool, True where a hint is (a hard constraint); `pull` >= 0 draws
    every free pixel weakly toward 0 (Levin et al.'s system is pull 0).
    """
    free = (~np.asarray(mask, bool)).ravel().astype(np.float64)
    return (scipy.sparse.diags(1 + pull * free) - scipy.sparse.diags(free) @ levin_weights(y)).tocsc()


def levin_pull(height: int, width: int, reach: float = 1.0) -> float:
    """The pull toward the prediction for a photo of this size: LEVIN_PULL at FGS_SIZE px and reach 1, scaled so a
    hint's colour fades over the same fraction of any photo (its reach in pixels goes as 1/sqrt(pull))."""
    return LEVIN_PULL * (FGS_SIZE / max(height, width)) ** 2 / reach ** 2


def levin_spread(y: np.ndarray, residual: np.ndarray, mask: np.ndarray, reach: float = 1.0) -> np.ndarray:
    """The residual at hinted pixels spread by Levin et al.'s optimisation with a weak pull toward zero
    (`levin_pull`): (H,W,C) float64, fading to 0 with distance and stopping at strong lightness edges."""
    return levin_solve(y, residual, mask, levin_pull(*y.shape, reach))


def levin_solve(y: np.ndarray, values: np.ndarray, mask: np.ndarray, pull: float = 0.0) -> np.ndarray:
    """Colours at the hinted pixels spread by Levin et al.'s optimisation: solves A x = b per channel (one LU).

    y (H,W) lightness in [0,1]; values (H,W,C) (read where mask is True); mask (H,W) bool; `pull` as in
    `levin_matrix`. Returns (H,W,C).
    """
    H, W = y.shape
    check_levin_size(H, W)
    lu = scipy.sparse.linalg.splu(levin_matrix(y, mask, pull))
    b = np.where(np.asarray(mask, bool)[..., None], values, 0.0).reshape(H * W, -1).astype(np.float64)
    return lu.solve(b).reshape(H, W, -1)


# ------------------------------------------------------------------------------------------ registry

PROPAGATORS = {"fast": fast_spread, "levin": levin_spread, "off": None}  # (y, residual, mask, reach) -> spread;
# None: hints are not spread and the prediction is returned as it is. Keys: exactly config.PROPAGATIONS.


def crossing_share(before: np.ndarray, after: np.ndarray, far: np.ndarray) -> float:
    """The share of a colour change that lands in `far` (e.g. the side of a lightness edge without the hint).

    before, after (..., H, W) ab of one photo without and with a hint (channels first or none); far (H,W) bool.
    Returns sum over far of |after - before| / its sum over the photo, in [0, 1] (0 with no change at all).
    """
    change = np.abs(np.asarray(after, np.float64) - np.asarray(before, np.float64))
    change = change.reshape(-1, *change.shape[-2:]).sum(0)  # (H,W)
    total = change.sum()
    return float(change[far].sum() / total) if total > 0 else 0.0

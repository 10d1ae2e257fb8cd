"""Temporal stabilisation of colorized video along optical flow: no trained weights.

The method is the blind setting of Lai et al. 2018 ("Learning Blind Video Temporal Consistency"): the
per-frame colorizer is a black box, and the previous OUTPUT frame, warped into the current frame along
the optical flow of the input, is the reference the current frame should agree with where the flow is
reliable. Like Bonneel et al. 2015 ("Blind Video Temporal Consistency") we carry the previous output
along the flow and blend it with the new frame's own prediction; unlike them we do not solve their
gradient-domain least-squares problem per frame (a Poisson solve) nor train Lai et al.'s network:
the blend is a per-pixel exponential moving average along flow trajectories, of the chroma only
(ab; L stays each frame's own, so edges and lightness never lag or ghost):

    out_t = (1 - w * m_t) * pred_t + w * m_t * warp(out_{t-1}, flow t -> t-1)

with w the blend weight (`temporal`, 0 = per frame) and m_t the mask of pixels whose flow is
trusted: consistent forward and backward (Sundaram et al. 2010's test, as Ruder et al. 2016 and Lai
et al. use it) and whose lightness matches the warped previous frame. Flow is OpenCV's DIS (Kroeger
et al. 2016) on the frames' lightness at a working resolution, not the learned flows (FlowNet2, PWC-Net)
of those papers. At a scene cut, detected from a lightness-histogram jump or the flow failing over
most of the frame, the average restarts from the new frame's prediction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger(__name__)

DEFAULT_TEMPORAL = 0.7  # blend weight of the carried colour: per-pixel noise std falls to sqrt((1-w)/(1+w)) = 42%
FLOW_SIDE = 512  # flow and the blend run with the frame's longer side at most this (ab is smooth: no loss)
OCC_ALPHA, OCC_BETA = 0.01, 0.5  # forward-backward test of Sundaram et al. 2010: |f+b|^2 > a(|f|^2+|b|^2) + b
L_TOLERANCE = 0.1  # a pixel whose L (network scale, [-1,1]) differs more from the warped previous one is new
HIST_BINS = 64  # lightness histogram for cut detection
CUT_HISTOGRAM = 0.5  # total-variation distance between consecutive lightness histograms that means a cut
CUT_OCCLUDED = 0.6  # fraction of untrusted pixels (flow failed) that means a cut
MATCH_RADIUS = 6  # a hint the flow loses is looked for again: a (2r+1)^2 patch of the working resolution...
MATCH_SEARCH = 12  # ...searched this far around where the flow (untrusted) puts it
MATCH_SCORE = 0.8  # normalised cross-correlation that counts as found again
MATCH_TEXTURE = 4.0  # a patch flatter than this (std of uint8 lightness) matches anywhere: not looked for


def check_temporal(temporal: float) -> float:
    """The blend weight, checked: in [0, 1) (0 = every frame on its own)."""
    if not 0 <= temporal < 1:
        raise ValueError(f"temporal {temporal}: the weight of the colour carried from the previous frame must be in "
                         f"[0, 1): 0 colorizes every frame on its own, {DEFAULT_TEMPORAL} is the default")
    return float(temporal)


def flow_size(width: int, height: int) -> tuple[int, int]:
    """(w, h) of the working resolution: the frame scaled so its longer side is at most FLOW_SIDE."""
    scale = min(1.0, FLOW_SIDE / max(width, height))
    return max(8, round(width * scale)), max(8, round(height * scale))


def to_flow_image(L: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Network L (H,W) float in [-1,1] -> (h,w) uint8 at the working resolution `size` (w,h), DIS's input."""
    small = cv2.resize(L.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    return np.clip((small + 1) * 127.5, 0, 255).astype(np.uint8)


def new_flow():
    """OpenCV's DIS optical flow, FAST preset (about 10 ms for 640x360 on one CPU core)."""
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: out(x) = image(x + flow(x)), bilinear, edges replicated. image (h,w[,c]), flow (h,w,2)."""
    h, w = flow.shape[:2]
    grid = np.indices((h, w), dtype=np.float32)[::-1].transpose(1, 2, 0) + flow  # (h,w,2) as (x, y)
    return cv2.remap(image, grid[..., 0], grid[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def consistent(flow: np.ndarray, back: np.ndarray) -> np.ndarray:
    """(h,w) bool: where `flow` (this frame -> other) and `back` (other -> this frame) agree (not occluded).

    Sundaram et al. 2010: going along `flow` and then back along `back` (read where `flow` lands) should
    return to the start, |f + b(x+f)|^2 <= alpha (|f|^2 + |b(x+f)|^2) + beta; pixels leaving the frame fail.
    """
    h, w = flow.shape[:2]
    b = warp(back, flow)  # (h,w,2): the backward flow where each pixel lands
    err = np.square(flow + b).sum(-1)
    ok = err <= OCC_ALPHA * (np.square(flow).sum(-1) + np.square(b).sum(-1)) + OCC_BETA
    xs, ys = np.indices((h, w))[::-1] + flow.transpose(2, 0, 1)
    return ok & (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)


def histogram_jump(a: np.ndarray, b: np.ndarray) -> float:
    """Total-variation distance in [0, 1] between the lightness histograms of two uint8 images."""
    ha, hb = (np.bincount(x.ravel() // (256 // HIST_BINS), minlength=HIST_BINS) / x.size for x in (a, b))
    return 0.5 * float(np.abs(ha - hb).sum())


@dataclass
class FramePair:
    """How frame t relates to frame t-1 at the working resolution."""

    back: np.ndarray  # (h,w,2) flow t -> t-1: frame_t(x) ~ frame_{t-1}(x + back(x))
    forward: np.ndarray  # (h,w,2) flow t-1 -> t
    trusted: np.ndarray  # (h,w) bool: flow consistent both ways and lightness matching
    cut: bool  # a scene cut between t-1 and t: nothing is carried over
    gray: np.ndarray | None = None  # (h,w) uint8 lightness of frame t at the working resolution
    prev_gray: np.ndarray | None = None  # (h,w) uint8 of frame t-1

    def trusted_backward(self) -> np.ndarray:
        """(h,w) bool in frame t-1's pixels: where the flow t-1 -> t is consistent both ways and lightness matches
        (the mirror of `trusted`, for colour carried backwards in time, from t into t-1)."""
        same_l = np.abs(warp(self.gray, self.forward).astype(np.float32) - self.prev_gray) <= L_TOLERANCE * 127.5
        return consistent(self.forward, self.back) & same_l


class Stabiliser:
    """Carries each frame's colour (ab) along the flow into the next and blends it with the next prediction.

    Feed frames in order: `relate(L)` once per frame gives how it relates to the previous one (also used to
    carry hints); `blend(ab, pair)` then takes the frames' predictions in the same order. Several frames may be
    related before the first of them is blended (a batch). `temporal` 0 keeps every prediction as it is.
    """

    def __init__(self, width: int, height: int, temporal: float = DEFAULT_TEMPORAL):
        self.temporal = check_temporal(temporal)
        self.size = flow_size(width, height)  # (w,h) working resolution
        self.flow = new_flow()
        self.prev_gray = None  # (h,w) uint8 lightness of the previous frame
        self.prev_ab = None  # (h,w,2) float32 ab/110 of the previous output
        self.cuts: list[int] = []  # frame numbers that start a new scene (after the first)
        self.frame = -1

    def relate(self, L: np.ndarray) -> FramePair | None:
        """Network L (H,W) of the next frame -> how it relates to the previous one (None for the first frame)."""
        self.frame += 1
        gray = to_flow_image(L, self.size)
        prev, self.prev_gray = self.prev_gray, gray
        if prev is None:
            return None
        back = self.flow.calc(gray, prev, None)  # (h,w,2) t -> t-1
        forward = self.flow.calc(prev, gray, None)  # (h,w,2) t-1 -> t
        same_l = np.abs(warp(prev, back).astype(np.float32) - gray) <= L_TOLERANCE * 127.5
        trusted = consistent(back, forward) & same_l
        cut = histogram_jump(prev, gray) > CUT_HISTOGRAM or 1 - trusted.mean() > CUT_OCCLUDED
        if cut:
            self.cuts.append(self.frame)
        return FramePair(back, forward, trusted, cut, gray, prev)

    def blend(self, ab: np.ndarray, pair: FramePair | None) -> np.ndarray:
        """A frame's prediction ab (h,w,2) ab/110 at the working resolution and its `relate` answer -> the
        stabilised ab (h,w,2), float32."""
        ab = ab.astype(np.float32)
        if self.temporal > 0 and pair is not None and not pair.cut and self.prev_ab is not None:
            carried = warp(self.prev_ab, pair.back)
            weight = (self.temporal * pair.trusted)[..., None].astype(np.float32)  # (h,w,1)
            ab = (1 - weight) * ab + weight * carried
        self.prev_ab = ab
        return ab


def carry_point(pair: FramePair | None, x: float, y: float, scale: tuple[float, float]) -> tuple[float, float] | None:
    """A point (x, y) of frame t-1 in FULL-resolution pixels moved along the flow into frame t (`pair`), or
    None when it is truly gone: a cut comes between, it leaves the frame, or the flow check fails there and
    the patch around it is not found again nearby (`find_again`)."""
    if pair is None:
        return x, y
    if pair.cut:
        return None
    h, w = pair.trusted.shape
    sx, sy = scale
    cx, cy = min(w - 1, max(0, round(x / sx))), min(h - 1, max(0, round(y / sy)))
    dx, dy = pair.forward[cy, cx]
    nx, ny = cx + dx, cy + dy
    ix, iy = round(nx), round(ny)
    if not (0 <= ix < w and 0 <= iy < h):
        return None
    if not pair.trusted[iy, ix]:
        found = find_again(pair, (cx, cy), (nx, ny))
        if found is None:
            return None
        nx, ny = found
    return float(nx * sx), float(ny * sy)


def find_again(pair: FramePair, at: tuple[int, int], guess: tuple[float, float]) -> tuple[float, float] | None:
    """Where the patch around `at` (x, y) of frame t-1 lies in frame t, searched around `guess` (working pixels),
    by normalised cross-correlation (OpenCV's matchTemplate); None if no place scores MATCH_SCORE, the patch has
    no texture to match, or the frames' lightness is not known."""
    if pair.gray is None or pair.prev_gray is None:
        return None
    r, s = MATCH_RADIUS, MATCH_SEARCH
    h, w = pair.gray.shape
    (cx, cy), (gx, gy) = at, (round(guess[0]), round(guess[1]))
    if not (r <= cx < w - r and r <= cy < h - r):
        return None
    patch = pair.prev_gray[cy - r:cy + r + 1, cx - r:cx + r + 1]
    if patch.std() < MATCH_TEXTURE:
        return None
    x0, y0 = max(0, gx - r - s), max(0, gy - r - s)
    area = pair.gray[y0:min(h, gy + r + s + 1), x0:min(w, gx + r + s + 1)]
    if area.shape[0] < patch.shape[0] or area.shape[1] < patch.shape[1]:
        return None
    scores = cv2.matchTemplate(area, patch, cv2.TM_CCOEFF_NORMED)
    _, best, _, (bx, by) = cv2.minMaxLoc(scores)
    return (float(x0 + bx + r), float(y0 + by + r)) if best >= MATCH_SCORE else None

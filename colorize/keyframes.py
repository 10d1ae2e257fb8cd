"""Film through keyframes: the network colours every K-th frame, the flow carries that colour to the frames between.

The method is colour carried between frames along the optical flow, as Levin et al. 2004 ("Colorization using
Optimization", section 3) extend their propagation to video, with key frames coloured and the rest filled in
as in Bonneel et al. 2015 ("Blind Video Temporal Consistency", their key-frame propagation): here the key
frames' colour comes from the network instead of a user's scribbles. Each frame between keyframes a < t < b
takes the chroma (ab; L stays the frame's own) of both keyframes carried along the chained flow,

    ab_t = (w_a m_a warp_a(ab_a) + w_b m_b warp_b(ab_b)) / (w_a m_a + w_b m_b),  w_a = (b - t) / (b - a), w_b = 1 - w_a

where m_a (m_b) marks the pixels whose flow passed the forward-backward check (Sundaram et al. 2010) and the
lightness check at every step from a (b) to t: the mask is chained with the colour. Where neither keyframe
reaches (disocclusion, something new entering), the frame's own network prediction fills in if that area is
more than FAIL_AREA of the frame (the network then runs on that frame too); a smaller hole takes the nearer
keyframe's colour warped along the same flow without the check, which at a hole's edge is its neighbours'
colour: the cheap propagation a thin strip needs. A keyframe itself is stabilised against the previous one's
colour carried to it, as `temporal.Stabiliser` blends (weight `temporal`).

Where it differs from Levin et al.: no global least-squares solve over the space-time volume (their affinity
is between flow-linked pixels of neighbouring frames; we follow the flow explicitly, which is linear in the
frames and streams); from Bonneel et al.: no gradient-domain (Poisson) step, the blend is per pixel. Flow is
OpenCV's DIS at the stabiliser's working resolution. Keyframes fall every K frames, at every scene cut (the
cut's frame, and the last frame before it, so each frame between has a keyframe on both sides in its own
scene) and on the last frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from .temporal import FramePair, warp

FAIL_AREA = 0.05  # fraction of a frame that neither keyframe's colour reaches above which the network runs on it
CHAIN_KEEP = 0.99  # a pixel stays trusted along a chain while the warped mask keeps at least this much of it


def check_keyframes(keyframes: int) -> int:
    """The keyframe spacing, checked: an integer >= 0 (0 or 1: the network runs on every frame)."""
    if isinstance(keyframes, bool) or int(keyframes) != keyframes or keyframes < 0:
        raise ValueError(f"keyframes {keyframes}: the network runs on every K-th frame, K an integer >= 0 (0 or 1: "
                         "every frame; 4 or 8 make film several times faster)")
    return int(keyframes)


@dataclass
class Item:
    """A frame on its way through: its number, pixels, how it relates to the previous frame, and anything the
    caller carries with it (hint points)."""

    t: int
    frame: np.ndarray  # (H,W,3) uint8
    pair: FramePair | None  # None for the first frame
    extra: object = None

    @property
    def starts_scene(self) -> bool:
        return self.pair is None or self.pair.cut


def segments(items: Iterable[Item], every: int) -> Iterator[list[Item]]:
    """Frames in order -> segments [keyframe, between..., keyframe] sharing their end keyframes; a segment of
    one frame is a scene of one frame. The first item of a segment that `starts_scene` is not yet coloured."""
    seg: list[Item] = []
    for item in items:
        if seg and item.starts_scene:
            if len(seg) > 1 or seg[0].starts_scene:
                yield seg
            seg = [item]
            continue
        seg.append(item)
        if len(seg) - 1 == every:
            yield seg
            seg = [item]
    if len(seg) > 1 or (seg and seg[0].starts_scene):
        yield seg


def carried_forward(ab: np.ndarray, pairs: list[FramePair]) -> list[tuple[np.ndarray, np.ndarray]]:
    """ab (h,w,2) of a keyframe carried into each following frame (`pairs[i]` relates frame i+1 to frame i):
    [(ab, trusted mask (h,w) bool)] for frames 1..len(pairs)."""
    out, mask = [], np.ones(ab.shape[:2], np.float32)
    for pair in pairs:
        ab = warp(ab, pair.back)
        mask = (pair.trusted & (warp(mask, pair.back) >= CHAIN_KEEP)).astype(np.float32)
        out.append((ab, mask > 0))
    return out


def carried_backward(ab: np.ndarray, pairs: list[FramePair]) -> list[tuple[np.ndarray, np.ndarray]]:
    """ab (h,w,2) of the LAST frame carried back into each earlier one (`pairs[i]` relates frame i+1 to i):
    [(ab, trusted mask)] for frames 0..len(pairs)-1, in that order."""
    out, mask = [], np.ones(ab.shape[:2], np.float32)
    for pair in reversed(pairs):
        ab = warp(ab, pair.forward)
        mask = (pair.trusted_backward() & (warp(mask, pair.forward) >= CHAIN_KEEP)).astype(np.float32)
        out.append((ab, mask > 0))
    return out[::-1]


def between(fwd: list[tuple[np.ndarray, np.ndarray]], end: np.ndarray,
            pairs: list[FramePair]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The frames strictly between two keyframes: the start keyframe's colour carried forward (`carried_forward`,
    at least the n - 1 frames between), the end keyframe's ab (h,w,2) and the pairs relating each frame of the
    segment to the one before (len n = end - start) -> [(ab (h,w,2) float32, unreached (h,w) bool)] for the
    n - 1 frames between, the holes already filled from the nearer keyframe (module docstring)."""
    n = len(pairs)
    bwd = carried_backward(end, pairs[1:])
    out = []
    for i, ((ca, ma), (cb, mb)) in enumerate(zip(fwd, bwd), start=1):
        wa, wb = ma * ((n - i) / n), mb * (i / n)  # (h,w)
        total = wa + wb
        unreached = total == 0
        near = ca if i <= n / 2 else cb
        ab = np.where(unreached[..., None], near,
                      (wa[..., None] * ca + wb[..., None] * cb) / np.maximum(total, 1e-6)[..., None])
        out.append((ab.astype(np.float32), unreached))
    return out


def settle(pred: np.ndarray, carried: tuple[np.ndarray, np.ndarray] | None, temporal: float) -> np.ndarray:
    """A keyframe's ab: its prediction (h,w,2) blended with the previous keyframe's colour carried to it
    (ab, trusted) at weight `temporal`, as the stabiliser blends; the prediction alone at a scene's start."""
    if carried is None or temporal == 0:
        return pred
    ab, trusted = carried
    weight = (temporal * trusted)[..., None].astype(np.float32)
    return (1 - weight) * pred + weight * ab

"""Film through keyframes: the network colours every K-th frame, the flow carries that colour to the frames between.

The method is colour carried between frames along the optical flow, as Levin et al. 2004 ("Colorization using
Optimization", section 3) extend their propagation to video, with key frames coloured and the rest filled in
as in Bonneel et al. 2015 ("Blind Video Temporal Consistency", their key-frame propagation): here the key
frames' colour comes from the network instead of a user's scribbles. Each frame between keyframes a < t < b
takes the chroma (ab; L stays the frame's own) of both keyframes carried along the flow,

    ab_t = (w_a m_a warp_a(ab_a) + w_b m_b warp_b(ab_b)) / (w_a m_a + w_b m_b),  w_a = (b - t) / (b - a), w_b = 1 - w_a

where warp_a follows the flows from t back to a composed into one field (the colour is resampled once, not
blurred at every step) and m_a marks the pixels whose flow passed the forward-backward check (Sundaram et al.
2010) and the lightness check at every step from a to t. Where neither keyframe reaches (disocclusion,
something new entering), the frame's own network prediction fills in if that area is more than FAIL_AREA of
the frame (the network then runs on that frame too); a smaller hole takes the nearer keyframe's colour warped
along the same flow without the check, which at a hole's edge is its neighbours' colour.

A keyframe's colour is its prediction smoothed with its neighbouring keyframes' carried to it, both ways (the
stabiliser's exponential average run forwards and backwards over the keyframes of a batch, `keyframe_colours`,
weight `temporal`): the network ran on a K-th of the frames, and a keyframe still averages about as many
predictions as the stabiliser does for a frame. Where a neighbour's colour cannot be carried, the prediction
keeps its own detail and takes the carried colour's shift from its trusted surroundings (`spread`).

Where it differs from Levin et al.: no global least-squares solve over the space-time volume (their affinity
is between flow-linked pixels of neighbouring frames; we follow the flow explicitly, which is linear in the
frames and streams); from Bonneel et al.: no gradient-domain (Poisson) step, the blend is per pixel, with the
shift spread by a normalised Gaussian where theirs comes from the solve; the smoothing looks ahead only within
a batch of keyframes (the last keyframe of a batch is averaged forwards only). Flow is
OpenCV's DIS at the stabiliser's working resolution. Keyframes fall every K frames, at every scene cut (the
cut's frame, and the last frame before it, so each frame between has a keyframe on both sides in its own
scene) and on the last frame. With K = AUTO they fall where the flow says the last keyframe's colour stops
reaching: at the first frame of which less than AUTO_REACH is reached along the chained check, so a fast pan
gets them often and a still shot every AUTO_LONGEST frames (a choice of ours, not from either paper).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import cv2
import numpy as np

from .temporal import FramePair, warp

FAIL_AREA = 0.05  # fraction of a frame that neither keyframe's colour reaches above which the network runs on it
CHAIN_KEEP = 0.99  # a pixel stays trusted along a chain while the warped mask keeps at least this much of it
AUTO = "auto"  # the keyframe spacing chosen from the flow (`segments`)
AUTO_REACH = 0.8  # AUTO: a keyframe where less than this share of the frame is reached from the previous one
AUTO_LONGEST = 16  # AUTO: frames between keyframes at most, however still the shot
SPREAD_SIDE = 0.125  # width of the Gaussian that spreads a colour shift into untrusted pixels, of the longer side
SPREAD_SHRINK = 8  # the spreading runs this many times smaller than the working resolution


def check_keyframes(keyframes: int | str) -> int | str:
    """The keyframe spacing, checked: an integer >= 0 (0 or 1: the network runs on every frame), or AUTO."""
    if keyframes == AUTO:
        return AUTO
    if isinstance(keyframes, (bool, str)) or int(keyframes) != keyframes or keyframes < 0:
        raise ValueError(f"keyframes {keyframes}: the network runs on every K-th frame, K an integer >= 0 (0 or 1: "
                         f"every frame; 4 or 8 make film several times faster), or {AUTO!r} (a keyframe where the "
                         "last one's colour no longer reaches)")
    return int(keyframes)


def parse_keyframes(text: str) -> int | str:
    """The --keyframes flag's text: K, or AUTO."""
    return AUTO if text == AUTO else int(text)


def keyed(keyframes: int | str) -> bool:
    """Whether the network runs on keyframes only (a checked spacing above 1, or AUTO)."""
    return keyframes == AUTO or keyframes > 1


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


def segments(items: Iterable[Item], every: int | str) -> Iterator[list[Item]]:
    """Frames in order -> segments [keyframe, between..., keyframe] sharing their end keyframes; a segment of
    one frame is a scene of one frame. The first item of a segment that `starts_scene` is not yet coloured.
    `every`: K frames a segment, or AUTO: a segment ends at the first frame that less than AUTO_REACH of the
    segment's first frame reaches along the chained flow check (as `chain` chains it), AUTO_LONGEST at most."""
    seg: list[Item] = []
    longest = AUTO_LONGEST if every == AUTO else every
    reach = None  # with AUTO: (h,w) float32, the pixels of the newest frame the segment's first still reaches
    for item in items:
        if seg and item.starts_scene:
            if len(seg) > 1 or seg[0].starts_scene:
                yield seg
            seg, reach = [item], None
            continue
        seg.append(item)
        if every == AUTO and item.pair is not None:
            trusted = item.pair.trusted
            if reach is not None:
                trusted = trusted & (warp(reach, item.pair.back) >= CHAIN_KEEP)
            reach = trusted.astype(np.float32)
        if len(seg) - 1 == longest or (reach is not None and reach.mean() < AUTO_REACH):
            yield seg
            seg, reach = [item], None
    if len(seg) > 1 or (seg and seg[0].starts_scene):
        yield seg


@dataclass
class Chain:
    """How each frame of a segment [a, ..., b] reaches its two keyframes along the composed flow, at the working
    resolution: a flow field into the keyframe's pixels and the mask of pixels trusted all the way."""

    to_start: list[tuple[np.ndarray, np.ndarray]]  # frames 1..n: (flow (h,w,2) into frame a, trusted (h,w) bool)
    to_end: list[tuple[np.ndarray, np.ndarray]]  # frames 0..n-1: (flow into frame b, trusted)


def chain(pairs: list[FramePair]) -> Chain:
    """The pairs relating each frame of a segment to the one before (`pairs[i]`: frame i+1 to i) -> its `Chain`.

    The flows are composed, F_i(x) = back_i(x) + F_{i-1}(x + back_i(x)), so a keyframe's colour is resampled once
    however far it travels (warping the colour frame to frame would blur it a little more at every step); a
    pixel stays trusted while every step's forward-backward and lightness check holds along its path."""
    to_start, flow, mask = [], None, None
    for pair in pairs:
        flow = pair.back if flow is None else pair.back + warp(flow, pair.back)
        kept = pair.trusted if mask is None else pair.trusted & (warp(mask, pair.back) >= CHAIN_KEEP)
        mask = kept.astype(np.float32)
        to_start.append((flow, kept))
    to_end, flow, mask = [], None, None
    for pair in reversed(pairs):
        trusted = pair.trusted_backward()
        flow = pair.forward if flow is None else pair.forward + warp(flow, pair.forward)
        kept = trusted if mask is None else trusted & (warp(mask, pair.forward) >= CHAIN_KEEP)
        mask = kept.astype(np.float32)
        to_end.append((flow, kept))
    return Chain(to_start, to_end[::-1])


def carry(ab: np.ndarray, link: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A keyframe's ab (h,w,2) carried along one of a `Chain`'s links -> (ab, trusted)."""
    flow, trusted = link
    return warp(ab, flow), trusted


def spread(correction: np.ndarray, trusted: np.ndarray) -> np.ndarray:
    """A correction (h,w,2) known where `trusted` (h,w) bool, spread over the rest by normalised convolution
    (a Gaussian SPREAD_SIDE of the frame's longer side wide): where the flow cannot carry a colour, the
    prediction keeps its own detail and takes the carried colour's shift from its trusted surroundings (its
    cast, most of what flickers), as Bonneel et al. keep a frame's gradients and take the carried colours."""
    m = trusted.astype(np.float32)
    if m.all() or not m.any():
        return correction * m[..., None]
    h, w = m.shape
    small = (max(1, w // SPREAD_SHRINK), max(1, h // SPREAD_SHRINK))  # (w,h): the shift is smooth, so blurred small
    sigma = SPREAD_SIDE * max(small)
    near = cv2.GaussianBlur(cv2.resize(m, small, interpolation=cv2.INTER_AREA), (0, 0), sigma)
    moved = cv2.GaussianBlur(cv2.resize(correction * m[..., None], small, interpolation=cv2.INTER_AREA), (0, 0), sigma)
    near, moved = (cv2.resize(x, (w, h), interpolation=cv2.INTER_LINEAR) for x in (near, moved))
    spread = moved / np.maximum(near, 1e-3)[..., None]
    return np.where(trusted[..., None], correction, spread * (near > 1e-3)[..., None]).astype(np.float32)


def settle(pred: np.ndarray, carried: tuple[np.ndarray, np.ndarray] | None, temporal: float) -> np.ndarray:
    """A keyframe's prediction (h,w,2) blended with a neighbouring keyframe's colour carried to it (ab, trusted)
    at weight `temporal`, as the stabiliser blends, the shift `spread` where the flow fails; the prediction
    alone where nothing is carried."""
    if carried is None or temporal == 0:
        return pred
    ab, trusted = carried
    return pred + temporal * spread(ab - pred, trusted)


def keyframe_colours(preds: list[np.ndarray], chains: list[Chain], temporal: float,
                     first: np.ndarray | None = None) -> list[np.ndarray]:
    """The colours of a run of keyframes in one scene: their predictions ab (h,w,2), `chains[j]` linking keyframe
    j to j+1, and `first`, keyframe 0's colour when it was given out already (None: it is smoothed too).

    The exponential average the stabiliser runs over frames, run over keyframes both ways and combined (a
    two-sided exponential smoother): f_j = settle(p_j, f_{j-1} carried forward), b_j = settle(p_j, b_{j+1}
    carried back), colour_j = (f_j + w m B_j) / (1 + w m) with B_j = b_{j+1} carried back, m its trust, w the
    weight. A keyframe then averages as many predictions as the per-frame stabiliser does for a frame
    (a run's first frames most of all), though the network ran on a K-th of them."""
    fwd = [preds[0] if first is None else first]
    for j, c in enumerate(chains, start=1):
        fwd.append(settle(preds[j], carry(fwd[-1], c.to_start[-1]), temporal))
    out, bwd = [fwd[-1]], preds[-1]
    for j in range(len(chains) - 1, -1, -1):
        ab, trusted = carry(bwd, chains[j].to_end[0])
        bwd = settle(preds[j], (ab, trusted), temporal)
        out.append(fwd[j] + temporal / (1 + temporal) * spread(ab - fwd[j], trusted))
    out = out[::-1]
    if first is not None:
        out[0] = first
    return out


def between(start: np.ndarray, end: np.ndarray, link: Chain) -> list[tuple[np.ndarray, np.ndarray]]:
    """The frames strictly between two keyframes: the keyframes' colours ab (h,w,2) and the segment's `Chain`
    -> [(ab (h,w,2) float32, unreached (h,w) bool)] for the n - 1 frames between, each the keyframes' colours
    carried to it and blended by distance, the holes already filled from the nearer keyframe (module doc)."""
    n = len(link.to_start)
    out = []
    for i in range(1, n):
        (ca, ma), (cb, mb) = carry(start, link.to_start[i - 1]), carry(end, link.to_end[i])
        wa, wb = ma * ((n - i) / n), mb * (i / n)  # (h,w)
        total = wa + wb
        unreached = total == 0
        near = ca if i <= n / 2 else cb
        ab = np.where(unreached[..., None], near,
                      (wa[..., None] * ca + wb[..., None] * cb) / np.maximum(total, 1e-6)[..., None])
        out.append((ab.astype(np.float32), unreached))
    return out

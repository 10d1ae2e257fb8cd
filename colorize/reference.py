"""Colour from a reference photo: where the target and a colour reference show the same thing, the reference's colour
there becomes hints (the same `[{"x", "y", "color", "size"}]` as a hints file), which every model and the
propagation then use as they use a person's hints. Training-free: no exemplar network.

It follows Deep Exemplar-based Colorization (He, Chen, Liao, Sander & Yuan 2018, the method whose video extension
is Zhang et al. 2019, "Deep Exemplar-based Video Colorization") in its two ideas, a dense correspondence between
target and reference and a confidence that decides where the reference's colour is trusted, and Levin et al. 2004
(`propagate`) for spreading the colour from where it is trusted. Where it differs:
  - Same scene (another frame of the clip, an overlapping photo, a nearby viewpoint): the correspondence is
    geometric, not learned: SIFT keypoints on lightness (Lowe 2004, OpenCV; ORB where SIFT is missing), Lowe's
    ratio test, a RANSAC homography, then dense refinement by DIS optical flow (Kroeger et al. 2016) between the
    target and the warped reference, trusted where it is consistent both ways (`temporal.consistent`).
  - Similar scene (another beach, another face): the correspondence is the generator's own encoder features
    (its ResNet's third stage), cosine similarity, mutual nearest neighbours and a similarity threshold, where
    they match VGG-19 features with a learned similarity subnet and a colorization subnet trained on it.
  - The confidence is a test, not a learned map: a grid cell of the target gets a hint only where nearly all of
    it is matched, its lightness agrees with the reference's (after an exposure shift) and the reference's colour
    is uniform there (one colour, not a boundary). The colour itself is the reference's mean colour of the cell.
  - No hints, no harm: an unrelated reference matches nothing, gives no hints, and the output is the automatic
    one (the log says so), never a colour cast; Zhang et al.'s network always blends the reference in.
  - Video: the reference is matched into the first frame of each shot (and later frames of the shot until one
    fits); the stabiliser (`temporal`, `video.colorized_frames`) carries those hints along the flow and drops
    them at a scene cut, where the next shot is matched again. Zhang et al. condition every frame on the
    reference and the previous output with a recurrent network.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

from .archive import FixedHints, HintsSource, PhotoHints
from .data import BadImageError, is_grayscale, load_rgb, to_rgb
from .hintmaps import check_hints
from .inference import RENDER_SIZE, Rendering, colorize_image, rendering_of
from .lab import generator_input, lab_net_to_rgb, pixels_to_rgb, rgb_to_lab_net, rgb_to_lightness, rgb_to_pixels
from .metrics import colorfulness, psnr_ab, psnr_rgb
from .temporal import consistent, new_flow, warp
from .video import is_video, probe

log = logging.getLogger(__name__)

MATCH_SIDE = 512  # matching runs with the longer side at most this many pixels
RATIO = 0.75  # Lowe's ratio test: the best match must be clearly better than the second
RANSAC_PX = 4.0  # a keypoint within this many working pixels of where the homography sends it is an inlier
MIN_INLIERS = 20  # fewer geometric inliers: not the same scene
MIN_INLIER_SHARE = 0.25  # ... or fewer than this share of the ratio-tested matches
MAX_FLOW = 0.06  # dense refinement trusts flow up to this fraction of the working side: views close after the warp
GRID = 32  # hint cells along the target's longer side
HINT_FILL = 0.5  # a hint's side as a fraction of its cell's: propagation fills between hints, along lightness
MIN_COVER = 0.9  # share of a cell that must be matched and agree in lightness for the cell to get a hint
L_TOLERANCE = 0.16  # network L ([-1,1]): 8 L units between target and matched reference, after the exposure shift
AB_SPREAD = 0.06  # ab/110: the reference's colour in a cell may vary by ~7 ab units (std) and still be one colour
SEMANTIC_SIM = 0.9  # cosine similarity of encoder features for a similar-scene match (mutual nearest neighbours)
SEMANTIC_MIN_SHARE = 0.15  # fewer of the target's cells matched: not a similar scene either
MIN_SIDE = 32  # a reference smaller than this (longer side) has no colour to match
MAX_SCALE = 8.0  # a reference whose longer side is more than 8x larger or smaller than the target's is refused
GRAY_CHROMA = 6  # `data.is_grayscale`'s tolerance: a reference without colour has nothing to give
SAME, SIMILAR = "same scene", "similar scene"
KINDS = ("same", "mismatched", "clip")  # the kinds of pair `evaluate_pairs` reports separately
LINE_COLOURS = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6")  # matches drawn


class BadReferenceError(ValueError):
    """A reference that cannot give colour: unreadable, grayscale, a video, far smaller or larger than the target."""


@dataclass(frozen=True)
class Correspondence:
    """What a reference gives a target: hints in the target's pixels, how they were found, the matches to draw."""

    hints: list[dict]  # hints-file entries in the target's pixels; empty: no confident correspondence
    kind: str | None  # SAME, SIMILAR or None
    matches: list[tuple[tuple[float, float], tuple[float, float]]] = field(default_factory=list)  # ((xt,yt),(xr,yr))
    reason: str = ""  # one line for the log and the summary


# ---------------------------------------------------------------------------------------------- input


def load_reference(path: str | os.PathLike) -> Image.Image:
    """The reference photo as RGB, or a BadReferenceError saying what is wrong (a video, unreadable, grayscale)."""
    path = Path(path)
    if is_video(path):
        raise BadReferenceError(f"the reference {path} is a video: give one colour frame of it as a photo, e.g. "
                                f"ffmpeg -ss 00:00:05 -i {path.name} -frames:v 1 still.png")
    try:
        image = load_rgb(path)
    except (BadImageError, FileNotFoundError) as e:
        raise BadReferenceError(f"the reference cannot be read: {e}") from None
    return check_reference(image)


def check_reference(reference: Image.Image, target_size: tuple[int, int] | None = None) -> Image.Image:
    """`reference` as RGB if it can give colour (to a target of `target_size` (W,H)), else a BadReferenceError."""
    if is_grayscale(reference, GRAY_CHROMA):
        raise BadReferenceError("the reference is grayscale: it has no colour to give; use a colour photo")
    reference = to_rgb(reference)
    side = max(reference.size)
    if side < MIN_SIDE:
        raise BadReferenceError(f"the reference is {reference.size[0]}x{reference.size[1]}: too small to match "
                                f"(at least {MIN_SIDE} px on its longer side)")
    if target_size is not None:
        ratio = side / max(target_size)
        if not 1 / MAX_SCALE <= ratio <= MAX_SCALE:
            raise BadReferenceError(
                f"the reference ({reference.size[0]}x{reference.size[1]}) is {max(ratio, 1 / ratio):.0f}x "
                f"{'larger' if ratio > 1 else 'smaller'} than the target ({target_size[0]}x{target_size[1]}); "
                f"resize it to within {MAX_SCALE:g}x of the target's size")
    return reference


# ------------------------------------------------------------------------------------------- matching


def _working(image: Image.Image) -> tuple[np.ndarray, float]:
    """(h,w,3) uint8 RGB with the longer side at most MATCH_SIDE, and the scale full / working."""
    scale = max(1.0, max(image.size) / MATCH_SIDE)
    size = (max(8, round(image.size[0] / scale)), max(8, round(image.size[1] / scale)))
    return np.asarray(to_rgb(image).resize(size, Image.Resampling.BILINEAR)), scale


def _lab(rgb: np.ndarray) -> np.ndarray:
    """(h,w,3) uint8 RGB -> (h,w,3) float32 network Lab: L in [-1,1], ab/110."""
    L, ab = rgb_to_lab_net(pixels_to_rgb(rgb))
    return torch.cat([L, ab], 1)[0].permute(1, 2, 0).numpy()


def _to_uint8(L: np.ndarray) -> np.ndarray:
    """Network L (h,w) -> uint8, the keypoint detector's and the flow's input."""
    return np.clip((L + 1) * 127.5, 0, 255).astype(np.uint8)


def _keypoints(gray: np.ndarray):
    """Keypoints and descriptors of a (h,w) uint8 lightness image: SIFT, or ORB where this OpenCV has no SIFT."""
    detector = cv2.SIFT_create(nfeatures=4000) if hasattr(cv2, "SIFT_create") else cv2.ORB_create(4000)
    return detector.detectAndCompute(gray, None)


def homography(target_gray: np.ndarray, reference_gray: np.ndarray,
               reference_keypoints: tuple | None = None) -> tuple[np.ndarray | None, np.ndarray, str]:
    """The RANSAC homography taking reference pixels to target pixels (3x3) or None, the inlier pairs (N,2,2) as
    ((x_t, y_t), (x_r, y_r)), and why it was (not) found. Both (h,w) uint8 lightness; `reference_keypoints`, the
    reference's `_keypoints` if they are known already."""
    kt, dt = _keypoints(target_gray)
    kr, dr = reference_keypoints or _keypoints(reference_gray)
    none = np.zeros((0, 2, 2))
    if dt is None or dr is None or len(kt) < MIN_INLIERS or len(kr) < MIN_INLIERS:
        return None, none, "too few keypoints"
    norm = cv2.NORM_L2 if dt.dtype == np.float32 else cv2.NORM_HAMMING
    pairs = cv2.BFMatcher(norm).knnMatch(dt, dr, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if len(good) < MIN_INLIERS:
        return None, none, f"{len(good)} keypoint matches pass the ratio test (need {MIN_INLIERS})"
    pt = np.float32([kt[m.queryIdx].pt for m in good])
    pr = np.float32([kr[m.trainIdx].pt for m in good])
    Hm, inl = cv2.findHomography(pr, pt, cv2.RANSAC, RANSAC_PX)
    n = int(inl.sum()) if inl is not None else 0
    if Hm is None or n < MIN_INLIERS or n < MIN_INLIER_SHARE * len(good):
        return None, none, f"{n} of {len(good)} matches fit one homography (need {MIN_INLIERS} and a quarter)"
    det = np.linalg.det(Hm[:2, :2])
    if not 1 / MAX_SCALE ** 2 <= det <= MAX_SCALE ** 2:
        return None, none, f"the homography is degenerate (area scale {det:.3g})"
    keep = inl.ravel().astype(bool)
    return Hm, np.stack([pt[keep], pr[keep]], 1), f"{n} of {len(good)} matches fit one homography"


def _aligned_same_scene(tl: np.ndarray, rl: np.ndarray, Hm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference's Lab (h,w,3) aligned to the target by the homography and DIS flow, and where it is trusted."""
    h, w = tl.shape[:2]
    warped = cv2.warpPerspective(rl, Hm, (w, h), flags=cv2.INTER_LINEAR)  # (h,w,3)
    inside = cv2.warpPerspective(np.ones(rl.shape[:2], np.uint8), Hm, (w, h), flags=cv2.INTER_NEAREST) > 0
    tg, wg = _to_uint8(tl[..., 0]), _to_uint8(np.where(inside, warped[..., 0], tl[..., 0]))
    flow = new_flow()
    fwd = flow.calc(tg, wg, None)  # (h,w,2): target(x) ~ warped(x + fwd(x))
    back = flow.calc(wg, tg, None)
    small = np.linalg.norm(fwd, axis=-1) <= MAX_FLOW * max(h, w)
    aligned = warp(warped, fwd)
    trusted = consistent(fwd, back) & small & (warp(inside.astype(np.float32), fwd) > 0.99)
    return aligned, trusted


def encoder_features(model: nn.Module, rgb: np.ndarray, size: int = RENDER_SIZE) -> torch.Tensor:
    """The generator's own encoder features (its ResNet body up to the third stage) of a photo (h,w,3) uint8
    seen at `size`: (C, size/16, size/16), unit length along C."""
    device = next(model.parameters()).device
    small = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR))
    L = rgb_to_lightness(pixels_to_rgb(small, device))  # (1,1,S,S)
    x = generator_input(L, torch.zeros(1, 3, size, size, device=device)) if model.spec.takes_hints else L
    body = model[0]
    with torch.inference_mode():
        for i, layer in enumerate(body):
            x = layer(x)
            if i == len(body) - 2:  # conv, bn, relu, maxpool, layer1, layer2, layer3: stride 16
                break
    return F.normalize(x[0].float(), dim=0)


def _cells(h: int, w: int) -> tuple[int, int]:
    step = max(h, w) / GRID
    return max(1, round(h / step)), max(1, round(w / step))


def _cell_stats(values: np.ndarray, ok: np.ndarray, rows: int, cols: int):
    """Per grid cell (rows, cols): the share of `ok` pixels and the mean and std of `values` (h,w,C) over them."""
    h, w = ok.shape
    ys, xs = np.linspace(0, h, rows + 1).round().astype(int), np.linspace(0, w, cols + 1).round().astype(int)
    cover = np.zeros((rows, cols))
    mean = np.zeros((rows, cols, values.shape[-1]))
    std = np.full((rows, cols, values.shape[-1]), np.inf)
    for i in range(rows):
        for j in range(cols):
            m = ok[ys[i]:ys[i + 1], xs[j]:xs[j + 1]]
            if m.size == 0:
                continue
            cover[i, j] = m.mean()
            if m.any():
                v = values[ys[i]:ys[i + 1], xs[j]:xs[j + 1]][m]
                mean[i, j], std[i, j] = v.mean(0), v.std(0)
    return cover, mean, std


def _hex(lab: np.ndarray) -> list[str]:
    """(N,3) network Lab -> '#rrggbb' each (in gamut, lightness kept: `lab.lab_net_to_rgb`)."""
    if len(lab) == 0:
        return []
    t = torch.from_numpy(lab.astype(np.float32)).T[None, :, None, :]  # (1,3,1,N)
    pixels = rgb_to_pixels(lab_net_to_rgb(t[:, :1], t[:, 1:]))[0, 0]  # (N,3) uint8
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in pixels.tolist()]


def _grid_hints(tl: np.ndarray, aligned: np.ndarray, ok: np.ndarray, full: tuple[int, int]) -> list[dict]:
    """Hints at the centres of the grid cells where the aligned reference is trusted: `ok` (h,w) bool, lightness in
    agreement after the exposure shift, one colour. tl, aligned (h,w,3) network Lab at the working size."""
    h, w = ok.shape
    if not ok.any():
        return []
    shift = float(np.median(aligned[..., 0][ok] - tl[..., 0][ok]))  # the reference's exposure against the target's
    agree = ok & (np.abs(aligned[..., 0] - shift - tl[..., 0]) < L_TOLERANCE)
    rows, cols = _cells(h, w)
    cover, mean, std = _cell_stats(aligned, agree, rows, cols)
    pick = (cover >= MIN_COVER) & (std[..., 1:].max(-1) < AB_SPREAD)
    i, j = np.nonzero(pick)
    W, H = full
    cw, ch = W / cols, H / rows
    side = max(1.0, round(HINT_FILL * min(cw, ch), 1))
    colours = _hex(mean[i, j])
    return [{"x": round(min(W - 1, (jj + 0.5) * cw), 1), "y": round(min(H - 1, (ii + 0.5) * ch), 1), "color": c,
             "size": side} for ii, jj, c in zip(i.tolist(), j.tolist(), colours)]


def _semantic(model: nn.Module, target: np.ndarray, ref: _Prepared, full: tuple[int, int]) -> Correspondence:
    """Similar-scene hints from the generator's encoder: mutual nearest neighbours above SEMANTIC_SIM."""
    reference, scale_r = ref.rgb, ref.scale
    ft, fr = encoder_features(model, target), ref.features(model)  # (C,g,g)
    g = ft.shape[-1]
    sim = ft.flatten(1).T @ fr.flatten(1)  # (g*g, g*g) cosine
    best_r, best_t = sim.argmax(1), sim.argmax(0)
    idx = torch.arange(sim.shape[0])
    mutual = (best_t[best_r] == idx) & (sim[idx, best_r] >= SEMANTIC_SIM)
    share = float(mutual.float().mean())
    if share < SEMANTIC_MIN_SHARE:
        return Correspondence([], None, reason=f"no similar scene either ({share:.0%} of the target's cells match "
                              f"its encoder features, need {SEMANTIC_MIN_SHARE:.0%})")
    tl, rl = _lab(target), ref.lab
    rows = cols = g
    _, mt, _ = _cell_stats(tl, np.ones(tl.shape[:2], bool), rows, cols)
    _, mr, sr = _cell_stats(rl, np.ones(rl.shape[:2], bool), rows, cols)
    mt, mr, sr = mt.reshape(-1, 3), mr.reshape(-1, 3), sr.reshape(-1, 3)
    W, H = full
    hr, wr = reference.shape[:2]
    hints, matches = [], []
    for t in torch.nonzero(mutual).ravel().tolist():
        r = int(best_r[t])
        if abs(mr[r, 0] - mt[t, 0]) >= L_TOLERANCE or sr[r, 1:].max() >= AB_SPREAD:
            continue  # lightness disagrees, or the reference's cell holds more than one colour
        x, y = (t % g + 0.5) * W / g, (t // g + 0.5) * H / g
        hints.append({"x": round(x, 1), "y": round(y, 1), "color": _hex(mr[r:r + 1])[0],
                      "size": max(1.0, round(HINT_FILL * min(W, H) / g, 1))})
        matches.append(((x, y), ((r % g + 0.5) * wr * scale_r / g, (r // g + 0.5) * hr * scale_r / g)))
    if len(hints) < SEMANTIC_MIN_SHARE * g * g / 2:
        return Correspondence([], None, reason=f"no similar scene either (only {len(hints)} matched cells agree in "
                              "lightness and hold one colour)")
    return Correspondence(hints, SIMILAR, matches, f"{SIMILAR}: {len(hints)} hints from {int(mutual.sum())} mutual "
                          "encoder-feature matches")


def reference_hints(target: Image.Image, reference: Image.Image, model: nn.Module | None = None) -> Correspondence:
    """Hints for `target` (any PIL photo; only its lightness is used) from the colour photo `reference`.

    Same scene first (keypoints, homography, flow); else, with a `model`, a similar scene from its encoder; else no
    hints. The hints are hints-file entries in the target's pixels; `matches` are pairs to draw.
    """
    return _matched(target, check_reference(reference, target.size), model)


class _Prepared:
    """What matching needs of a reference, made once for all the targets it is matched into (a folder's photos, a
    video's frames): its working copy (`_working`), Lab, keypoints, and each model's encoder features of it."""

    def __init__(self, reference: Image.Image):
        self.rgb, self.scale = _working(reference)
        self.lab = _lab(self.rgb)  # (h,w,3)
        self.gray = _to_uint8(self.lab[..., 0])
        self.keypoints = _keypoints(self.gray)
        self._features: dict[int, torch.Tensor] = {}

    def features(self, model: nn.Module) -> torch.Tensor:
        """`encoder_features` of the reference by `model`, computed once per model."""
        if id(model) not in self._features:
            self._features[id(model)] = encoder_features(model, self.rgb)
        return self._features[id(model)]


def _matched(target: Image.Image, reference: Image.Image | _Prepared, model: nn.Module | None) -> Correspondence:
    """`reference_hints` for a reference already checked against the target's size (`check_reference`), or
    prepared for many targets (`_Prepared`)."""
    ref = reference if isinstance(reference, _Prepared) else _Prepared(reference)
    t_rgb, st = _working(target)
    tl, rl, sr = _lab(t_rgb), ref.lab, ref.scale
    Hm, inliers, why = homography(_to_uint8(tl[..., 0]), ref.gray, ref.keypoints)
    if Hm is not None:
        aligned, trusted = _aligned_same_scene(tl, rl, Hm)
        hints = _grid_hints(tl, aligned, trusted, target.size)
        matches = [((float(a[0] * st), float(a[1] * st)), (float(b[0] * sr), float(b[1] * sr))) for a, b in inliers]
        if hints:
            return Correspondence(hints, SAME, matches, f"{SAME}: {why}; {len(hints)} hints")
        why += ", but no region of the target matches it with confidence"
    if model is None:
        return Correspondence([], None, reason=f"not the same scene ({why})")
    found = _semantic(model, t_rgb, ref, target.size)
    return found if found.hints else Correspondence([], None, reason=f"not the same scene ({why}); {found.reason}")


def merge_hints(derived: list[dict], person: list[dict] | None) -> list[dict]:
    """The derived hints and a person's, the person's winning where they disagree: a derived hint within a person's
    hint's reach (its size, or a 1/16 of nothing else is known, from its centre) is dropped, and the person's
    hints come last (a later hint paints over an earlier one)."""
    person = list(person or [])
    if not person:
        return list(derived)

    def near(d, p):
        reach = max(p.get("size") or 0, d.get("size") or 0) * 1.5
        return abs(d["x"] - p["x"]) <= reach and abs(d["y"] - p["y"]) <= reach

    return [d for d in derived if not any(near(d, p) for p in person if isinstance(p, dict) and "x" in p)] + person


# --------------------------------------------------------------------------------------------- photos


def colorize_with_reference(model: nn.Module, image: Image.Image, reference: Image.Image, hints=None,
                            rendering: Rendering | int | None = None,
                            **settings) -> tuple[Image.Image, list[dict], Correspondence]:
    """`inference.colorize_image` guided by a reference photo (and a person's `hints`, which win where they
    disagree): returns the colorized photo, the hints it used (a hints file's list) and the correspondence.
    `rendering` as for `colorize_image`."""
    rendering = rendering_of(rendering, **settings)
    if hints:
        check_hints(hints, image.size)  # the person's: a bad one is an error before any matching
    found = reference_hints(image, reference, model)
    log.info("reference: %s", found.reason)
    used = merge_hints(found.hints, hints)
    return colorize_image(model, image, rendering, hints=used or None), used, found


class ShotMatcher:
    """A reference matched into a video's frames as they are decoded (a `video.FrameHook`): into the first frame of
    each shot (shots split where the stabiliser finds a cut) or, where that frame does not fit, every `scan_every`
    frames later in the shot until one does. `hints` (each with its "frame") and `placed` collect what it found.
    `reference` is RGB and checked against the frames' size (`check_reference`). `person`: a person's hints for
    the video (each with an optional "frame"), placed by the video itself; a derived hint near one of them on its
    frame is dropped (`merge_hints`)."""

    def __init__(self, model: nn.Module | None, reference: Image.Image, scan_every: int = 12,
                 person: list | None = None):
        self.model, self.reference, self.scan_every = model, _Prepared(reference), scan_every
        self.person = list(person or [])
        self.hints: list[dict] = []
        self.placed: list[int] = []
        self.looking, self.since = True, 0

    def __call__(self, t: int, frame: np.ndarray, pair) -> list[dict]:
        self.since = 0 if pair is None or pair.cut else self.since + 1
        if pair is not None and pair.cut:
            self.looking = True  # a new shot: match again
        if not (self.looking and self.since % self.scan_every == 0):
            return []
        found = _matched(Image.fromarray(frame), self.reference, self.model)  # checked once for the whole video
        if not found.hints:
            return []
        mine = [{k: v for k, v in p.items() if k != "frame"} for p in self.person if p.get("frame", 0) == t]
        merged = merge_hints(found.hints, mine)
        derived = merged[:len(merged) - len(mine)]  # those the person's hints on this frame leave
        self.hints += [{**h, "frame": t} for h in derived]
        self.placed.append(t)
        self.looking = False
        return derived


class ReferenceHints(HintsSource):
    """`colorize apply TARGETS --reference REF`: each photo's hints matched from one reference photo (one look for a
    folder), a video's matched into its shots as it is decoded, merged with a person's own (`person`: a hints file's
    entries or a `HintsSource`, which win where they disagree). The reference is read and checked when this is made,
    and against every target's size before anything is written (`check`); the outputs' fingerprints hold the
    reference file's content hash, so a changed reference redoes them."""

    def __init__(self, model: nn.Module | None, reference: str | os.PathLike, person: list | HintsSource | None = None):
        self.model, self.path = model, Path(reference)
        self.reference = load_reference(reference)
        self.prepared = _Prepared(self.reference)  # matched into every photo: its keypoints and features made once
        self.digest = hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]
        self.person = FixedHints(person) if isinstance(person, list) else person

    def check(self, inputs) -> None:
        for src in inputs:  # far too small or large for any target: refused before anything is written
            if is_video(src):
                info = probe(src)
                check_reference(self.reference, (info.width, info.height))
            else:
                with Image.open(src) as im:
                    check_reference(self.reference, im.size)
                    if len(inputs) == 1 and isinstance(self.person, FixedHints):
                        check_hints(self.person.entries, im.size)  # one photo's own hints: a bad one is an error
        if self.person is not None:
            self.person.check(inputs)

    def identity(self, src: Path):
        return {"reference": self.digest, "person": self.person.identity(src) if self.person is not None else None}

    def photo(self, src: Path, image: Image.Image) -> PhotoHints:
        person = self.person.photo(src, image).entries if self.person is not None else []
        if person:
            check_hints(person, image.size)  # the person's: a bad one is this photo's failure, before any matching
        found = _matched(image, self.prepared, self.model)  # checked against every photo's size in `check`
        used = merge_hints(found.hints, person)
        if found.hints:
            return PhotoHints(used, f"reference: {found.reason}")
        return PhotoHints(used, f"no confident match with the reference: automatic ({found.reason})", fell_back=True)

    def video(self, src: Path):
        person = self.person.video(src)[0] if self.person is not None else []
        return person, ShotMatcher(self.model, self.reference, person=person)

    def video_done(self, src: Path, entries: list, hook: ShotMatcher) -> PhotoHints:
        used = hook.hints + list(entries)  # the hook dropped those the person's hints clash with
        if hook.placed:
            return PhotoHints(used, f"reference matched into frame(s) {', '.join(map(str, hook.placed))}")
        return PhotoHints(used, "no confident match with the reference in any shot: automatic", fell_back=True)


# ------------------------------------------------------------------------------------------- drawing


def draw_correspondence(target: Image.Image, reference: Image.Image, found: Correspondence, height: int = 360,
                        lines: int = 60) -> Image.Image:
    """The reference (left) and the target (right) side by side at `height`, with up to `lines` matches drawn."""
    ref, tgt = to_rgb(reference), to_rgb(target)
    sr, st = height / ref.size[1], height / tgt.size[1]
    wr, wt = max(1, round(ref.size[0] * sr)), max(1, round(tgt.size[0] * st))
    canvas = Image.new("RGB", (wr + wt, height), "white")
    canvas.paste(ref.resize((wr, height)), (0, 0))
    canvas.paste(tgt.convert("L").convert("RGB").resize((wt, height)), (wr, 0))
    draw = ImageDraw.Draw(canvas)
    step = max(1, len(found.matches) // lines)
    for k, ((xt, yt), (xr, yr)) in enumerate(found.matches[::step][:lines]):
        colour = LINE_COLOURS[k % len(LINE_COLOURS)]
        draw.line([(xr * sr, yr * sr), (wr + xt * st, yt * st)], fill=colour, width=1)
    return canvas


# ------------------------------------------------------------------------------------------ measured


def read_pairs(path: str | os.PathLike) -> list[tuple[Path, Path, str]]:
    """A pairs file: CSV rows `target,reference[,kind]` (paths relative to the file); kind defaults to 'same'."""
    path = Path(path)
    rows = []
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f), start=1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 2:
                raise ValueError(f"{path} line {i}: expected target,reference[,kind], got {row}")
            kind = row[2].strip() if len(row) > 2 else "same"
            if kind not in KINDS:
                raise ValueError(f"{path} line {i}: kind {kind!r}: choose one of {', '.join(KINDS)}")
            rows.append((path.parent / row[0].strip(), path.parent / row[1].strip(), kind))
    if not rows:
        raise ValueError(f"{path} holds no pairs")
    return rows


def evaluate_pairs(model: nn.Module, pairs: list[tuple[Path, Path, str]],
                   rendering: Rendering | int | None = None, **settings) -> dict:
    """PSNR RGB, PSNR ab and colourfulness of automatic against reference-guided colorization, per kind of pair.

    Each target is a colour photo (its colour is the truth; the model sees its lightness). Returns {kind: {metric:
    (automatic, guided)}, "n": ...} means over the pairs, plus "fell back": how many pairs got no hint. `rendering`
    as for `colorize_image`."""
    rendering = rendering_of(rendering, **settings)
    scores: dict[str, list] = {}
    fell = {k: 0 for k in KINDS}
    for target_path, reference_path, kind in pairs:
        truth = load_rgb(target_path)
        auto = colorize_image(model, truth, rendering)
        guided, _, found = colorize_with_reference(model, truth, load_reference(reference_path), None, rendering)
        fell[kind] += not found.hints
        t = pixels_to_rgb(np.asarray(truth))
        row = []
        for image in (auto, guided):
            x = pixels_to_rgb(np.asarray(image))
            row.append([float(psnr_rgb(x, t)), float(psnr_ab(x, t)), float(colorfulness(x))])
        scores.setdefault(kind, []).append(row)
    report = {}
    for kind, rows in scores.items():
        a = np.array(rows)  # (n, 2, 3)
        report[kind] = {"n": len(rows), "fell back": fell[kind],
                        **{m: (float(a[:, 0, k].mean()), float(a[:, 1, k].mean()))
                           for k, m in enumerate(("psnr_rgb", "psnr_ab", "colourfulness"))}}
    return report


def pairs_markdown(report: dict) -> str:
    """The `evaluate_pairs` report as a Markdown table."""
    lines = ["| pairs | n | no hints (automatic) | PSNR RGB auto | guided | gain | PSNR ab auto | guided | "
             "colourfulness auto | guided |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for kind, r in report.items():
        (a, g), (aa, ga), (ca, cg) = r["psnr_rgb"], r["psnr_ab"], r["colourfulness"]
        lines.append(f"| {kind} | {r['n']} | {r['fell back']} | {a:.2f} | {g:.2f} | {g - a:+.2f} | {aa:.2f} | {ga:.2f} "
                     f"| {ca:.1f} | {cg:.1f} |")
    return "\n".join(lines)

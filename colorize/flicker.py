"""Flicker measured: a colour clip is the ground truth, its gray frames are colorized per frame and stabilised.

Per method (each model per frame, `temporal` 0, and stabilised, from ONE model pass per frame; and, if asked,
through keyframes, a pass of its own running the model on the keyframes only), over the clip's frames:
- PSNR RGB and delta colourfulness (`colorize.metrics`), per frame, averaged;
- warping error (Lai et al. 2018): frame t against frame t+1 warped back along the ORIGINAL clip's flow,
  pixels the forward-backward test finds occluded masked out: mean over t of sum(M * |O_t - warp(O_t+1)|^2)
  / sum(M), RGB in [0,1], channels summed (as their evaluation code). The flow is DIS (as the stabiliser
  uses), not their FlowNet2, so the figure compares methods here, not with their paper;
- CDC, colour distribution consistency (Liu et al. 2021): the Jensen-Shannon divergence (natural log)
  between 256-bin histograms of each RGB channel of frames t and t+gap, averaged over channels, frames and
  the gaps 1, 2, 4.
The original clip's own warping error and CDC are the floor: what real motion and lighting cost.
Everything streams: one pass over the clip feeds every method at once, holding a few frames each; progress
in frames with the rate and time left (`video.frame_progress`).
"""

from __future__ import annotations

import itertools
import json
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.distance import jensenshannon
from torch import nn

from .config import option, options_of
from .inference import Rendering, rendering_of
from .keyframes import check_keyframes, keyed, parse_keyframes
from .lab import pixels_to_rgb, rgb_to_lab_net, rgb_to_lightness
from .metrics import colorfulness, psnr_rgb
from .temporal import DEFAULT_TEMPORAL, consistent, new_flow, to_flow_image, warp
from .video import BATCH, VideoOptions, colorized_frames, colorized_variants, frame_progress, probe, read_frames

CDC_GAPS = (1, 2, 4)  # Liu et al. 2021
ORIGINAL = "original (floor)"
STRIP = 6  # frames shown per method


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (nats) between histograms along the last axis (each sums to 1): the square of
    scipy's Jensen-Shannon distance."""
    return jensenshannon(p, q, axis=-1) ** 2


def rgb_histograms(frame: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 -> (3,256) histogram of each channel, each summing to 1."""
    flat = frame.reshape(-1, 3)
    return np.stack([np.bincount(flat[:, c], minlength=256) for c in range(3)]) / len(flat)


def _gray(frame: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 -> CIE L as (H,W) uint8 at full resolution, the flow's input."""
    return to_flow_image(rgb_to_lightness(pixels_to_rgb(frame))[0, 0].numpy(), frame.shape[1::-1])


@dataclass
class Meter:
    """Running sums of one method's flicker figures over the frames fed in order."""

    psnr: list = field(default_factory=list)
    cf: list = field(default_factory=list)
    delta_cf: list = field(default_factory=list)
    warp: list = field(default_factory=list)
    cdc: dict = field(default_factory=lambda: {g: [] for g in CDC_GAPS})
    ab: list = field(default_factory=list)  # (mean a, mean b) per frame, in Lab units
    hists: deque = field(default_factory=lambda: deque(maxlen=max(CDC_GAPS)))
    prev: np.ndarray | None = None

    def update(self, out: np.ndarray, truth: np.ndarray, flow: np.ndarray | None, mask: np.ndarray | None) -> None:
        """One frame: `out` and `truth` (H,W,3) uint8; `flow` (H,W,2) and `mask` (H,W) from the PREVIOUS
        original frame to this one (None for the first frame)."""
        o, t = pixels_to_rgb(out), pixels_to_rgb(truth)  # (1,3,H,W) in [0,1]
        self.psnr.append(float(psnr_rgb(o, t)))
        cf_o, cf_t = float(colorfulness(o)), float(colorfulness(t))
        self.cf.append(cf_o)
        self.delta_cf.append(cf_o - cf_t)
        self.ab.append((rgb_to_lab_net(o)[1] * 110).mean(dim=(2, 3))[0].tolist())
        cur = out.astype(np.float32) / 255
        if flow is not None:
            diff = np.square(warp(cur, flow) - self.prev).sum(-1)  # (H,W): O_t+1 warped back vs O_t
            self.warp.append(float((diff * mask).sum() / max(1, mask.sum())))
        self.prev = cur
        h = rgb_histograms(out)
        for g in CDC_GAPS:
            if len(self.hists) >= g:
                self.cdc[g].append(float(js_divergence(self.hists[-g], h).mean()))
        self.hists.append(h)

    def figures(self) -> dict:
        return {"psnr_rgb": _mean(self.psnr), "colourfulness": _mean(self.cf), "delta_cf": _mean(self.delta_cf),
                "warp_error": _mean(self.warp), "cdc": _mean([_mean(self.cdc[g]) for g in CDC_GAPS if self.cdc[g]])}


def _mean(values: list) -> float:
    return float(np.mean(values)) if values else float("nan")  # nan: too few frames for the figure


@dataclass
class FlickerReport:
    """Figures per method, each frame's mean (a, b) per method, and a strip of frames per method."""

    figures: dict[str, dict]
    ab: dict[str, np.ndarray]  # (T,2) mean a, mean b per frame
    strip: dict[str, list[np.ndarray]]  # STRIP frames (H,W,3) uint8 per method
    strip_frames: list[int]
    frames: int

    @property
    def markdown(self) -> str:
        head = "| method | PSNR RGB (dB) | colourfulness | ΔCF | warping error | CDC |\n|---|---|---|---|---|---|\n"
        return head + "".join(f"| {n} | {_db(f['psnr_rgb'])} | {f['colourfulness']:.1f} | {f['delta_cf']:+.1f} | "
                              f"{f['warp_error']:.5f} | {f['cdc']:.5f} |\n" for n, f in self.figures.items())


def _db(value: float) -> str:
    return f"{value:.2f}" if np.isfinite(value) else "—"  # the original against itself: no error to measure


def method_name(model: str, temporal: float = 0.0, keyframes: int | str = 1) -> str:
    if keyed(keyframes):
        return f"{model}, keyframes {keyframes}"
    return f"{model}, per frame" if temporal == 0 else f"{model}, temporal {temporal:g}"


@dataclass(frozen=True)
class FlickerOptions:
    """What `measure_flicker` compares besides the rendering: the blend weights, and how it runs and shows them."""

    temporals: tuple[float, ...] = option((0.0, DEFAULT_TEMPORAL), "blend weights to compare (0: per frame; the "
                                          "default's second is the stabiliser's)", parse=float, nargs="+",
                                          flag="--temporal")
    keyframes: tuple[int | str, ...] = option((), "keyframe spacings to compare too (the network on every K-th frame, "
                                              f"or auto: where the flow says; the keyframes stabilised at "
                                              f"{DEFAULT_TEMPORAL:g})", parse=parse_keyframes, nargs="+")
    batch: int = BATCH  # frames through the model at once
    strip: int = STRIP  # frames shown per method

    def __post_init__(self):
        object.__setattr__(self, "temporals", tuple(float(t) for t in self.temporals))
        object.__setattr__(self, "keyframes", tuple(check_keyframes(k) for k in self.keyframes))
        for t in self.temporals:
            VideoOptions(t, batch=self.batch)  # refuses a bad weight before any frame


def measure_flicker(clip: str | os.PathLike, models: dict[str, nn.Module], rendering: Rendering | int | None = None,
                    options: FlickerOptions | None = None, **settings) -> FlickerReport:
    """Colorize the colour clip's frames with each model at each temporal weight and measure the flicker (module
    doc). `rendering` and `options` may be given as keywords of their fields (`render_size=32, strip=0`)."""
    options = options_of(FlickerOptions, options, settings)
    rendering = rendering_of(rendering, **settings)
    strip = options.strip
    n = sum(1 for _ in read_frames(clip)) if strip else 0
    keep = set(np.linspace(0, n - 1, strip).round().astype(int).tolist()) if strip else set()
    methods = [method_name(m, t) for m in models for t in options.temporals]
    methods += [method_name(m, keyframes=k) for m in models for k in options.keyframes]
    sources = iter(itertools.tee(read_frames(clip), 1 + len(models) * (1 + len(options.keyframes))))
    truths = next(sources)
    outs = [colorized_variants(models[m], next(sources), options.temporals, rendering, options.batch) for m in models]
    outs += [map(lambda f: (f,), colorized_frames(models[m], next(sources), rendering,
                                                   VideoOptions(DEFAULT_TEMPORAL, k, options.batch)))
             for m in models for k in options.keyframes]
    meters = {name: Meter() for name in [ORIGINAL] + methods}
    strips = {name: [] for name in meters}
    flow, prev_gray, count = new_flow(), None, 0
    frames = frame_progress(zip(truths, *outs), probe(clip).frames, what=f"flicker of {Path(clip).name}")
    for i, (truth, *variants) in enumerate(frames):
        colour = [frame for variant in variants for frame in variant]
        gray, f, mask = _gray(truth), None, None
        if prev_gray is not None:
            f = flow.calc(prev_gray, gray, None)  # (H,W,2) original t-1 -> t
            mask = consistent(f, flow.calc(gray, prev_gray, None)).astype(np.float32)
        prev_gray = gray
        for name, frame in zip(meters, [truth] + colour):
            meters[name].update(frame, truth, f, mask)
            if i in keep:
                strips[name].append(frame)
        count = i + 1
    return FlickerReport({k: m.figures() for k, m in meters.items()}, {k: np.array(m.ab) for k, m in meters.items()},
                         strips, sorted(keep), count)


def write_flicker_report(report: FlickerReport, out_dir: str | os.PathLike) -> dict[str, Path]:
    """flicker.md, flicker.json, strip.png (frames per method) and ab_over_time.png into `out_dir`."""
    from .plots import ab_over_time, gallery, save_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "flicker.md", "json": out / "flicker.json", "strip": out / "strip.png",
             "ab_over_time": out / "ab_over_time.png"}
    paths["markdown"].write_text(report.markdown)
    paths["json"].write_text(json.dumps({"frames": report.frames, "figures": report.figures}, indent=2))
    rows = [report.strip[name] for name in report.strip]
    save_figure(gallery(rows, [f"frame {i}" for i in report.strip_frames], row_labels=list(report.strip)),
                paths["strip"])
    save_figure(ab_over_time(report.ab), paths["ab_over_time"])
    return paths


"""`colorize evaluate`: each generator and the grayscale baseline on a held-out split, at one fixed protocol.

Protocol (`protocol_text`): the centred square of each photo (side = its shorter side) resized to
size x size with PIL's antialiased bilinear filter, which is resizing the shorter side to `size` and
centre-cropping. The model sees L of that crop and predicts ab at the same size, in fp32 (TF32 off,
deterministic cuDNN); its RGB is rebuilt from the crop's own L (`lab.lab_net_to_rgb`) and compared
with the crop. The baseline keeps L and sets ab = 0. Writes results.json, results.md, gallery.png and
hardest.png.

A generator that takes colour hints is scored without hints in the main table (automatic mode). With
hint counts (`EvalOptions.hints`), EVERY model is also scored with that many hints per photo, the same
hints for all, drawn from the photo's true colours (Zhang et al. 2017's sweep: square patches of the mean
true ab at centre-biased places, `hintmaps.eval_side` px), seeded per photo and count, as `colorize
apply --hints` uses them (the same engine, `inference.colorize_batch`): a hint model reads them, then every
model's remaining error at the hinted pixels is spread along lightness (`colorize apply`'s default
propagation). A row "hints only (Levin et al. 2004)" starts from gray with the exact propagation, as
Zhang et al. plot it. PSNR RGB and ab against the number of hints go to results.json/.md and hint_curve.png.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from fastprogress.fastprogress import progress_bar
from PIL import Image, ImageOps

from . import __version__
from .data import BadImageError, index_dataset, load_rgb
from .clock import count, device_name, duration, guard_cpu, now
from .config import PRECISIONS, Recipe, choice, option
from .device import inference_device
from .files import atomic_write_text, bars_can_draw, default_workers
from .hintmaps import draw_hints_per_photo, eval_side, paint_hints
from .inference import Rendering, colorize_batch
from .lab import lab_net_to_rgb, pixels_to_rgb, rgb_to_lab_net, rgb_to_pixels
from .metrics import ColorMetrics, Skipped, psnr_ab, psnr_rgb
from .models import checkpoint_spec, load_generator, model_name, read_checkpoint_metadata
from .plots import captioned_gallery, hint_curve, save_figure
from .propagate import LEVIN_MAX_PIXELS, propagate

log = logging.getLogger(__name__)

BASELINE = "grayscale baseline (ab = 0)"
PROBE_PHOTOS = 4  # photos timed through every method before the evaluation, for its projection
LEVIN = "hints only (Levin et al. 2004)"  # the hint curve's no-network row: exact propagation from gray
GRAYSCALE_COLUMN = "grayscale (input)"  # the baseline's picture is the input itself: L alone
# ColorMetrics result key -> (results.md column, number format); the table has one column per entry.
COLUMNS = {
    "psnr_rgb": ("PSNR RGB (dB) ↑", "{:.2f}"),
    "psnr_ab": ("PSNR ab (dB) ↑", "{:.2f}"),
    "ssim": ("SSIM ↑", "{:.4f}"),
    "lpips": ("LPIPS ↓", "{:.4f}"),
    "colorfulness": ("CF", "{:.1f}"),
    "delta_colorfulness": ("ΔCF (0 is best)", "{:+.1f}"),
    "fid": ("FID ↓", "{:.2f}"),
}

Predictor = Callable[[torch.Tensor], torch.Tensor]  # L (B,1,S,S) in [-1,1] -> ab (B,2,S,S) scaled by 1/110
Guide = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # L (B,1,S,S), hint map (B,3,S,S) -> ab (B,2,S,S)


def parse_hint_counts(text: str) -> tuple[int, ...]:
    """`0,1,2,5,10` -> (0, 1, 2, 5, 10): the `--hints` flag of `colorize evaluate`."""
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise ValueError(f"{text!r}: give whole numbers of hints >= 0 separated by commas, e.g. 0,1,2,5,10") from None


@dataclass(frozen=True)
class EvalOptions(Recipe):
    """What `evaluate` may be told besides which models, on what data and where to write: the protocol's
    choices (same options, same numbers), the report's, and how this machine runs it."""

    split: str = choice("test", ("train", "valid", "test"), help="the dataset's split to score")
    size: int = option(256, "protocol: shorter side resized, centre crop SIZE x SIZE")
    precision: str = choice("fp32", PRECISIONS, help="fp32 is the protocol; auto/bf16/fp16 score faster and "
                            "slightly differently")
    seed: int = 42  # the seed the data was split with; it also seeds each photo's hints
    hints: tuple[int, ...] = option((), "numbers of colour hints per photo for the PSNR-vs-hints curves of every "
                                    "model (and Levin et al. from gray), e.g. 0,1,2,5,10,20,50,100",
                                    parse=parse_hint_counts)
    lpips_net: str | None = "alex"  # ColorMetrics: a backbone that can't be fetched is reported as skipped
    fid_feature: int | torch.nn.Module | None = 2048
    n_gallery: int = 6  # photos in the comparison gallery, spread over the split
    n_hardest: int = 6  # photos in the hardest-cases gallery: lowest PSNR ab under the first model
    bs: int = option(32, "photos per batch: the numbers do not depend on it")
    workers: int | None = None  # threads decoding photos; None: `files.default_workers`
    progress: bool = True
    allow_cpu: bool = True  # False: on a CPU, stop (clock.CpuGuardStop) an evaluation projected over a few minutes
    work_dir: str | os.PathLike | None = option(None, "folder for the dataset's index (default: beside the photos "
                                                "where they can be written, else the user's cache folder)")

    def check(self):
        if self.n_gallery < 1 or self.n_hardest < 1:
            raise ValueError(f"each gallery needs at least one photo, got n_gallery={self.n_gallery}, "
                             f"n_hardest={self.n_hardest}")
        counts = sorted({int(c) for c in self.hints})
        if counts and counts[0] < 0:
            raise ValueError(f"hint counts must be whole numbers >= 0, e.g. 0,1,2,5,10; got {list(self.hints)}")
        object.__setattr__(self, "hints", tuple(counts))

    def rendering(self) -> Rendering:
        """How the models run under this protocol: its precision, and hints spread as `colorize apply` spreads them."""
        return Rendering(precision=self.precision)


@dataclass(frozen=True)
class Protocol:
    """How every batch is computed, resolved once: crop size, batch size, device, rendering, hint seed, progress."""

    size: int
    bs: int
    device: torch.device
    rendering: Rendering  # the engine's precision and propagation (`inference.colorize_batch`)
    seed: int
    progress: bool

    @classmethod
    def resolve(cls, options: EvalOptions, device=None) -> Protocol:
        """The protocol of `options` on `device` (`device.inference_device`)."""
        return cls(options.size, options.bs, inference_device(device), options.rendering(), options.seed,
                   options.progress)

    def batches(self, items: Sequence) -> list:
        """`items` in batches of `bs`, under a progress bar where one can draw."""
        chunks = [items[i : i + self.bs] for i in range(0, len(items), self.bs)]
        return progress_bar(chunks) if self.progress and bars_can_draw() else chunks


@dataclass
class Scored:
    """What `score` measured: means and per-image values per method, the files scored, the unreadable ones."""

    scores: dict
    per_image: dict
    files: list[Path]
    bad: list[tuple[Path, str]]


@dataclass
class EvaluationReport:
    """What `evaluate` measured (`results`, as in results.json), its Markdown table, and the files it wrote."""

    results: dict
    markdown: str
    paths: dict[str, Path] = field(default_factory=dict)  # results_json, results_md, gallery, hardest[, hint_curve]


def protocol_text(size: int) -> str:
    """The evaluation protocol in one sentence, as results.md states it."""
    return (f"centred square of each photo resized to {size}x{size} (PIL bilinear, antialiased: shorter side to "
            f"{size}, centre crop); the model sees L of the crop and predicts ab at {size}x{size} in fp32; RGB is "
            "rebuilt from the crop's own L and compared with the crop; the baseline sets ab = 0")


def protocol_crop(image: Image.Image, size: int) -> np.ndarray:
    """The evaluation crop of a photo: its centred square resized to size x size -> (S,S,3) uint8."""
    return np.asarray(ImageOps.fit(image.convert("RGB"), (size, size), method=Image.Resampling.BILINEAR))


def hint_seeds(rels: Sequence[str], count: int, seed: int) -> list[int]:
    """The seed of each photo's `count` hints: from its path in the dataset, so the same photo always gets them."""
    return [int.from_bytes(hashlib.blake2b(f"{seed}:{count}:{rel}".encode(), digest_size=8).digest(), "little") >> 1
            for rel in rels]


def _zero_ab(L: torch.Tensor) -> torch.Tensor:
    """The grayscale baseline: ab = 0 everywhere, (B,1,S,S) -> (B,2,S,S)."""
    return L.new_zeros(L.shape[0], 2, *L.shape[2:])


def _automatic(model: torch.nn.Module, rendering: Rendering) -> Predictor:
    """A generator as an L -> ab predictor through the engine: a hint model colorizes automatically."""
    return lambda L: colorize_batch(model, L, None, rendering)


def _guided(model: torch.nn.Module | None, rendering: Rendering) -> Guide:
    """(L, hint map) -> ab as `colorize apply --hints` does it (the engine). None: Levin et al.'s exact spreading
    from gray."""
    if model is None:
        # reach inf: Levin et al.'s system as published, with no fade back to the (gray) start
        return lambda L, hints: propagate(L, _zero_ab(L), hints, "levin", reach=math.inf)
    return lambda L, hints: colorize_batch(model, L, hints, rendering)


def _check_models(models: Sequence, names: Sequence[str] | None, size: int) -> list[str]:
    """One distinct name per model (`models.model_name` by default), every checkpoint readable, before any work."""
    if not models:
        raise ValueError("no models to evaluate: pass one or more generator checkpoints (.safetensors)")
    names = [model_name(m) for m in models] if names is None else list(names)
    if len(names) != len(models) or len(set(names) | {BASELINE, LEVIN}) != len(names) + 2:
        raise ValueError(f"need one distinct name per model, got {names} for {len(models)} checkpoint(s); "
                         "give each a name (--names) to tell them apart")
    for ckpt in models:
        built = read_checkpoint_metadata(ckpt)["size"]
        if built != size:
            log.warning("%s was built for %d px photos; evaluating it at %d px (--size)", ckpt, built, size)
    return names


def _readable_crops(files: list[Path], size: int, pool: ThreadPoolExecutor, bad: list[tuple[Path, str]]) -> list:
    """The protocol crops of the files that can be read, in order; those that can't are added to `bad` with why."""
    def read(path: Path):
        try:
            return protocol_crop(load_rgb(path), size)
        except BadImageError as e:
            log.warning("skipped %s", e)
            bad.append((path, str(e)))
            return None

    return [crop for crop in pool.map(read, files) if crop is not None]


def _truth(files: list[Path], protocol: Protocol, pool: ThreadPoolExecutor) -> torch.Tensor:
    """RGB (B,3,S,S) in [0,1] of photos already scored once: one that became unreadable stops the evaluation."""
    bad: list[tuple[Path, str]] = []
    crops = _readable_crops(files, protocol.size, pool, bad)
    if bad:
        raise RuntimeError(f"{bad[0][0]} became unreadable during the evaluation; run it again")
    return pixels_to_rgb(np.stack(crops), protocol.device)


def score(methods: dict[str, Predictor], files: list[Path], metrics: ColorMetrics, protocol: Protocol,
          pool: ThreadPoolExecutor) -> Scored:
    """Every method's metrics over the readable `files`, one method after another (`metrics` reset for each)."""
    scores, per_image, bad = {}, {}, []
    for name, predict in methods.items():
        metrics.reset()
        found: list[tuple[Path, str]] = []
        log.info("scoring %s on %d photos", name, len(files))
        for chunk in protocol.batches(files):
            crops = _readable_crops(chunk, protocol.size, pool, found)
            if crops:
                rgb = pixels_to_rgb(np.stack(crops), protocol.device)  # (B,3,S,S) in [0,1]: the ground truth
                L = rgb_to_lab_net(rgb)[0]  # (B,1,S,S) in [-1,1]
                metrics.update(lab_net_to_rgb(L, predict(L)), rgb)
        if found and scores:  # the first pass found the unreadable ones; later passes skip them
            raise RuntimeError(f"{found[0][0]} became unreadable during the evaluation; run it again")
        if found:
            bad, unreadable = found, {p for p, _ in found}
            files = [f for f in files if f not in unreadable]
        if not files:
            raise FileNotFoundError(f"none of the photos to evaluate could be read ({len(bad)} skipped)")
        scores[name], per_image[name] = metrics.compute(), metrics.per_image()
    return Scored(scores, per_image, files, bad)


def hint_curve_scores(guides: dict[str, Guide], files: list[Path], rels: list[str], counts: Sequence[int],
                      protocol: Protocol, pool: ThreadPoolExecutor) -> dict[str, dict[str, list[float]]]:
    """Mean PSNR RGB and ab of each guided method given each number of hints, the same hints for every method."""
    side = eval_side(protocol.size)
    values = {(name, c, key): [] for name in guides for c in counts for key in ("psnr_rgb", "psnr_ab")}
    log.info("scoring %s with %s hints on %d photos", ", ".join(guides), ", ".join(map(str, counts)), len(files))
    for chunk in protocol.batches(list(range(len(files)))):
        rgb = _truth([files[i] for i in chunk], protocol, pool)  # (B,3,S,S) in [0,1]
        L, ab = rgb_to_lab_net(rgb)  # (B,1,S,S), (B,2,S,S)
        for count in counts:
            draws = draw_hints_per_photo(hint_seeds([rels[i] for i in chunk], count, protocol.seed), protocol.size,
                                         protocol.size, sides=(side, side), count=count)
            hints = paint_hints(ab, draws)  # (B,3,S,S)
            for name, guide in guides.items():
                pred = lab_net_to_rgb(L, guide(L, hints))
                values[name, count, "psnr_rgb"].append(psnr_rgb(pred, rgb))
                values[name, count, "psnr_ab"].append(psnr_ab(pred, rgb))
    return {name: {key: [torch.cat(values[name, c, key]).mean().item() for c in counts]
                   for key in ("psnr_rgb", "psnr_ab")} for name in guides}


def render(methods: dict[str, Predictor], files: list[Path], protocol: Protocol) -> list[list[np.ndarray]]:
    """Gallery rows: each method's colours on its L (the baseline first: the gray input), then the original, as
    (S,S,3) uint8."""
    rgb = pixels_to_rgb(np.stack([protocol_crop(load_rgb(f), protocol.size) for f in files]), protocol.device)
    L = rgb_to_lab_net(rgb)[0]
    columns = [lab_net_to_rgb(L, predict(L)) for predict in methods.values()] + [rgb]
    columns = [rgb_to_pixels(c) for c in columns]  # each (B,S,S,3) uint8
    return [[c[i] for c in columns] for i in range(len(files))]


def _json_value(value):
    """A metric for results.json: a float, or {"skipped": reason} (never a number for a skipped metric)."""
    return {"skipped": value.reason} if isinstance(value, Skipped) else value


def results_markdown(results: dict) -> str:
    """results.md from a results dict: one row per model, one column per metric, then data, protocol and notes."""
    header = ["model"] + [name for name, _ in COLUMNS.values()]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * len(COLUMNS)]
    skipped: dict[str, set[str]] = {}
    for name, row in results["models"].items():
        cells = [name]
        for key, (title, fmt) in COLUMNS.items():
            value = row[key]
            if isinstance(value, dict):  # {"skipped": reason}
                skipped.setdefault(title.split()[0], set()).add(value["skipped"])
                cells.append("skipped")
            else:
                cells.append(fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    first = next(iter(results["models"].values()))
    lines += [
        "",
        f"- Data: `{results['data']}`, split `{results['split']}`: {results['n_images']} images evaluated, "
        f"{results['n_skipped']} skipped (unreadable or excluded by the index; listed in results.json).",
        f"- Protocol: {results['protocol']}.",
        f"- CF: colourfulness (Hasler & Süsstrunk 2003); the originals average {first['colorfulness_target']:.1f}. "
        "ΔCF = CF(prediction) - CF(original): negative is duller.",
    ]
    lines += [f"- {metric} skipped: {'; '.join(sorted(reasons))}" for metric, reasons in skipped.items()]
    for g in results["galleries"].values():
        lines.append(f"- `{g['path']}`: {g['caption']}")
    if any(row.get("takes_hints") for row in results["models"].values()):
        lines.append("- Models that take colour hints are scored here without hints (automatic colorization).")
    if "hint_curve" in results:
        lines += ["", hint_curve_markdown(results["hint_curve"])]
    return "\n".join(lines) + "\n"


def hint_curve_markdown(curve: dict) -> str:
    """The PSNR-vs-hints tables of results.md: one row per model, one column per number of hints."""
    counts = curve["counts"]
    lines = []
    for key, title in (("psnr_rgb", "PSNR RGB (dB)"), ("psnr_ab", "PSNR ab (dB)")):
        lines += [f"{title} against the number of colour hints per photo:", "",
                  "| model | " + " | ".join(str(c) for c in counts) + " |", "| --- |" + " ---: |" * len(counts)]
        lines += [f"| {name} | " + " | ".join(f"{v:.2f}" for v in row[key]) + " |"
                  for name, row in curve["models"].items()]
        lines.append("")
    lines.append(f"- Hints: {curve['sampling']}. {curve['method']}")
    return "\n".join(lines)


def _choose_galleries(rels: list[str], psnr_ab: np.ndarray, names: list[str], options: EvalOptions) -> dict:
    """Which photos each gallery shows, its file name and its caption naming them (as results.json keeps them)."""
    split, size = options.split, options.size
    spread = np.unique(np.linspace(0, len(rels) - 1, min(options.n_gallery, len(rels))).round().astype(int))
    hard = np.argsort(psnr_ab, kind="stable")[: options.n_hardest]  # lowest PSNR ab first: the largest colour error
    columns = " | ".join([GRAYSCALE_COLUMN, *names, "original"])  # as every gallery: input, outputs, truth
    return {
        "gallery": {"path": "gallery.png", "files": [rels[i] for i in spread], "caption":
                    f"Comparison on {len(spread)} {split} photos spread over the split ({size}x{size} protocol), "
                    f"top to bottom: {', '.join(rels[i] for i in spread)}. Columns: {columns}."},
        "hardest": {"path": "hardest.png", "files": [rels[i] for i in hard], "caption":
                    f"Hardest cases: the {len(hard)} {split} photos with the lowest PSNR ab under {names[0]} "
                    "(largest colour error), worst first: "
                    + ", ".join(f"{rels[i]} ({psnr_ab[i]:.1f} dB)" for i in hard) + f". Columns: {columns}."},
    }


@contextlib.contextmanager
def _scoring(workers: int | None):
    """The evaluation's context: inference mode, deterministic cuDNN without TF32; yields a pool of photo readers."""
    with (ThreadPoolExecutor(workers or default_workers()) as pool, torch.inference_mode(),
          torch.backends.cudnn.flags(torch.backends.cudnn.enabled, benchmark=False, deterministic=True,
                                     allow_tf32=False)):
        yield pool


def evaluate(data: str | os.PathLike, models: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
             options: EvalOptions = EvalOptions(), *, names: Sequence[str] | None = None,
             device: str | torch.device | None = None) -> EvaluationReport:
    """Evaluate generator checkpoints and the grayscale baseline on `options.split` of `data`; write the report.

    Names default to `models.model_name` (run folder/stem); `device` to `device.inference_device`. Same
    inputs and options, same numbers. With `options.hints`, every model's PSNR against the number of
    hints, and Levin et al.'s from gray.
    """
    names = _check_models(models, names, options.size)
    protocol = Protocol.resolve(options, device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = index_dataset(data, seed=options.seed, progress=options.progress, work_dir=options.work_dir)
    generators = {name: load_generator(ckpt, device=protocol.device) for name, ckpt in zip(names, models)}
    methods = {BASELINE: _zero_ab, **{name: _automatic(g, protocol.rendering) for name, g in generators.items()}}
    metrics = ColorMetrics(lpips_net=options.lpips_net, fid_feature=options.fid_feature)
    guides = _guides(generators, protocol) if options.hints else {}
    with _scoring(options.workers) as pool:
        files = index.files(options.split)
        project(methods, guides, files, metrics, options, (protocol, pool))
        scored = score(methods, files, metrics, protocol, pool)
        rels = [f.relative_to(index.root).as_posix() for f in scored.files]
        curves = hint_curve_scores(guides, scored.files, rels, options.hints, protocol, pool) if guides else None
        galleries = _choose_galleries(rels, scored.per_image[names[0]]["psnr_ab"].numpy(), names, options)
        paths = write_galleries(galleries, methods, index.root, protocol, out_dir)
    results = results_dict(data, options, dict(zip(names, map(str, models))), scored, index, galleries)
    if curves is not None:
        results["hint_curve"] = curve_dict(curves, generators, options)
        paths["hint_curve"] = save_figure(hint_curve(results["hint_curve"]), out_dir / "hint_curve.png")
    report = write_report(results, out_dir, paths)
    log.info("evaluated %d model(s) and the baseline on %d %s photos (%d skipped): %s",
             len(models), results["n_images"], options.split, results["n_skipped"], out_dir)
    return report


def project(methods: dict[str, Predictor], guides: dict[str, Guide], files: list[Path], metrics: ColorMetrics,
            options: EvalOptions, run: tuple[Protocol, ThreadPoolExecutor]) -> float | None:
    """The evaluation's time on this device, logged before it starts: PROBE_PHOTOS photos timed through every method
    with its metrics and every guided method at the most hints (after one photo of warm-up), then `guard_cpu`."""
    protocol, pool = run
    device, start = protocol.device, now(protocol.device)
    crops = _readable_crops(files[:PROBE_PHOTOS], protocol.size, pool, [])
    if not crops:
        return None  # nothing readable to time: `score` says why
    rgb = pixels_to_rgb(np.stack(crops), device)  # (P,3,S,S)
    (L, ab), per_photo = rgb_to_lab_net(rgb), (now(device) - start) * (len(methods) + bool(guides)) / len(crops)
    side, most = eval_side(protocol.size), max(options.hints, default=0)
    hints = paint_hints(ab, draw_hints_per_photo(range(len(crops)), protocol.size, protocol.size, sides=(side, side),
                                                 count=most))  # (P,3,S,S)
    timed = [(lambda p=p: metrics.update(lab_net_to_rgb(L, p(L)), rgb), 1) for p in methods.values()]
    timed += [(lambda g=g: g(L, hints), len(options.hints)) for g in guides.values()]
    for job, times in timed:
        job()  # warm-up: kernels chosen, backbones loaded
        start = now(device)
        job()
        per_photo += (now(device) - start) * times / len(crops)
    metrics.reset()
    seconds = per_photo * len(files)
    log.info("evaluating %s on %s%s: about %s on this %s (projected from %s)", ", ".join(methods),
             count(len(files), "photo"), f", hint curves of {', '.join(guides)}" if guides else "", duration(seconds),
             device_name(device), count(len(crops), "photo"))
    guard_cpu(f"evaluating {count(len(files), 'photo')}", seconds, device, allow_cpu=options.allow_cpu,
              stopped="Stopped before scoring (no report written)")
    return seconds


def _guides(generators: dict[str, torch.nn.Module], protocol: Protocol) -> dict[str, Guide]:
    """The hint curves' methods: every model, then Levin et al. from gray where the exact solver takes the size."""
    size = protocol.size
    guides = {name: _guided(g, protocol.rendering) for name, g in generators.items()}
    if size * size <= LEVIN_MAX_PIXELS:
        guides[LEVIN] = _guided(None, protocol.rendering)
    else:
        log.warning("no %r row: the exact solver takes photos up to %d pixels, this protocol's are %dx%d",
                    LEVIN, LEVIN_MAX_PIXELS, size, size)
    return guides


def results_dict(data, options: EvalOptions, checkpoints: dict[str, str], scored: Scored, index,
                 galleries: dict) -> dict:
    """results.json's content: data, protocol, each model's means, the galleries, per-image values, software."""
    skipped = index.excluded_from(options.split) + scored.bad
    return {
        "data": str(data), "split": options.split, "size": options.size, "protocol": protocol_text(options.size),
        "precision": options.precision, "n_images": len(scored.files), "n_skipped": len(skipped),
        "skipped": [{"path": p.relative_to(index.root).as_posix(), "reason": why} for p, why in skipped],
        "models": {name: {"checkpoint": ckpt, "takes_hints": ckpt is not None and checkpoint_spec(ckpt).takes_hints,
                          **{k: _json_value(v) for k, v in scored.scores[name].items()}}
                   for name, ckpt in {BASELINE: None, **checkpoints}.items()},
        "galleries": galleries,
        "files": [f.relative_to(index.root).as_posix() for f in scored.files],
        "per_image": {name: {k: [round(x, 4) for x in v.tolist()] for k, v in values.items()}
                      for name, values in scored.per_image.items()},
        "software": {"colorize": __version__, "torch": torch.__version__.split("+")[0]},
    }


def curve_dict(curves: dict, generators: dict[str, torch.nn.Module], options: EvalOptions) -> dict:
    """results.json's "hint_curve": the counts, how hints were drawn and spread, each method's PSNR per count."""
    side = eval_side(options.size)
    return {
        "counts": list(options.hints), "path": "hint_curve.png", "seed": options.seed,
        "sampling": (f"k {side}x{side} px patches per photo, each the mean true ab of its square, at centre-biased "
                     "places (Zhang et al. 2017's sweep: 6x6 at 256 px), seeded per photo and k, the same for every "
                     "model"),
        "method": (f"A hint model reads the hints; then every model's remaining error at the hinted pixels is spread "
                   f"along lightness (propagation '{options.rendering().propagation}', as `colorize apply --hints`). "
                   f"{LEVIN}: no network, exact propagation from gray."),
        "models": {name: {"takes_hints": name in generators and generators[name].spec.takes_hints, **values}
                   for name, values in curves.items()},
    }


def write_galleries(galleries: dict[str, dict], methods: dict[str, Predictor], root: Path, protocol: Protocol,
                    out_dir: Path) -> dict[str, Path]:
    """Draw each gallery `_choose_galleries` chose (the photos shown are rendered once, in one batch); their paths."""
    shown = sorted({f for g in galleries.values() for f in g["files"]})
    rows = dict(zip(shown, render(methods, [root / f for f in shown], protocol)))
    columns = [*[GRAYSCALE_COLUMN if n == BASELINE else n for n in methods], "original"]
    paths = {}
    for key, g in galleries.items():
        fig = captioned_gallery([rows[f] for f in g["files"]], columns, g["caption"],
                                row_labels=[Path(f).name for f in g["files"]])
        paths[key] = save_figure(fig, out_dir / g["path"])
    return paths


def write_report(results: dict, out_dir: Path, paths: dict[str, Path]) -> EvaluationReport:
    """results.json and results.md in `out_dir`; the report with every path written."""
    markdown = results_markdown(results)
    paths = {**paths, "results_json": out_dir / "results.json", "results_md": out_dir / "results.md"}
    atomic_write_text(paths["results_json"], json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(paths["results_md"], markdown)
    return EvaluationReport(results, markdown, paths)

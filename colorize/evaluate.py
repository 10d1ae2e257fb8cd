"""`colorize evaluate`: each generator and the grayscale baseline on a held-out split, at one fixed protocol.

Protocol (`protocol_text`): the centred square of each photo (side = its shorter side) resized to
size x size with PIL's antialiased bilinear filter, which is resizing the shorter side to `size` and
centre-cropping. The model sees L of that crop and predicts ab at the same size, in fp32 (TF32 off,
deterministic cuDNN); its RGB is rebuilt from the crop's own L and compared with the crop. The
baseline keeps L and sets ab = 0. Writes results.json, results.md, gallery.png and hardest.png.

A generator that takes colour hints is scored without hints in the main table (automatic mode). With
`hints` counts, each hint model is also scored with that many hints per photo, drawn from the photo's
true colours (Zhang et al. 2017's sweep: square patches of the mean true ab at centre-biased places,
`hintmaps.eval_side` px), seeded per photo and count: PSNR RGB and ab against the number of hints, in
results.json/.md and hint_curve.png. Automatic models ignore hints: their curve is reported as n/a
and drawn as a flat dashed line at their automatic score.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from fastai.torch_core import default_device
from fastprogress.fastprogress import progress_bar
from PIL import Image, ImageOps

from . import __version__
from .data import BadImageError, index_dataset, load_rgb
from .device import autocast_for, choose_precision
from .files import atomic_write_text, bars_can_draw, default_workers
from .hintmaps import HINT_CHANNELS, draw_hints_per_photo, eval_side, paint_hints
from .lab import generator_input, lab_net_to_rgb, pixels_to_rgb, rgb_to_lab_net, rgb_to_pixels
from .metrics import ColorMetrics, Skipped, psnr_ab, psnr_rgb
from .models import load_generator, read_checkpoint_metadata
from .plots import captioned_gallery, hint_curve, save_figure

log = logging.getLogger(__name__)

BASELINE = "grayscale baseline (ab = 0)"
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
RESULTS_START, RESULTS_END = "<!-- results:start -->", "<!-- results:end -->"

Predictor = Callable[[torch.Tensor], torch.Tensor]  # L (B,1,S,S) in [-1,1] -> ab (B,2,S,S) scaled by 1/110


@dataclass
class EvaluationReport:
    """What `evaluate` measured (`results`, as in results.json), its Markdown table, and the files it wrote."""

    results: dict
    markdown: str
    paths: dict[str, Path] = field(default_factory=dict)  # results_json, results_md, gallery, hardest


def protocol_text(size: int) -> str:
    """The evaluation protocol in one sentence, as results.md states it."""
    return (f"centred square of each photo resized to {size}x{size} (PIL bilinear, antialiased: shorter side to "
            f"{size}, centre crop); the model sees L of the crop and predicts ab at {size}x{size} in fp32; RGB is "
            "rebuilt from the crop's own L and compared with the crop; the baseline sets ab = 0")


def protocol_crop(image: Image.Image, size: int) -> np.ndarray:
    """The evaluation crop of a photo: its centred square resized to size x size -> (S,S,3) uint8."""
    return np.asarray(ImageOps.fit(image.convert("RGB"), (size, size), method=Image.Resampling.BILINEAR))


def model_name(ckpt: str | os.PathLike) -> str:
    """Table name of a checkpoint: its run folder and file stem, e.g. `places365-l1/best`."""
    p = Path(ckpt)
    return f"{p.parent.name}/{p.stem}"


def _zero_ab(L: torch.Tensor) -> torch.Tensor:
    """The grayscale baseline: ab = 0 everywhere, (B,1,S,S) -> (B,2,S,S)."""
    return L.new_zeros(L.shape[0], 2, *L.shape[2:])


def _automatic(model: torch.nn.Module) -> Predictor:
    """A generator as an L -> ab predictor: a hint model gets an all-zero hint map (it colorizes automatically)."""
    if model.spec.in_channels == 1 + HINT_CHANNELS:
        return lambda L: model(generator_input(L))
    return model


def hint_seeds(rels: Sequence[str], count: int, seed: int) -> list[int]:
    """The seed of each photo's `count` hints: from its path in the dataset, so the same photo always gets them."""
    return [int.from_bytes(hashlib.blake2b(f"{seed}:{count}:{rel}".encode(), digest_size=8).digest(), "little") >> 1
            for rel in rels]


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


def score(methods: dict[str, Predictor], files: list[Path], metrics: ColorMetrics, *, size: int, bs: int,
          device: torch.device, precision: str, pool: ThreadPoolExecutor,
          progress: bool) -> tuple[dict, dict, list[Path], list[tuple[Path, str]]]:
    """Every method's metrics over the readable `files`, one method after another (`metrics` reset for each):
    (means per method, per-image values per method, the files scored, the unreadable files with why)."""
    scores, per_image, bad = {}, {}, []
    for name, predict in methods.items():
        metrics.reset()
        found: list[tuple[Path, str]] = []
        chunks = [files[i : i + bs] for i in range(0, len(files), bs)]
        log.info("scoring %s on %d photos", name, len(files))
        for chunk in progress_bar(chunks) if progress and bars_can_draw() else chunks:
            crops = _readable_crops(chunk, size, pool, found)
            if crops:
                rgb = pixels_to_rgb(np.stack(crops), device)  # (B,3,S,S) in [0,1]: the ground truth
                L = rgb_to_lab_net(rgb)[0]  # (B,1,S,S) in [-1,1]
                with autocast_for(device, choose_precision(device, precision)):
                    ab = predict(L).float()  # (B,2,S,S)
                metrics.update(lab_net_to_rgb(L, ab), rgb)
        if found and scores:  # the first pass found the unreadable ones; later passes skip them
            raise RuntimeError(f"{found[0][0]} became unreadable during the evaluation; run it again")
        if found:
            bad = found
            unreadable = {p for p, _ in found}
            files = [f for f in files if f not in unreadable]
        if not files:
            raise FileNotFoundError(f"none of the photos to evaluate could be read ({len(bad)} skipped)")
        scores[name], per_image[name] = metrics.compute(), metrics.per_image()
    return scores, per_image, files, bad


def hint_curve_scores(model: torch.nn.Module, files: list[Path], rels: list[str], counts: Sequence[int], *,
                      size: int, bs: int, device: torch.device, precision: str, pool: ThreadPoolExecutor, seed: int,
                      progress: bool) -> dict[str, list[float]]:
    """Mean PSNR RGB and ab of a hint model given each number of hints drawn from the photos' true colours."""
    side = eval_side(size)
    values = {c: {"psnr_rgb": [], "psnr_ab": []} for c in counts}
    chunks = [range(i, min(i + bs, len(files))) for i in range(0, len(files), bs)]
    log.info("scoring a hint model with %s hints on %d photos", ", ".join(map(str, counts)), len(files))
    for chunk in progress_bar(chunks) if progress and bars_can_draw() else chunks:
        bad: list[tuple[Path, str]] = []
        crops = _readable_crops([files[i] for i in chunk], size, pool, bad)
        if bad:
            raise RuntimeError(f"{bad[0][0]} became unreadable during the evaluation; run it again")
        rgb = pixels_to_rgb(np.stack(crops), device)  # (B,3,S,S) in [0,1]
        L, ab = rgb_to_lab_net(rgb)  # (B,1,S,S), (B,2,S,S)
        for count in counts:
            draws = draw_hints_per_photo(hint_seeds([rels[i] for i in chunk], count, seed), size, size,
                                         sides=(side, side), count=count)
            with autocast_for(device, choose_precision(device, precision)):
                pred_ab = model(generator_input(L, paint_hints(ab, draws))).float()  # (B,2,S,S)
            pred = lab_net_to_rgb(L, pred_ab)
            values[count]["psnr_rgb"].append(psnr_rgb(pred, rgb))
            values[count]["psnr_ab"].append(psnr_ab(pred, rgb))
    return {key: [torch.cat(values[c][key]).mean().item() for c in counts] for key in ("psnr_rgb", "psnr_ab")}


def render(methods: dict[str, Predictor], files: list[Path], size: int, device: torch.device,
           precision: str) -> list[list[np.ndarray]]:
    """Gallery rows: original, then each method's colours on its L, as (S,S,3) uint8."""
    rgb = pixels_to_rgb(np.stack([protocol_crop(load_rgb(f), size) for f in files]), device)
    L = rgb_to_lab_net(rgb)[0]
    with autocast_for(device, choose_precision(device, precision)):
        columns = [rgb] + [lab_net_to_rgb(L, predict(L).float()) for predict in methods.values()]
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
        for name, row in curve["models"].items():
            cells = [f"{v:.2f}" for v in row[key]] if row["takes_hints"] else ["n/a"] * len(counts)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(f"- Hints: {curve['sampling']}. Automatic models take no hints: n/a (drawn flat at their "
                 f"automatic score in `{curve['path']}`).")
    return "\n".join(lines)


def _choose_galleries(rels: list[str], psnr_ab: np.ndarray, names: list[str], split: str, size: int,
                      n_gallery: int, n_hardest: int) -> dict[str, dict]:
    """Which photos each gallery shows, its file name and its caption naming them (as results.json keeps them)."""
    spread = np.unique(np.linspace(0, len(rels) - 1, min(n_gallery, len(rels))).round().astype(int))
    hard = np.argsort(psnr_ab, kind="stable")[:n_hardest]  # lowest PSNR ab first: the largest colour error
    columns = " | ".join(["original", GRAYSCALE_COLUMN, *names])
    return {
        "gallery": {"path": "gallery.png", "files": [rels[i] for i in spread], "caption":
                    f"Comparison on {len(spread)} {split} photos spread over the split ({size}x{size} protocol), "
                    f"top to bottom: {', '.join(rels[i] for i in spread)}. Columns: {columns}."},
        "hardest": {"path": "hardest.png", "files": [rels[i] for i in hard], "caption":
                    f"Hardest cases: the {len(hard)} {split} photos with the lowest PSNR ab under {names[0]} "
                    "(largest colour error), worst first: "
                    + ", ".join(f"{rels[i]} ({psnr_ab[i]:.1f} dB)" for i in hard) + f". Columns: {columns}."},
    }


def evaluate(
    data: str | os.PathLike,
    models: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    split: str = "test",
    size: int = 256,
    device: str | torch.device | None = None,
    names: Sequence[str] | None = None,
    bs: int = 32,
    lpips_net: str | None = "alex",
    fid_feature: int | torch.nn.Module | None = 2048,
    n_gallery: int = 6,
    n_hardest: int = 6,
    seed: int = 42,
    workers: int | None = None,
    progress: bool = True,
    precision: str = "fp32",
    work_dir: str | os.PathLike | None = None,
    hints: Sequence[int] | None = None,
) -> EvaluationReport:
    """Evaluate generator checkpoints and the grayscale baseline on `split` of `data`; write the report to `out_dir`.

    Names default to `model_name` (run folder/stem). LPIPS/FID settings go to `ColorMetrics` (a
    backbone that can't be fetched is reported as skipped). `seed` must be the one the data was split
    with. The comparison gallery shows `n_gallery` photos spread over the split; the hardest-cases
    gallery the `n_hardest` with the lowest PSNR ab under the first model. Same inputs, same numbers.
    `work_dir` places the dataset's index (`data.work_dir_for`). `hints`: numbers of colour hints per
    photo (e.g. 0, 1, 2, 5, 10) for the PSNR-vs-hints curve of the models that take hints, drawn with
    `seed`.
    """
    if not models:
        raise ValueError("no models to evaluate: pass one or more generator checkpoints (.safetensors)")
    if n_gallery < 1 or n_hardest < 1:
        raise ValueError(f"each gallery needs at least one photo, got n_gallery={n_gallery}, n_hardest={n_hardest}")
    names = [model_name(m) for m in models] if names is None else list(names)
    if len(names) != len(models) or len(set(names) | {BASELINE}) != len(names) + 1:
        raise ValueError(f"need one distinct name per model, got {names} for {len(models)} checkpoint(s); "
                         "give each a name (--names) to tell them apart")
    takes_hints = {}
    for name, ckpt in zip(names, models):  # every checkpoint readable before anything is written
        meta = read_checkpoint_metadata(ckpt)
        takes_hints[name] = meta["in_channels"] == 1 + HINT_CHANNELS
        if meta["size"] != size:
            log.warning("%s was built for %d px photos; evaluating it at %d px (--size)", ckpt, meta["size"], size)
    if hints is not None:
        hints = sorted(set(int(c) for c in hints))
        if not hints or hints[0] < 0:
            raise ValueError(f"hint counts must be whole numbers >= 0, e.g. 0,1,2,5,10; got {hints}")
        if not any(takes_hints.values()):
            log.warning("none of the models takes colour hints: their hint curve is n/a")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device) if device is not None else default_device()
    index = index_dataset(data, seed=seed, progress=progress, work_dir=work_dir)
    files = index.files(split)
    skipped = index.excluded_from(split)
    methods: dict[str, Predictor] = {BASELINE: _zero_ab}
    generators = {name: load_generator(ckpt, device=device) for name, ckpt in zip(names, models)}
    methods.update({name: _automatic(g) for name, g in generators.items()})
    metrics = ColorMetrics(lpips_net=lpips_net, fid_feature=fid_feature)

    with (ThreadPoolExecutor(workers or default_workers()) as pool, torch.inference_mode(),
          torch.backends.cudnn.flags(torch.backends.cudnn.enabled, benchmark=False, deterministic=True,
                                     allow_tf32=False)):
        scores, per_image, files, bad = score(methods, index.files(split), metrics, size=size, bs=bs, device=device,
                                              precision=precision, pool=pool, progress=progress)
        rels = [f.relative_to(index.root).as_posix() for f in files]
        curves = {name: hint_curve_scores(g, files, rels, hints, size=size, bs=bs, device=device, precision=precision,
                                          pool=pool, seed=seed, progress=progress)
                  for name, g in generators.items() if hints is not None and takes_hints[name]}
        galleries = _choose_galleries(rels, per_image[names[0]]["psnr_ab"].numpy(), names, split, size,
                                      n_gallery, n_hardest)
        paths = write_galleries(galleries, methods, index.root, size, device, precision, out_dir)
    skipped = index.excluded_from(split) + bad
    results = {
        "data": str(data), "split": split, "size": size, "protocol": protocol_text(size), "precision": precision,
        "n_images": len(files), "n_skipped": len(skipped),
        "skipped": [{"path": p.relative_to(index.root).as_posix(), "reason": why} for p, why in skipped],
        "models": {name: {"checkpoint": ckpt, "takes_hints": takes_hints.get(name, False),
                          **{k: _json_value(v) for k, v in scores[name].items()}}
                   for name, ckpt in {BASELINE: None, **{n: str(c) for n, c in zip(names, models)}}.items()},
        "galleries": galleries,
        "files": rels,
        "per_image": {name: {k: [round(x, 4) for x in v.tolist()] for k, v in values.items()}
                      for name, values in per_image.items()},
        "software": {"colorize": __version__, "torch": torch.__version__.split("+")[0]},
    }
    if hints is not None:
        side = eval_side(size)
        results["hint_curve"] = {
            "counts": hints, "path": "hint_curve.png", "seed": seed,
            "sampling": (f"k {side}x{side} px patches per photo, each the mean true ab of its square, at "
                         "centre-biased places (Zhang et al. 2017's sweep: 6x6 at 256 px), seeded per photo and k"),
            "models": {name: ({"takes_hints": True, **curves[name]} if takes_hints[name] else
                              {"takes_hints": False, "automatic": {k: scores[name][k] for k in ("psnr_rgb", "psnr_ab")}})
                       for name in names},
        }
        paths["hint_curve"] = save_figure(hint_curve(results["hint_curve"]), out_dir / "hint_curve.png")
    report = write_report(results, out_dir, paths)
    log.info("evaluated %d model(s) and the baseline on %d %s photos (%d skipped): %s",
             len(models), len(files), split, len(skipped), out_dir)
    return report


def write_galleries(galleries: dict[str, dict], methods: dict[str, Predictor], root: Path, size: int,
                    device: torch.device, precision: str, out_dir: Path) -> dict[str, Path]:
    """Draw each gallery `_choose_galleries` chose (the photos shown are rendered once, in one batch); their paths."""
    shown = sorted({f for g in galleries.values() for f in g["files"]})
    rows = dict(zip(shown, render(methods, [root / f for f in shown], size, device, precision)))
    columns = ["original", *[GRAYSCALE_COLUMN if n == BASELINE else n for n in methods]]
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


def update_readme_results(readme_path: str | os.PathLike, results_md_path: str | os.PathLike,
                          source_note: str) -> Path:
    """Replace the README text between `<!-- results:start -->` and `<!-- results:end -->` with results.md.

    `source_note` says where the numbers come from (data, protocol, the command that made them); it
    is added under the table as "Source: ...". Refuses if the markers are missing or out of order.
    """
    readme = Path(readme_path)
    text = readme.read_text()
    start, end = text.find(RESULTS_START), text.find(RESULTS_END)
    if text.count(RESULTS_START) != 1 or text.count(RESULTS_END) != 1 or start > end:
        raise ValueError(f"{readme} needs one {RESULTS_START} line and, after it, one {RESULTS_END} line "
                         "around its results section: add them where the table belongs and run again")
    table = Path(results_md_path).read_text().strip()
    block = f"{RESULTS_START}\n{table}\n\nSource: {source_note.strip()}\n{RESULTS_END}"
    atomic_write_text(readme, text[:start] + block + text[end + len(RESULTS_END):])
    return readme

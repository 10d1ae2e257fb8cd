"""`colorize demo`: the whole method (L1 pretraining, GAN fine-tuning, colour hints), offline, in minutes on a CPU.

It trains on the photos shipped with scikit-image and scikit-learn.

Eight photos are far too few for a general model: the demo shows the pipeline working end to end,
not Places365-quality colour. Its numbers are measured, not made up: the held-out photos are
compared with the grayscale baseline (ab = 0) on the same metrics. The hint stage widens the L1
generator to take colour hints; the gallery shows it given a few hints taken from each original, and
report/ holds `colorize evaluate`'s PSNR-vs-hints curve of the three generators.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .config import GAN_PRESETS, HINTS_PRESETS, PRETRAIN_PRESETS
from .data import index_dataset, load_rgb
from .download import sample_photos
from .evaluate import evaluate
from .hintmaps import hints_from_photo
from .hints import train_hints
from .inference import colorize_image
from .lab import AB_SCALE, lab_net_to_rgb, pixels_to_rgb, rgb_to_lab_net, rgb_to_pixels
from .metrics import psnr_rgb
from .models import load_generator
from .plots import gallery, save_figure
from .gan import finetune
from .pretrain import pretrain
from .run import BEST_NAME, LAST_NAME

DEMO_HINTS = 5  # hints per photo in the gallery: "a few", taken from the original's colours
HINT_COUNTS = (0, 1, 2, 5, 10, 20, 50, 100)  # the PSNR-vs-hints curve, as Zhang et al. 2017 and iColoriT plot it


def compare(candidate: Image.Image, original: Image.Image) -> dict[str, float]:
    """Colour error of a colorized photo against the original: ab L1 in Lab units and RGB PSNR in dB."""
    pred, true = pixels_to_rgb(candidate), pixels_to_rgb(original)  # (1,3,H,W) in [0,1]
    ab_l1 = (rgb_to_lab_net(pred)[1] - rgb_to_lab_net(true)[1]).abs().mean().item() * AB_SCALE
    return {"ab_l1": ab_l1, "psnr_rgb": psnr_rgb(pred, true).item()}


def grayscale_baseline(img: Image.Image) -> Image.Image:
    """The photo with its colour removed (ab = 0): what a colorizer has to beat."""
    L, ab = rgb_to_lab_net(pixels_to_rgb(img))
    return Image.fromarray(rgb_to_pixels(lab_net_to_rgb(L, torch.zeros_like(ab)))[0])


def metrics_table(rows: dict[str, dict[str, float]], n_images: int) -> str:
    """A Markdown table: one row per method, mean ab L1 (lower is better) and RGB PSNR (higher is better)."""
    lines = [f"Held-out sample photos: {n_images}, full resolution.", "",
             "| method | ab L1 (Lab units, lower is better) | PSNR RGB (dB, higher is better) |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {m['ab_l1']:.2f} | {m['psnr_rgb']:.2f} |" for name, m in rows.items()]
    return "\n".join(lines) + "\n"


def run_demo(out="runs/demo", data="data/samples", device=None, pretrain_config=None, gan_config=None,
             hints_config=None) -> str:
    """L1-pretrain, GAN-fine-tune and hint-train on the sample photos, colorize the held-out ones, write
    gallery.png, metrics.md and report/ (with the PSNR-vs-hints curve); say where. The recipes default to
    the `demo` presets."""
    out = Path(out)
    photos = sample_photos(data)
    config = pretrain_config or PRETRAIN_PRESETS["demo"]
    pretrain(photos, out / "l1", config, device=device)
    finetune(photos, out / "gan", gan_config or GAN_PRESETS["demo"], generator=out / "l1" / BEST_NAME, device=device)
    train_hints(photos, out / "hints", hints_config or HINTS_PRESETS["demo"], generator=out / "l1" / BEST_NAME,
                device=device)
    l1 = load_generator(out / "l1" / BEST_NAME, device=device)
    gan = load_generator(out / "gan" / LAST_NAME, device=device)  # the GAN's result, not its lowest-L1 epoch
    hinted = load_generator(out / "hints" / BEST_NAME, device=device)
    size = config.data.size

    methods = {"grayscale baseline": grayscale_baseline,
               "L1 generator": lambda img: colorize_image(l1, img, render_size=size),
               "GAN generator": lambda img: colorize_image(gan, img, render_size=size),
               f"hint generator, {DEMO_HINTS} hints": lambda img: colorize_image(
                   hinted, img, render_size=size, hints=hints_from_photo(img, DEMO_HINTS))}
    tests = index_dataset(photos).files("test")
    scores = {name: [] for name in methods}
    rows = []
    for path in tests:
        original = load_rgb(path)
        row = []
        for name, method in methods.items():
            result = method(original)
            result.save(out / f"{path.stem}_{name.split()[0].lower()}.png")  # grayscale, L1, GAN, hint
            scores[name].append(compare(result, original))
            row.append(result)
        rows.append(row + [original])
    means = {name: {k: float(np.mean([s[k] for s in ss])) for k in ss[0]} for name, ss in scores.items()}

    fig = gallery(rows, ["grayscale (input)", "L1 only", "GAN", f"hints ({DEMO_HINTS} from the original)", "original"],
                  row_labels=[p.name for p in tests])
    save_figure(fig, out / "gallery.png")
    report = evaluate(photos, [out / "l1" / BEST_NAME, out / "gan" / LAST_NAME, out / "hints" / BEST_NAME],
                      out / "report", size=size, names=["L1", "GAN", "hints"], device=device, lpips_net=None,
                      fid_feature=None, hints=HINT_COUNTS, progress=False)  # LPIPS/FID would need a download
    curve = report.results["hint_curve"]["models"]["hints"]
    (out / "metrics.md").write_text(metrics_table(means, len(tests)))
    (out / "metrics.json").write_text(json.dumps({"n_images": len(tests), "photos": [p.name for p in tests],
                                                  "methods": means, "hint_curve": {
                                                      "counts": list(HINT_COUNTS), **curve}}, indent=1))
    return (f"{metrics_table(means, len(tests))}\nhint generator, PSNR RGB (dB) with "
            + ", ".join(f"{c}: {v:.2f}" for c, v in zip(HINT_COUNTS, curve["psnr_rgb"])) + " hints\n"
            f"gallery: {out / 'gallery.png'}\nmetrics: {out / 'metrics.md'}\nhint curve: {report.paths['hint_curve']}\n"
            f"generators: {out / 'l1' / BEST_NAME} (L1), {out / 'gan' / LAST_NAME} (GAN), {out / 'hints' / BEST_NAME} "
            "(hints)")

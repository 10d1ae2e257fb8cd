"""`colorize demo`: the whole method (L1 pretraining, GAN fine-tuning, colour hints), offline, in minutes on a CPU.

It trains on the photos shipped with scikit-image and scikit-learn, then evaluates the generators and
the grayscale baseline on the held-out photos with `colorize.evaluate` (the same protocol and table as
the README's Results, plus the hint generator's PSNR against the number of hints), and colorizes them at
full resolution for a gallery: automatic, with a few hints taken from the original (read by the hint generator,
then spread along lightness), and the original.

Eight photos are far too few for a general model: the demo shows the pipeline working end to end,
not Places365-quality colour.
"""

from __future__ import annotations

from pathlib import Path

from .config import GAN_PRESETS, HINTS_PRESETS, PRETRAIN_PRESETS
from .data import index_dataset, load_rgb
from .download import sample_photos
from .evaluate import EvalOptions, evaluate
from .hintmaps import hints_from_photo
from .inference import Rendering, colorize_image
from .lab import gray_photo
from .models import load_generator
from .plots import gallery, save_figure
from .run import BEST_NAME, LAST_NAME
from .stages import train

EVALUATION = "evaluation"  # the `colorize evaluate` report of the demo's generators, under the demo's folder
DEMO_HINTS = 5  # hints per photo in the gallery: "a few", taken from the original's colours
HINT_COUNTS = (0, 1, 2, 5, 10, 20, 50, 100)  # the PSNR-vs-hints curve, as Zhang et al. 2017 and iColoriT plot it


def run_demo(out="runs/demo", data="data/samples", device=None, pretrain_config=None, gan_config=None,
             hints_config=None) -> str:
    """L1-pretrain, GAN-fine-tune and hint-train on the sample photos, evaluate the three generators on the held-out
    ones (with the hint curve), write a full-resolution gallery.png; returns the results table and where everything
    is. Recipes default to the `demo` presets."""
    out = Path(out)
    photos = sample_photos(data)
    config = pretrain_config or PRETRAIN_PRESETS["demo"]
    train(photos, out / "l1", config, device=device)
    train(photos, out / "gan", gan_config or GAN_PRESETS["demo"], generator=out / "l1" / BEST_NAME, device=device)
    train(photos, out / "hints", hints_config or HINTS_PRESETS["demo"], generator=out / "l1" / BEST_NAME,
          device=device)  # widens the L1 generator, as Zhang et al. widen their automatic one
    checkpoints = {"L1 generator": out / "l1" / BEST_NAME,
                   "GAN generator": out / "gan" / LAST_NAME,  # the GAN's result, not its lowest-L1 epoch
                   "hint generator": out / "hints" / BEST_NAME}
    options = EvalOptions(split="test", size=config.data.size, lpips_net=None, fid_feature=None, hints=HINT_COUNTS)
    report = evaluate(photos, list(checkpoints.values()), out / EVALUATION, options, names=list(checkpoints),
                      device=device)

    generators = [load_generator(ckpt, device=device) for ckpt in checkpoints.values()]
    tests = index_dataset(photos).files("test")
    rendering = Rendering(config.data.size)  # the gallery's hints spread as `colorize apply --hints` spreads them
    rows = []
    for path in tests:
        original = load_rgb(path)
        hints = hints_from_photo(original, DEMO_HINTS)  # a simulated user: the original's colours at a few points
        colorized = [colorize_image(g, original, rendering) for g in generators[:2]]
        colorized.append(colorize_image(generators[2], original, rendering, hints=hints))
        for name, image in zip(("l1", "gan", "hints"), colorized):
            image.save(out / f"{path.stem}_{name}.png")
        rows.append([gray_photo(original), *colorized, original])
    columns = ["grayscale (input)", "L1 only", "GAN", f"hint generator, {DEMO_HINTS} hints from the original\n"
               f"(spread along lightness: {rendering.propagation})", "original"]
    save_figure(gallery(rows, columns, row_labels=[p.name for p in tests]), out / "gallery.png")
    return (f"{report.markdown}\ngallery (full resolution): {out / 'gallery.png'}\n"
            f"evaluation: {report.paths['results_md']}, {report.paths['gallery']}, {report.paths['hint_curve']}\n"
            f"generators: {checkpoints['L1 generator']} (L1), {checkpoints['GAN generator']} (GAN), "
            f"{checkpoints['hint generator']} (hints)")

"""`colorize demo`: the whole method (L1 pretraining, then GAN fine-tuning), offline, in minutes on a CPU.

It trains on the photos shipped with scikit-image and scikit-learn, then evaluates both generators and
the grayscale baseline on the held-out photos with `colorize.evaluate` (the same protocol and table as
the README's Results), and colorizes them at full resolution for a gallery.

Eight photos are far too few for a general model: the demo shows the pipeline working end to end,
not Places365-quality colour.
"""

from __future__ import annotations

from pathlib import Path

from .config import GAN_PRESETS, PRETRAIN_PRESETS
from .data import index_dataset, load_rgb
from .download import sample_photos
from .evaluate import evaluate
from .gan import finetune
from .inference import colorize_image
from .lab import gray_photo
from .models import load_generator
from .plots import gallery, save_figure
from .pretrain import pretrain
from .run import BEST_NAME, LAST_NAME

EVALUATION = "evaluation"  # the `colorize evaluate` report of the demo's generators, under the demo's folder


def run_demo(out="runs/demo", data="data/samples", device=None, pretrain_config=None, gan_config=None) -> str:
    """L1-pretrain then GAN-fine-tune on the sample photos, evaluate both on the held-out ones, write a full-
    resolution gallery.png; returns the results table and where everything is. Recipes default to the `demo`
    presets."""
    out = Path(out)
    photos = sample_photos(data)
    config = pretrain_config or PRETRAIN_PRESETS["demo"]
    pretrain(photos, out / "l1", config, device=device)
    finetune(photos, out / "gan", gan_config or GAN_PRESETS["demo"], generator=out / "l1" / BEST_NAME, device=device)
    checkpoints = {"L1 generator": out / "l1" / BEST_NAME,
                   "GAN generator": out / "gan" / LAST_NAME}  # the GAN's result, not its lowest-L1 epoch
    report = evaluate(photos, list(checkpoints.values()), out / EVALUATION, split="test", size=config.data.size,
                      device=device, names=list(checkpoints), lpips_net=None, fid_feature=None)

    generators = [load_generator(ckpt, device=device) for ckpt in checkpoints.values()]
    tests = index_dataset(photos).files("test")
    rows = []
    for path in tests:
        original = load_rgb(path)
        colorized = [colorize_image(g, original, render_size=config.data.size) for g in generators]
        for name, image in zip(("l1", "gan"), colorized):
            image.save(out / f"{path.stem}_{name}.png")
        rows.append([gray_photo(original), *colorized, original])
    fig = gallery(rows, ["grayscale (input)", "L1 only", "GAN", "original"], row_labels=[p.name for p in tests])
    save_figure(fig, out / "gallery.png")
    return (f"{report.markdown}\ngallery (full resolution): {out / 'gallery.png'}\n"
            f"evaluation: {report.paths['results_md']}, {report.paths['gallery']}\n"
            f"generators: {checkpoints['L1 generator']} (L1), {checkpoints['GAN generator']} (GAN)")

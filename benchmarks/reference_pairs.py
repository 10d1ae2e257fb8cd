"""Reference-guided against automatic colorization, measured on pairs made from a folder of colour photos.

    .venv/bin/python benchmarks/reference_pairs.py --photos ../shared/photos --model runs/demo/l1/best.safetensors \
        --out /tmp/reference-pairs [--clips 5]

Pairs (written to OUT with OUT/pairs.csv, which `colorize evaluate-reference OUT/pairs.csv --model M` reads too):
  - same: a photo's crop (70% x 80%, top left) and an overlapping crop of it (from 25%, 15%) rotated by 6 degrees
    and rescaled by 0.8;
  - mismatched: the same target with the reference made from the next photo;
  - clip: frames 10 and 85 (3 s apart) of a pan-and-zoom clip (`video.pan_zoom_clip`, 640x360, 25 fps) of each photo.
Then the video path: `--clips` of those clips (48 frames) colorized whole, automatic and from a still of their middle
frame (`apply.apply_paths` with `reference.ReferenceHints`), PSNR RGB over every frame against the colour clip.
Photos are scaled to at most 800 px on their longer side first. Targets < 2 dB gain (same, clip), > -0.3 dB
(mismatched).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from PIL import Image

from colorize.apply import apply_paths
from colorize.data import list_images, load_rgb
from colorize.lab import pixels_to_rgb
from colorize.metrics import psnr_rgb
from colorize.models import load_generator
from colorize.reference import ReferenceHints, evaluate_pairs, pairs_markdown, read_pairs
from colorize.video import colorize_video, pan_zoom_clip, read_frames

LONGER_SIDE = 800


def crops(photo: Image.Image) -> tuple[Image.Image, Image.Image]:
    """The target crop and an overlapping, rotated, rescaled crop of the same photo."""
    W, H = photo.size
    target = photo.crop((0, 0, int(W * 0.7), int(H * 0.8)))
    ref = photo.crop((int(W * 0.25), int(H * 0.15), W, H)).rotate(6, resample=Image.Resampling.BICUBIC)
    return target, ref.resize((int(ref.size[0] * 0.8), int(ref.size[1] * 0.8)), Image.Resampling.BICUBIC)


def make_pairs(photos: list[Path], out: Path) -> Path:
    """Write the pairs' photos and clips into `out`; returns pairs.csv."""
    rows = []
    (out / "clips").mkdir(parents=True, exist_ok=True)
    loaded = []
    for p in photos:
        im = load_rgb(p)
        im.thumbnail((LONGER_SIDE, LONGER_SIDE))
        loaded.append(im)
    for i, (p, im) in enumerate(zip(photos, loaded)):
        target, ref = crops(im)
        target.save(out / f"{p.stem}_target.png")
        ref.save(out / f"{p.stem}_ref.png")
        rows.append((f"{p.stem}_target.png", f"{p.stem}_ref.png", "same"))
        other = photos[(i + 1) % len(photos)].stem
        rows.append((f"{p.stem}_target.png", f"{other}_ref.png", "mismatched"))
        clip = pan_zoom_clip(im, out / "clips" / f"{p.stem}.mp4", frames=100)
        frames = list(read_frames(clip))
        Image.fromarray(frames[10]).save(out / f"{p.stem}_f010.png")
        Image.fromarray(frames[85]).save(out / f"{p.stem}_f085.png")
        rows.append((f"{p.stem}_f010.png", f"{p.stem}_f085.png", "clip"))
    with open(out / "pairs.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return out / "pairs.csv"


def video_psnr(model, photos: list[Path], out: Path, n: int) -> tuple[float, float, int]:
    """Mean PSNR RGB over every frame of `n` 48-frame clips: automatic, and guided by a still of the middle frame."""
    auto, guided, fell = [], [], 0
    for p in photos[:n]:
        im = load_rgb(p)
        im.thumbnail((LONGER_SIDE, LONGER_SIDE))
        clip = pan_zoom_clip(im, out / "video" / f"{p.stem}.mp4", frames=48)
        truth = list(read_frames(clip))
        Image.fromarray(truth[24]).save(out / "video" / f"{p.stem}_still.png")
        a = colorize_video(model, clip, out / "video" / "auto" / f"{p.stem}.mp4", progress=False).path
        result = apply_paths(model, [clip], out / "video" / "guided",
                             hints=ReferenceHints(model, out / "video" / f"{p.stem}_still.png"), progress=False)
        (g,), fell = result.written, fell + len(result.fell_back)
        for path, scores in ((a, auto), (g, guided)):
            frames = list(read_frames(path))
            scores.append(np.mean([float(psnr_rgb(pixels_to_rgb(x), pixels_to_rgb(t))) for x, t in zip(frames, truth)]))
    return float(np.mean(auto)), float(np.mean(guided)), fell


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", required=True, help="folder of colour photos")
    p.add_argument("--model", required=True, help="generator checkpoint (.safetensors)")
    p.add_argument("--out", required=True, help="folder for the pairs, clips and outputs")
    p.add_argument("--clips", type=int, default=5, help="clips colorized whole for the video path (default 5)")
    args = p.parse_args(argv)
    out = Path(args.out)
    start = time.perf_counter()
    photos = list_images([args.photos])
    model = load_generator(args.model)
    pairs = make_pairs(photos, out)
    print(pairs_markdown(evaluate_pairs(model, read_pairs(pairs))))
    if args.clips:
        a, g, fell = video_psnr(model, photos, out, args.clips)
        print(f"\nvideo path, {args.clips} clips of 48 frames guided by a still of their middle frame: PSNR RGB "
              f"automatic {a:.2f}, guided {g:.2f} ({g - a:+.2f} dB); {fell} fell back to automatic")
    print(f"({time.perf_counter() - start:.0f} s; the pairs alone: colorize evaluate-reference {pairs} --model "
          f"{args.model})")


if __name__ == "__main__":
    main()

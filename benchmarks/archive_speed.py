"""A folder of 1-megapixel photos colorized streamed (`colorize apply`, `archive.colorize_archive`), in photos per
second, next to the model alone at the same batch and render size; with 1 process and with 2 (torchrun).

    .venv/bin/python benchmarks/archive_speed.py [--photos 24] [--batch 8] [--render-size 256] [--processes 1 2]
    .venv/bin/python benchmarks/archive_speed.py --smoke   # seconds: tiny photos, one process

Target: the streamed folder at least 80% of the model-only rate (decoding, the full-resolution colour and
encoding hidden beside the model). The model-only rate is `inference.colorize_batch` on batches of the same
photos' L at the render size, nothing else. A streamed rate is the photos written over the seconds from the
first decode to the last rename (the slowest process's, with 2), as `colorize-apply.json` records them; model
loading and process start are not in it. The model is a random-init ResNet-18 generator unless --model is
given; the photos are scikit-image's chelsea upscaled, saved as JPEG. On a shared machine the load average is
printed beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from colorize.archive import ArchiveOptions, colorize_archive
from colorize.inference import Rendering, colorize_batch, render_lightness
from colorize.models import build_generator, load_generator, save_generator

PHOTO_SIZE = (1155, 866)  # 1 MP, 4:3
SMOKE_SIZE = (64, 48)
TARGET = 0.8  # streamed / model-only


def write_folder(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    """`n` JPEGs of `size`: chelsea upscaled, each mirrored or shifted a little so no two files are alike."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    base = Image.fromarray(data.chelsea()).resize((size[0] + n, size[1]), Image.Resampling.BICUBIC)
    paths = []
    for i in range(n):
        p = folder / f"photo{i:03d}.jpg"
        base.crop((i, 0, i + size[0], size[1])).save(p, quality=92)
        paths.append(p)
    return paths


def model_only_rate(model, photos: list[Path], rendering: Rendering, batch: int) -> float:
    """Photos per second through `colorize_batch` alone, on the photos' L at the render size (decoded beforehand)."""
    L = render_lightness([np.asarray(Image.open(p).convert("RGB")) for p in photos],
                         rendering.render_size)  # (N,1,S,S)
    colorize_batch(model, L[:batch], rendering=rendering)  # warm-up: first-call allocations
    t = time.perf_counter()
    for i in range(0, len(photos), batch):
        colorize_batch(model, L[i:i + batch], rendering=rendering)
    return len(photos) / (time.perf_counter() - t)


def streamed_rate(out: Path) -> float:
    return json.loads((out / "colorize-apply.json").read_text())["photos_per_s"]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="generator checkpoint (.safetensors); default: a random-init ResNet-18 generator")
    p.add_argument("--photos", type=int, default=24)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--render-size", type=int, default=256)
    p.add_argument("--workers", type=int, help="decode and encode threads (default: one per core, at most 8)")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="streamed runs with these many processes")
    p.add_argument("--smoke", action="store_true", help="tiny photos, render size 32, 4 photos, one process")
    args = p.parse_args(argv)
    size = PHOTO_SIZE
    if args.smoke:
        args.photos, args.batch, args.render_size, args.processes, size = 4, 2, 32, [1], SMOKE_SIZE
    rendering = Rendering(args.render_size)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = args.model
        if ckpt is None:
            torch.manual_seed(0)
            ckpt = str(save_generator(build_generator("resnet18", args.render_size, pretrained=False),
                                      tmp / "random_resnet18.safetensors"))
        photos = write_folder(tmp / "photos", args.photos, size)
        model = load_generator(ckpt, device="cpu")
        rates = {"model only": model_only_rate(model, photos, rendering, args.batch)}
        for n in args.processes:
            out = tmp / f"out{n}"
            if n == 1:
                colorize_archive(model, [tmp / "photos"], out, rendering,
                                 ArchiveOptions(batch=args.batch, workers=args.workers), progress=False)
            else:
                env = {**os.environ, "OMP_NUM_THREADS": str(max(1, torch.get_num_threads() // n))}
                cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_addr",
                       "127.0.0.1", "--master_port", "29531", "-m", "colorize", "apply", str(tmp / "photos"),
                       "--model", ckpt, "--out", str(out), "--render-size", str(args.render_size), "--device", "cpu",
                       "--batch", str(args.batch)] + (["--workers", str(args.workers)] if args.workers else [])
                subprocess.run(cmd, check=True, capture_output=True, env=env)
            rates[f"streamed, {n} process{'es' if n > 1 else ''}"] = streamed_rate(out)
    load_after = os.getloadavg()
    print(f"{args.photos} photos of {size[0]}x{size[1]} (JPEG); render size {args.render_size}; batch {args.batch}; "
          f"CPU, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}; load average (1/5/15 min) before "
          f"{' '.join(f'{x:.1f}' for x in load_before)}, after {' '.join(f'{x:.1f}' for x in load_after)}")
    print()
    base = rates["model only"]
    rows = [("run", "photos/s", "of model only", "target", "result")]
    for name, rate in rates.items():
        share = rate / base
        rows.append((name, f"{rate:.2f}", f"{share:.0%}", "" if name == "model only" else f">= {TARGET:.0%}",
                     "" if name == "model only" else ("PASS" if share >= TARGET else "MISS")))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    record = {"photos": args.photos, "size": list(size), "render_size": args.render_size, "batch": args.batch,
              "photos_per_s": rates}
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()

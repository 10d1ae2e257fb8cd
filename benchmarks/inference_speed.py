"""Inference speed and memory with the model loaded: a 1-megapixel photo, a 12-megapixel photo (without and with
20 colour hints; with dull and with saturated colours; through `colorize apply`), peak RSS.

    .venv/bin/python benchmarks/inference_speed.py [--model CKPT] [--render-size 256] [--repeats 3] [--smoke]

Targets (on a 2-core CPU, render size 256): <= 1.0 s for 1 MP, <= 4 s for 12 MP,
<= 2 GB peak resident memory for the whole process colorizing a 12 MP photo file; guiding the 12 MP photo
with 20 hints (the default propagation) at most 1.5x the time of colorizing it without; a click in the app's Guide
tab on an automatic model (a 1024x640 photo) answered within about 1 s and in at most a third of the time of
colorizing that photo (the session keeps the model's prediction: a click runs no network). The peak is measured
in a fresh subprocess (load model, decode the JPEG, colorize, write the PNG) so nothing else pollutes it.
The photos are a real photo upscaled: `--photo`, by default scikit-image's chelsea. Wall seconds are the median over --repeats; CPU seconds are shown too,
because on a shared machine the wall clock also counts time spent waiting for a core.

Keeping the lightness costs the same for any colour: the 12 MP photo is colorized by a generator whose colours
are dull (the random one with its last layer scaled down, nearly all inside the gamut) and by the random one
(saturated, much of it outside), and `colorize apply` (a fresh process: load, decode, colorize, write) runs on it
with the dull generator without and with the 20 hints, which bring saturated colour. Target: the guided command at
most 1.5x the plain one. `--smoke`: tiny photos, render size 32, one repeat (a test runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from colorize.data import load_rgb
from colorize.hintmaps import hints_from_photo
from colorize.archive import colorize_archive
from colorize.inference import Rendering, colorize_image
from colorize.models import build_generator, load_generator, save_generator

DULL_SCALE = 0.05  # the dull generator: the random one's last conv scaled by this (|ab| a few units)

SIZES = {"1 MP": (1155, 866), "12 MP": (4000, 3000)}  # 4:3, like a camera's photos
SMOKE_SIZES = {"1 MP": (116, 87), "12 MP": (400, 300)}  # --smoke: the same shapes, 1/100 of the pixels
GUIDE_SIZE = (1024, 640)  # the photo of the Guide-tab click
TARGET_CLICK_SECONDS = 1.0  # a Guide click's result "within about a second" at render size 256
TARGET_CLICK_RATIO = 1 / 3  # ... and an automatic model's click at most a third of colorizing the photo (no network)
TARGET_SECONDS = {"1 MP": 1.0, "12 MP": 4.0}
TARGET_RSS_GB = 2.0
GUIDE_HINTS = 20  # hints on the 12 MP photo, taken from its own colours (a simulated user)
TARGET_GUIDE_RATIO = 1.5  # guided time / automatic time, 12 MP


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB (10^9 bytes); Linux reports KiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def source_photo(path: str | None) -> tuple[Image.Image, str]:
    """The real photo to upscale, and how to name it in the report."""
    if path is not None:
        return load_rgb(path), str(path)
    from skimage import data

    return Image.fromarray(data.chelsea()), "scikit-image chelsea"


def child(ckpt: str, photo: str, render_size: int, device: str) -> None:
    """In a fresh process: load the model, colorize one photo file to PNG, report seconds and peak RSS."""
    t0 = time.perf_counter()
    model = load_generator(ckpt, device=device)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        colorize_archive(model, [photo], out, render_size=render_size, progress=False)
    t2 = time.perf_counter()
    print(json.dumps({"load_s": t1 - t0, "file_s": t2 - t1, "peak_rss_gb": peak_rss_gb()}))


def timed(model, image: Image.Image, render_size: int, repeats: int, hints=None) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds of `colorize_image` (with `hints`, if any) over `repeats` runs."""
    return timed_call(lambda: colorize_image(model, image, render_size, hints=hints), repeats)


def timed_call(call, repeats: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds of `call()` over `repeats` runs."""
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        call()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def guide_click(model, photo: Image.Image, render_size: int, repeats: int) -> dict[str, tuple[float, float]]:
    """A click in the app's Guide tab on an automatic model, server side, as `app.guide_tab` answers it: the session
    step `guide.place` (propagation of the kept prediction and the full-resolution composition: no network), the
    result with its hints marked and the suggested colours there; two hints are placed before the timed click, as a
    user a few clicks in. Beside it, colorizing the same photo (`colorize_image`, the network included). Median
    wall and CPU seconds of each: {"click": ..., "photo": ...}."""
    from colorize import guide

    W, H = photo.size
    hints = [{"x": W // 4, "y": H // 3, "color": "#b03020", "size": 20},
             {"x": 3 * W // 4, "y": H // 2, "color": "#3060c0", "size": 20}]
    session = guide.start(model, photo, Rendering(render_size), hints)

    def click():
        after = guide.place(session, W // 2, 2 * H // 3, guide.hint_side(photo.size, 5, render_size))
        after.marked(), after.palette().picture()

    return {"click": timed_call(click, repeats), "photo": timed(model, photo, render_size, repeats)}


def guide_rows(click: dict[str, tuple[float, float]]) -> list[tuple[str, str, str, str, str]]:
    """The report's rows of `guide_click`: the click, the photo colorized, and their ratio against its target."""
    (wall, cpu), (photo_wall, photo_cpu) = click["click"], click["photo"]
    size = f"{GUIDE_SIZE[0]}x{GUIDE_SIZE[1]}"
    ratio = wall / photo_wall
    return [(f"Guide tab click, {size} photo, 3rd hint, automatic model (guide.place + view + palette)",
             f"{wall:.2f} s", f"{cpu:.2f}", f"<= {TARGET_CLICK_SECONDS:g} s", verdict(wall, TARGET_CLICK_SECONDS)),
            (f"  the same {size} photo colorized (colorize_image)", f"{photo_wall:.2f} s", f"{photo_cpu:.2f}", "",
             "info"),
            (f"  click / colorizing the photo (CPU: {cpu / photo_cpu:.2f})", f"{ratio:.2f}", "",
             f"<= {TARGET_CLICK_RATIO:.2f}", verdict(ratio, TARGET_CLICK_RATIO))]


def dull_checkpoint(ckpt: str, path: Path) -> str:
    """The generator at `ckpt` with its last convolution scaled by DULL_SCALE: the same network and cost, colours
    near gray (a generator that has learnt little), saved at `path`."""
    model = load_generator(ckpt)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]  # the 1x1 conv to ab
    with torch.no_grad():
        last.weight.mul_(DULL_SCALE)
        if last.bias is not None:
            last.bias.mul_(DULL_SCALE)
    return str(save_generator(model, path))


def colour_rows(models: dict, image: Image.Image, render_size: int, repeats: int) -> list[tuple]:
    """The same photo colorized by each of `models` ({"dull": ..., "saturated": ...}): a row each, and their ratio."""
    times = {k: timed(m, image, render_size, repeats) for k, m in models.items()}
    rows = [(f"{image.width}x{image.height} photo, {k} colours, colorize_image", f"{w:.2f} s", f"{c:.2f}", "", "info")
            for k, (w, c) in times.items()]
    (w0, c0), (w1, c1) = times.values()
    rows.append((f"  {' / '.join(times)} (CPU: {c1 / c0:.2f}x)", f"{w1 / w0:.2f}x", "", "", "info"))
    return rows


def cli_seconds(args: list[str], repeats: int) -> float:
    """Median wall seconds of `colorize ARGS` in a fresh process, end to end (start-up, load, decode, write)."""
    wall = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "colorize", *args], check=True, capture_output=True)
        wall.append(time.perf_counter() - t)
    return statistics.median(wall)


def cli_guided_rows(ckpt: str, photo: Path, hints: list, render_size: int, repeats: int, folder: Path) -> list[tuple]:
    """`colorize apply` on `photo` without and with `hints` (a hints file), end to end: a row each and the ratio."""
    (folder / "hints.json").write_text(json.dumps(hints))
    common = ["apply", str(photo), "--model", ckpt, "--render-size", str(render_size), "--device", "cpu",
              "--overwrite"]  # each repeat colorizes again (a rerun would keep the photo already done)
    plain = cli_seconds([*common, "--out", str(folder / "plain")], repeats)
    guided = cli_seconds([*common, "--out", str(folder / "guided"), "--hints", str(folder / "hints.json")], repeats)
    name = f"`colorize apply` {photo.name}, dull generator"
    return [(f"{name}", f"{plain:.2f} s", "", "", "info"),
            (f"{name}, {len(hints)} hints", f"{guided:.2f} s", "", "", "info"),
            ("  guided / plain, through the CLI", f"{guided / plain:.2f}x", "", f"<= {TARGET_GUIDE_RATIO:g}x",
             verdict(guided / plain, TARGET_GUIDE_RATIO))]


def verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "MISS"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="generator checkpoint (.safetensors); default: a random-init ResNet-18 generator")
    p.add_argument("--render-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--photo", help="photo to upscale (default: scikit-image's chelsea)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice, one per core)")
    p.add_argument("--smoke", action="store_true", help="tiny photos, render size 32, one repeat: seconds (a test)")
    p.add_argument("--child", nargs=2, metavar=("CKPT", "PHOTO"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sizes = SMOKE_SIZES if args.smoke else SIZES
    if args.smoke:
        args.render_size, args.repeats = 32, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        return child(*args.child, args.render_size, args.device)

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.model
        if ckpt is None:
            torch.manual_seed(0)
            ckpt = str(save_generator(build_generator("resnet18", args.render_size, pretrained=False),
                                      Path(tmp) / "random_resnet18.safetensors"))
        t = time.perf_counter()
        model = load_generator(ckpt, device=args.device)
        load_s = time.perf_counter() - t
        photo, photo_name = source_photo(args.photo)
        images = {k: photo.resize(size, Image.Resampling.BICUBIC) for k, size in sizes.items()}
        big = Path(tmp) / "photo_12mp.jpg"
        images["12 MP"].save(big, quality=92)

        load_before = os.getloadavg()
        colorize_image(model, images["1 MP"], args.render_size)  # warm-up: first-call allocations
        times = {k: timed(model, im, args.render_size, args.repeats) for k, im in images.items()}
        hints = hints_from_photo(images["12 MP"], GUIDE_HINTS, seed=0)
        guided = timed(model, images["12 MP"], args.render_size, args.repeats, hints=hints)
        guide_size = sizes["1 MP"] if args.smoke else GUIDE_SIZE
        click = guide_click(model, photo.resize(guide_size, Image.Resampling.BICUBIC), args.render_size, args.repeats)
        run = subprocess.run([sys.executable, __file__, "--child", ckpt, str(big), "--render-size",
                              str(args.render_size), "--device", args.device, "--threads", str(torch.get_num_threads())],
                             capture_output=True, text=True, check=True)
        fresh = json.loads(run.stdout.strip().splitlines()[-1])
        dull = dull_checkpoint(ckpt, Path(tmp) / "dull.safetensors")
        colours = colour_rows({"dull": load_generator(dull, device=args.device), "saturated": model}, images["12 MP"],
                              args.render_size, args.repeats)
        cli = cli_guided_rows(dull, big, hints, args.render_size, args.repeats, Path(tmp))
        load_after = os.getloadavg()

    print(f"model: {args.model or 'random-init resnet18 generator'}; render size {args.render_size}; "
          f"device {args.device}; torch threads {torch.get_num_threads()} of {os.cpu_count()} CPUs")
    print(f"photo: {photo_name}, upscaled; load average (1/5/15 min) before "
          f"{' '.join(f'{x:.1f}' for x in load_before)}, after {' '.join(f'{x:.1f}' for x in load_after)}")
    print()
    rows = [("measure", "value", "CPU s", "target", "result")]
    for k, (wall, cpu) in times.items():
        w, h = sizes[k]
        rows.append((f"{k} photo ({w}x{h}), colorize_image", f"{wall:.2f} s", f"{cpu:.2f}",
                     f"<= {TARGET_SECONDS[k]:g} s", verdict(wall, TARGET_SECONDS[k])))
    ratio, cpu_ratio = guided[0] / times["12 MP"][0], guided[1] / times["12 MP"][1]
    rows.append((f"12 MP photo with {GUIDE_HINTS} hints ({Rendering().propagation} propagation), colorize_image", f"{guided[0]:.2f} s",
                 f"{guided[1]:.2f}", "", "info"))
    rows.append((f"  guided / automatic, 12 MP (CPU: {cpu_ratio:.2f}x)", f"{ratio:.2f}x", "",
                 f"<= {TARGET_GUIDE_RATIO:g}x", verdict(ratio, TARGET_GUIDE_RATIO)))
    rows += guide_rows(click)
    rows.append(("12 MP peak RSS, fresh process (load+decode+colorize+PNG)", f"{fresh['peak_rss_gb']:.2f} GB", "",
                 f"<= {TARGET_RSS_GB:g} GB", verdict(fresh["peak_rss_gb"], TARGET_RSS_GB)))
    rows.append(("12 MP JPEG -> PNG file, fresh process (first call)", f"{fresh['file_s']:.2f} s", "", "", "info"))
    rows.append(("model load (checkpoint -> eval generator)", f"{load_s:.2f} s", "", "", "info"))
    rows += [*colours, *cli]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


if __name__ == "__main__":
    main()

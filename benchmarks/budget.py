"""Projected time of every notebook's long cells on one free T4 (Colab, Kaggle): the `colab` path, and the full recipes.

    .venv/bin/python benchmarks/budget.py [--tflops 6] [--data data/places365]

PROJECTED, not measured on a T4. Two kinds of work are counted:

GPU work, from the networks' FLOPs: torch's FlopCounterMode counts one photo at each recipe's crop size (on the
CPU, seconds): a training step of the generator (forward and backward), for the GAN also the critic's step on a
real and a fake pair and the adversarial term through the critic, and a forward pass for validation, evaluation
and video frames. Time = FLOPs / the assumed effective rate:

  6 TFLOP/s on a T4 in fp16 (mixed precision), about 9% of its 65 TFLOP/s tensor-core peak, which its 70 W cap
  never sustains. Anchors: NVIDIA's ResNet-50 mixed-precision training on a T4, ~250 images/s at 24.6 GFLOP
  each (~6.2 TFLOP/s); the tutorial this project descends from (moein-shariatnia) pretrains this ResNet-18 U-Net
  on 8,000 photos at 256 px for 20 epochs in "an hour on Colab" (~7.5 TFLOP/s at our count).

CPU work, timed here on this machine's CPU and scaled to a Colab runtime's 2 cores (one process, as the code
runs it): decoding a photo (indexing opens every photo; the uint8 cache decodes the training subset and the
valid split), the hint curve's propagation (the `fast` smoother per model, count and photo; Levin et al.'s exact
sparse solve per count and photo, on the CPU whatever the GPU) and the video's optical flow per frame.

Downloads: the Kaggle Places365 subset is ASSUMED at 36,500 photos, ~1 GB, fetched at 50 MB/s. Each notebook opened
in Colab runs on a fresh disk: notebook 01 downloads it once and keeps it on Google Drive as one archive (written at
an ASSUMED 40 MB/s); every later notebook that trains or evaluates on Places365 unpacks that archive (read at the
same rate), indexes it and caches it again (its rows say so). Data loading during training is assumed hidden behind the GPU (the cache).

Photo counts come from the index at --data when it exists, else the Kaggle subset split 80/10/10 (assumed).
Not counted: FID's and LPIPS's feature networks in notebook 04, drawing figures, the web apps.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from colorize.config import GAN_PRESETS, HINTS_PRESETS, PRETRAIN_PRESETS
from colorize.demo import HINT_COUNTS
from colorize.models import build_critic, build_generator, widen_for_hints
from colorize.propagate import propagate

ASSUMED_SPLITS = {"train": 29_200, "valid": 3_650, "test": 3_650}  # Places365 subset, 36,500 photos, 80/10/10
ASSUMED_DOWNLOAD_GB, ASSUMED_DOWNLOAD_MB_S = 1.0, 50.0  # the Kaggle archive and Colab's link to Kaggle
ASSUMED_DRIVE_MB_S = 40.0  # Colab writing or reading one large file on its mounted Google Drive
COLAB_CORES = 2
LR_FIND_STEPS = 100  # notebook 02's LR_FIND_STEPS
CURVE_PHOTOS = 50  # notebook 05's CURVE_PHOTOS: the test photos of its hint curve
FINETUNE_PHOTOS = 300  # `colorize pretrain --preset finetune --generator ...` on a folder of a few hundred photos
VIDEO_FRAMES, VIDEO_SIZE = 75, (640, 360)  # notebook 06's made-up clip (FRAMES, its frame size)
VIDEO_PASSES = 4  # notebook 06: the clip per frame and steadied, then the flicker report colorizes it at both weights
PATHS = {  # (pretrain, GAN(s), hints) presets of each path; the full path trains notebook 04's spectral GAN too
    "colab": ("colab", ("colab",), "colab"),
    "full (256 px)": ("places365", ("pix2pix", "pix2pix-spectral"), "places365"),
}


def flops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def per_photo(size: int, critic_config) -> dict[str, float]:
    """FLOPs for one photo at `size` px: L1 training step, GAN training step, hint training step, forward pass."""
    g, L = build_generator(size=size, pretrained=False), torch.randn(1, 1, size, size)
    fwd = flops(lambda: g(L))
    l1 = flops(lambda: g(L).abs().mean().backward())
    d = build_critic(critic_config)
    ab = torch.zeros(1, 2, size, size)
    critic_step = flops(lambda: (d(L, ab).mean() + d(L, ab).mean()).backward())  # real and fake pair
    fake = ab.requires_grad_()
    adversarial = flops(lambda: d(L, fake).mean().backward())  # the generator's term, through the critic
    h, LH = widen_for_hints(g), torch.randn(1, 4, size, size)
    hints = flops(lambda: h(LH).abs().mean().backward())
    return {"l1": l1, "gan": l1 + critic_step + adversarial, "hints": hints, "forward": fwd}


def seconds_each(fn, repeats: int) -> float:
    """Wall seconds of one call of `fn`, the best of `repeats` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def cpu_rates(size: int) -> dict[str, float]:
    """Seconds on this CPU (one process): decoding a 256 px JPEG, the fast and the Levin propagation of a `size` px
    photo with 20 hints, DIS optical flow between two video frames."""
    import cv2

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    decode = seconds_each(lambda: np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), 20)
    L = torch.linspace(-1, 1, size * size).reshape(1, 1, size, size)  # (1,1,S,S) a smooth ramp of lightness
    hints = torch.zeros(1, 3, size, size)  # (1,3,S,S) hint a, hint b, mask
    ys, xs = rng.integers(0, size, 20), rng.integers(0, size, 20)
    hints[0, 0, ys, xs], hints[0, 2, ys, xs] = 0.3, 1.0
    ab = torch.zeros(1, 2, size, size)
    fast = seconds_each(lambda: propagate(L, ab, hints, "fast"), 3)
    levin = seconds_each(lambda: propagate(L, ab, hints, "levin"), 1)
    w, h = VIDEO_SIZE
    frames = [cv2.GaussianBlur(rng.integers(0, 256, (h, w), dtype=np.uint8), (9, 9), 3) for _ in range(2)]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = seconds_each(lambda: dis.calc(frames[0], frames[1], None), 3)
    return {"decode": decode, "fast": fast, "levin": levin, "flow": flow}


def splits(data: str | None) -> tuple[dict[str, int], str]:
    if data and Path(data).is_dir():
        from colorize.data import index_dataset

        return index_dataset(data).counts, f"index of {data}"
    return ASSUMED_SPLITS, "assumed: the Kaggle Places365 subset, 36,500 photos split 80/10/10"


def minutes(flop: float, tflops: float) -> float:
    return flop / (tflops * 1e12) / 60


def fetch_minutes(counts: dict[str, int], rates: dict[str, float], first: bool) -> float:
    """Get the dataset on a fresh Colab disk and index it (every photo opened once): the `first` time downloaded
    and written to Drive, later unpacked from Drive (all assumed rates)."""
    drive = ASSUMED_DOWNLOAD_GB * 1000 / ASSUMED_DRIVE_MB_S
    transfer = ASSUMED_DOWNLOAD_GB * 1000 / ASSUMED_DOWNLOAD_MB_S + drive if first else drive
    return (transfer + sum(counts.values()) * rates["decode"] / COLAB_CORES) / 60


def cache_minutes(config, counts: dict[str, int], rates: dict[str, float]) -> float:
    """The uint8 cache: the training subset and the valid split decoded once (when the recipe caches)."""
    if not config.machine.cache:
        return 0.0
    train = min(counts["train"], config.data.max_photos or counts["train"])
    return (train + counts["valid"]) * rates["decode"] / COLAB_CORES / 60


def path_rows(path: str, counts: dict, tflops: float, cache: dict, rates: dict) -> list[tuple[str, str, str, float]]:
    """(notebook, cell, what is counted, minutes) for every long cell of one path through notebooks 01-06."""
    l1_name, gan_names, hints_name = PATHS[path]
    l1 = PRETRAIN_PRESETS[l1_name]
    size = l1.data.size

    def f(config):
        critic = getattr(config, "critic", GAN_PRESETS["pix2pix"].critic)
        key = (config.data.size, critic)
        cache[key] = cache.get(key) or per_photo(config.data.size, critic)
        return cache[key]

    def stage_on(notebook, name, config, kind, counts):
        photos = min(counts["train"], config.data.max_photos or counts["train"]) * config.data.repeats
        epochs, fl = config.data.epochs, f(config)
        train = minutes(fl[kind] * photos * epochs, tflops)
        valid = minutes(fl["forward"] * counts["valid"] * epochs, tflops)
        what = (f"{photos} photos x {epochs} epochs, {fl[kind] / 1e9:.0f} GFLOP/photo; "
                f"validation {counts['valid']} x {epochs}")
        return [(notebook, f"training ({name})", what, train + valid)]

    def stage(notebook, name, config, kind):
        return stage_on(notebook, name, config, kind, counts)

    opened = f"{ASSUMED_DOWNLOAD_GB:g} GB assumed, {sum(counts.values())} photos opened"
    rows = [("01", "download Places365, keep it on Drive, index it", opened, fetch_minutes(counts, rates, True))]
    fetch_row = ("unpack Places365 from Drive and index it (fresh Colab disk)", opened,
                 fetch_minutes(counts, rates, False))
    rows += [("02", *fetch_row), ("02", "photo cache", "training subset + valid decoded once",
                                  cache_minutes(l1, counts, rates)),
             ("02", "learning-rate finder", f"{LR_FIND_STEPS} steps x {l1.data.bs} photos",
              minutes(f(l1)["l1"] * LR_FIND_STEPS * l1.data.bs, tflops))]
    rows += stage("02", l1_name, l1, "l1")
    finetune = {"train": int(FINETUNE_PHOTOS * 0.8), "valid": FINETUNE_PHOTOS // 10}  # its own split, about 80/10/10
    rows += [("02, optional", f"{cell} on your {FINETUNE_PHOTOS} photos (its last section; CLI)", what, m)
             for _, cell, what, m in stage_on("CLI", "finetune", PRETRAIN_PRESETS["finetune"], "l1", finetune)]
    for name in gan_names:
        gan = GAN_PRESETS[name]
        rows += [("03", *fetch_row), ("03", "photo cache", "training subset + valid decoded once",
                                      cache_minutes(gan, counts, rates))]
        rows += stage("03", name, gan, "gan")
    n_models = 1 + len(gan_names)  # notebook 04: the L1 generator and each GAN on the test split, 0 hints
    forward = f(l1)["forward"]
    rows += [("04", *fetch_row), ("04", "evaluation", f"{n_models} models x {counts['test']} test photos",
                                  minutes(forward * counts["test"] * n_models, tflops))]
    hints = HINTS_PRESETS[hints_name]
    rows += [("05", *fetch_row), ("05", "photo cache", "training subset + valid decoded once",
                                  cache_minutes(hints, counts, rates))]
    rows += stage("05", hints_name, hints, "hints")
    counts_n, curve_models = len(HINT_COUNTS), 2  # notebook 05's curve: the L1 generator and the hint generator
    curve = min(CURVE_PHOTOS, counts["test"])
    rows += [("05", "hint curve: model passes", f"{curve_models} models x {counts_n} counts x {curve} photos",
              minutes(forward * curve_models * counts_n * curve, tflops)),
             ("05", "hint curve: fast propagation (CPU)", f"{curve_models} models x {counts_n} counts x "
              f"{curve} photos x {rates['fast']:.3f} s", curve_models * counts_n * curve * rates["fast"] / 60),
             ("05", "hint curve: Levin et al. row (CPU)", f"{counts_n} counts x {curve} photos x "
              f"{rates['levin']:.2f} s", counts_n * curve * rates["levin"] / 60)]
    rows += [("06", "video", f"{VIDEO_PASSES} passes x {VIDEO_FRAMES} frames, and their flow on the CPU",
              minutes(forward * VIDEO_PASSES * VIDEO_FRAMES, tflops)
              + VIDEO_PASSES * VIDEO_FRAMES * rates["flow"] / 60)]
    return rows


def fmt(m: float) -> str:
    return f"{m * 60:.0f} s" if m < 1 else f"{m:.0f} min" if m < 90 else f"{m / 60:.1f} h"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tflops", type=float, default=6.0, help="effective TFLOP/s of the GPU (default 6: a T4 in fp16)")
    p.add_argument("--data", default="data/places365", help="dataset folder whose split sizes to use, if indexed")
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS, help="the paths to count")
    args = p.parse_args(argv)
    counts, source = splits(args.data)
    rates = cpu_rates(PRETRAIN_PRESETS["colab"].data.size)
    print(f"PROJECTED at {args.tflops:g} TFLOP/s effective (one T4, fp16); CPU work timed on this machine, scaled to "
          f"{COLAB_CORES} cores; photos: {source}: {counts['train']} train, {counts['valid']} valid, {counts['test']} "
          "test\n")
    cache = {}
    for path in args.paths:
        rows = path_rows(path, counts, args.tflops, cache, rates)
        print(f"### {path}\n\n| notebook | cell | counted | projected T4 time |\n| --- | --- | --- | --- |")
        for notebook, cell, what, m in rows:
            print(f"| {notebook} | {cell} | {what} | {fmt(m)} |")
        totals = {}
        for notebook, *_, m in rows:
            totals[notebook] = totals.get(notebook, 0.0) + m
        print("| | **per notebook** | " + ", ".join(f"{n}: {fmt(m)}" for n, m in totals.items())
              + f" | **{fmt(sum(totals.values()))} in all** |\n")


if __name__ == "__main__":
    main()

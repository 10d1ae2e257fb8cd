"""Projected training time of each stage on one T4, from the networks' FLOPs: the `colab` presets and the full recipes.

    .venv/bin/python benchmarks/budget.py [--tflops 6] [--data data/places365]

PROJECTED, not measured. FLOPs per photo are counted by torch's FlopCounterMode on one photo at each recipe's
crop size (on the CPU, seconds): a training step of the generator (forward and backward), for the GAN also the
critic's step on a real and a fake pair and the adversarial term through the critic, and a forward pass for
validation and evaluation. Time = FLOPs / the assumed effective rate:

  6 TFLOP/s on a T4 in fp16 (mixed precision), about 9% of its 65 TFLOP/s tensor-core peak, which its 70 W cap
  never sustains. Anchors: NVIDIA's ResNet-50 mixed-precision training on a T4, ~250 images/s at 24.6 GFLOP
  each (~6.2 TFLOP/s); the tutorial this project descends from (moein-shariatnia) pretrains this ResNet-18 U-Net
  on 8,000 photos at 256 px for 20 epochs in "an hour on Colab" (~7.5 TFLOP/s at our count).

Validation runs on the whole valid split after every epoch. Data loading is assumed hidden behind the GPU (the presets cache the decoded photos). Photo counts come from the
index at --data when it exists, else the Kaggle Places365 subset's 36,500 photos split 80/10/10 (assumed).
Evaluation: the notebook-04 protocol on the test split, one forward pass per photo for each model and for each
hint count of the hint curve (demo.HINT_COUNTS), FID/LPIPS feature networks not counted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from colorize.config import GAN_PRESETS, HINTS_PRESETS, PRETRAIN_PRESETS
from colorize.demo import HINT_COUNTS
from colorize.hintmaps import widen_for_hints
from colorize.models import build_critic, build_generator

ASSUMED_SPLITS = {"train": 29_200, "valid": 3_650, "test": 3_650}  # Places365 subset, 36,500 photos, 80/10/10
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


def splits(data: str | None) -> tuple[dict[str, int], str]:
    if data and Path(data).is_dir():
        from colorize.data import index_dataset

        return index_dataset(data).counts, f"index of {data}"
    return ASSUMED_SPLITS, "assumed: the Kaggle Places365 subset, 36,500 photos split 80/10/10"


def minutes(flop: float, tflops: float) -> float:
    return flop / (tflops * 1e12) / 60


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tflops", type=float, default=6.0, help="effective TFLOP/s of the GPU (default 6: a T4 in fp16)")
    p.add_argument("--data", default="data/places365", help="dataset folder whose split sizes to use, if indexed")
    args = p.parse_args()
    counts, source = splits(args.data)
    print(f"PROJECTED at {args.tflops:g} TFLOP/s effective (one T4, fp16); photos: {source}: "
          f"{counts['train']} train, {counts['valid']} valid, {counts['test']} test\n")
    print("| path | stage | recipe | photos x epochs | GFLOP/photo | train | validation | total |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    cache = {}
    for path, (l1_name, gan_names, hints_name) in PATHS.items():
        stages = [("L1", PRETRAIN_PRESETS[l1_name], "l1", l1_name)]
        stages += [("GAN", GAN_PRESETS[n], "gan", n) for n in gan_names]
        stages.append(("hints", HINTS_PRESETS[hints_name], "hints", hints_name))
        total = 0.0
        for stage, config, kind, name in stages:
            critic = getattr(config, "critic", GAN_PRESETS["pix2pix"].critic)
            key = (config.data.size, critic)
            cache[key] = cache.get(key) or per_photo(config.data.size, critic)
            f = cache[key]
            photos = min(counts["train"], config.data.max_photos or counts["train"]) * config.data.repeats
            epochs = config.data.epochs
            train = minutes(f[kind] * photos * epochs, args.tflops)
            valid = minutes(f["forward"] * counts["valid"] * epochs, args.tflops)
            total += train + valid
            print(f"| {path} | {stage} | {name} | {photos} x {epochs} | {f[kind] / 1e9:.0f} | {train:.0f} min | "
                  f"{valid:.0f} min | {train + valid:.0f} min |")
        n_models = 1 + len(gan_names) + 1
        passes = n_models - 1 + len(HINT_COUNTS)  # the hint model once per hint count
        size = PRETRAIN_PRESETS[l1_name].data.size
        evaluation = minutes(cache[(size, GAN_PRESETS["pix2pix"].critic)]["forward"] * counts["test"] * passes,
                             args.tflops)
        total += evaluation
        print(f"| {path} | evaluation | {n_models} models, hint curve {len(HINT_COUNTS)} counts | {counts['test']} x "
              f"{passes} passes | {cache[(size, GAN_PRESETS['pix2pix'].critic)]['forward'] / 1e9:.0f} | "
              f"{evaluation:.0f} min | | {evaluation:.0f} min |")
        print(f"| {path} | **whole path** | | | | | | **{total:.0f} min ({total / 60:.1f} h)** |")


if __name__ == "__main__":
    main()

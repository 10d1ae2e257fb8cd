"""Training recipes as frozen dataclasses with named presets; every value says where it comes from."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Self


class Recipe:
    """What every config shares: `replace` for overrides from the CLI or a notebook."""

    def replace(self, **changes) -> Self:
        """A copy with `changes`; None values are ignored so CLI flags that were not given pass through."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class PretrainConfig(Recipe):
    """Stage 1: the U-Net generator trained on L1 alone (L in, ab out)."""

    arch: str = "resnet18"  # Places365 lineage (moein-shariatnia tutorial): ResNet-18 DynamicUnet
    size: int = 256  # the Kaggle Places365 subset is 256x256
    bs: int = 16  # tutorial's batch size
    lr: float = 1e-4  # tutorial's Adam learning rate for the L1 pretraining
    epochs: int = 20  # tutorial: 20 epochs of L1 pretraining
    wd: float = 0.0  # tutorial's plain Adam has no weight decay
    pretrained: bool = True  # ImageNet encoder weights (torchvision); False for offline runs
    repeats: int = 1  # random crops drawn from each photo per epoch (>1 only for tiny photo sets)
    seed: int = 42  # split and initialisation seed
    workers: int | None = None  # DataLoader workers; None = all cores (at most 8)
    cache: bool = False  # decode the photos once into a uint8 memory map beside them (colorize.loaders)


PRETRAIN_PRESETS: dict[str, PretrainConfig] = {
    # The Places365 recipe of the tutorial this project descends from; photos cached once (issue 5).
    "places365": PretrainConfig(cache=True),
    # `colorize demo`: a few minutes on a 2-core CPU on the photos shipped with scikit-image/-learn.
    "demo": PretrainConfig(size=64, bs=8, lr=1e-3, epochs=12, pretrained=False, repeats=16, workers=0),
    # Tests and notebooks in SMOKE mode: seconds on a CPU, no network.
    "smoke": PretrainConfig(size=32, bs=4, lr=1e-3, epochs=1, pretrained=False, repeats=2, workers=0),
}


@dataclass(frozen=True)
class GanConfig(Recipe):
    """Stage 2: the generator fine-tuned as a conditional GAN against a PatchGAN critic that sees (L, ab).

    Defaults are the pix2pix recipe of the Places365 lineage (moein-shariatnia "Image Colorization
    Tutorial", `MainModel` and `PatchDiscriminator`, after pix2pix, Isola et al. 2017). The CIFAR-10
    presets follow karoly-hars/GAN_image_colorizing (after Nazeri et al. 2018): its README commands
    and the defaults of its train.py.
    """

    arch: str = "resnet18"  # generator built from scratch only; a --generator checkpoint brings its own arch/size
    size: int = 256  # the Kaggle Places365 subset is 256x256
    bs: int = 16  # tutorial's batch size
    epochs: int = 20  # tutorial: 20 epochs of GAN training after the L1 pretraining
    lr_g: float = 2e-4  # tutorial and pix2pix: Adam lr 2e-4 for G ...
    lr_d: float = 2e-4  # ... and for D
    beta1: float = 0.5  # tutorial and pix2pix: Adam betas (0.5, 0.999) for both networks
    beta2: float = 0.999
    decay_steps: float | None = None  # lr * 0.1^(step / decay_steps), G and D; None/0: constant (tutorial)
    min_lr: float = 0.0  # floor of the decayed learning rates
    gan_mode: str = "bce"  # tutorial and pix2pix: 'vanilla' GAN, BCE on logits (losses.GAN_MODES)
    smoothing: float = 1.0  # tutorial: real label 1.0, no one-sided label smoothing
    l1_mode: str = "additive"  # pix2pix: G = adv + lambda * L1 (losses.L1_CONVENTIONS)
    l1_weight: float = 100.0  # tutorial and pix2pix: lambda_L1 = 100
    critic_norm: str = "batch"  # tutorial and pix2pix: batch norm in the critic (models.CRITIC_NORMS)
    critic_layers: int = 3  # pix2pix n_layers 3: 70x70 patches, a 30x30 map at 256 px
    critic_ndf: int = 64  # pix2pix: 64 filters in the critic's first conv
    critic_init: bool = True  # tutorial and pix2pix: N(0, 0.02) init of the critic
    pretrained: bool = False  # ImageNet encoder for a generator built from scratch (needs the network once)
    repeats: int = 1  # random crops drawn from each photo per epoch (>1 only for tiny photo sets)
    seed: int = 42  # split and initialisation seed
    workers: int | None = None  # DataLoader workers; None = all cores (at most 8)
    cache: bool = False  # decode the photos once into a uint8 memory map beside them (colorize.loaders)


# The CIFAR-10 study (karoly-hars/GAN_image_colorizing README and train.py defaults) at CIFAR's native 32x32.
# Generator: this project's ResNet-18 DynamicUnet built at size 32 and trained from scratch as the study does
# (its encoder reaches 1x1 at 32 px; the study's own U-Net reaches 4x4 from a 35x35 upsampled input).
# Critic: n_layers 2, a 6x6 map of logits whose 34x34 receptive field covers the whole 32x32 image, the nearest
# PatchGAN to the study's critic, which ends in a single logit for the whole image (n_layers 3 would give a
# 2x2 map of 70 px patches, mostly padding).
_CIFAR = GanConfig(
    size=32,  # CIFAR-10's native size
    bs=32,  # study's train.py default (its README commands leave the batch size at the default)
    critic_layers=2,  # see above: 6x6 map, 34 px receptive field at 32x32
    gan_mode="bce",  # study: sigmoid + nn.BCELoss
    l1_mode="convex",  # study: G = (1 - l1_weight) * adv + l1_weight * L1
    beta1=0.5,  # study: Adam betas (0.5, 0.999) for both networks
    beta2=0.999,
    min_lr=1e-6,  # study's adjust_learning_rate floors the decayed lr at 1e-6
    pretrained=False,  # study trains its generator from scratch
    cache=True,  # 60,000 small files: decoded once
)

GAN_PRESETS: dict[str, GanConfig] = {
    # The Places365 lineage's GAN stage, started from the `places365` L1 checkpoint (--generator).
    "pix2pix": GanConfig(cache=True),
    # README, batch norm: --max_epoch=200 --smoothing=0.9 --l1_weight=0.99 --base_lr_gen=3e-4
    # --base_lr_disc=6e-5 --lr_decay_steps=6e4 --disc_norm=batch --apply_weight_init=1
    "cifar-batchnorm": _CIFAR.replace(epochs=200, smoothing=0.9, l1_weight=0.99, lr_g=3e-4, lr_d=6e-5,
                                      decay_steps=6e4, critic_norm="batch", critic_init=True),
    # README, spectral norm: --max_epoch=100 --smoothing=1.0 --l1_weight=0.985 --base_lr_gen=2e-4
    # --base_lr_disc=2e-4 --lr_decay_steps=4e4 --disc_norm=spectral --apply_weight_init=0
    "cifar-spectral": _CIFAR.replace(epochs=100, smoothing=1.0, l1_weight=0.985, lr_g=2e-4, lr_d=2e-4,
                                     decay_steps=4e4, critic_norm="spectral", critic_init=False),
    # `colorize demo`: a short fine-tune of the `demo` L1 generator (64 px) on the sample photos;
    # n_layers 2 suits 64 px (a 14x14 map of 34 px patches).
    "demo": GanConfig(size=64, bs=8, epochs=3, critic_layers=2, repeats=16, workers=0),
    # Tests and notebooks in SMOKE mode, after the `smoke` L1 generator (32 px): seconds on a CPU, no network.
    "smoke": GanConfig(size=32, bs=4, epochs=2, critic_layers=2, repeats=2, workers=0),
}


def get_preset(presets: dict, name: str):
    """Look a preset up by name, with an error that lists the valid ones."""
    try:
        return presets[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; choose one of: {', '.join(presets)}") from None

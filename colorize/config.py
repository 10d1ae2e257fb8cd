"""Training recipes as frozen dataclasses with named presets; every value says where it comes from."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class PretrainConfig:
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

    def replace(self, **changes) -> "PretrainConfig":
        """A copy with `changes`; None values are ignored so CLI flags that were not given pass through."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


PRETRAIN_PRESETS: dict[str, PretrainConfig] = {
    # The Places365 recipe of the tutorial this project descends from.
    "places365": PretrainConfig(),
    # `colorize demo`: a few minutes on a 2-core CPU on the photos shipped with scikit-image/-learn.
    "demo": PretrainConfig(size=128, bs=8, lr=1e-3, epochs=12, pretrained=False, repeats=16, workers=0),
    # Tests and notebooks in SMOKE mode: seconds on a CPU, no network.
    "smoke": PretrainConfig(size=64, bs=4, lr=1e-3, epochs=1, pretrained=False, repeats=2, workers=0),
}


def get_preset(presets: dict, name: str):
    """Look a preset up by name, with an error that lists the valid ones."""
    try:
        return presets[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; choose one of: {', '.join(presets)}") from None

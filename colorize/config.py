"""Training recipes as frozen dataclasses with named presets; every value says where it comes from.

A stage's recipe nests the parts it shares with the other stages, each built once:
    data      what a stage trains on and for how long: crop size, batch size, crops per photo, epochs, seed
    machine   how this machine runs the recipe (workers, cache, precision, work folder): not the recipe,
              so a resumed run may change it
    generator the U-Net's encoder and whether it starts from ImageNet weights
    critic    the PatchGAN (GAN stage only)
and adds its own optimiser and loss fields. `override` applies flat `field=value` pairs (the CLI's flags)
to wherever the field lives in the nesting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Self

# The names of every choice, once: the registries that implement them (models.ARCHS, models.CRITIC_NORMS,
# losses.GAN_MODES, losses.L1_CONVENTIONS, device.DTYPES, propagate) are tested to have exactly these keys,
# the recipes refuse anything else when they are made, and the CLI's flags offer them as `choices`.
ARCHS = ("resnet18", "resnet34")  # torchvision ResNet encoders of the U-Net (models.ARCHS)
CRITIC_NORMS = ("batch", "instance", "spectral", "none")  # the PatchGAN's normalisation (models.CRITIC_NORMS)
GAN_MODES = ("bce", "lsgan")  # adversarial criterion (losses.GAN_MODES)
L1_CONVENTIONS = ("additive", "convex")  # how L1 joins the adversarial term (losses.L1_CONVENTIONS)
PRECISIONS = ("auto", "bf16", "fp16", "fp32")  # arithmetic of training and inference (device.choose_precision)
PROPAGATIONS = ("fast", "levin", "off")  # how hints spread along lightness (propagate.propagate)

NOT_RECIPE = {"recipe": False}  # field metadata: may differ when a run resumes (see `recipe_dict`)


def choice(default: str, choices: tuple[str, ...], **metadata):
    """A dataclass field that must be one of `choices` (checked by `Recipe.__post_init__`, offered by the CLI)."""
    return field(default=default, metadata={"choices": choices, **metadata})


def option(default, help: str, **metadata):
    """A dataclass field of an options value (`inference.Rendering`, `evaluate.EvalOptions`, ...) with the help its
    CLI flag shows (`cli.add_option_args`); `parse` in `metadata` turns the flag's text into the value."""
    return field(default=default, metadata={"help": help, **metadata})


def options_of(kind: type, value, settings: dict):
    """The options value of a public entry: `value` (a `kind`, or None for the defaults) with the entries of
    `settings` that name its fields taken out (popped) and applied, so `f(..., temporal=0)` reads as well as
    `f(..., video=VideoOptions(temporal=0))`."""
    ours = {f.name: settings.pop(f.name) for f in dataclasses.fields(kind) if f.name in settings}
    return dataclasses.replace(value or kind(), **ours) if ours or value is None else value


class Recipe:
    """What every config shares: its choice fields checked when it is made, `replace` for overrides of its own fields."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            choices, value = f.metadata.get("choices"), getattr(self, f.name)
            if choices is not None and value not in choices:
                raise ValueError(f"{type(self).__name__}.{f.name} is {value!r}; choose one of: {', '.join(choices)}")
        self.check()

    def check(self) -> None:
        """Further checks of a part's values; a ValueError says which and what to use instead."""

    def replace(self, **changes) -> Self:
        """A copy with `changes` (any value, None included)."""
        return dataclasses.replace(self, **changes)


def _positive(config, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ValueError(f"{type(config).__name__}.{name} is {value}; it must be at least 1")


@dataclass(frozen=True)
class DataConfig(Recipe):
    """What a stage trains on and for how long."""

    size: int = 256  # the Kaggle Places365 subset is 256x256
    bs: int = 16  # tutorial's batch size (per GPU when several train together)
    epochs: int = 20  # tutorial: 20 epochs of L1 pretraining, then 20 of GAN training
    repeats: int = 1  # random crops drawn from each photo per epoch (>1 only for tiny photo sets)
    seed: int = 42  # split and initialisation seed
    max_photos: int | None = None  # train on a subset of this many training photos (drawn with `seed`); None: all

    def check(self):
        _positive(self, "size", "bs", "epochs", "repeats", "max_photos")


@dataclass(frozen=True)
class MachineConfig(Recipe):
    """How this machine runs a recipe: how photos load and the arithmetic. Not the recipe: may change on resume."""

    workers: int | None = None  # DataLoader workers; None = all cores (at most 8)
    cache: bool = False  # decode the photos once into a uint8 memory map (colorize.loaders)
    precision: str = choice("auto", PRECISIONS)  # device.choose_precision: bf16 or fp16 on a GPU, fp32 on a CPU
    work_dir: str | None = None  # index and cache of a read-only dataset; None: beside the photos if writable


@dataclass(frozen=True)
class GeneratorConfig(Recipe):
    """The U-Net generator built from scratch (a checkpoint to start from brings its own)."""

    arch: str = choice("resnet18", ARCHS)  # Places365 lineage (moein-shariatnia tutorial): ResNet-18 DynamicUnet
    pretrained: bool = True  # ImageNet encoder weights (torchvision); False for offline runs


@dataclass(frozen=True)
class CriticConfig(Recipe):
    """The conditional PatchGAN critic (models.PatchGAN)."""

    layers: int = 3  # pix2pix n_layers 3: 70x70 patches, a 30x30 map at 256 px
    norm: str = choice("batch", CRITIC_NORMS)  # tutorial and pix2pix: batch norm in the critic
    ndf: int = 64  # pix2pix: 64 filters in the critic's first conv
    init: bool = True  # tutorial and pix2pix: N(0, 0.02) init of the critic

    def check(self):
        _positive(self, "layers", "ndf")


@dataclass(frozen=True)
class PretrainConfig(Recipe):
    """Stage 1: the U-Net generator trained on L1 alone (L in, ab out)."""

    data: DataConfig = DataConfig()
    machine: MachineConfig = field(default=MachineConfig(), metadata=NOT_RECIPE)
    generator: GeneratorConfig = GeneratorConfig()
    lr: float = 1e-4  # tutorial's Adam learning rate for the L1 pretraining
    wd: float = 0.0  # tutorial's plain Adam has no weight decay


@dataclass(frozen=True)
class GanConfig(Recipe):
    """Stage 2: the generator fine-tuned as a conditional GAN against a PatchGAN critic that sees (L, ab).

    Defaults are the pix2pix recipe of the Places365 lineage (moein-shariatnia "Image Colorization
    Tutorial", `MainModel` and `PatchDiscriminator`, after pix2pix, Isola et al. 2017). The CIFAR-10
    presets follow karoly-hars/GAN_image_colorizing (after Nazeri et al. 2018): its README commands
    and the defaults of its train.py.
    """

    data: DataConfig = DataConfig()
    machine: MachineConfig = field(default=MachineConfig(), metadata=NOT_RECIPE)
    generator: GeneratorConfig = GeneratorConfig(pretrained=False)  # used only without a --generator checkpoint
    critic: CriticConfig = CriticConfig()
    lr_g: float = 2e-4  # tutorial and pix2pix: Adam lr 2e-4 for G ...
    lr_d: float = 2e-4  # ... and for D
    beta1: float = 0.5  # tutorial and pix2pix: Adam betas (0.5, 0.999) for both networks
    beta2: float = 0.999
    decay_steps: float | None = None  # lr * 0.1^(step / decay_steps), G and D; None/0: constant (tutorial)
    min_lr: float = 0.0  # floor of the decayed learning rates
    gan_mode: str = choice("bce", GAN_MODES)  # tutorial and pix2pix: 'vanilla' GAN, BCE on logits
    smoothing: float = 1.0  # tutorial: real label 1.0, no one-sided label smoothing
    l1_mode: str = choice("additive", L1_CONVENTIONS)  # pix2pix: G = adv + lambda * L1 (losses.generator_loss)
    l1_weight: float = 100.0  # tutorial and pix2pix: lambda_L1 = 100

    def check(self):
        if self.l1_mode == "convex" and not 0.0 <= self.l1_weight <= 1.0:
            raise ValueError(f"GanConfig.l1_weight is {self.l1_weight}, outside [0, 1] for l1_mode 'convex' "
                             f"(G = (1 - w) * adv + w * L1); for G = adv + {self.l1_weight} * L1 use l1_mode 'additive'")
        if not 0.0 < self.smoothing <= 1.0:
            raise ValueError(f"GanConfig.smoothing is {self.smoothing}: the critic's target for real pairs is in (0, 1]")


@dataclass(frozen=True)
class HintsConfig(Recipe):
    """Stage 3: a trained automatic generator widened to read a hint map and fine-tuned on L1 with simulated hints.

    After Zhang et al. 2017, "Real-Time User-Guided Image Colorization with Learned Deep Priors", as
    their code trains it (richzhang/colorization-pytorch: scripts/train_siggraph.sh, options/, util.py):
    the automatic network is fine-tuned with hints drawn per image (colorize.hintmaps) and a
    regression loss on ab (their `loss_G_L1_reg`; L1 here, as in our stage 1).
    """

    data: DataConfig = DataConfig(epochs=15)  # Zhang et al.: 10 epochs at lr 1e-5, then 5 at 1e-6 (siggraph_reg, _reg2)
    machine: MachineConfig = field(default=MachineConfig(), metadata=NOT_RECIPE)
    lr: float = 1e-5  # Zhang et al.: --lr 0.00001 for the hint stage; fastai's one-cycle anneals it (their 1e-6 tail)
    wd: float = 0.0  # Zhang et al.: plain Adam, no weight decay
    hint_p: float = 1 / 8  # Zhang et al.: --sample_p .125, geometric number of hints, mean 7, none for 1 image in 8
    hint_min_side: int = 1  # Zhang et al.: --sample_Ps 1 2 ... 9, patch side uniform in 1..9 px
    hint_max_side: int = 9

    def check(self):
        if not 0.0 < self.hint_p <= 1.0 or not 1 <= self.hint_min_side <= self.hint_max_side:
            raise ValueError(f"HintsConfig: hint_p {self.hint_p} must be in (0, 1] and 1 <= hint_min_side "
                             f"({self.hint_min_side}) <= hint_max_side ({self.hint_max_side})")


# The tiny and the short recipes, each size written once: tests and notebooks in SMOKE mode (seconds on a
# CPU, no network) and `colorize demo` (minutes on a 2-core CPU, on the photos shipped with scikit-image/-learn).
SMOKE_DATA = DataConfig(size=32, bs=4, epochs=1, repeats=2)
SMOKE_MAX_EPOCHS = 3  # smoke stages and the tests' variations of them train 1 to 3 epochs
SMOKE_MACHINE = MachineConfig(workers=0)
# The demo's L1 stage: 6 epochs of 10 steps (5 photos x 16 crops, batch 8), one cycle, so `make demo` stays within
# a few minutes on 2 cores (its time is in the README); more epochs only memorise the five photos better.
DEMO_DATA = DataConfig(size=64, bs=8, epochs=6, repeats=16)
DEMO_MACHINE = MachineConfig(workers=0)
OFFLINE = GeneratorConfig(pretrained=False)

# The learner's whole path (L1, GAN, hints, evaluation) in about one hour on one free T4 (Colab, Kaggle): the
# notebooks' default. PROJECTED, not measured: `benchmarks/budget.py` counts each stage's FLOPs per photo with
# torch's FlopCounterMode (256 px: 170 GFLOP to train the generator on one photo, 226 with the GAN's critic, 57
# for a forward pass) and divides by an assumed 6 TFLOP/s effective on a T4 in fp16 (NVIDIA's ResNet-50 AMP
# training, ~250 images/s at 24.6 GFLOP each; the tutorial's "an hour on Colab" for 20 epochs of 8,000 photos
# implies ~7.5). Its output for these presets on the Kaggle Places365 subset (29.2k/3.65k/3.65k train/valid/test):
#     training L1 19 min + GAN 15 min + hints 8 min, validation 6 min, evaluation 6 min: about 53 min
# Crops stay 256 px (the tutorial's, and the evaluation's), so the three stages' checkpoints fit one another.
COLAB_DATA = DataConfig(max_photos=8_000)  # the tutorial's 8,000 training photos (moein-shariatnia, COCO subset)
COLAB_MACHINE = MachineConfig(cache=True)  # 8,000 + the valid photos decoded once: Colab has two CPU cores

PRETRAIN_PRESETS: dict[str, PretrainConfig] = {
    # The Places365 recipe of the tutorial this project descends from; photos decoded once into the cache.
    "places365": PretrainConfig(machine=MachineConfig(cache=True)),
    # One free T4 hour for the whole path (see COLAB_DATA): 5 epochs of 8,000 photos, the tutorial's lr.
    "colab": PretrainConfig(data=COLAB_DATA.replace(epochs=5), machine=COLAB_MACHINE),
    "demo": PretrainConfig(data=DEMO_DATA, machine=DEMO_MACHINE, generator=OFFLINE, lr=1e-3),
    # A trained generator fine-tuned on your own folder of a few hundred photos (`colorize pretrain --generator`):
    # 4 crops of each photo per epoch for 15 epochs, about 7 min on a T4 for 300 photos (PROJECTED by
    # benchmarks/budget.py, not measured); a third of the tutorial's lr, to adapt the generator, not relearn it.
    "finetune": PretrainConfig(data=DataConfig(epochs=15, repeats=4), machine=COLAB_MACHINE, lr=3e-5),
    "smoke": PretrainConfig(data=SMOKE_DATA, machine=SMOKE_MACHINE, generator=OFFLINE, lr=1e-3),
}

# The CIFAR-10 study (karoly-hars/GAN_image_colorizing README and train.py defaults) at CIFAR's native 32x32.
# Generator: this project's ResNet-18 DynamicUnet built at size 32 and trained from scratch as the study does
# (its encoder reaches 1x1 at 32 px; the study's own U-Net reaches 4x4 from a 35x35 upsampled input).
# Critic: n_layers 2, a 6x6 map of logits whose 34x34 receptive field covers the whole 32x32 image, the nearest
# PatchGAN to the study's critic, which ends in a single logit for the whole image (n_layers 3 would give a
# 2x2 map of 70 px patches, mostly padding).
_CIFAR = GanConfig(
    data=DataConfig(size=32,  # CIFAR-10's native size
                    bs=32),  # study's train.py default (its README commands leave the batch size at the default)
    machine=MachineConfig(cache=True),  # 60,000 small files: decoded once
    generator=OFFLINE,  # study trains its generator from scratch
    critic=CriticConfig(layers=2),  # see above: 6x6 map, 34 px receptive field at 32x32
    gan_mode="bce",  # study: sigmoid + nn.BCELoss
    l1_mode="convex",  # study: G = (1 - l1_weight) * adv + l1_weight * L1
    l1_weight=0.99,  # study's batch-norm README command (--l1_weight=0.99); the presets below set theirs
    beta1=0.5,  # study: Adam betas (0.5, 0.999) for both networks
    beta2=0.999,
    min_lr=1e-6,  # study's adjust_learning_rate floors the decayed lr at 1e-6
)
# The spectral-norm critic of the CIFAR study: W / sigma(W) in every conv, no N(0, 0.02) init.
SPECTRAL = CriticConfig(norm="spectral", init=False)

GAN_PRESETS: dict[str, GanConfig] = {
    # The Places365 lineage's GAN stage, started from the `places365` L1 checkpoint (--generator).
    "pix2pix": GanConfig(machine=MachineConfig(cache=True)),
    # One free T4 hour for the whole path (see COLAB_DATA): pix2pix for 3 epochs of 8,000 photos, from `colab` L1.
    "colab": GanConfig(data=COLAB_DATA.replace(epochs=3), machine=COLAB_MACHINE),
    # pix2pix with the CIFAR study's spectral-norm critic instead of batch norm (the tutorial's comparison).
    "pix2pix-spectral": GanConfig(machine=MachineConfig(cache=True), critic=SPECTRAL),
    # README, batch norm: --max_epoch=200 --smoothing=0.9 --l1_weight=0.99 --base_lr_gen=3e-4
    # --base_lr_disc=6e-5 --lr_decay_steps=6e4 --disc_norm=batch --apply_weight_init=1
    "cifar-batchnorm": _CIFAR.replace(data=_CIFAR.data.replace(epochs=200), smoothing=0.9, l1_weight=0.99,
                                      lr_g=3e-4, lr_d=6e-5, decay_steps=6e4),
    # README, spectral norm: --max_epoch=100 --smoothing=1.0 --l1_weight=0.985 --base_lr_gen=2e-4
    # --base_lr_disc=2e-4 --lr_decay_steps=4e4 --disc_norm=spectral --apply_weight_init=0
    "cifar-spectral": _CIFAR.replace(data=_CIFAR.data.replace(epochs=100), critic=SPECTRAL.replace(layers=2),
                                     smoothing=1.0, l1_weight=0.985, lr_g=2e-4, lr_d=2e-4, decay_steps=4e4),
    # `colorize demo`: a short fine-tune (30 steps) of the `demo` L1 generator (64 px) on the sample photos;
    # n_layers 2 suits 64 px (a 14x14 map of 34 px patches). The pix2pix values (batch-norm critic, lr 2e-4)
    # painted sky, grass and the cat red-orange and cost 0.55 dB PSNR at 64 px, 1.44 dB at 128 px, against
    # the L1 generator on 25 held-out photos; the spectral critic with a 4x lower lr_g stayed within 0.4 dB
    # and was more colourful than L1 with seed 42, but not with seed 7 (the README's demo section has the
    # table). Eight photos cannot show the GAN's effect reliably; this is the gentler of the two.
    "demo": GanConfig(data=DEMO_DATA.replace(epochs=3), machine=DEMO_MACHINE, critic=SPECTRAL.replace(layers=2),
                      lr_g=5e-5),
    # After the `smoke` L1 generator (32 px).
    "smoke": GanConfig(data=SMOKE_DATA.replace(epochs=2), machine=SMOKE_MACHINE, critic=CriticConfig(layers=2)),
}


HINTS_PRESETS: dict[str, HintsConfig] = {
    # Zhang et al. 2017's hint stage on Places365, from the `places365` L1 checkpoint (--generator).
    "places365": HintsConfig(machine=MachineConfig(cache=True)),
    # One free T4 hour for the whole path (see COLAB_DATA): 2 epochs of 8,000 photos from the `colab` L1 generator,
    # at 10x Zhang et al.'s lr so the hint weights (zero at the start) learn in 1,000 steps rather than their 10 epochs.
    "colab": HintsConfig(data=COLAB_DATA.replace(epochs=2), machine=COLAB_MACHINE, lr=1e-4),
    # `colorize demo`: from the `demo` L1 generator (64 px) on the sample photos; a larger lr, as the demo's
    # stage 1, so the hint weights (zero at the start) move within a CPU minute. 2 epochs (20 steps): five photos
    # teach a hint model next to nothing (README); the gallery's hint column shows what propagation does.
    "demo": HintsConfig(data=DEMO_DATA.replace(epochs=2), machine=DEMO_MACHINE, lr=1e-3),
    # After the `smoke` L1 generator (32 px).
    "smoke": HintsConfig(data=SMOKE_DATA, machine=SMOKE_MACHINE, lr=1e-3),
}


def is_smoke(config) -> bool:
    """A recipe as small as the smoke presets' (crops of at most `SMOKE_DATA.size` px, at most `SMOKE_MAX_EPOCHS`
    epochs): seconds on a CPU, so it needs no GPU (see `run.fit_run`'s `allow_cpu`)."""
    return config.data.size <= SMOKE_DATA.size and config.data.epochs <= SMOKE_MAX_EPOCHS


def get_preset(presets: dict, name: str):
    """Look a preset up by name, with an error that lists the valid ones."""
    try:
        return presets[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; choose one of: {', '.join(presets)}") from None


def _is_config(value) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def flat_fields(recipe: type) -> dict[str, tuple[str, ...]]:
    """Flat name -> path of every leaf field of a recipe class, e.g. "bs" -> ("data", "bs").

    Leaves of `critic` are named with its prefix ("critic_norm"); other nested parts lend their
    names as they are. Stage fields keep theirs.
    """
    out = {}
    for f in dataclasses.fields(recipe):
        default = f.default if f.default is not dataclasses.MISSING else None
        if _is_config(default):
            prefix = "critic_" if f.name == "critic" else ""
            for sub, path in flat_fields(type(default)).items():
                out[prefix + sub] = (f.name, *path)
        else:
            out[f.name] = (f.name,)
    return out


def field_value(config, path: tuple[str, ...]):
    """The value at `path` (from `flat_fields`) in a config."""
    for name in path:
        config = getattr(config, name)
    return config


def override(config, **changes: Any):
    """A copy of `config` with flat `changes` ("bs", "critic_norm", "lr_g"...) put where each field lives.

    Every value given is applied, None included (`decay_steps=None` turns the decay off); callers
    pass only what was asked for. An unknown name is an error that lists the valid ones.
    """
    paths = flat_fields(type(config))
    unknown = set(changes) - set(paths)
    if unknown:
        raise ValueError(f"unknown recipe field(s) {', '.join(sorted(unknown))} for {type(config).__name__}; "
                         f"choose from: {', '.join(paths)}")
    tree: dict = {}  # the changes nested as the recipe is, so each part is made (and checked) once with all of its own
    for name, value in changes.items():
        *parts, leaf = paths[name]
        node = tree
        for part in parts:
            node = node.setdefault(part, {})
        node[leaf] = value
    return _apply(config, tree)


def _apply(config, tree: dict):
    return dataclasses.replace(config, **{k: _apply(getattr(config, k), v) if isinstance(v, dict) else v
                                          for k, v in tree.items()})


def recipe_dict(config) -> dict:
    """The recipe part of a config as nested plain values: fields marked NOT_RECIPE left out, at any depth."""
    return {f.name: recipe_dict(v) if _is_config(v := getattr(config, f.name)) else v
            for f in dataclasses.fields(config) if f.metadata.get("recipe", True)}

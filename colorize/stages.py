"""The three training stages behind one pattern: what a notebook or the CLI calls to train or find a checkpoint.

    stage     recipe          learner             trains (or resumes) a run       notebook
    pretrain  PretrainConfig  pretrain_learner    train_pretrain(data, run_dir, config)   02
    gan       GanConfig       gan_learner         train_gan(..., generator=...)           03
    hints     HintsConfig     hints_learner       train_hints(..., generator=...)         05

`fit_stage` trains any stage's Learner into its run folder (notebook 02 calls it after the learning-rate
finder); `ensure_trained` returns a checkpoint, trained with the stage its recipe names when asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fastai.learner import Learner

from .config import GAN_PRESETS, HINTS_PRESETS, PRETRAIN_PRESETS, GanConfig, HintsConfig, PretrainConfig, recipe_dict
from .files import ensure_file
from .gan import train_gan
from .hints import train_hints
from .models import checkpoint_identity
from .pretrain import train_pretrain
from .run import GENERATOR_NAMES, fit_run


@dataclass(frozen=True)
class Stage:
    """What `ensure_trained` needs of a stage: how it trains, and how a person makes its checkpoint."""

    command: str  # the CLI subcommand
    what: str  # the checkpoint it makes, in a message
    notebook: str
    presets: dict
    train: Callable


STAGES = {
    PretrainConfig: Stage("pretrain", "L1 generator", "02_pretrain_generator.ipynb", PRETRAIN_PRESETS, train_pretrain),
    GanConfig: Stage("gan", "GAN generator", "03_gan_finetune.ipynb", GAN_PRESETS, train_gan),
    HintsConfig: Stage("hints", "hint generator", "05_colour_hints.ipynb", HINTS_PRESETS, train_hints),
}


def fit_stage(learn: Learner, run_dir, config, *, generator=None, allow_cpu: bool = True) -> Learner:
    """Train any stage's Learner (from `pretrain_learner`, `gan_learner`, `hints_learner`) into `run_dir`, resuming
    after its last saved epoch. `generator`: the checkpoint a GAN or hint Learner started from, which the run
    records (and a resume from another is refused); an L1 Learner may have started from one too (fine-tuning).
    `allow_cpu=False`: see `run.fit_run`."""
    new = isinstance(config, PretrainConfig) and generator is None  # an L1 run from a new network records no start
    facts = {} if new else {"generator": checkpoint_identity(generator)}
    return fit_run(learn, run_dir, config, allow_cpu=allow_cpu, **facts)


def ensure_trained(path, config, data, *, generator=None, train_if_missing: bool = False, device=None):
    """The checkpoint at `path` (a run folder's best/last.safetensors, or an `hf://` path), trained first if missing.

    A missing checkpoint is trained into its run folder by the stage `config` belongs to, on the photos
    under `data` (from `generator`, for the GAN and hint stages), when `train_if_missing` (a stand-in, e.g.
    for a smoke run where no run of that notebook exists); otherwise a FileNotFoundError names the notebook
    and the command that make it. Returns `path` as given.
    """
    stage, run_dir = STAGES[type(config)], Path(path).parent
    kwargs = {} if isinstance(config, PretrainConfig) else {"generator": generator}
    return ensure_file(path, lambda: stage.train(data, run_dir, config, device=device, **kwargs),
                       writes=GENERATOR_NAMES, make_if_missing=train_if_missing,
                       missing=f"no {stage.what} at {path}: run notebook {stage.notebook} (or `colorize "
                               f"{stage.command} --data PHOTOS{' --generator CHECKPOINT' if kwargs else ''} --out "
                               f"{run_dir} --preset {preset_name(config, stage.presets)}`) first, or name a checkpoint "
                               "that exists")


def preset_name(config, presets: dict) -> str:
    """The name of the preset whose recipe `config` is; else the first preset's, with " (and your changes)"."""
    mine = recipe_dict(config)
    return next((name for name, p in presets.items() if recipe_dict(p) == mine), f"{next(iter(presets))} (and your "
                "changes)")

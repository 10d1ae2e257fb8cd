"""The three training stages behind one pattern: the one way to train a stage, and a checkpoint found or made.

    stage     recipe          learner            start checkpoint (`generator`)   notebook
    pretrain  PretrainConfig  pretrain_learner   optional (fine-tuning; none: new) 02
    gan       GanConfig       gan_learner        optional (none: from scratch)    03
    hints     HintsConfig     hints_learner      required (widened for hints)     05

`train(data, run_dir, config, generator=...)` trains (or resumes) any stage into its run folder: it claims the
folder first (one writer, the same recipe), then builds the stage's Learner and fits it. `ensure_trained(data,
path, config)` returns a checkpoint, trained with the stage its recipe names when asked. The CLI makes one
subcommand per stage from `STAGES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fastai.learner import Learner

from .config import GAN_PRESETS, HINTS_PRESETS, PRETRAIN_PRESETS, GanConfig, HintsConfig, PretrainConfig, recipe_dict
from .files import ensure_file
from .gan import gan_learner
from .hints import hints_learner
from .models import checkpoint_identity
from .pretrain import pretrain_learner
from .run import GENERATOR_NAMES, claim_run, fit_run


@dataclass(frozen=True)
class Stage:
    """A training stage: its Learner, the start checkpoint it takes, and how a person makes its checkpoint."""

    command: str  # the CLI subcommand
    summary: str  # what it does, in the CLI's help
    what: str  # the checkpoint it makes, in a message
    notebook: str
    presets: dict  # the first is the default
    learner: Callable  # (data, config, *, device, [generator, resize]) -> Learner
    start: str | None  # the start checkpoint `generator`: None (the stage takes none), "optional" or "required"
    start_help: str = ""  # what the start checkpoint is, in the CLI's help
    done: str = ""  # which checkpoint to use, said when the run is done

    @property
    def default_preset(self) -> str:
        return next(iter(self.presets))


STAGES = {
    PretrainConfig: Stage("pretrain", "stage 1: train the U-Net generator on L1", "L1 generator",
                          "02_pretrain_generator.ipynb", PRETRAIN_PRESETS, pretrain_learner, "optional",
                          "trained generator checkpoint (.safetensors) to fine-tune on these photos (preset "
                          "finetune); none: a new generator", done="best.safetensors is the L1 generator (lowest valid L1)"),
    GanConfig: Stage("gan", "stage 2: fine-tune a generator as a conditional GAN", "GAN generator",
                     "03_gan_finetune.ipynb", GAN_PRESETS, gan_learner, "optional",
                     "L1-pretrained generator checkpoint (.safetensors); none: from scratch",
                     "last.safetensors is the GAN generator (best.safetensors: lowest valid L1)"),
    HintsConfig: Stage("hints", "stage 3: teach a trained generator to follow colour hints", "hint generator",
                       "05_colour_hints.ipynb", HINTS_PRESETS, hints_learner, "required",
                       "trained automatic generator checkpoint (.safetensors) to widen",
                       "use best.safetensors with `colorize apply PHOTO --model RUN/best.safetensors --hints "
                       "hints.json`"),
}


def stage_of(config) -> Stage:
    """The stage that trains recipe `config`."""
    return STAGES[type(config)]


def train(data, run_dir, config, *, generator=None, device=None, allow_cpu: bool = True, resize: bool = False,
          learn: Learner | None = None) -> Learner:
    """Train (or resume) the stage of recipe `config` on the photos under `data` into `run_dir`; the trained Learner.

    `generator`: the checkpoint the stage starts from (see `STAGES`); the run records it and refuses to resume
    from another. The run folder is claimed first (one writer, the same recipe and start checkpoint:
    `run.claim_run`), then the photos are indexed and the stage's Learner is built (`resize`: go on from a
    checkpoint of another size) and fitted (`run.fit_run`; `allow_cpu=False`: its CPU guard). `learn`: a Learner
    of this stage already built for `config` (a notebook explores it first, e.g. with `lr_find`), fitted as it is.
    A loss gone NaN or Inf, or CUDA out of memory, raises `learner.TrainingStopped` naming the last good checkpoint.
    """
    stage = stage_of(config)
    if generator is None and stage.start == "required":
        raise ValueError(f"the {stage.command} stage starts from a trained generator: give generator= (--generator)")
    if generator is not None and stage.start is None:
        raise ValueError(f"the {stage.command} stage trains a fresh generator: leave generator= (--generator) out")
    facts = {} if stage.start is None else {"generator": checkpoint_identity(generator)}
    with claim_run(run_dir, config, **facts):  # before any photo is indexed or network built
        if learn is None:
            start = {} if stage.start is None else {"generator": generator, "resize": resize}
            learn = stage.learner(data, config, device=device, **start)
        return fit_run(learn, run_dir, config, allow_cpu=allow_cpu, **facts)


def ensure_trained(data, path, config, *, generator=None, train_if_missing: bool = False, device=None):
    """The checkpoint at `path` (a run folder's best/last.safetensors, or an `hf://` path), trained first if missing.

    A missing checkpoint is trained into its run folder by the stage `config` belongs to (`train`), on the
    photos under `data` (from `generator`, for the GAN and hint stages), when `train_if_missing` (a stand-in,
    e.g. for a smoke run where no run of that notebook exists); otherwise a FileNotFoundError names the notebook
    and the command that make it. Returns `path` as given.
    """
    stage, run_dir = stage_of(config), Path(path).parent
    start = " --generator CHECKPOINT" if stage.start == "required" or generator is not None else ""
    return ensure_file(path, lambda: train(data, run_dir, config, generator=generator, device=device),
                       writes=GENERATOR_NAMES, make_if_missing=train_if_missing,
                       missing=f"no {stage.what} at {path}: run notebook {stage.notebook} (or `colorize "
                               f"{stage.command} --data PHOTOS{start} --out {run_dir} --preset "
                               f"{preset_name(config, stage.presets)}`) first, or name a checkpoint that exists")


def preset_name(config, presets: dict) -> str:
    """The name of the preset whose recipe `config` is; else the first preset's, with " (and your changes)"."""
    mine = recipe_dict(config)
    return next((name for name, p in presets.items() if recipe_dict(p) == mine), f"{next(iter(presets))} (and your "
                "changes)")

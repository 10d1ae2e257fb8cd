"""Stage 1: the generator trained on L1 alone (L in, ab out) in a fastai Learner, into a run folder (colorize.run)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from fastai.learner import Learner
from fastai.torch_core import set_seed

from .config import PretrainConfig
from .files import ensure_file
from .loaders import make_dataloaders
from .models import build_generator
from .run import GENERATOR_NAMES, fit_run, stage_learner


def pretrain_learner(data, config: PretrainConfig, device=None) -> Learner:
    """A fastai Learner for L1 pretraining: DynamicUnet generator, Adam, valid PSNR, `tune_for_device` settings."""
    set_seed(config.data.seed)
    dls = make_dataloaders(data, config.data, config.machine, device=device)
    model = build_generator(config.generator.arch, size=config.data.size, pretrained=config.generator.pretrained)
    return stage_learner(dls, model, size=config.data.size, lr=config.lr, wd=config.wd,
                         precision=config.machine.precision)


def fit_pretrain(learn: Learner, run_dir, config: PretrainConfig) -> Learner:
    """One-cycle training for `config.data.epochs` into `run_dir`, resuming after its last saved epoch."""
    fit = partial(learn.fit_one_cycle, lr_max=config.lr, wd=config.wd)
    return fit_run(learn, run_dir, config, fit, stage="pretrain", epochs=config.data.epochs)


def pretrain(data, run_dir, config: PretrainConfig, device=None) -> Learner:
    """Stage 1 end to end: build the Learner on the photos under `data` and train (or resume) into `run_dir`."""
    return fit_pretrain(pretrain_learner(data, config, device=device), run_dir, config)


def ensure_generator(path, config: PretrainConfig, data, train_if_missing: bool = False, device=None):
    """The L1 generator at `path` (a run folder's best/last.safetensors, or an `hf://` path), trained first if missing.

    A missing checkpoint is trained into its run folder with `config` on the photos under `data` when
    `train_if_missing` (a stand-in, e.g. for a smoke run where no notebook-2 run exists); otherwise it is a
    FileNotFoundError that says how to make it. Returns `path` as given.
    """
    run_dir = Path(path).parent
    return ensure_file(path, lambda: pretrain(data, run_dir, config, device=device), writes=GENERATOR_NAMES,
                       make_if_missing=train_if_missing,
                       missing=f"no L1 generator at {path}: run notebook 02_pretrain_generator.ipynb (or `colorize "
                               f"pretrain --data PHOTOS --out {run_dir}`) first, or name a checkpoint that exists")

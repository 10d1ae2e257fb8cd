"""Stage 1: the generator trained on L1 alone (L in, ab out) in a fastai Learner, into a run folder (colorize.run)."""

from __future__ import annotations

from functools import partial

from fastai.learner import Learner
from fastai.torch_core import set_seed
from torch import nn

from .config import PretrainConfig
from .loaders import make_dataloaders
from .metrics import ColorPSNR
from .models import build_generator
from .run import adam, fit_run, tune_for_device


def pretrain_learner(data, config: PretrainConfig, device=None) -> Learner:
    """A fastai Learner for L1 pretraining: DynamicUnet generator, Adam, valid PSNR, `tune_for_device` settings."""
    set_seed(config.data.seed)
    dls = make_dataloaders(data, config.data, config.machine, device=device)
    model = build_generator(config.generator.arch, size=config.data.size, pretrained=config.generator.pretrained)
    learn = Learner(dls, model, loss_func=nn.L1Loss(), opt_func=adam(sqr_mom=0.999, eps=1e-8), lr=config.lr,
                    wd=config.wd, metrics=[ColorPSNR()])
    return tune_for_device(learn, config.data.size, config.machine.precision)


def fit_pretrain(learn: Learner, run_dir, config: PretrainConfig) -> Learner:
    """One-cycle training for `config.data.epochs` into `run_dir`, resuming after its last saved epoch."""
    fit = partial(learn.fit_one_cycle, lr_max=config.lr, wd=config.wd)
    return fit_run(learn, run_dir, config, fit, stage="pretrain", epochs=config.data.epochs)


def pretrain(data, run_dir, config: PretrainConfig, device=None) -> Learner:
    """Stage 1 end to end: build the Learner on the photos under `data` and train (or resume) into `run_dir`."""
    return fit_pretrain(pretrain_learner(data, config, device=device), run_dir, config)

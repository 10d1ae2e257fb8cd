"""Stage 1: the generator trained on L1 alone (L in, ab out) in a fastai Learner, into a run folder (colorize.run)."""

from __future__ import annotations

from fastai.learner import Learner

from .config import PretrainConfig
from .learner import stage_learner
from .models import build_generator
from .run import fit_run


def pretrain_learner(data, config: PretrainConfig, *, device=None) -> Learner:
    """A fastai Learner for L1 pretraining on the photos under `data`: a new DynamicUnet generator (`config.generator`),
    `learner.stage_learner`'s loaders, L1, fused Adam, valid PSNR, device settings, and one-cycle at `config.lr`."""
    return stage_learner(data, config, lambda: build_generator(config.generator.arch, size=config.data.size,
                                                               pretrained=config.generator.pretrained),
                         stage="pretrain", lr=config.lr, wd=config.wd, device=device)


def train_pretrain(data, run_dir, config: PretrainConfig, *, device=None, allow_cpu: bool = True) -> Learner:
    """Stage 1 end to end: the Learner on the photos under `data`, trained (or resumed) into `run_dir`."""
    return fit_run(pretrain_learner(data, config, device=device), run_dir, config, allow_cpu=allow_cpu)

"""Stage 1: the generator trained on L1 alone (L in, ab out) in a fastai Learner, trained into a run folder by `stages.train`."""

from __future__ import annotations

from fastai.learner import Learner

from .config import PretrainConfig
from .learner import stage_learner
from .models import build_generator


def pretrain_learner(data, config: PretrainConfig, *, device=None) -> Learner:
    """A fastai Learner for L1 pretraining on the photos under `data`: a new DynamicUnet generator (`config.generator`),
    `learner.stage_learner`'s loaders, L1, fused Adam, valid PSNR, device settings, and one-cycle at `config.lr`."""
    return stage_learner(data, config, lambda: build_generator(config.generator.arch, size=config.data.size,
                                                               pretrained=config.generator.pretrained),
                         stage="pretrain", lr=config.lr, wd=config.wd, device=device)


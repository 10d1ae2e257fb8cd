"""Stage 1: the generator trained on L1 alone (L in, ab out) in a fastai Learner, trained into a run folder by
`stages.train`: from a new network, or from a trained generator (fine-tuning it on your own photos, the
`finetune` preset)."""

from __future__ import annotations

from fastai.learner import Learner

from .config import PretrainConfig
from .learner import generator_maker, stage_learner


def pretrain_learner(data, config: PretrainConfig, *, generator=None, device=None, resize: bool = False) -> Learner:
    """A fastai Learner for L1 pretraining on the photos under `data`: a new DynamicUnet generator (`config.generator`)
    or the `generator` checkpoint to start from, `learner.stage_learner`'s loaders, L1, fused Adam, valid PSNR,
    device settings, and one-cycle at `config.lr`. A checkpoint of another size than the recipe's stops here,
    before any photo is indexed, unless `resize`."""
    make_model = generator_maker(generator, config, resize=resize)
    return stage_learner(data, config, make_model, stage="pretrain", lr=config.lr, wd=config.wd, device=device)


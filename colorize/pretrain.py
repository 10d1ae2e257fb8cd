"""Stage 1: the generator trained on L1 alone (L in, ab out) in a fastai Learner, into a run folder (colorize.run).
From a new network, or from a trained generator (fine-tuning it on your own photos, the `finetune` preset)."""

from __future__ import annotations

from fastai.learner import Learner

from .config import PretrainConfig
from .learner import at_recipe_size, stage_learner, start_size
from .models import build_generator, checkpoint_identity, load_generator
from .run import fit_run


def pretrain_learner(data, config: PretrainConfig, *, generator=None, device=None, resize: bool = False) -> Learner:
    """A fastai Learner for L1 pretraining on the photos under `data`: a new DynamicUnet generator (`config.generator`)
    or the `generator` checkpoint to start from, `learner.stage_learner`'s loaders, L1, fused Adam, valid PSNR,
    device settings, and one-cycle at `config.lr`. A checkpoint of another size than the recipe's stops here,
    before any photo is indexed, unless `resize`."""
    if generator is not None:
        start_size(generator, config, resize=resize)

    def make_model():
        if generator is None:
            return build_generator(config.generator.arch, size=config.data.size, pretrained=config.generator.pretrained)
        return at_recipe_size(load_generator(generator), config)

    return stage_learner(data, config, make_model, stage="pretrain", lr=config.lr, wd=config.wd, device=device)


def train_pretrain(data, run_dir, config: PretrainConfig, *, generator=None, device=None, allow_cpu: bool = True,
                   resize: bool = False) -> Learner:
    """Stage 1 end to end: the Learner on the photos under `data`, trained (or resumed) into `run_dir`; started from
    `generator` if given, which the run records (a resume from another is refused)."""
    learn = pretrain_learner(data, config, generator=generator, device=device, resize=resize)
    facts = {} if generator is None else {"generator": checkpoint_identity(generator)}
    return fit_run(learn, run_dir, config, allow_cpu=allow_cpu, **facts)

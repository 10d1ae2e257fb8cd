"""Stage 3: colour hints. A trained automatic generator, widened to read a hint map (`models.widen_for_hints`),
fine-tuned on L1 with hints simulated on every batch after Zhang et al. 2017 (`hintmaps.hint_transforms`).

The run folder is `colorize.run`'s; validation batches get the same hints every epoch, so valid_loss
and psnr (both with those hints) compare from epoch to epoch. config.json records the generator the
run started from, and a resume from another is refused.
"""

from __future__ import annotations

from functools import partial

from fastai.learner import Learner
from fastai.torch_core import set_seed

from .config import HintsConfig
from .hintmaps import hint_transforms
from .loaders import make_dataloaders
from .models import checkpoint_identity, load_generator, widen_for_hints
from .run import fit_run, stage_learner


def hints_learner(data, config: HintsConfig, generator, device=None) -> Learner:
    """A fastai Learner for hint training: the `generator` checkpoint (a file or `hf://` path) widened to take
    hints (a hint checkpoint is trained further as it is), batches with simulated hints, `run.stage_learner`'s
    L1, fused Adam and valid PSNR (measured with the fixed validation hints)."""
    set_seed(config.data.seed)
    dls = make_dataloaders(data, config.data, config.machine, device=device)
    dls.add_tfms(hint_transforms(config.data.seed, config.hint_p, (config.hint_min_side, config.hint_max_side)),
                 "after_batch")
    model = load_generator(generator, device=dls.device)
    model = model if model.spec.takes_hints else widen_for_hints(model)
    return stage_learner(dls, model, size=config.data.size, lr=config.lr, wd=config.wd,
                         precision=config.machine.precision)


def fit_hints(learn: Learner, run_dir, config: HintsConfig, generator) -> Learner:
    """One-cycle training for `config.data.epochs` into `run_dir`, resuming after its last saved epoch."""
    fit = partial(learn.fit_one_cycle, lr_max=config.lr, wd=config.wd)
    return fit_run(learn, run_dir, config, fit, stage="hints", epochs=config.data.epochs,
                   generator=checkpoint_identity(generator))


def train_hints(data, run_dir, config: HintsConfig, generator, device=None) -> Learner:
    """Stage 3 end to end: widen `generator` (a .safetensors checkpoint) and train it with hints (or resume) into `run_dir`."""
    return fit_hints(hints_learner(data, config, generator, device=device), run_dir, config, generator)

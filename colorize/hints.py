"""Stage 3: colour hints. A trained automatic generator, widened to read a hint map (`hintmaps.widen_for_hints`),
fine-tuned on L1 with hints simulated on every batch after Zhang et al. 2017 (`hintmaps.hint_transforms`).

The run folder is `colorize.run`'s; validation batches get the same hints every epoch, so valid_loss
and psnr (both with those hints) compare from epoch to epoch. config.json records the generator the
run started from, and a resume from another is refused.
"""

from __future__ import annotations

from fastai.learner import Learner

from .config import HintsConfig
from .hintmaps import hint_transforms, takes_hints, widen_for_hints
from .learner import at_recipe_size, stage_learner, start_size
from .models import checkpoint_identity, load_generator
from .run import fit_run


def hints_learner(data, config: HintsConfig, *, generator, device=None, resize: bool = False) -> Learner:
    """A fastai Learner for hint training: the `generator` checkpoint (a file or `hf://` path) widened to take
    hints (a hint checkpoint is trained further as it is), batches with simulated hints, `learner.stage_learner`'s
    L1, fused Adam and valid PSNR (measured with the fixed validation hints). A checkpoint of another size than
    the recipe's stops here, before any photo is indexed, unless `resize`."""
    start_size(generator, config, resize=resize)

    def make_model():
        model = load_generator(generator)
        return at_recipe_size(model if takes_hints(model) else widen_for_hints(model), config)

    tfms = hint_transforms(config.data.seed, config.hint_p, (config.hint_min_side, config.hint_max_side))
    return stage_learner(data, config, make_model, stage="hints", lr=config.lr, wd=config.wd, device=device,
                         batch_tfms=tfms)


def train_hints(data, run_dir, config: HintsConfig, *, generator, device=None, allow_cpu: bool = True,
                resize: bool = False) -> Learner:
    """Stage 3 end to end: widen `generator` (a .safetensors checkpoint) and train it with hints (or resume) into
    `run_dir`, which records the checkpoint it started from."""
    learn = hints_learner(data, config, generator=generator, device=device, resize=resize)
    return fit_run(learn, run_dir, config, allow_cpu=allow_cpu, generator=checkpoint_identity(generator))

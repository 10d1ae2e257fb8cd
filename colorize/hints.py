"""Stage 3: colour hints. A trained automatic generator, widened to read a hint map (`models.widen_for_hints`),
fine-tuned on L1 with hints simulated on every batch after Zhang et al. 2017 (`hintmaps.hint_transforms`).

The run folder is `colorize.run`'s; validation batches get the same hints every epoch, so valid_loss
and psnr (both with those hints) compare from epoch to epoch. config.json records the generator the
run started from, and a resume from another is refused.
"""

from __future__ import annotations

from fastai.learner import Learner

from .config import HintsConfig
from .hintmaps import hint_transforms
from .learner import at_recipe_size, stage_learner, start_size
from .models import load_generator, widen_for_hints


def hints_learner(data, config: HintsConfig, *, generator, device=None, resize: bool = False) -> Learner:
    """A fastai Learner for hint training: the `generator` checkpoint (a file or `hf://` path) widened to take
    hints (a hint checkpoint is trained further as it is), batches with simulated hints, `learner.stage_learner`'s
    L1, fused Adam and valid PSNR (measured with the fixed validation hints). A checkpoint of another size than
    the recipe's stops here, before any photo is indexed, unless `resize`."""
    start_size(generator, config, resize=resize)

    def make_model():
        model = load_generator(generator)
        return at_recipe_size(model if model.spec.takes_hints else widen_for_hints(model), config)

    tfms = hint_transforms(config.data.seed, config.hint_p, (config.hint_min_side, config.hint_max_side))
    return stage_learner(data, config, make_model, stage="hints", lr=config.lr, wd=config.wd, device=device,
                         batch_tfms=tfms)


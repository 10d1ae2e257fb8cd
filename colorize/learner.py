"""The fastai Learner every training stage trains: seeded, its loaders built, fused Adam, precision, device settings.

A stage module (pretrain, gan, hints) says what differs: the networks, the learning rates, the batch
transforms, and how its Learner fits (a `StagePlan`, `learn.stage`). The run folder around the fit is
`colorize.run`'s; `colorize.stages.train` trains any stage's Learner into one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Protocol

import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import AMPMode
from fastai.callback.fp16 import MixedPrecision as FastaiMixedPrecision
from fastai.learner import Learner
from fastai.optimizer import OptimWrapper
from fastai.torch_core import set_seed
from fastcore.foundation import L
from torch import nn
from torch.amp import GradScaler, autocast

from .device import DTYPES, choose_precision
from .loaders import make_dataloaders
from .metrics import ColorPSNR
from .models import build_generator, load_generator, read_checkpoint_metadata


class MixedPrecision(FastaiMixedPrecision):
    """fastai's MixedPrecision callback on the Learner's own device type.

    fastai 2.8 builds its autocast and GradScaler for 'cuda' whatever the device, which on a CPU
    silently disables both, and it refuses bf16 where `is_bf16_supported()` says no; the precision
    was chosen by `choose_precision` already. Everything else is fastai's.
    """

    def before_fit(self):
        device = self.dls.device.type
        dtype = DTYPES[self.amp_mode.value]
        self.kwargs["enabled"] = dtype == torch.float16  # loss scaling: fp16 only (bf16 has fp32's range)
        self.autocast, self.learn.scaler, self.scales = autocast(device, dtype=dtype), GradScaler(device, **self.kwargs), L()


def adam(mom: float = 0.9, sqr_mom: float = 0.999, eps: float = 1e-8):
    """fastai `opt_func`: fastai's Adam (decoupled weight decay) computed by torch's fused AdamW, for a Learner.

    The same update as `fastai.optimizer.Adam(mom=, sqr_mom=, eps=)`: fastai schedules `mom` and sets
    `wd` through `OptimWrapper`, and torch's AdamW decays weights decoupled as fastai's Adam does. One
    difference: a weight decay above 0 also decays norm and bias parameters (the Learner's
    `wd_bn_bias=False` does not reach a wrapped torch optimiser). Every preset trains with wd 0.
    Fused: a few multi-tensor kernels per step instead of a few ops for each of the generator's 106
    parameter tensors (the README's performance table has the measured difference).
    """
    return partial(OptimWrapper, opt=partial(torch.optim.AdamW, betas=(mom, sqr_mom), eps=eps, weight_decay=0.0,
                                             fused=True))


class CudnnAutotune(Callback):
    """cuDNN tries the convolution algorithms on the first batch of each shape and keeps the fastest, for one fit.

    Every training batch has the same shape (fixed crop size, last partial batch dropped), so the search
    is paid once. The global flag is restored after the fit.
    """

    def before_fit(self):
        self.previous, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, True

    def after_fit(self):
        torch.backends.cudnn.benchmark = self.previous


class TrainingStopped(RuntimeError):
    """A stage's training stopped before its end: a loss went NaN or Inf (it diverged), or the GPU ran out of
    memory. `reason` says what happened and what to change; `run.fit_run` raises it again with the run folder's
    last good checkpoint in the message."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason  # kept apart: fastai prefixes the message of an exception raised in a callback


CPU_CHANNELS_LAST_FROM = 64  # px: on the CPU, NHWC convolutions are faster from 64 px crops, slower at 32


class StateOwner(Protocol):
    """Anything whose state a run keeps: a module or an optimiser."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class StagePlan:
    """How a stage's Learner fits, for `colorize.run.fit_run`: `learn.stage`.

    `fit(epochs, cbs=..., start_epoch=...)` is the stage's fastai fit (e.g. `fit_one_cycle` with its
    learning rate bound); `parts` are the state owners trained beside the model (a critic, its
    optimiser), kept in state.pt with it.
    """

    name: str  # "pretrain", "gan" or "hints": recorded in each checkpoint
    fit: Callable
    parts: dict[str, StateOwner] = field(default_factory=dict)


def stage_learner(data, config, make_model: Callable[[], nn.Module], *, stage: str, lr: float, device=None,
                  mom: float = 0.9, sqr_mom: float = 0.999, wd: float = 0.0, batch_tfms=None) -> Learner:
    """The Learner of a training stage on the photos under `data` (a folder or a `DatasetIndex`).

    Seeds with `config.data.seed`, then builds the generator (`make_model()`) and the DataLoaders
    (`loaders.make_dataloaders`, plus `batch_tfms` after batching); L1 as loss and validation loss, fused
    Adam (`adam`), the validation PSNR; device settings as `tune`. Its plan (`learn.stage`) is fastai's
    one-cycle at `lr` with `wd`; a stage that fits otherwise replaces it.
    """
    set_seed(config.data.seed)
    model = make_model()
    dls = make_dataloaders(data, config.data, config.machine, device=device)
    if batch_tfms is not None:
        dls.add_tfms(batch_tfms, "after_batch")
    learn = Learner(dls, model, loss_func=nn.L1Loss(), opt_func=adam(mom=mom, sqr_mom=sqr_mom, eps=1e-8), lr=lr, wd=wd,
                    metrics=[ColorPSNR()])
    learn.stage = StagePlan(stage, partial(learn.fit_one_cycle, lr_max=lr, wd=wd))
    return tune(learn, config)


def tune(learn: Learner, config) -> Learner:
    """Device settings for `learn`: mixed precision as `choose_precision` decides (recorded as `learn.precision`),
    cuDNN autotuning on CUDA, and the model in `on_device`'s layout. Returns `learn`."""
    device = learn.dls.device
    on_device(learn, learn.model, config)
    learn.precision = choose_precision(device, config.machine.precision)
    if learn.precision != "fp32":
        learn.add_cb(MixedPrecision(amp_mode=AMPMode(learn.precision)))
    if device.type == "cuda":
        learn.add_cb(CudnnAutotune())
    return learn


def on_device(learn: Learner, net: nn.Module, config) -> nn.Module:
    """`net` (the model, or one trained beside it: a critic) moved to the Learner's device, in place, as NHWC
    (channels_last) on CUDA and on the CPU from `CPU_CHANNELS_LAST_FROM` px crops. In place: optimisers holding
    its parameters stay valid."""
    device = learn.dls.device
    nhwc = device.type == "cuda" or config.data.size >= CPU_CHANNELS_LAST_FROM
    return net.to(device, memory_format=torch.channels_last if nhwc else torch.contiguous_format)


def start_size(generator, config, *, resize: bool = False) -> int:
    """The size the checkpoint `generator` was trained at, read from its header before anything is indexed; a
    ValueError when it differs from the recipe's crop size, unless `resize` (the run then records the recipe's)."""
    size = read_checkpoint_metadata(generator)["size"]
    if size != config.data.size and not resize:
        raise ValueError(
            f"{generator} was trained at {size} px but this recipe trains at {config.data.size} px (a smoke "
            f"checkpoint for a real run?): start from a {config.data.size} px checkpoint, set size={size} in the "
            "recipe, or pass resize=True (--resize) to go on at the recipe's size")
    return size


def generator_maker(generator, config, *, resize: bool = False) -> Callable[[], nn.Module]:
    """What builds a stage's generator: a new one (`config.generator`), or the checkpoint `generator` at the recipe's
    size (one of another size stops here, before any photo is indexed, unless `resize`: see `start_size`)."""
    if generator is None:
        return lambda: build_generator(config.generator.arch, size=config.data.size,
                                       pretrained=config.generator.pretrained)
    start_size(generator, config, resize=resize)
    return lambda: at_recipe_size(load_generator(generator), config)


def at_recipe_size(model: nn.Module, config) -> nn.Module:
    """`model` whose spec says the recipe's crop size: what its run's checkpoints record as the size trained at."""
    model.spec = dataclasses.replace(model.spec, size=config.data.size)
    return model

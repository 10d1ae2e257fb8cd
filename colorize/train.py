"""Stage 1: the generator trained on L1 with a fastai Learner; checkpoints every epoch and resume after a kill.

A run folder holds everything a run needs to continue or be used:
    state.pt            model + optimiser + epoch, rewritten atomically after every epoch (weights only, no code)
    last.safetensors    the generator after the last completed epoch (self-describing, see models.py)
    best.safetensors    the generator with the lowest validation loss so far
    history.csv         one row per epoch: train/valid L1 and valid PSNR
    config.json         the recipe the run was started with
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import AMPMode, MixedPrecision
from fastai.callback.progress import CSVLogger
from fastai.learner import Learner, Metric
from fastai.optimizer import OptimWrapper
from fastai.torch_core import set_seed
from fastcore.foundation import L
from torch import nn
from torchmetrics.functional.image import peak_signal_noise_ratio

from .config import PretrainConfig
from .files import atomic_path, atomic_write_text, bars_can_draw
from .loaders import make_dataloaders
from .lab import lab_net_to_rgb
from .models import build_generator, read_checkpoint_metadata, save_generator

log = logging.getLogger(__name__)

STATE_NAME, LAST_NAME, BEST_NAME = "state.pt", "last.safetensors", "best.safetensors"
HISTORY_NAME, CONFIG_NAME = "history.csv", "config.json"


def mixed_precision(device) -> MixedPrecision | None:
    """bf16 autocast on GPUs that support it, else fp16 with loss scaling; None (fp32) on the CPU."""
    if torch.device(device).type != "cuda":
        return None
    return MixedPrecision(amp_mode=AMPMode.BF16 if torch.cuda.is_bf16_supported() else AMPMode.FP16)


def adam(mom: float = 0.9, sqr_mom: float = 0.999, eps: float = 1e-8):
    """fastai `opt_func`: fastai's Adam (decoupled weight decay) computed by torch's fused AdamW, for a Learner.

    The same update as `fastai.optimizer.Adam(mom=, sqr_mom=, eps=)`: fastai schedules `mom` and sets
    `wd` through `OptimWrapper`, and torch's AdamW decays weights decoupled as fastai's Adam does. One
    difference: a weight decay above 0 also decays norm and bias parameters (the Learner's
    `wd_bn_bias=False` does not reach a wrapped torch optimiser). Every preset trains with wd 0.
    Fused: a few multi-tensor kernels per step instead of a few ops for each of the generator's 106
    parameter tensors. Measured on the 2-core CPU at 64 px, batch 8 (issue 5): the step inside the
    Learner took 41 ms instead of 70, +2-3% images/s in benchmarks/train_throughput.py; not measured
    on a GPU, where per-op launch overhead weighs more.
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


CPU_CHANNELS_LAST_FROM = 64  # px: on the CPU, NHWC convolutions were faster from 64 px crops, slower at 32 (below)


def tune_for_device(learn: Learner, size: int, *more: nn.Module) -> Learner:
    """Speed settings for the device of `learn.dls` and crops of `size` px, for the generator and `more` (the critic).

    channels_last (NHWC) weights on CUDA, and on the CPU from `CPU_CHANNELS_LAST_FROM` px. Measured on
    the 2-core CPU, fp32, 1 thread, batch 8 (issue 5): benchmarks/train_throughput.py gave +12% images/s
    model-only, +11% full pipeline and +11% GAN at 64 px, +15%, +13% and +13% at 128 px; single
    generator steps were 14% faster at 256 px, but 2-15% slower at 32 px. On CUDA also mixed precision
    (bf16, else fp16) and cuDNN autotuning: the standard settings of a fixed-shape convnet on tensor
    cores, like channels_last there not measured (no GPU in that session). Returns `learn`.
    """
    cuda = torch.device(learn.dls.device).type == "cuda"
    if cuda or size >= CPU_CHANNELS_LAST_FROM:
        for net in (learn.model, *more):
            net.to(memory_format=torch.channels_last)  # in place: optimisers holding the parameters stay valid
    if (mp := mixed_precision(learn.dls.device)) is not None:
        learn.add_cb(mp)
    if cuda:
        learn.add_cb(CudnnAutotune())
    return learn


class ColorPSNR(Metric):
    """Mean per-image PSNR (dB) of the RGB photo rebuilt from (L, predicted ab) against (L, true ab)."""

    def reset(self):
        self.total, self.count = 0.0, 0

    def accumulate(self, learn):
        L, pred, targ = learn.xb[0], learn.pred, learn.yb[0]  # (B,1,H,W), (B,2,H,W), (B,2,H,W)
        psnr = peak_signal_noise_ratio(lab_net_to_rgb(L, pred), lab_net_to_rgb(L, targ), data_range=1.0,
                                       reduction="none", dim=(1, 2, 3))  # (B,)
        self.total += psnr.sum().item()
        self.count += psnr.numel()

    @property
    def value(self):
        return self.total / self.count if self.count else None

    @property
    def name(self):
        return "psnr"


class ResumableCSVLogger(CSVLogger):
    """fastai's CSVLogger, appending across resumed runs: one header, one row per saved epoch.

    Rows of epochs at or after `start_epoch` are dropped when the fit starts: they were logged but
    their checkpoint was never saved (a kill in between), so those epochs run, and log, again.
    """

    def __init__(self, fname=HISTORY_NAME, start_epoch: int = 0):
        super().__init__(fname, append=True)
        self.start_epoch = start_epoch

    def before_fit(self):
        path = self.path / self.fname
        rows = path.read_text().splitlines() if path.exists() else []
        kept = [r for r in rows[1:] if int(r.split(",", 1)[0]) < self.start_epoch]
        if len(kept) < len(rows) - 1:
            atomic_write_text(path, "\n".join(rows[:1] + kept) + "\n")
        self.file = path.open("a")
        if not rows:
            self.file.write(",".join(self.recorder.metric_names) + "\n")
        self.old_logger, self.learn.logger = self.logger, self._write_line

    def _write_line(self, log):
        if self.epoch >= self.start_epoch:  # the empty rows of skipped epochs are neither written nor shown
            super()._write_line(log)  # flushed and fsynced


class EpochLog(Callback):
    """One log line per epoch, for output that no progress bar can draw on (a file, a pipe, a CI log).

    fastai's bars redraw with carriage returns: in a log file they become one endless line. `fit_with_progress`
    uses this instead of the bar there; a terminal or a notebook keeps the bar and its table.
    """

    order = CSVLogger.order - 1  # the CSV logger wraps this one and writes its row first

    def before_fit(self):
        self.learn.logger = self._log

    def _log(self, row):
        names = self.recorder.metric_names
        stats = "  ".join(f"{n} {v:.4f}" if isinstance(v, float) else f"{n} {v}" for n, v in zip(names[1:], row[1:]))
        log.info("epoch %d/%d  %s", row[0] + 1, self.n_epoch, stats)


def fit_with_progress(learn: Learner, fit, *args, **kwargs):
    """`fit(*args, **kwargs)` (a Learner fit method) with fastai's progress bar where it can draw, else `EpochLog`."""
    if bars_can_draw():
        return fit(*args, **kwargs)
    with learn.no_bar():
        return fit(*args, **{**kwargs, "cbs": [*kwargs.get("cbs", []), EpochLog()]})


def plain(obj):
    """fastcore `L`s and numpy scalars -> lists and Python numbers, so `torch.load(weights_only=True)` reads them."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, L)):
        return [plain(v) for v in obj]
    return obj.item() if isinstance(obj, np.generic) else obj


def _atomic_torch_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


class RunCheckpoint(Callback):
    """After every completed epoch: save the resumable state, the last generator and the best one.

    Runs after the Recorder has logged the epoch (order 50) and writes state.pt last: state.pt is the
    commit point. A kill before it leaves the previous state, and the rerun trains the epoch again
    (`ResumableCSVLogger` drops its logged row). Subclasses add their own tensors (a critic, its
    optimiser) through `extra_state`.
    """

    order = 55

    def __init__(self, run_dir, arch: str, size: int, stage: str, start_epoch: int = 0):
        self.run_dir, self.arch, self.size, self.stage = Path(run_dir), arch, size, stage
        self.start_epoch = start_epoch

    def before_fit(self):
        """The loss to beat: best.safetensors' own (it may come from an epoch killed before its state.pt)."""
        best = self.run_dir / BEST_NAME
        self.best = float(read_checkpoint_metadata(best)["extra"]["valid_loss"]) if best.exists() else None

    def after_epoch(self):
        if self.epoch < self.start_epoch:  # an epoch skipped while resuming
            return
        values = dict(zip(self.recorder.metric_names[1:], self.recorder.log[1:]))
        valid_loss = float(values["valid_loss"])
        if not torch.isfinite(torch.tensor(valid_loss)):
            raise RuntimeError(f"validation loss is {valid_loss} at epoch {self.epoch + 1}; the last good "
                               f"checkpoint is {self.run_dir / LAST_NAME}")
        improved = self.best is None or valid_loss < self.best
        self.best = valid_loss if improved else self.best
        meta = dict(stage=self.stage, epoch=self.epoch + 1, valid_loss=valid_loss)
        last = save_generator(self.model, self.run_dir / LAST_NAME, **meta)
        if improved:  # the same bytes: copy rather than serialise the weights again
            with atomic_path(self.run_dir / BEST_NAME) as tmp:
                shutil.copyfile(last, tmp)
        _atomic_torch_save({"epoch": self.epoch + 1, "model": self.model.state_dict(),
                            "opt": plain(self.opt.state_dict()), **self.extra_state()}, self.run_dir / STATE_NAME)

    def extra_state(self) -> dict:
        """More tensors to keep in the resumable state (none for L1 pretraining)."""
        return {}


def load_state(run_dir) -> dict | None:
    """The resumable state of a run folder, loaded without unpickling code; None for a new run."""
    path = Path(run_dir) / STATE_NAME
    return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None


def check_config(run_dir, config, **more) -> None:
    """Write the run's config (and `more` facts, e.g. its starting generator) on its first start; refuse to
    resume a run with a different recipe or different facts."""
    path = Path(run_dir) / CONFIG_NAME
    now = {**dataclasses.asdict(config), **more}
    if path.exists():
        saved = json.loads(path.read_text())
        changed = {k: (saved.get(k), v) for k, v in now.items()
                   if k not in ("workers", "cache") and saved.get(k) != v}  # how photos load is not the recipe
        if changed:
            raise ValueError(f"{run_dir} was started with a different recipe {changed} (saved, now); "
                             "use a new --out folder, or the same settings to resume")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(now, indent=1))


def pretrain_learner(data, config: PretrainConfig, run_dir=None, device=None) -> Learner:
    """A fastai Learner for L1 pretraining: DynamicUnet generator, Adam, valid PSNR, `tune_for_device` settings."""
    set_seed(config.seed)
    dls = make_dataloaders(data, size=config.size, bs=config.bs, repeats=config.repeats,
                           workers=config.workers, seed=config.seed, device=device, cache=config.cache)
    model = build_generator(config.arch, size=config.size, pretrained=config.pretrained)
    learn = Learner(dls, model, loss_func=nn.L1Loss(), opt_func=adam(sqr_mom=0.999, eps=1e-8),
                    lr=config.lr, wd=config.wd, metrics=[ColorPSNR()], path=run_dir or ".", model_dir=".")
    return tune_for_device(learn, config.size)


def resume_state(learn: Learner, run_dir, config, **more) -> tuple[dict | None, int]:
    """Check the recipe (and `more`, see `check_config`), restore the model and optimiser saved in `run_dir`;
    (the state or None, epochs done)."""
    run_dir = Path(run_dir)
    check_config(run_dir, config, **more)
    state = load_state(run_dir)
    if state is None:
        return None, 0
    if "hypers" in state["opt"]:
        raise ValueError(f"{run_dir / STATE_NAME} holds fastai's own Adam state, from a colorize before the fused "
                         "optimiser: finish that run with the colorize that started it, or start a new --out folder")
    learn.model.to(learn.dls.device)  # before the optimiser state, which lands on its parameters' device
    learn.model.load_state_dict(state["model"])
    learn.create_opt()
    learn.opt.load_state_dict(state["opt"])
    if state["epoch"] >= config.epochs:
        log.info("%s has finished its %d epochs: nothing to train (a new --out folder starts a new run)", run_dir,
                 config.epochs)
    else:
        log.info("resuming %s after epoch %d of %d", run_dir, state["epoch"], config.epochs)
    return state, state["epoch"]


def fit_resumable(learn: Learner, run_dir, config: PretrainConfig, stage: str = "pretrain") -> Learner:
    """`fit_one_cycle` for `config.epochs`, continuing from the last completed epoch saved in `run_dir`."""
    run_dir = Path(run_dir)
    _, start = resume_state(learn, run_dir, config)
    if start >= config.epochs:
        return learn
    learn.path = run_dir
    cbs = [RunCheckpoint(run_dir, config.arch, config.size, stage, start),
           ResumableCSVLogger(HISTORY_NAME, start)]
    fit_with_progress(learn, learn.fit_one_cycle, config.epochs, config.lr, wd=config.wd, cbs=cbs, start_epoch=start)
    return learn


def pretrain(data, run_dir, config: PretrainConfig, device=None) -> Learner:
    """Stage 1 end to end: build the Learner on the photos under `data` and train (or resume) into `run_dir`."""
    learn = pretrain_learner(data, config, run_dir, device=device)
    return fit_resumable(learn, run_dir, config)

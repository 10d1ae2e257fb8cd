"""A run folder for any training stage: recipe check, one writer, resume, checkpoints, logs, galleries, precision.

A stage builds a fastai Learner whose model is the generator and calls `fit_run` once. The run folder:
    config.json              the recipe, the machine settings and precision used, and facts such as the
                             checkpoint the run started from; a resume with another recipe is refused
    state.pt                 model + optimiser + every other state owner (`parts`, e.g. a critic and its
                             optimiser) + epoch, rewritten atomically after every epoch (weights only, no code)
    last.safetensors         the generator after the last completed epoch (self-describing, see models.py)
    best.safetensors         the generator with the lowest validation loss so far
    history.csv              one row per epoch: the Recorder's losses and metrics
    gallery_epoch{N:03d}.png grayscale | generated | original on a fixed validation batch after N epochs
    .lock, .lock.owner       held while a process trains the run; a second one stops at once

Kill it at any point (even kill -9) and call `fit_run` again: it resumes after the last epoch whose
state.pt was written (state.pt is the commit point).

Started in several processes (`torchrun --nproc_per_node N -m colorize ...`, `accelerate launch`, or
`launch` from a notebook), a run trains data-parallel through fastai's DistributedTrainer (accelerate
underneath): every process resumes from the same state.pt, trains on its share of every epoch (`bs`
photos a step each) and keeps the same weights; rank 0 alone holds the lock and writes the folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
from functools import partial
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import AMPMode
from fastai.callback.fp16 import MixedPrecision as FastaiMixedPrecision
from fastai.callback.progress import CSVLogger
from fastai.distributed import DistributedDL as FastaiDistributedDL
from fastai.learner import Learner
from fastai.optimizer import OptimWrapper
from fastai.torch_core import distrib_barrier, num_distrib, rank_distrib
from fastcore.foundation import L
from filelock import FileLock, Timeout
from torch import nn
from torch.amp import GradScaler, autocast

from .config import recipe_dict
from .device import DTYPES, choose_precision
from .files import atomic_path, atomic_write_text, bars_can_draw
from .metrics import ColorPSNR
from .models import read_checkpoint_metadata, save_generator
from .parallel import agreed_start, compare_weights, distributed, unwrap
from .plots import batch_gallery, save_figure

log = logging.getLogger(__name__)

STATE_NAME, LAST_NAME, BEST_NAME = "state.pt", "last.safetensors", "best.safetensors"
GENERATOR_NAMES = (BEST_NAME, LAST_NAME)  # the generator checkpoints a run writes
HISTORY_NAME, CONFIG_NAME, LOCK_NAME = "history.csv", "config.json", ".lock"
GALLERY_NAME = "gallery_epoch{:03d}.png"  # N = epochs completed

# ------------------------------------------------------------------------------------- device settings


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


CPU_CHANNELS_LAST_FROM = 64  # px: on the CPU, NHWC convolutions are faster from 64 px crops, slower at 32


def tune_for_device(learn: Learner, size: int, precision: str = "auto", *more: nn.Module) -> Learner:
    """Device settings for `learn` (crops of `size` px) and the networks in `more` (a critic). Returns `learn`.

    channels_last (NHWC) weights on CUDA, and on the CPU from `CPU_CHANNELS_LAST_FROM` px; mixed
    precision as `choose_precision` decides (recorded as `learn.precision`); cuDNN autotuning on CUDA.
    """
    device = learn.dls.device
    if device.type == "cuda" or size >= CPU_CHANNELS_LAST_FROM:
        for net in (learn.model, *more):
            net.to(memory_format=torch.channels_last)  # in place: optimisers holding the parameters stay valid
    learn.precision = choose_precision(device, precision)
    if learn.precision != "fp32":
        learn.add_cb(MixedPrecision(amp_mode=AMPMode(learn.precision)))
    if device.type == "cuda":
        learn.add_cb(CudnnAutotune())
    return learn


def stage_learner(dls, model: nn.Module, *, size: int, lr: float, precision: str = "auto", mom: float = 0.9,
                  sqr_mom: float = 0.999, wd: float = 0.0, metrics=(), cbs=(), more: tuple[nn.Module, ...] = ()) -> Learner:
    """The Learner of a training stage: the generator `model` with L1 as its loss and validation loss, fused Adam,
    the validation PSNR and the stage's `metrics` and `cbs`; device settings for it and the networks in `more`."""
    learn = Learner(dls, model, loss_func=nn.L1Loss(), opt_func=adam(mom=mom, sqr_mom=sqr_mom, eps=1e-8), lr=lr, wd=wd,
                    metrics=[ColorPSNR(), *metrics], cbs=list(cbs))
    return tune_for_device(learn, size, precision, *more)


# ------------------------------------------------------------------------------------ run callbacks


class RunCallback(Callback):
    """A callback of a run folder. `after_new_epoch` runs after each epoch this run trained: not after the
    epochs skipped while resuming, and only in the process that writes (rank 0 of a distributed run)."""

    def __init__(self, run_dir, start_epoch: int = 0):
        self.run_dir, self.start_epoch = Path(run_dir), start_epoch

    @property
    def new_epoch(self) -> bool:
        """This epoch was trained now (not skipped while resuming)."""
        return self.epoch >= self.start_epoch

    def after_epoch(self):
        if self.new_epoch and rank_distrib() == 0:
            self.after_new_epoch()

    def after_new_epoch(self):
        pass


class ResumableCSVLogger(RunCallback, CSVLogger):
    """fastai's CSVLogger, appending across resumed runs: one header, one row per saved epoch.

    Rows of epochs at or after `start_epoch` are dropped when the fit starts: they were logged but
    their checkpoint was never saved (a kill in between), so those epochs run, and log, again.
    """

    def __init__(self, run_dir, start_epoch: int = 0):
        RunCallback.__init__(self, run_dir, start_epoch)
        CSVLogger.__init__(self, HISTORY_NAME, append=True)

    def before_fit(self):
        if rank_distrib() != 0:
            return
        path = self.run_dir / HISTORY_NAME
        rows = path.read_text().splitlines() if path.exists() else []
        kept = [r for r in rows[1:] if int(r.split(",", 1)[0]) < self.start_epoch]
        if len(kept) < len(rows) - 1:
            atomic_write_text(path, "\n".join(rows[:1] + kept) + "\n")
        self.file = path.open("a")
        if not rows:
            self.file.write(",".join(self.recorder.metric_names) + "\n")
        self.old_logger, self.learn.logger = self.logger, self._write_line

    def _write_line(self, log):
        if self.new_epoch:  # the empty rows of skipped epochs are neither written nor shown
            super()._write_line(log)  # flushed and fsynced

    def after_epoch(self):
        pass  # the Recorder writes through `_write_line`

    def after_fit(self):
        if rank_distrib() == 0:
            super().after_fit()


class EpochLog(Callback):
    """One log line per epoch, for output that no progress bar can draw on (a file, a pipe, a CI log).

    fastai's bars redraw with carriage returns: in a log file they become one endless line. `fit_run`
    uses this instead of the bar there; a terminal or a notebook keeps the bar and its table.
    """

    order = CSVLogger.order - 1  # the CSV logger wraps this one and writes its row first

    def before_fit(self):
        if rank_distrib() == 0:  # the other processes of a distributed fit log nothing (fastai's DistributedTrainer)
            self.learn.logger = self._log

    def _log(self, row):
        names = self.recorder.metric_names
        stats = "  ".join(f"{n} {v:.4f}" if isinstance(v, float) else f"{n} {v}" for n, v in zip(names[1:], row[1:]))
        log.info("epoch %d/%d  %s", row[0] + 1, self.n_epoch, stats)


class StateOwner(Protocol):
    """Anything whose state a run keeps: a module or an optimiser."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def plain(obj):
    """fastcore `L`s and numpy scalars -> lists and Python numbers, so `torch.load(weights_only=True)` reads them."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(plain(v) for v in obj)
    if isinstance(obj, (list, L)):
        return [plain(v) for v in obj]
    return obj.item() if isinstance(obj, np.generic) else obj


class RunCheckpoint(RunCallback):
    """After every completed epoch: the last generator, the best one, then the resumable state (the commit point).

    Runs after the Recorder has logged the epoch (order 50). A kill before state.pt is written leaves
    the previous state, and the rerun trains the epoch again (`ResumableCSVLogger` drops its row).
    `parts` are the other state owners (a critic, its optimiser), saved and restored with the model.
    """

    order = 55

    def __init__(self, run_dir, start_epoch: int, stage: str, parts: dict[str, StateOwner]):
        super().__init__(run_dir, start_epoch)
        self.stage, self.parts = stage, parts

    @property
    def last(self) -> Path:
        """The generator of the last completed epoch."""
        return self.run_dir / LAST_NAME

    def before_fit(self):
        """The loss to beat: best.safetensors' own (it may come from an epoch killed before its state.pt)."""
        best = self.run_dir / BEST_NAME
        self.best = float(read_checkpoint_metadata(best)["extra"]["valid_loss"]) if best.exists() else None

    def after_new_epoch(self):
        values = dict(zip(self.recorder.metric_names[1:], self.recorder.log[1:]))
        valid_loss = float(values["valid_loss"])
        if not np.isfinite(valid_loss):
            raise RuntimeError(f"validation loss is {valid_loss} at epoch {self.epoch + 1}; the last good "
                               f"checkpoint is {self.last}")
        improved = self.best is None or valid_loss < self.best
        self.best = valid_loss if improved else self.best
        model = unwrap(self.model)
        last = save_generator(model, self.last, stage=self.stage, epoch=self.epoch + 1, valid_loss=valid_loss)
        if improved:  # the same bytes: copy rather than serialise the weights again
            with atomic_path(self.run_dir / BEST_NAME) as tmp:
                shutil.copyfile(last, tmp)
        state = {"epoch": self.epoch + 1, "model": model.state_dict(), "opt": plain(self.opt.state_dict()),
                 "parts": {name: plain(part.state_dict()) for name, part in self.parts.items()}}
        with atomic_path(self.run_dir / STATE_NAME) as tmp:
            torch.save(state, tmp)


class EpochGallery(RunCallback):
    """After every epoch: the generator on one fixed validation batch, saved as gallery_epochNNN.png."""

    order = RunCheckpoint.order + 1  # after the checkpoint

    def __init__(self, run_dir, start_epoch: int = 0, max_rows: int = 8):
        super().__init__(run_dir, start_epoch)
        self.max_rows = max_rows

    def before_fit(self):
        if rank_distrib() != 0:
            return
        valid = self.dls.valid
        if isinstance(valid, FastaiDistributedDL):  # the whole loader's first batch, no collective on rank 0 alone
            valid = valid.dl
        batch = valid.one_batch()  # fixed: the valid loader is not shuffled and centre-crops
        n_inp = self.dls.n_inp
        self.xb = tuple(x[: self.max_rows].as_subclass(torch.Tensor) for x in batch[:n_inp])
        self.ab = batch[n_inp][: self.max_rows].as_subclass(torch.Tensor)  # (k,2,H,W)

    def after_new_epoch(self):
        model = unwrap(self.model).eval()  # rank 0 alone: the network itself, not its DistributedDataParallel
        with torch.no_grad():
            pred = model(*self.xb).float()  # (k,2,H,W)
        L = self.xb[0][:, :1]  # (k,1,H,W): the lightness channel of the input
        fig = batch_gallery(L.cpu(), {"generated": pred.cpu()}, self.ab.cpu(), max_rows=self.max_rows,
                            title=f"after epoch {self.epoch + 1}")
        save_figure(fig, self.run_dir / GALLERY_NAME.format(self.epoch + 1))  # and closes it


# ------------------------------------------------------------------------------------------ the run


class RunInUseError(RuntimeError):
    """Another process is training into the same run folder."""


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Hold the run folder for this process; stop at once if another process holds it.

    An OS file lock (released by the OS when its process dies, so kill -9 never leaves a lock that
    blocks). The owner's process id is written beside it, for the message.
    """
    if rank_distrib() != 0:  # rank 0 holds it for the whole distributed job
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    lock, owner = FileLock(run_dir / LOCK_NAME), run_dir / (LOCK_NAME + ".owner")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        pid = owner.read_text().strip() if owner.exists() else "unknown"
        raise RunInUseError(f"{run_dir} is being trained by process {pid}; wait for it or choose another --out") from None
    try:
        owner.write_text(str(os.getpid()))
        yield
    finally:
        lock.release()


def check_config(run_dir: Path, config, **facts) -> None:
    """Write the run's config on its first start; refuse to resume with another recipe or other `facts`.

    The recipe is every field of `config` not marked NOT_RECIPE (how this machine loads photos and
    its precision may change on resume); `facts` are further things the run must keep, such as the
    checkpoint it started from. config.json also records the machine settings of the latest start.
    """
    path = run_dir / CONFIG_NAME
    now = {"recipe": recipe_dict(config), **facts}
    if path.exists():
        saved = json.loads(path.read_text())
        changed = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
        if changed:
            raise ValueError(f"{run_dir} was started with a different recipe {changed} (saved, now); "
                             "use a new --out folder, or the same settings to resume")


def write_config(run_dir: Path, config, machine: dict, **facts) -> None:
    """config.json: the recipe and `facts` (checked on resume) and this start's machine settings."""
    atomic_write_text(run_dir / CONFIG_NAME, json.dumps({"recipe": recipe_dict(config), **facts, "machine": machine},
                                                        indent=1))


def load_state(run_dir) -> dict | None:
    """The resumable state of a run folder, loaded without unpickling code; None for a new run."""
    path = Path(run_dir) / STATE_NAME
    return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None


def restore(learn: Learner, run_dir: Path, parts: dict[str, StateOwner]) -> int:
    """Restore the model, its optimiser and `parts` saved in `run_dir`; the number of epochs done (0 if new)."""
    state = load_state(run_dir)
    if state is None:
        return 0
    learn.model.to(learn.dls.device)  # before the optimiser state, which lands on its parameters' device
    learn.model.load_state_dict(state["model"])
    learn.create_opt()
    learn.opt.load_state_dict(state["opt"])
    for name, part in parts.items():
        part.load_state_dict(state["parts"][name])
    return state["epoch"]


def fit_run(learn: Learner, run_dir, config, fit: Callable, *, stage: str, epochs: int,
            parts: dict[str, StateOwner] | None = None, cbs: list[Callback] | None = None, **facts) -> Learner:
    """Train `learn` into the run folder `run_dir`, resuming after its last saved epoch.

    `fit(epochs, cbs=..., start_epoch=...)` is the stage's fastai fit (e.g. `fit_one_cycle` with its
    learning rate bound); `cbs` are the stage's own callbacks; `parts` more state owners to keep
    (e.g. {"critic": critic, "critic_opt": critic_opt}); `facts` are checked on resume like the recipe.
    Adds the checkpoint, CSV history, epoch gallery, and a bar where it can draw (else a log line
    per epoch). One process at a time per run folder, or one distributed job (see the module's
    docstring; a network trained beside the model, such as a critic, goes through `DistributedTrainer.wrap`). A CUDA
    out-of-memory error stops with a message that names the batch and crop size; the last completed
    epoch's checkpoint is kept.
    """
    run_dir, parts = Path(run_dir), parts or {}
    with run_lock(run_dir), distributed(learn):
        if rank_distrib() == 0:
            check_config(run_dir, config, **facts)
        distrib_barrier()  # other processes read the run folder once rank 0 holds it and has checked the recipe
        start = agreed_start(restore(learn, run_dir, parts), run_dir)  # before DistributedTrainer wraps the model
        machine = {**dataclasses.asdict(config.machine), "precision_used": getattr(learn, "precision", "fp32"),
                   "device": str(learn.dls.device), "world_size": max(1, num_distrib())}
        if rank_distrib() == 0:
            write_config(run_dir, config, machine, **facts)
        if start >= epochs:
            log.info("%s has finished its %d epochs: nothing to train (a new --out folder starts a new run)", run_dir,
                     epochs)
            return learn
        log.info("%s %s (%d epochs, %s on %s)", f"resuming after epoch {start}:" if start else "training", run_dir,
                 epochs, machine["precision_used"], machine["device"])
        learn.path = run_dir
        cbs = [*(cbs or []), RunCheckpoint(run_dir, start, stage, parts), ResumableCSVLogger(run_dir, start),
               EpochGallery(run_dir, start)]
        try:
            if bars_can_draw():
                fit(epochs, cbs=cbs, start_epoch=start)
            else:
                with learn.no_bar():
                    fit(epochs, cbs=[*cbs, EpochLog()], start_epoch=start)
            compare_weights({"model": learn.model, **{k: v for k, v in parts.items() if isinstance(v, nn.Module)}})
        except torch.OutOfMemoryError:
            bs, size = config.data.bs, config.data.size
            raise RuntimeError(
                f"out of GPU memory training {run_dir} at batch size {bs} and {size} px crops; the last completed "
                f"epoch's checkpoint is kept in {run_dir}. Rerun with a smaller --bs (e.g. --bs {max(1, bs // 2)}) "
                "into a new --out folder, or a smaller --size") from None
    return learn

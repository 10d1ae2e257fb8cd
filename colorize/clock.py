"""The training clock and the notebook display: a run's start line, its projection from its first batches and its
total; the CPU guard that stops a long job on a CPU; one figure shown in place in a notebook cell."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import torch
from fastai.callback.core import Callback
from fastai.torch_core import num_distrib, rank_distrib

from .files import in_notebook

log = logging.getLogger(__name__)

MEASURED_BATCHES = 3  # training batches timed for the projection, after one warm-up batch (cuDNN autotuning, caches)
VALID_BATCH_COST = 1 / 3  # a validation batch (forward only) against a training one (forward and backward)


def duration(seconds: float) -> str:
    """'1 h 40 min', '12 min', '40 s': a time as a person reads it."""
    minutes = round(seconds / 60)
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def device_name(device: torch.device) -> str:
    """The device by name: "Tesla T4", "NVIDIA H100 80GB HBM3", "cpu"."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type



class InlineFigure:
    """One figure in a notebook cell's output, replaced in place by the next one (IPython's display handle)."""

    def __init__(self, display: Callable):
        self.display, self.handle = display, None  # display: IPython.display.display

    def show(self, fig) -> None:
        if self.handle is None:
            self.handle = self.display(fig, display_id=True)
        else:
            self.handle.update(fig)


def inline_figure() -> InlineFigure | None:
    """An `InlineFigure` in IPython (a notebook); None elsewhere: a terminal, a script, a process of a distributed
    launch (a fork shows none of its displays)."""
    if not in_notebook() or num_distrib() > 1:
        return None
    from IPython.display import display

    return InlineFigure(display)


class CpuGuardStop(RuntimeError):
    """A run that is not smoke was about to train on a CPU without being allowed to (`allow_cpu=False`)."""


class RunClock(Callback):
    """The run's voice: a start line (where, how, how much), a projection after the first few training batches,
    the total time at the end; with `guard`, a CpuGuardStop right after the projection (before the first epoch
    ends, so nothing is saved)."""

    order = -10  # times the batch from before every other callback's work

    def __init__(self, run_dir, start_epoch: int, *, precision: str, guard: bool = False):
        self.run_dir, self.start_epoch = Path(run_dir), start_epoch
        self.precision, self.guard = precision, guard

    def before_fit(self):
        self.started, self.device = time.perf_counter(), self.dls.device
        self.speaks = rank_distrib() == 0  # the only process, or rank 0 of a distributed fit (the run's writer)
        self.to_run = self.n_epoch - self.start_epoch
        train = self.dls.train
        if self.speaks:
            log.info("%s %s on %s (%s): %d photos per epoch, %d epochs", f"resuming after epoch {self.start_epoch}:"
                     if self.start_epoch else "training", self.run_dir, device_name(self.device), self.precision,
                     train.n * max(1, num_distrib()), self.n_epoch)
        n_iter = len(train)
        self.first = 1 if n_iter > 2 else 0  # the first batch warms up (autotuning, caches): not timed
        self.last = min(self.first + MEASURED_BATCHES, n_iter) - 1

    def before_batch(self):
        if self.training and self.epoch == self.start_epoch and self.iter == self.first:
            self.t0 = self._now()

    def after_batch(self):
        if not (self.training and self.epoch == self.start_epoch and self.iter == self.last):
            return
        per_batch = (self._now() - self.t0) / (self.last - self.first + 1)
        per_epoch = per_batch * (len(self.dls.train) + VALID_BATCH_COST * len(self.dls.valid))
        projection = (f"about {duration(per_epoch * self.to_run)} for {self.to_run} epochs on this "
                      f"{device_name(self.device)} (projected from {self.last - self.first + 1} batches)")
        if self.speaks:
            log.info("%s: %s", self.run_dir, projection)
        if self.guard:
            raise CpuGuardStop(
                f"{self.run_dir}: training this recipe on the CPU would take {projection}. Stopped before the first "
                "epoch ended (nothing saved): use a GPU (in Colab: Runtime > Change runtime type > T4 GPU), a smoke "
                "recipe, or set ALLOW_CPU = True to train on the CPU anyway")

    def after_fit(self):
        if self.speaks:
            log.info("%s: %d epochs trained in %s (%d/%d done)", self.run_dir, self.to_run,
                     duration(time.perf_counter() - self.started), self.n_epoch, self.n_epoch)

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the GPU's queued work counts in the batch that queued it
        return time.perf_counter()

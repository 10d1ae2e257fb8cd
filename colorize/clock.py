"""The training clock and the notebook display: a run's start line, its projection from its first batches and its
total; the learning-rate finder, an evaluation (`evaluate.project`) and a video projected the same way; the CPU
guard that stops a long job on a CPU, in a notebook with one sentence and no traceback; one figure shown in place
in a notebook cell."""

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
# A job projected under this many seconds runs on a CPU even without ALLOW_CPU: stopping it would cost the learner
# more than it saves (a smoke run, a small folder of photos, a short evaluation).
CPU_GUARD_FREE_S = 180
GPU_ADVICE = "use a GPU (in Colab: Runtime > Change runtime type > T4 GPU)"
MEASURED_FRAMES = 3  # video frames timed for the projection, after the first frame (the model's warm-up)
MIN_FINDER_STEPS = 50  # fewer steps of the learning-rate finder draw no curve worth reading: no suggestion


def duration(seconds: float) -> str:
    """'1 h 40 min', '12 min', '40 s': a time as a person reads it."""
    minutes = round(seconds / 60)
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def count(n: int, noun: str) -> str:
    """'1 epoch', '5 epochs', '3 batches'."""
    return f"{n} {noun}{'' if n == 1 else 'es' if noun.endswith(('tch', 'sh', 'ss', 'x')) else 's'}"


def now(device: torch.device) -> float:
    """`time.perf_counter()` once the device's queued work is done (a GPU's work counts when it was queued)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


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
    """A long job was about to run on a CPU without being allowed to (`allow_cpu=False`); the message says what to do.

    In IPython (a notebook) it shows as its message alone, without a traceback (IPython prints what
    `_render_traceback_` returns instead), and, as any error, stops "Run all" at its cell.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"Stopped: {self}"]


def guard_cpu(what: str, seconds: float, device: torch.device, *, allow_cpu: bool, stopped: str) -> None:
    """Stop (`CpuGuardStop`) a job of `seconds` on a CPU unless `allow_cpu` or it is projected under CPU_GUARD_FREE_S.

    `what` names the job ("training runs/x"); `stopped` says what was kept ("nothing saved")."""
    if allow_cpu or device.type != "cpu" or seconds < CPU_GUARD_FREE_S:
        return
    raise CpuGuardStop(f"{what} on this CPU would take about {duration(seconds)}. {stopped}: {GPU_ADVICE}, a smaller "
                       "recipe, or set ALLOW_CPU = True to run it on the CPU anyway")


class BatchTimer:
    """The time of a training batch, measured on a few batches after one warm-up batch (autotuning, caches)."""

    def __init__(self, device: torch.device, n_iter: int):
        self.device, self.seen, self.t0 = device, 0, None
        self.first = 1 if n_iter > 2 else 0  # the first batch warms up: not timed
        self.last = min(self.first + MEASURED_BATCHES, n_iter) - 1

    def before_batch(self) -> None:
        if self.seen == self.first:
            self.t0 = self._now()

    def after_batch(self) -> float | None:
        """Seconds per batch once the measured batches are done (once); else None."""
        self.seen += 1
        if self.seen - 1 != self.last:
            return None
        return (self._now() - self.t0) / self.measured

    @property
    def measured(self) -> int:
        return self.last - self.first + 1

    def _now(self) -> float:
        return now(self.device)


def epoch_seconds(per_batch: float, dls) -> float:
    """An epoch of `dls` at `per_batch` seconds a training batch: its training and validation batches."""
    return per_batch * (len(dls.train) + VALID_BATCH_COST * len(dls.valid))


class RunClock(Callback):
    """The run's voice: a start line (where, how, how much), a projection after the first few training batches,
    the total time at the end; with `guard`, a CpuGuardStop right after the projection of a run longer than
    CPU_GUARD_FREE_S (before the first epoch ends, so nothing is saved)."""

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
            log.info("%s %s on %s (%s): %d photos per epoch, %s", f"resuming after epoch {self.start_epoch}:"
                     if self.start_epoch else "training", self.run_dir, device_name(self.device), self.precision,
                     train.n * max(1, num_distrib()), count(self.n_epoch, "epoch"))
        self.timer = BatchTimer(self.device, len(train))

    def before_batch(self):
        if self.training and self.epoch == self.start_epoch:
            self.timer.before_batch()

    def after_batch(self):
        if not (self.training and self.epoch == self.start_epoch):
            return
        if (per_batch := self.timer.after_batch()) is None:
            return
        seconds = epoch_seconds(per_batch, self.dls) * self.to_run
        projection = (f"about {duration(seconds)} for {count(self.to_run, 'epoch')} on this "
                      f"{device_name(self.device)} (projected from {count(self.timer.measured, 'batch')})")
        if self.speaks:
            log.info("%s: %s", self.run_dir, projection)
        if self.guard:
            guard_cpu(f"training {self.run_dir} ({count(self.to_run, 'epoch')})", seconds, self.device,
                      allow_cpu=False, stopped="Stopped before the first epoch ended (nothing saved)")

    def after_fit(self):
        if self.speaks:
            log.info("%s: %s trained in %s (%d/%d done)", self.run_dir, count(self.to_run, "epoch"),
                     duration(time.perf_counter() - self.started), self.n_epoch, self.n_epoch)


class FinderClock(Callback):
    """The learning-rate finder's projection after its first few steps: its own `steps` and the `epochs` of training
    that follow it, logged, then `guard_cpu` on both together (stopping the finder before its long part)."""

    order = -10

    def __init__(self, steps: int, epochs: int, *, allow_cpu: bool):
        self.steps, self.epochs, self.allow_cpu = steps, epochs, allow_cpu

    def before_fit(self):
        self.device = self.dls.device
        self.timer = BatchTimer(self.device, self.steps)

    def before_batch(self):
        if self.training:
            self.timer.before_batch()

    def after_batch(self):
        if not self.training or (per_batch := self.timer.after_batch()) is None:
            return
        finder, training = per_batch * self.steps, epoch_seconds(per_batch, self.dls) * self.epochs
        log.info("the learning-rate finder: about %s for %s, then training about %s for %s on this %s (projected "
                 "from %s)", duration(finder), count(self.steps, "step"), duration(training),
                 count(self.epochs, "epoch"), device_name(self.device), count(self.timer.measured, "step"))
        guard_cpu(f"the learning-rate finder ({count(self.steps, 'step')}) and the training after it "
                  f"({count(self.epochs, 'epoch')})", finder + training, self.device, allow_cpu=self.allow_cpu,
                  stopped=f"Stopped the finder after {count(self.timer.seen, 'step')}, before its long part")


def find_lr(learn, steps: int, epochs: int, *, allow_cpu: bool, show_plot: bool = True) -> float | None:
    """fastai's learning-rate finder for `steps` mini-batches (weights restored when it ends), projected and guarded
    (`FinderClock`, with the `epochs` of training planned after it); the rate it suggests (the valley), or None when
    `steps` are too few (MIN_FINDER_STEPS) to read a curve from. Logs the suggestion next to the recipe's rate."""
    with learn.added_cbs(FinderClock(steps, epochs, allow_cpu=allow_cpu)):
        suggested = learn.lr_find(num_it=steps, show_plot=show_plot and steps >= MIN_FINDER_STEPS)
    if steps < MIN_FINDER_STEPS:
        log.info("%s of the finder are too few to suggest a learning rate (it needs %d or more)",
                 count(steps, "step"), MIN_FINDER_STEPS)
        return None
    log.info("the finder suggests lr = %.1e", suggested.valley)
    return suggested.valley


class FrameClock:
    """A video's projection: an `on_frame(done, total, rgb)` callback (`video.colorize_video`) that times MEASURED_FRAMES
    frames after the first, logs what is left and how long it will take on this device, then `guard_cpu`s it."""

    def __init__(self, what: str, device: torch.device | str, *, allow_cpu: bool):
        self.what, self.device, self.allow_cpu = what, torch.device(device), allow_cpu
        self.t0 = None

    def __call__(self, done: int, total: int, rgb=None) -> None:  # rgb: the frame written, not needed here
        if done == 1:
            self.t0 = now(self.device)
        elif done == 1 + MEASURED_FRAMES and self.t0 is not None and total > done:
            seconds = (now(self.device) - self.t0) / MEASURED_FRAMES * (total - done)
            log.info("%s: %s, about %s left on this %s (projected from %s)", self.what, count(total, "frame"),
                     duration(seconds), device_name(self.device), count(MEASURED_FRAMES, "frame"))
            guard_cpu(f"{self.what} ({count(total, 'frame')})", seconds, self.device, allow_cpu=self.allow_cpu,
                      stopped=f"Stopped after {count(done, 'frame')} (the video is not finished)")

"""A run folder for any training stage: recipe check, one writer, resume, checkpoints, logs, galleries, the clock.

A stage's Learner (`colorize.learner`, its plan in `learn.stage`) trains through `fit_run`, in a folder claimed first
(`claim_run`: one writer, the same recipe), both called by `stages.train`. The run folder:
    config.json              the recipe, the machine settings and precision used, and facts such as the
                             checkpoint the run started from; a resume with another recipe is refused
    state.pt                 model + optimiser + every other state owner (the plan's `parts`, e.g. a critic and
                             its optimiser) + epoch, rewritten atomically after every epoch (weights only, no code)
    last.safetensors         the generator after the last completed epoch (self-describing, see models.py)
    best.safetensors         the generator with the lowest validation loss so far
    history.csv              one row per epoch: the Recorder's losses and metrics
    gallery_epoch{N:03d}.png grayscale | generated | original on a fixed validation batch after N epochs (in a
                             notebook also shown below the cell, one figure updated in place)
    .lock, .lock.owner       held while a process trains the run; a second one stops at once

Kill it at any point (even kill -9) and train again (`stages.train`): it resumes after the last epoch whose
state.pt was written (state.pt is the commit point).

The run speaks through logging ("colorize.run"; `files.log_to_stdout` shows it in a notebook): where and
how it trains, a projection of the whole run after its first few batches, and the total time at the end.

Started in several processes (`torchrun --nproc_per_node N -m colorize ...`, `accelerate launch`, or
`launch` from a notebook), a run trains data-parallel through fastai's DistributedTrainer (accelerate
underneath): every process resumes from the same state.pt, trains on its share of every epoch (`bs`
photos a step each) and keeps the same weights; rank 0 alone (`is_writer`) holds the lock and writes the folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.progress import CSVLogger
from fastai.distributed import DistributedDL as FastaiDistributedDL
from fastai.learner import Learner
from fastai.torch_core import distrib_barrier, num_distrib, rank_distrib
from fastcore.foundation import L
from filelock import FileLock, Timeout
from torch import nn

from .config import is_smoke, recipe_dict
from .clock import RunClock, inline_figure
from .files import atomic_path, atomic_write_text, bars_can_draw, in_notebook
from .learner import StagePlan, StateOwner, TrainingStopped
from .models import read_checkpoint_metadata, save_generator
from .parallel import agreed_start, compare_weights, distributed, unwrap
from .plots import batch_gallery, save_figure

log = logging.getLogger(__name__)

STATE_NAME, LAST_NAME, BEST_NAME = "state.pt", "last.safetensors", "best.safetensors"
GENERATOR_NAMES = (BEST_NAME, LAST_NAME)  # the generator checkpoints a run writes
HISTORY_NAME, CONFIG_NAME, LOCK_NAME = "history.csv", "config.json", ".lock"
GALLERY_NAME = "gallery_epoch{:03d}.png"  # N = epochs completed


def is_writer() -> bool:
    """Whether this process writes the run folder and speaks: the only one, or rank 0 of a distributed fit."""
    return rank_distrib() == 0


def new_run() -> str:
    """How the user starts another run: the notebook's RUN parameter, the command line's --out."""
    return "choose a new RUN" if in_notebook() else "choose a new --out folder"


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
        if self.new_epoch and is_writer():
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
        if not is_writer():
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
        if is_writer():
            super().after_fit()


class EpochLog(Callback):
    """One log line per epoch, for output that no progress bar can draw on (a file, a pipe, a CI log).

    fastai's bars redraw with carriage returns: in a log file they become one endless line. `fit_run`
    uses this instead of the bar there; a terminal or a notebook keeps the bar and its table.
    """

    order = CSVLogger.order - 1  # the CSV logger wraps this one and writes its row first

    def before_fit(self):
        if is_writer():  # the other processes of a distributed fit log nothing (fastai's DistributedTrainer)
            self.learn.logger = self._log

    def _log(self, row):
        names = self.recorder.metric_names
        stats = "  ".join(f"{n} {v:.4f}" if isinstance(v, float) else f"{n} {v}" for n, v in zip(names[1:], row[1:]))
        log.info("epoch %d/%d  %s", row[0] + 1, self.n_epoch, stats)


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
        losses = {k: float(values[k]) for k in ("train_loss", "valid_loss")}
        if not all(np.isfinite(v) for v in losses.values()):
            raise TrainingStopped(f"non-finite loss {losses} at epoch {self.epoch + 1}: this epoch was not saved. "
                                  "Lower the learning rate")
        valid_loss = losses["valid_loss"]
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
    """After every epoch: the generator on one fixed validation batch, saved as gallery_epochNNN.png and, given an
    `InlineFigure` (`inline`), shown there in place of the previous epoch's."""

    order = RunCheckpoint.order + 1  # after the checkpoint

    def __init__(self, run_dir, start_epoch: int = 0, max_rows: int = 8, inline: InlineFigure | None = None):
        super().__init__(run_dir, start_epoch)
        self.max_rows, self.inline = max_rows, inline

    def before_fit(self):
        if not is_writer():
            return
        valid = self.dls.valid
        if isinstance(valid, FastaiDistributedDL):  # the whole loader's first batch, no collective on rank 0 alone
            valid = valid.dl
        batch = valid.one_batch()  # fixed: the valid loader is not shuffled and centre-crops
        n_inp = self.dls.n_inp
        self.inputs = tuple(x[: self.max_rows].as_subclass(torch.Tensor) for x in batch[:n_inp])
        self.ab = batch[n_inp][: self.max_rows].as_subclass(torch.Tensor)  # (k,2,H,W)

    def after_new_epoch(self):
        model = unwrap(self.model).eval()  # rank 0 alone: the network itself, not its DistributedDataParallel
        with torch.no_grad():
            pred = model(*self.inputs).float()  # (k,2,H,W)
        L, hints = self.inputs[0][:, :1], self.inputs[0][:, 1:]  # (k,1,H,W) L; (k,3,H,W) a hint model's hints, else (k,0,H,W)
        fig = batch_gallery(L.cpu(), {"generated": pred.cpu()}, self.ab.cpu(), max_rows=self.max_rows,
                            title=f"after epoch {self.epoch + 1}", hints=hints.cpu() if hints.shape[1] else None)
        if self.inline is not None:
            self.inline.show(fig)
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
    if not is_writer():  # rank 0 holds it for the whole distributed job
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
    """Refuse to resume `run_dir` with another recipe or other `facts`, naming only the fields that differ.

    The recipe is every field of `config` not marked NOT_RECIPE (how this machine loads photos and
    its precision may change on resume); `facts` are further things the run must keep, such as the
    checkpoint it started from. A new run folder passes.
    """
    path = run_dir / CONFIG_NAME
    if not path.exists():
        return
    saved = json.loads(path.read_text())
    saved, now = _flat({"recipe": saved.get("recipe", {}), **{k: saved.get(k) for k in facts}}), \
        _flat({"recipe": recipe_dict(config), **facts})
    changed = [f"{k.removeprefix('recipe.')} {saved.get(k)!r} -> {now.get(k)!r}"
               for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    if changed:
        raise ValueError(f"{run_dir} was started with a different recipe: {', '.join(changed)} (saved -> now); "
                         f"{new_run()} to train this one, or use the same settings to resume")


def _flat(tree: dict, prefix: str = "") -> dict:
    """{"recipe": {"data": {"bs": 16}}} -> {"recipe.data.bs": 16}."""
    out = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


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


@contextlib.contextmanager
def claim_run(run_dir, config, **facts):
    """Hold the run folder `run_dir` for this training (`run_lock`) and refuse another recipe or other `facts`
    (`check_config`), before anything is built: a second writer, or a changed recipe, stops here at once. Every
    process of a distributed job enters; rank 0 alone holds and checks."""
    run_dir = Path(run_dir)
    with run_lock(run_dir):
        if is_writer():
            check_config(run_dir, config, **facts)
        yield run_dir


def last_good(run_dir: Path) -> str:
    """Where a stopped run stands: its last good checkpoint, or that none was saved yet."""
    last = run_dir / LAST_NAME
    return f"the last good checkpoint is {last}, untouched" if last.exists() else "no epoch of this run had been saved yet"


def fit_run(learn: Learner, run_dir, config, *, allow_cpu: bool = True, **facts) -> Learner:
    """Train a stage's Learner (its plan in `learn.stage`) into the run folder `run_dir`, which this process has
    claimed (`claim_run`, with the same `facts`), resuming after its last saved epoch; `config.data.epochs` in all.

    Adds the clock, the checkpoint, CSV history, epoch gallery (inline too in a notebook), and a bar where it can
    draw (else a log line per epoch). `allow_cpu=False`: a recipe that is not smoke stops on a CPU after the
    projection (`CpuGuardStop`). A loss that goes NaN or Inf, or a CUDA out-of-memory error, stops the run with a
    `TrainingStopped` that names the last good checkpoint (kept as it was). Several processes: see the module's
    docstring.
    """
    plan: StagePlan = learn.stage
    run_dir, epochs = Path(run_dir), config.data.epochs
    with distributed(learn):
        distrib_barrier()  # other processes read the run folder once rank 0 holds it and has checked the recipe
        start = agreed_start(restore(learn, run_dir, plan.parts), run_dir)  # before DistributedTrainer wraps the model
        precision = getattr(learn, "precision", "fp32")
        machine = {**dataclasses.asdict(config.machine), "precision_used": precision,
                   "device": str(learn.dls.device), "world_size": max(1, num_distrib())}
        if is_writer():
            write_config(run_dir, config, machine, **facts)
        if start >= epochs:
            if is_writer():
                log.info("%s is complete (%d/%d epochs): %s to train again", run_dir, start, epochs, new_run())
            return learn
        guard = not allow_cpu and learn.dls.device.type == "cpu" and not is_smoke(config)
        cbs = [RunClock(run_dir, start, precision=precision, guard=guard),
               RunCheckpoint(run_dir, start, plan.name, plan.parts), ResumableCSVLogger(run_dir, start),
               EpochGallery(run_dir, start, inline=inline_figure() if is_writer() else None)]
        try:
            if bars_can_draw():
                plan.fit(epochs, cbs=cbs, start_epoch=start)
            else:
                with learn.no_bar():
                    plan.fit(epochs, cbs=[*cbs, EpochLog()], start_epoch=start)
            compare_weights({"model": learn.model, **{k: v for k, v in plan.parts.items() if isinstance(v, nn.Module)}})
        except TrainingStopped as e:
            raise TrainingStopped(f"{run_dir}: {e.reason}; {last_good(run_dir)}") from None
        except torch.OutOfMemoryError:
            bs, size = config.data.bs, config.data.size
            raise TrainingStopped(
                f"{run_dir}: out of GPU memory at batch size {bs} and {size} px crops; {last_good(run_dir)}. Rerun "
                f"with a smaller --bs (e.g. --bs {max(1, bs // 2)}) into a new --out folder, or a smaller --size") from None
    return learn

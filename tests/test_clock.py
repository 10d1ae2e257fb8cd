"""The clock and the CPU guard: a long job on a CPU stops with one sentence (no traceback in a notebook), a short one
runs; the learning-rate finder is projected and stopped after its measured steps."""

import logging

import pytest
import torch
from fastai.callback.core import Callback

import colorize.clock
from colorize.clock import CPU_GUARD_FREE_S, CpuGuardStop, FrameClock, count, find_lr, guard_cpu
from colorize.config import PRETRAIN_PRESETS, override
from colorize.pretrain import pretrain_learner

CPU, GPU = torch.device("cpu"), torch.device("cuda")


def test_the_guard_lets_short_jobs_gpus_and_allowed_cpus_through_and_stops_a_long_cpu_job():
    for seconds, device, allow in ((CPU_GUARD_FREE_S - 1, CPU, False), (10 * CPU_GUARD_FREE_S, GPU, False),
                                   (10 * CPU_GUARD_FREE_S, CPU, True)):
        guard_cpu("a job", seconds, device, allow_cpu=allow, stopped="Stopped")
    with pytest.raises(CpuGuardStop, match=r"^a job on this CPU would take about 1 h 0 min\. Stopped: use a GPU .*"
                                           r"ALLOW_CPU = True"):
        guard_cpu("a job", 3600, CPU, allow_cpu=False, stopped="Stopped")


def test_a_guard_stop_shows_its_sentence_without_a_traceback_in_ipython():
    try:
        guard_cpu("a job", 3600, CPU, allow_cpu=False, stopped="Stopped")
    except CpuGuardStop as e:
        shown = e._render_traceback_()  # what IPython prints in place of the traceback
    assert len(shown) == 1 and shown[0].startswith("Stopped: a job on this CPU would take about 1 h 0 min")


def test_count_says_one_epoch_and_two_epochs():
    assert (count(1, "epoch"), count(2, "epoch")) == ("1 epoch", "2 epochs")
    assert (count(1, "batch"), count(3, "batch"), count(4, "photo")) == ("1 batch", "3 batches", "4 photos")


class CountSteps(Callback):
    """The training steps started."""

    def __init__(self):
        self.steps = 0

    def before_batch(self):
        self.steps += self.training


def test_the_finder_projects_and_stops_after_its_measured_steps_on_a_cpu(photos, caplog, monkeypatch):
    monkeypatch.setattr(colorize.clock, "CPU_GUARD_FREE_S", 0)  # these tiny steps are projected at seconds
    caplog.set_level(logging.INFO, logger="colorize")
    learn = pretrain_learner(photos, override(PRETRAIN_PRESETS["smoke"], size=48), device="cpu")
    counter = CountSteps()
    learn.add_cb(counter)
    with pytest.raises(CpuGuardStop, match=r"Stopped the finder after 4 steps"):
        find_lr(learn, 100, epochs=5, allow_cpu=False, show_plot=False)
    assert counter.steps == 4  # one warm-up and three measured steps, not 100
    assert any(m.startswith("the learning-rate finder: about ") and "for 100 steps, then training about " in m
               and "for 5 epochs on this cpu (projected from 3 steps)" in m for m in caplog.messages), caplog.messages


def test_a_finder_of_a_few_steps_runs_and_suggests_nothing(photos, caplog):
    caplog.set_level(logging.INFO, logger="colorize")
    learn = pretrain_learner(photos, PRETRAIN_PRESETS["smoke"], device="cpu")
    assert find_lr(learn, 6, epochs=1, allow_cpu=False, show_plot=False) is None
    assert any("6 steps of the finder are too few to suggest a learning rate" in m for m in caplog.messages)


def test_a_video_is_projected_after_its_measured_frames_and_a_long_one_stops_on_a_cpu(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="colorize")
    allowed = FrameClock("colorizing clip.mp4", "cpu", allow_cpu=True)
    for done in range(1, 11):
        allowed(done, 10)
    assert [m for m in caplog.messages if m.startswith("colorizing clip.mp4: 10 frames, about ")] == [
        next(m for m in caplog.messages if "left on this cpu (projected from 3 frames)" in m)]
    monkeypatch.setattr(colorize.clock, "CPU_GUARD_FREE_S", 0)
    guarded = FrameClock("colorizing clip.mp4", "cpu", allow_cpu=False)
    for done in range(1, 4):
        guarded(done, 10)  # the first frame and the measured ones pass
    with pytest.raises(CpuGuardStop, match=r"^colorizing clip.mp4 \(10 frames\) on this CPU would take about .* "
                                           r"Stopped after 4 frames \(the video is not finished\)"):
        guarded(4, 10)

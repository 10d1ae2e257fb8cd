"""L1 pretraining: the loop learns, writes its run folder, and resumes after a kill -9."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from colorize.config import PRETRAIN_PRESETS
from colorize.data import sample_photos
from colorize.models import load_generator
from colorize.train import check_config, load_state, pretrain, pretrain_learner


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return sample_photos(tmp_path_factory.mktemp("samples"))


def _history(run):
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def test_overfits_one_batch(photos):
    """The generator and the L1 loss can fit one batch: the loss drops at least 3x in 60 steps."""
    learn = pretrain_learner(photos, PRETRAIN_PRESETS["smoke"].replace(bs=4, size=32))
    L, ab = learn.dls.train.one_batch()
    opt = torch.optim.Adam(learn.model.parameters(), lr=1e-3)
    losses = []
    for _ in range(60):
        loss = learn.loss_func(learn.model(L), ab)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 3, losses[::10]


def test_smoke_run_writes_a_usable_run_folder(photos, tmp_path):
    run = tmp_path / "run"
    pretrain(photos, run, PRETRAIN_PRESETS["smoke"].replace(epochs=2))
    assert {"state.pt", "last.safetensors", "best.safetensors", "history.csv", "config.json"} <= {p.name for p in run.iterdir()}
    rows = _history(run)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert all(float(r["psnr"]) > 0 and float(r["valid_loss"]) > 0 for r in rows)
    state = load_state(run)  # loads with weights_only=True: tensors and numbers, no code
    assert state["epoch"] == 2 and state["opt"]["state"]
    g = load_generator(run / "last.safetensors")
    assert torch.equal(g.state_dict()[next(iter(state["model"]))], next(iter(state["model"].values())))


def test_resume_refuses_a_different_recipe(tmp_path):
    check_config(tmp_path, PRETRAIN_PRESETS["smoke"])
    with pytest.raises(ValueError, match="different recipe"):
        check_config(tmp_path, PRETRAIN_PRESETS["smoke"].replace(lr=0.5))


@pytest.mark.slow
def test_kill_9_mid_epoch_then_rerun_resumes(photos, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "colorize.cli", "pretrain", "--data", str(photos), "--out", str(run),
           "--preset", "smoke", "--epochs", "3", "--bs", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "state.pt").exists():  # the first epoch is saved ...
        assert proc.poll() is None and time.time() < deadline, "training ended or hung before its first checkpoint"
        time.sleep(0.05)
    time.sleep(0.5)  # ... and the second is under way
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert load_state(run)["epoch"] == 1
    first_row = _history(run)[0]

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming" in done.stderr and "after epoch 1 of 3" in done.stderr
    rows = _history(run)
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]  # each epoch once: none lost, none repeated
    assert rows[0] == first_row  # epoch 0 was not trained again
    assert load_state(run)["epoch"] == 3
    assert not list(run.glob("*.tmp"))

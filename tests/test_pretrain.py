"""L1 pretraining: the loop learns, writes its run folder, and resumes after a kill -9."""

import copy
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.optimizer import Adam

from colorize.config import PRETRAIN_PRESETS, override
from colorize.models import load_generator, read_checkpoint_metadata, save_generator
from colorize.pretrain import pretrain_learner
from colorize.learner import CudnnAutotune, adam
from colorize.stages import ensure_trained, train
from colorize.run import check_config, load_state, write_config


@pytest.mark.slow  # 60 training steps
def test_overfits_one_batch(photos):
    """The generator and the L1 loss can fit one batch: the loss drops at least 3x in 60 steps."""
    learn = pretrain_learner(photos, override(PRETRAIN_PRESETS["smoke"], bs=4, size=32))
    L, ab = learn.dls.train.one_batch()
    opt = torch.optim.Adam(learn.model.parameters(), lr=1e-3, fused=True)  # fused: one kernel for all the weights
    losses = []
    for _ in range(60):
        loss = learn.loss_func(learn.model(L), ab)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 3, losses[::10]


def test_smoke_run_writes_a_usable_run_folder(photos, tmp_path, monkeypatch, caplog, capsys, read_history):
    run = tmp_path / "run"
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)  # output to a file: a log line per epoch, no bar
    caplog.set_level("INFO", logger="colorize")
    train(photos, run, override(PRETRAIN_PRESETS["smoke"], epochs=2))
    assert [m.split("  ")[0] for m in caplog.messages if m.startswith("epoch ")] == ["epoch 1/2", "epoch 2/2"]
    assert "\r" not in capsys.readouterr().out
    assert {"state.pt", "last.safetensors", "best.safetensors", "history.csv", "config.json"} <= {p.name for p in run.iterdir()}
    rows = read_history(run)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert all(float(r["psnr"]) > 0 and float(r["valid_loss"]) > 0 for r in rows)
    state = load_state(run)  # loads with weights_only=True: tensors and numbers, no code
    assert state["epoch"] == 2 and state["opt"]["state"]
    g = load_generator(run / "last.safetensors")
    assert torch.equal(g.state_dict()[next(iter(state["model"]))], next(iter(state["model"].values())))


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_fused_adam_takes_the_steps_of_fastais_adam(wd):
    """learner.adam against its definition, fastai's Adam: the same weights after steps with scheduled mom, lr and wd."""
    torch.manual_seed(0)
    ours_net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Flatten(), torch.nn.Linear(16, 3))
    fastai_net, start = copy.deepcopy(ours_net), copy.deepcopy(ours_net)
    ours = adam(mom=0.5, sqr_mom=0.999, eps=1e-8)(list(ours_net.parameters()), lr=1e-2)
    reference = Adam(list(fastai_net.parameters()), lr=1e-2, mom=0.5, sqr_mom=0.999, eps=1e-8)
    for step in range(6):
        x = torch.randn(5, 2, 4, 4)
        for net, opt in ((ours_net, ours), (fastai_net, reference)):
            opt.set_hypers(mom=0.95 - 0.02 * step, wd=wd, lr=1e-2 * (1 + step))  # as fit_one_cycle moves them
            net(x).square().mean().backward()
            opt.step()
            opt.zero_grad()
    for p, q, p0 in zip(ours_net.parameters(), fastai_net.parameters(), start.parameters()):
        assert torch.allclose(p, q, atol=1e-6) and not torch.allclose(p, p0, atol=1e-3)  # moved, and alike


def _channels_last(module):
    """True if every conv weight with more than one input channel and a kernel wider than 1 is NHWC-contiguous."""
    return all(p.is_contiguous(memory_format=torch.channels_last) for p in module.parameters()
               if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] > 1)


@pytest.mark.parametrize("size, nhwc", [(32, False), (64, True)])
def test_cpu_learner_is_channels_last_from_64_px_and_never_autocasts(photos, size, nhwc, tmp_path):
    """learner.tune on the CPU: NHWC weights where they were faster; by default no autocast, no autotuning.

    Either layout saves to an ordinary checkpoint that rebuilds the same generator.
    """
    learn = pretrain_learner(photos, override(PRETRAIN_PRESETS["smoke"], size=size))
    assert _channels_last(learn.model) is nhwc
    assert not hasattr(learn, "mixed_precision") and not hasattr(learn, "cudnn_autotune")
    path = save_generator(learn.model, tmp_path / "g.safetensors")
    L = torch.rand(1, 1, size, size) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(load_generator(path)(L), learn.model.eval()(L), atol=1e-5)


class PeekCudnnFlag(Callback):
    """Records cuDNN's autotuning flag during the first training batch, then stops the fit."""

    def after_batch(self):
        self.seen = torch.backends.cudnn.benchmark
        raise CancelFitException


def test_cudnn_autotune_is_on_for_the_fit_only(photos):
    """The callback a CUDA Learner gets (its flag is a plain switch, so the CPU can check the bookkeeping)."""
    learn = pretrain_learner(photos, PRETRAIN_PRESETS["smoke"])
    learn.add_cb(CudnnAutotune())
    before, peek = torch.backends.cudnn.benchmark, PeekCudnnFlag()
    learn.fit(1, cbs=[peek])
    assert peek.seen is True and torch.backends.cudnn.benchmark == before


def test_resume_refuses_a_different_recipe_but_not_other_machine_settings(tmp_path):
    config = PRETRAIN_PRESETS["smoke"]
    write_config(tmp_path, config, machine={})
    with pytest.raises(ValueError, match="different recipe"):
        check_config(tmp_path, override(config, lr=0.5))
    with pytest.raises(ValueError, match="different recipe"):
        check_config(tmp_path, override(config, bs=2))  # a nested field of the recipe
    check_config(tmp_path, override(config, workers=2, cache=True, precision="bf16"))  # how it runs, not what


@pytest.mark.slow
def test_kill_9_mid_epoch_then_rerun_resumes(photos, tmp_path, read_history):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "colorize.cli", "pretrain", "--data", str(photos), "--out", str(run),
           "--preset", "smoke", "--epochs", "3", "--bs", "2", "--repeats", "2", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "state.pt").exists():  # the first epoch is saved ...
        assert proc.poll() is None and time.time() < deadline, "training ended or hung before its first checkpoint"
        time.sleep(0.05)
    time.sleep(0.5)  # ... and the next is under way (on a fast machine it may be saved too, or half saved)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = load_state(run)["epoch"]
    assert done < 3, "the kill came too late to test anything"
    before = read_history(run)
    assert len(before) >= done  # every saved epoch was logged (a logged one may not be saved yet)

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resuming after epoch {done}:" in rerun.stderr
    rows = read_history(run)
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]  # each epoch once: none lost, none repeated
    assert rows[:done] == before[:done]  # the saved epochs were not trained again
    assert load_state(run)["epoch"] == 3
    assert not list(run.glob("*.tmp"))


INTERRUPTED = override(PRETRAIN_PRESETS["smoke"], epochs=2)  # the recipe of the conftest's interrupted L1 run


@pytest.mark.slow
def test_rerun_drops_the_logged_row_of_an_epoch_that_was_not_saved(photos, tmp_path, read_history, interrupted_l1_run):
    run = interrupted_l1_run(tmp_path / "run")  # stopped in epoch 2 after its row was logged, before it was saved
    logged = read_history(run)
    assert len(logged) == 2 and load_state(run)["epoch"] == 1  # the checkpoint comes after the log
    train(photos, run, INTERRUPTED)
    rows = read_history(run)
    assert [r["epoch"] for r in rows] == ["0", "1"] and rows[0] == logged[0] and rows[1] != logged[1]
    assert load_state(run)["epoch"] == 2


@pytest.mark.slow
def test_a_best_generator_saved_before_a_kill_is_not_overwritten_by_a_worse_one(photos, tmp_path, interrupted_l1_run):
    """best.safetensors of an epoch whose state.pt was never written still counts on the rerun."""
    run = interrupted_l1_run(tmp_path / "run")
    save_generator(load_generator(run / "last.safetensors"), run / "best.safetensors", valid_loss=1e-6)
    state = load_state(run)
    torch.save({**state, "best": 1e9}, run / "state.pt")  # so any epoch would beat what state.pt knows
    train(photos, run, INTERRUPTED)
    assert read_checkpoint_metadata(run / "best.safetensors")["extra"]["valid_loss"] == 1e-6


@pytest.mark.gpu
def test_resume_on_cuda(photos, tmp_path, interrupted_l1_run):
    """The optimiser state saved on the CPU is restored onto the GPU with the model, and training goes on."""
    run = interrupted_l1_run(tmp_path / "run")
    learn = train(photos, run, INTERRUPTED, device="cuda")
    assert load_state(run)["epoch"] == 2
    assert all(t.is_cuda for s in learn.opt.opt.state.values() for t in s.values() if torch.is_tensor(t) and t.dim())


def test_ensure_trained_trains_a_missing_l1_checkpoint_only_when_allowed(photos, tmp_path, read_history):
    """Missing: a FileNotFoundError that names notebook 2, nothing written; allowed: trained there with the recipe."""
    path = tmp_path / "l1" / "best.safetensors"
    with pytest.raises(FileNotFoundError, match="02_pretrain_generator"):
        ensure_trained(photos, path, PRETRAIN_PRESETS["smoke"])
    assert not path.parent.exists()
    with pytest.raises(ValueError, match="best.safetensors"):  # a name training would never write
        ensure_trained(photos, tmp_path / "l1" / "mine.safetensors", PRETRAIN_PRESETS["smoke"], train_if_missing=True)
    assert not path.parent.exists()

    assert ensure_trained(photos, path, PRETRAIN_PRESETS["smoke"], train_if_missing=True) == path
    meta = read_checkpoint_metadata(path)
    assert meta["size"] == PRETRAIN_PRESETS["smoke"].data.size and meta["extra"]["stage"] == "pretrain"
    assert [r["epoch"] for r in read_history(path.parent)] == ["0"]  # the smoke recipe's one epoch


def test_ensure_trained_leaves_an_existing_checkpoint_alone(tmp_path):
    """An existing file or a Hub path is returned as it is: nothing trained, nothing downloaded, the data not read."""
    path = tmp_path / "run" / "last.safetensors"
    path.parent.mkdir()
    path.write_bytes(b"a checkpoint")
    missing_photos = tmp_path / "no-photos"
    for given in (path, "hf://someone/colorizer"):
        assert ensure_trained(missing_photos, given, PRETRAIN_PRESETS["smoke"], train_if_missing=True) == given
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.safetensors"]

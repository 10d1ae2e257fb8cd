"""Two processes training one run on the CPU (gloo) through fastai's DistributedTrainer.

Each stage is started with `torchrun --nproc_per_node 2 -m colorize ...`, killed (torchrun and its
workers, kill -9) once its first epoch is saved, and started again. The checks: the rerun resumes after
the saved epoch; history.csv has one header and each epoch once; both processes end with the weights
rank 0 saved (generator and critic: rank 0 logs every rank's digest, compared here with state.pt);
config.json records the world size. `parallel.launch`, the notebooks' way, forks its processes instead.
"""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch

from colorize.device import process_device
from colorize.loaders import _check_batch_size
from colorize.parallel import weights_digest
from colorize.run import load_state

EPOCHS = 2
# 5 training photos x 2 crops shared by 2 processes at 2 a batch: 2 steps per process and epoch, 32 px
TINY = ["--preset", "smoke", "--epochs", str(EPOCHS), "--bs", "2", "--repeats", "2", "--workers", "0",
        "--device", "cpu"]


def _torchrun(args: list[str], port: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(port), "-m", "colorize", *args]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on a small CPU: one thread each


def _kill_after_first_epoch(cmd: list[str], run) -> int:
    """Start `cmd`, kill -9 torchrun and its workers once state.pt appears; the number of epochs saved."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 240
    try:
        while not (run / "state.pt").exists():
            assert proc.poll() is None and time.time() < deadline, "training ended or hung before its first checkpoint"
            time.sleep(0.05)
    finally:
        # torchrun's workers outlive a killed torchrun: each process it started is killed by its id
        workers = psutil.Process(proc.pid).children(recursive=True)
        for p in [*workers, proc]:
            with contextlib.suppress(psutil.NoSuchProcess):  # one that has just ended
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(workers, timeout=30)
        proc.wait()
    done = load_state(run)["epoch"]
    assert 1 <= done < EPOCHS, "the kill came too late to test anything"
    return done


def _check_resumed_run(cmd: list[str], run, done: int, parts: tuple[str, ...]) -> None:
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = rerun.stderr
    assert f"resuming after epoch {done}:" in log
    assert log.count("epoch 1/") == 0 and log.count(f"epoch {EPOCHS}/{EPOCHS}") == 1  # rank 0 alone logs
    lines = (run / "history.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,") and sum(line.startswith("epoch,") for line in lines) == 1
    assert [r["epoch"] for r in csv.DictReader(lines)] == [str(e) for e in range(EPOCHS)]  # each epoch once
    state = load_state(run)
    assert state["epoch"] == EPOCHS
    saved = weights_digest(state["model"], *(state["parts"][name] for name in parts))
    by_rank = [line for line in log.splitlines() if "sha256 by rank:" in line]
    assert len(by_rank) == 1, log[-3000:]
    assert by_rank[0].rsplit(": ", 1)[1].split(", ") == [saved, saved]  # rank 1 holds what rank 0 saved
    assert json.loads((run / "config.json").read_text())["machine"]["world_size"] == 2
    assert not list(run.glob("*.tmp"))


@pytest.mark.slow
def test_two_processes_pretrain_one_run_and_resume_after_a_kill(photos, tmp_path, free_port):
    run = tmp_path / "l1"
    cmd = _torchrun(["pretrain", "--data", str(photos), "--out", str(run), *TINY], free_port())
    done = _kill_after_first_epoch(cmd, run)
    _check_resumed_run(cmd, run, done, parts=())


@pytest.mark.slow
def test_two_processes_train_the_gan_and_its_critic_in_step_and_resume_after_a_kill(photos, tmp_path, free_port):
    run = tmp_path / "gan"
    cmd = _torchrun(["gan", "--data", str(photos), "--out", str(run), *TINY], free_port())  # a generator from scratch
    done = _kill_after_first_epoch(cmd, run)
    _check_resumed_run(cmd, run, done, parts=("critic",))


LAUNCH = """
import sys
from colorize.config import PRETRAIN_PRESETS, override
from colorize.stages import train
from colorize.parallel import launch

config = override(PRETRAIN_PRESETS["smoke"], epochs=1, bs=2, repeats=2)
launch(train, sys.argv[1], sys.argv[2], config, device="cpu", processes=2, port=int(sys.argv[3]))
"""


@pytest.mark.slow
def test_launch_trains_one_run_in_two_forked_processes(photos, tmp_path, free_port):
    """What a notebook cell does on two GPUs, here on the CPU: rank 0 logs epoch lines (no bar from a fork)."""
    run = tmp_path / "l1"
    done = subprocess.run([sys.executable, "-c", LAUNCH, str(photos), str(run), str(free_port())],
                          capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("epoch 1/1") == 1
    by_rank = [line for line in done.stderr.splitlines() if "sha256 by rank:" in line]
    assert by_rank[0].rsplit(": ", 1)[1].split(", ") == [weights_digest(load_state(run)["model"])] * 2
    assert [r["epoch"] for r in csv.DictReader((run / "history.csv").open())] == ["0"]


def test_a_gpu_number_is_refused_in_a_distributed_launch(monkeypatch):
    """Every process would take the same GPU: the error says to ask for 'cuda' (each process gets its local rank's)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ValueError, match="GPU of its local rank"):
        process_device("cuda:1")


def test_the_batch_size_is_checked_against_each_process_share(monkeypatch):
    _check_batch_size(5, 4)  # one process: 5 crops make a batch of 4
    monkeypatch.setenv("WORLD_SIZE", "2")
    _check_batch_size(5, 3)  # two processes: 3 and 2 crops (the shorter share is padded, as fastai's DistributedDL does)
    with pytest.raises(ValueError, match=r"only 3 training crops per epoch per process \(5 shared by 2\)"):
        _check_batch_size(5, 4)


def test_weights_digest_tells_weights_apart_whatever_their_memory_layout():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3)
    state = {k: v.clone() for k, v in conv.state_dict().items()}
    nhwc = {k: v.to(memory_format=torch.channels_last) if v.ndim == 4 else v for k, v in state.items()}
    assert weights_digest(state) == weights_digest(nhwc)  # state.pt may hold either layout
    state["weight"][0, 0, 0, 0] += 1e-6
    assert weights_digest(state) != weights_digest(nhwc)

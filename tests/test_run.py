"""The run module: precision chosen per device, the mixed-precision machinery on the CPU in both stages,
one writer per run folder, and out-of-memory errors that keep the last checkpoint."""

import dataclasses
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from fastai.callback.core import Callback
from PIL import Image

from colorize.cli import main
from colorize.config import GAN_PRESETS, PRETRAIN_PRESETS, override, recipe_dict
from colorize.device import choose_precision
from colorize.gan import gan_learner
from colorize.inference import colorize_image
from colorize.models import load_generator
from colorize.learner import TrainingStopped
from colorize.pretrain import pretrain_learner
from colorize.run import RunInUseError, load_state, run_lock
from colorize.stages import STAGES, train

# ------------------------------------------------------------------------------------------ choice


@pytest.fixture
def gpu(monkeypatch):
    """Fakes a CUDA GPU of a given compute capability; torch's bf16 check says yes whatever it is (as on a T4)."""

    def fake(capability):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # counts emulation

    return fake


@pytest.mark.parametrize("name, capability, expected", [("T4", (7, 5), "fp16"), ("V100", (7, 0), "fp16"),
                                                         ("P100", (6, 0), "fp16"), ("A100", (8, 0), "bf16"),
                                                         ("L4", (8, 9), "bf16"), ("H100", (9, 0), "bf16")])
def test_auto_precision_follows_the_gpu_generation(gpu, name, capability, expected):
    gpu(capability)
    assert choose_precision("cuda", "auto") == expected, name


def test_auto_precision_is_fp32_on_the_cpu_and_an_explicit_choice_is_kept(gpu):
    gpu((7, 5))
    assert choose_precision("cpu") == "fp32"
    assert [choose_precision("cuda", p) for p in ("bf16", "fp16", "fp32")] == ["bf16", "fp16", "fp32"]
    assert choose_precision("cpu", "bf16") == "bf16"
    with pytest.raises(ValueError, match="auto, bf16, fp16, fp32"):
        choose_precision("cpu", "fp8")


def test_the_cli_takes_a_precision_for_both_stages_apply_and_evaluate(capsys):
    from colorize.cli import build_parser, config_from_args, options_from_args
    from colorize.config import GanConfig, PretrainConfig
    from colorize.evaluate import EvalOptions

    parser = build_parser()
    args = parser.parse_args(["pretrain", "--data", "d", "--out", "o", "--precision", "fp16"])
    assert config_from_args(args, PRETRAIN_PRESETS, PretrainConfig).machine.precision == "fp16"
    args = parser.parse_args(["gan", "--data", "d", "--out", "o", "--precision", "bf16"])
    assert config_from_args(args, GAN_PRESETS, GanConfig).machine.precision == "bf16"
    assert parser.parse_args(["apply", "x", "--model", "m", "--out", "o", "--precision", "fp16"]).precision == "fp16"
    args = parser.parse_args(["evaluate", "--data", "d", "--models", "m", "--out", "o"])
    assert options_from_args(args, EvalOptions).precision == "fp32"  # the protocol's, from EvalOptions


# ------------------------------------------------------------------- mixed precision on the CPU


class Autocasting(Callback):
    """Records the dtype a conv of each network computes in during training batches, and the loss scaler's state."""

    def __init__(self, *nets):
        self.nets, self.dtypes, self.scaling = nets, set(), None

    def before_fit(self):
        for net in (self.learn.model, *self.nets):
            conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
            conv.register_forward_hook(lambda mod, inp, out: self.dtypes.add(out.dtype) if mod.training else None)

    def after_batch(self):
        scaler = getattr(self.learn, "scaler", None)
        if self.training and scaler is not None:
            self.scaling = (scaler.is_enabled(), scaler._device)


def _finite_rows(rows):
    return all(v not in ("nan", "inf", "-inf", "") for r in rows for k, v in r.items() if k != "time")


@pytest.mark.slow  # CPU autocast in bf16/fp16 is emulated: minutes on 2 cores for a few steps
@pytest.mark.parametrize("precision, dtype, scaled", [("bf16", torch.bfloat16, False), ("fp16", torch.float16, True)])
def test_l1_stage_trains_in_mixed_precision_on_the_cpu(photos, tmp_path, read_history, precision, dtype, scaled):
    """The same MixedPrecision callback a GPU run gets, on CPU autocast (and a CPU loss scaler for fp16)."""
    config = override(PRETRAIN_PRESETS["smoke"], repeats=1, precision=precision)  # one batch an epoch
    learn = pretrain_learner(photos, config)
    probe = Autocasting()
    learn.add_cb(probe)
    train(photos, tmp_path, config, learn=learn)
    assert probe.dtypes == {dtype} and (probe.scaling == (True, "cpu") if scaled else probe.scaling in (None, (False, "cpu")))
    rows = read_history(tmp_path)
    assert [r["epoch"] for r in rows] == ["0"] and _finite_rows(rows)
    assert json.loads((tmp_path / "config.json").read_text())["machine"]["precision_used"] == precision
    model = load_generator(tmp_path / "last.safetensors")
    out = colorize_image(model, Image.open(photos / "test" / "chelsea.png"), render_size=32, precision=precision)
    assert out.size == Image.open(photos / "test" / "chelsea.png").size


@pytest.mark.slow  # two epochs under emulated bf16 autocast
def test_a_mixed_precision_run_resumes_in_its_precision(photos, tmp_path, read_history):
    config = override(PRETRAIN_PRESETS["smoke"], epochs=2, repeats=1, precision="bf16")
    learn = pretrain_learner(photos, config)
    learn.add_cb(StopAfterEpoch(0))
    with pytest.raises(Stopped):
        train(photos, tmp_path, config, learn=learn)
    assert load_state(tmp_path)["epoch"] == 1
    learn = train(photos, tmp_path, config)  # the same command again: resumes the killed run
    assert learn.precision == "bf16" and load_state(tmp_path)["epoch"] == 2
    rows = read_history(tmp_path)
    assert [r["epoch"] for r in rows] == ["0", "1"] and _finite_rows(rows)


@pytest.mark.slow  # both networks under emulated CPU autocast
@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_gan_stage_trains_in_mixed_precision_on_the_cpu(photos, tmp_path, read_history, tiny_checkpoint, precision,
                                                         dtype):
    """Critic step and generator loss under CPU autocast, the NaN guard watching, checkpoints and galleries written."""
    config = override(GAN_PRESETS["smoke"], epochs=1, repeats=1, precision=precision)
    ckpt = tiny_checkpoint(tmp_path / "l1.safetensors")
    learn = gan_learner(photos, config, generator=ckpt)
    gan = learn.gan
    probe = Autocasting(gan.critic)
    learn.add_cb(probe)
    train(photos, tmp_path / "run", config, generator=ckpt, learn=learn)
    assert probe.dtypes == {dtype}  # both networks computed in the reduced precision
    assert gan.critic_scaler.is_enabled() is (precision == "fp16")
    rows = read_history(tmp_path / "run")
    assert len(rows) == 1 and _finite_rows(rows) and float(rows[0]["d_real"]) > 0
    assert (tmp_path / "run" / "gallery_epoch001.png").exists()
    model = load_generator(tmp_path / "run" / "last.safetensors")
    assert colorize_image(model, Image.open(photos / "test" / "flower.png"), render_size=32).mode == "RGB"


def test_inference_under_cpu_autocast_returns_fp32_colour_close_to_fp32(photos, tiny_checkpoint, tmp_path):
    model = load_generator(tiny_checkpoint(tmp_path / "g.safetensors"))
    seen = set()
    model[0][0].register_forward_hook(lambda mod, inp, out: seen.add(out.dtype))
    photo = Image.open(photos / "test" / "chelsea.png")
    full = torch.tensor(list(colorize_image(model, photo, 32, precision="fp32").getdata()), dtype=torch.float)
    for precision, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        seen.clear()
        mixed = torch.tensor(list(colorize_image(model, photo, 32, precision=precision).getdata()), dtype=torch.float)
        assert seen == {dtype}
        assert (mixed - full).abs().mean() < 2.0  # uint8 levels: the colour conversion ran in fp32


# ------------------------------------------------------------------------------------ one writer


class Stopped(Exception):
    pass


class StopAfterEpoch(Callback):
    """Stops the fit right after epoch `n` was saved (as a kill would, but in-process)."""

    order = 60  # after the checkpoint (55)

    def __init__(self, n):
        self.n = n

    def after_epoch(self):
        if self.epoch == self.n:
            raise Stopped(f"stopped after epoch {self.n + 1}")


HOLD = """
import sys, time
from pathlib import Path
from colorize.run import run_lock
with run_lock(Path(sys.argv[1])):
    print("holding", flush=True)
    time.sleep(120)
"""


@pytest.mark.slow
def test_a_second_process_on_a_run_folder_stops_at_once_and_touches_nothing(photos, tmp_path, caplog):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        before = sorted(p.name for p in run.iterdir())
        start = time.time()
        code = main(["pretrain", "--data", str(photos), "--out", str(run), "--preset", "smoke", "--device", "cpu"])
        assert code == 2 and time.time() - start < 60
        assert f"{run} is being trained by process {holder.pid}; wait for it or choose another --out" in caplog.text
        assert sorted(p.name for p in run.iterdir()) == before  # no config.json, no history, nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the killed holder's lock is gone with its process: the same command now trains
    assert main(["pretrain", "--data", str(photos), "--out", str(run), "--preset", "smoke", "--device", "cpu"]) == 0
    assert load_state(run)["epoch"] == 1


def test_the_run_folder_is_claimed_before_the_photos_are_indexed_or_a_learner_built(tmp_path, monkeypatch):
    """A second writer, or another recipe, stops before any work: here the photos do not exist and building the
    stage's Learner fails, so reaching either would raise something else."""
    config = PRETRAIN_PRESETS["smoke"]
    monkeypatch.setitem(STAGES, type(config), dataclasses.replace(
        STAGES[type(config)], learner=lambda *a, **k: pytest.fail("the Learner was built before the run was claimed")))
    monkeypatch.setattr("colorize.loaders.index_dataset", lambda *a, **k: pytest.fail("indexed"))
    run = tmp_path / "run"
    with run_lock(run):  # another writer holds the run
        with pytest.raises(RunInUseError, match="is being trained by process"):
            train(tmp_path / "no-photos", run, config)
    run.joinpath("config.json").write_text(json.dumps({"recipe": recipe_dict(override(config, lr=0.5))}))
    with pytest.raises(ValueError, match="different recipe: lr 0.5 -> 0.001"):
        train(tmp_path / "no-photos", run, config)


# -------------------------------------------------------------------------------- out of memory


class OutOfMemoryInSecondEpoch(Callback):
    def before_batch(self):
        if self.epoch == 1 and self.training:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_names_the_batch_and_size_and_keeps_the_last_checkpoint(photos, tmp_path, caplog):
    config = override(PRETRAIN_PRESETS["smoke"], epochs=2)
    learn = pretrain_learner(photos, config)
    learn.add_cb(OutOfMemoryInSecondEpoch())
    with pytest.raises(TrainingStopped) as e:
        train(photos, tmp_path, config, learn=learn)
    message = str(e.value)
    assert "batch size 4 and 32 px" in message and "--bs 2" in message
    assert f"the last good checkpoint is {tmp_path / 'last.safetensors'}, untouched" in message
    assert e.value.__cause__ is None and e.value.__suppress_context__  # no chained raw traceback
    assert load_state(tmp_path)["epoch"] == 1 and (tmp_path / "last.safetensors").exists()

"""Fixtures shared by the test files, each defined once here: the real sample photos, tiny generators and their
checkpoints, an interrupted L1 run, an offline feature extractor, a free port, little photo folders, read-only
folders (probed or really mounted) and a run's history."""

import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# torch, fastai, scikit-image and colorize are imported inside the fixtures that use them: under pytest-xdist the
# controlling process loads this file too, and importing them there would delay every worker's start by seconds.
REPO = Path(__file__).resolve().parents[1]

# The files that take longest (`pytest --durations=0`, summed per file), in that order. `--dist loadfile` hands
# the files out in collection order, each to the next free worker: the longest first, so the workers end together.
LONGEST_FIRST = ("test_notebooks.py", "test_hint_learning.py", "test_pretrain.py", "test_hints.py", "test_app.py",
                 "test_gan.py", "test_evaluate.py")


def pytest_collection_modifyitems(items):
    first = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))  # stable: the rest keep their order


# ------------------------------------------------------------------------------------------ photos


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """The photos shipped with scikit-image and scikit-learn, in train/valid/test folders (offline, once per session)."""
    from colorize.download import sample_photos

    return sample_photos(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="session")
def _pristine_photos(tmp_path_factory):
    from colorize.download import sample_photos

    return sample_photos(tmp_path_factory.mktemp("pristine-samples"))


@pytest.fixture
def fresh_photos(_pristine_photos, tmp_path):
    """The sample photos as `sample_photos` writes them, in this test's own tmp_path/"samples" (free to change or
    index): copied from one written once per session, which is faster than decoding and encoding them again."""
    return Path(shutil.copytree(_pristine_photos, tmp_path / "samples"))


def _colour_photo(h: int = 24, w: int = 32, seed: int = 0) -> Image.Image:
    """Random colour noise: unmistakably not grayscale, tiny."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _write_photos(folder, n: int, prefix: str = "p", seed: int = 0, size=(24, 32)) -> list:
    """`n` colour JPEGs of `size` (H, W) named prefix000.jpg...; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{prefix}{i:03d}.jpg"
        _colour_photo(*size, seed=seed + i).save(p)
        paths.append(p)
    return paths


def _astronaut(size: int = 96) -> Image.Image:
    """A real colour photo (scikit-image), small."""
    from skimage import data as skdata

    return Image.fromarray(skdata.astronaut()).resize((size, size), Image.BILINEAR)


def _jpeg_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **kw)
    return buf.getvalue()


def _write_broken(folder) -> dict[str, str]:
    """One broken file of each kind; returns {file name: start of the expected screening reason}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is a shopping list, not a photo\n")
    whole = _jpeg_bytes(_colour_photo(64, 64, seed=99), quality=95)
    (folder / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    gray = _astronaut().convert("L").convert("RGB")
    gray.save(folder / "gray_as_rgb.jpg", quality=75)
    return {"empty.jpg": "empty file", "notes.jpg": "not an image", "cut.jpg": "unreadable",
            "gray_as_rgb.jpg": "grayscale"}


@pytest.fixture(scope="session")
def colour_photo():
    """A maker: `colour_photo(h=24, w=32, seed=0)`, a tiny PIL image of seeded colour noise."""
    return _colour_photo


@pytest.fixture(scope="session")
def astronaut():
    """A maker: `astronaut(size=96)`, scikit-image's astronaut as a small colour PIL image."""
    return _astronaut


@pytest.fixture(scope="session")
def jpeg_bytes():
    """An encoder: `jpeg_bytes(image, **save_options)`, the image as JPEG bytes."""
    return _jpeg_bytes


@pytest.fixture(scope="session")
def write_photos():
    """A writer: `write_photos(folder, n, prefix="p", seed=0, size=(24, 32))`, n colour JPEGs; returns their paths."""
    return _write_photos


@pytest.fixture(scope="session")
def write_broken():
    """A writer: `write_broken(folder)`, one broken file of each kind; returns {name: start of the screening reason}."""
    return _write_broken


# --------------------------------------------------------------------------------------- generators


@pytest.fixture(scope="session")
def tiny_generator():
    """A factory: `tiny_generator(size=32, in_channels=1, seed=0)`, an untrained seeded ResNet-18 generator built
    at `size` px reading `in_channels` planes (1: L; 4: L and a hint map), in training mode as `build_generator`
    makes it."""

    import copy

    import torch

    from colorize.models import build_generator

    built = {}  # (size, in_channels, seed) -> (generator, torch's RNG state right after building it)

    def make(size: int = 32, in_channels: int = 1, seed: int = 0):
        key = (size, in_channels, seed)
        if key not in built:
            if len(built) >= 6:  # 124 MB each: the six latest kept
                built.pop(next(iter(built)))
            torch.manual_seed(seed)
            built[key] = build_generator("resnet18", size=size, pretrained=False, in_channels=in_channels), \
                torch.get_rng_state()
        model, rng = built[key]
        torch.set_rng_state(rng)  # as after building it afresh, which a copy saves (a tenth of the time)
        return copy.deepcopy(model)

    return make


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_generator):
    """A factory: `tiny_checkpoint(path, seed=0, size=32, in_channels=1, **extra)`, a `tiny_generator` saved as a
    checkpoint at `path` with `extra` metadata; returns the path."""
    from colorize.models import save_generator

    def make(path, seed: int = 0, *, size: int = 32, in_channels: int = 1, **extra):
        return save_generator(tiny_generator(size, in_channels, seed), path, **extra)

    return make


@pytest.fixture(scope="session")
def interrupted_l1_run(photos, tmp_path_factory):
    """A factory: `interrupted_l1_run(dest)` copies to `dest` (and returns) a 2-epoch smoke L1 run stopped in its second
    epoch after that epoch was logged but before it was saved (as a kill there would leave it), trained once."""
    from fastai.callback.core import Callback, CancelFitException
    from fastai.learner import Recorder

    from colorize.config import PRETRAIN_PRESETS, override
    from colorize.pretrain import pretrain_learner
    from colorize.stages import train

    class StopBetweenLogAndSave(Callback):
        order = Recorder.order + 1  # after the Recorder (50) logged the epoch, before the checkpoint (55)

        def after_epoch(self):
            if self.epoch == 1:
                raise CancelFitException

    run = tmp_path_factory.mktemp("interrupted-l1") / "run"
    config = override(PRETRAIN_PRESETS["smoke"], epochs=2)
    learn = pretrain_learner(photos, config)
    learn.add_cb(StopBetweenLogAndSave())
    train(photos, run, config, learn=learn)

    def copy(dest):
        return Path(shutil.copytree(run, dest))

    return copy


# ---------------------------------------------------------------------------------- offline helpers


@pytest.fixture(scope="session")
def tiny_features():
    """A factory: `tiny_features(num_features=8, seed=0)`, a fixed, seeded random 3x3 conv + ReLU + global average
    pool: (B,3,H,W) in [0,1] -> (B,num_features), an offline stand-in for FID's Inception features."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class TinyFeatures(nn.Module):
        def __init__(self, num_features: int = 8, seed: int = 0):
            super().__init__()
            self.num_features = num_features
            g = torch.Generator().manual_seed(seed)
            self.conv = nn.Conv2d(3, num_features, 3, stride=2)
            with torch.no_grad():
                self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))
                self.conv.bias.copy_(torch.randn(num_features, generator=g))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(self.conv(x)).mean(dim=(2, 3))

    return TinyFeatures


@pytest.fixture(scope="session")
def free_port():
    """A finder: `free_port()`, a TCP port on 127.0.0.1 that nothing listens on now."""

    def find() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return find


@pytest.fixture(scope="session")
def read_history():
    """A reader: the rows of a run folder's history.csv as dicts."""

    def read(run):
        with open(run / "history.csv") as f:
            return list(csv.DictReader(f))

    return read


# ------------------------------------------------------------------------------- read-only folders


@pytest.fixture(scope="session")
def snapshot():
    """A reader: `snapshot(folder)`, every file and folder under it with size and modification time (any write
    changes it)."""

    def take(folder) -> dict:
        return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in sorted(folder.rglob("*"))}

    return take


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """Mark folders read-only for colorize's writability probe (`can_write_in`); the user cache goes to tmp_path."""
    from colorize import data, download
    from colorize.files import can_write_in

    marked = []

    def probe(folder):
        return not any(Path(folder).resolve().is_relative_to(m) for m in marked) and can_write_in(folder)

    for module in (data, download):
        monkeypatch.setattr(module, "can_write_in", probe)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    return lambda folder: marked.append(Path(folder).resolve())


# A real read-only mount: `folder` bind-mounted read-only over itself in a private mount namespace, so only
# the child process sees it read-only. As root `unshare --mount` allows it; elsewhere a user namespace may.
MOUNT_NAMESPACES = (("unshare", "--mount", "--propagation", "private"),
                    ("unshare", "--user", "--map-root-user", "--mount"))
READ_ONLY_THEN_RUN = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$1" -c "$2"'


@pytest.fixture(scope="session")
def mount_namespace(tmp_path_factory) -> tuple[str, ...]:
    """A command prefix under which `READ_ONLY_THEN_RUN` really makes a read-only mount; skips if none works."""
    probe = tmp_path_factory.mktemp("mount-probe")
    attempt = f"import pathlib; pathlib.Path({str(probe / 'written')!r}).touch()"
    for prefix in MOUNT_NAMESPACES:
        if shutil.which(prefix[0]) is None:
            continue
        run = subprocess.run([*prefix, "sh", "-c", READ_ONLY_THEN_RUN, str(probe), sys.executable, attempt],
                             capture_output=True, text=True, timeout=120)
        if run.returncode != 0 and "Read-only file system" in run.stderr and not (probe / "written").exists():
            return prefix
    pytest.skip("this machine allows no private read-only bind mount (unshare --mount needs root or user "
                "namespaces): the real read-only test did not run; the probe-based tests cover the mechanism")


@pytest.fixture(scope="session")
def run_on_read_only(mount_namespace):
    """A runner: `run_on_read_only(folder, code, env)` runs Python `code` in a child that sees `folder` mounted
    read-only; returns the JSON its last line prints."""

    def run(folder, code: str, env: dict) -> dict:
        env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run([*mount_namespace, "sh", "-c", READ_ONLY_THEN_RUN, str(folder), sys.executable, code],
                              capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
        assert done.returncode == 0, done.stderr[-4000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    return run

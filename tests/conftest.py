"""Fixtures shared by the test files: the real sample photos, a tiny generator checkpoint, a run's history."""

import csv

import pytest
import torch

from colorize.download import sample_photos
from colorize.models import build_generator, save_generator


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """The photos shipped with scikit-image and scikit-learn, in train/valid/test folders (offline, once per session)."""
    return sample_photos(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="session")
def tiny_checkpoint():
    """A factory: an untrained 32 px ResNet-18 generator saved as a checkpoint at `path` (seeded), with `extra` metadata."""

    def make(path, seed: int = 0, **extra):
        torch.manual_seed(seed)
        return save_generator(build_generator("resnet18", size=32, pretrained=False), path, **extra)

    return make


@pytest.fixture(scope="session")
def read_history():
    """A reader: the rows of a run folder's history.csv as dicts."""

    def read(run):
        with open(run / "history.csv") as f:
            return list(csv.DictReader(f))

    return read

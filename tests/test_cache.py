"""The uint8 photo cache: built once, same validation photos as without it, per-photo crops on the device."""

import json
import os

import numpy as np
import pytest
import torch
from fastai.torch_core import TensorImage
from fastai.vision.augment import RandomResizedCrop, Resize
from PIL import Image

from colorize.cache import CACHE_DIR, cache_split, device_augmentation
from colorize.config import PRETRAIN_PRESETS
from colorize.data import index_dataset, make_dataloaders, open_photo, sample_photos
from colorize.train import pretrain

SIZE = 48


@pytest.fixture
def index(tmp_path):
    return index_dataset(sample_photos(tmp_path / "samples"), progress=False)


def _cache_files(index):
    return sorted(p.name for p in (index.root / CACHE_DIR).iterdir())


def test_rows_hold_the_photos_through_the_given_transform(index):
    cache = cache_split(index, "train", SIZE, Resize(SIZE), workers=0, progress=False)
    pixels = np.load(cache.path, mmap_mode="r")
    files = index.files("train")
    assert pixels.shape == (len(files), SIZE, SIZE, 3) and pixels.dtype == np.uint8 and cache.rows == [0, 1, 2, 3, 4]
    for row, f in zip(pixels, files):
        assert np.array_equal(row, np.asarray(Resize(SIZE)(open_photo(f), split_idx=1)))


def test_built_once_then_reused(index, monkeypatch):
    first = cache_split(index, "valid", SIZE, Resize(SIZE), workers=0, progress=False)
    monkeypatch.setattr("colorize.cache._Decode.__getitem__", lambda self, i: pytest.fail("decoded again"))
    assert cache_split(index, "valid", SIZE, Resize(SIZE), workers=0, progress=False) == first


def test_a_changed_photo_builds_a_new_cache_and_drops_the_stale_one(index):
    old = cache_split(index, "valid", SIZE, Resize(SIZE), workers=0, progress=False)
    (photo,) = index.files("valid")
    Image.new("RGB", (60, 40), (200, 30, 40)).save(photo)
    os.utime(photo, ns=(1, 1))  # a different modification time whatever the clock's resolution
    new = cache_split(index_dataset(index.root, progress=False), "valid", SIZE, Resize(SIZE), workers=0,
                      progress=False)
    assert new.path != old.path and not old.path.exists()
    assert np.array_equal(np.load(new.path)[0, SIZE // 2, SIZE // 2], [200, 30, 40])
    assert _cache_files(index) == sorted([new.path.name, new.path.with_suffix(".json").name])


def test_an_interrupted_build_is_not_used(index):
    done = cache_split(index, "valid", SIZE, Resize(SIZE), workers=0, progress=False)
    done.path.with_suffix(".json").unlink()  # as if killed before the build's last write
    np.save(done.path, np.zeros((1, SIZE, SIZE, 3), np.uint8))
    again = cache_split(index, "valid", SIZE, Resize(SIZE), workers=0, progress=False)
    assert np.load(again.path).any()


def test_a_photo_broken_after_indexing_is_reported_and_left_out(index, caplog):
    broken = index.files("train")[2]
    broken.write_bytes(broken.read_bytes()[:200])  # truncated after the index was made
    os.utime(broken, ns=(1, 1))
    index = index_dataset(index.root, progress=False)  # the screening would catch it ...
    index.items.append((broken.relative_to(index.root).as_posix(), "train"))  # ... so put it back, as a race would
    cache = cache_split(index, "train", SIZE, Resize(SIZE), workers=0, progress=False)
    assert len(cache.rows) == len(index.files("train")) - 1
    assert [rel for rel, _ in cache.failed] == [broken.relative_to(index.root).as_posix()]
    assert "left out of the train cache" in caplog.text
    assert json.loads(cache.path.with_suffix(".json").read_text())["photos"] == len(index.files("train"))


def test_validation_batches_are_those_of_the_uncached_pipeline(index):
    cached = make_dataloaders(index, size=SIZE, bs=2, workers=0, cache=True)
    plain = make_dataloaders(index, size=SIZE, bs=2, workers=0)
    for a, b in zip(cached.valid.one_batch(), plain.valid.one_batch()):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
    crop = RandomResizedCrop(SIZE, min_scale=0.35)
    (photo,) = index.files("valid")
    row = np.load(next((index.root / CACHE_DIR).glob("valid-*.npy")))[0]
    assert np.array_equal(row, np.asarray(crop(open_photo(photo), split_idx=1)))


def test_train_batches_draw_a_crop_and_flip_for_each_photo(index):
    dls = make_dataloaders(index, size=SIZE, bs=4, repeats=2, workers=0, cache=True)
    L, ab = dls.train.one_batch()
    assert L.shape == (4, 1, SIZE, SIZE) and ab.shape == (4, 2, SIZE, SIZE)
    assert L.min() >= -1 and L.max() <= 1 and ab.abs().max() <= 1

    augment = device_augmentation(0.35)[0]
    same = TensorImage(torch.rand(1, 3, SIZE, SIZE).expand(8, -1, -1, -1).contiguous())
    out = augment(same, split_idx=0).as_subclass(torch.Tensor).flatten(1)
    assert len({tuple(row[:5].tolist()) for row in out}) == 8  # one photo, eight different crops
    assert torch.allclose(augment(same, split_idx=1), same, atol=1e-5)  # and none on validation


def test_a_cached_training_run(index, tmp_path):
    learn = pretrain(index.root, tmp_path / "run", PRETRAIN_PRESETS["smoke"].replace(cache=True))
    assert (tmp_path / "run" / "last.safetensors").exists()
    assert learn.recorder.values and all(np.isfinite(v).all() for v in learn.recorder.values)
    assert any((index.root / CACHE_DIR).glob("train-32px-*.npy"))

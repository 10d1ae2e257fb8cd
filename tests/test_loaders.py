"""colorize.loaders: batches of (L, ab) from a photo folder, checked against an independent pipeline, and the uint8
photo cache: built once, same validation photos as without it, per-photo crops on the device."""

import json
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from fastai.learner import Learner
from fastai.torch_core import TensorImage
from fastai.vision.augment import AffineCoordTfm, RandomResizedCrop, Resize
from PIL import Image

from colorize.config import PRETRAIN_PRESETS, DataConfig, MachineConfig, override
from colorize.data import index_dataset, open_photo
from colorize.lab import rgb_to_lab_net
from colorize.loaders import _Decode, CACHE_DIR, cache_split, device_augmentation, make_dataloaders
from colorize.stages import train

# --------------------------------------------------------------------------------- make_dataloaders


@pytest.fixture
def tiny_folder(tmp_path, write_photos, write_broken):
    """12 colour photos of odd sizes (8 train, 2 valid, 2 test by folder), plus a broken file of each kind."""
    root = tmp_path / "tiny"
    write_photos(root / "train", 8, size=(37, 45))
    write_photos(root / "valid", 2, prefix="v", seed=50, size=(30, 41))
    write_photos(root / "test", 2, prefix="t", seed=60, size=(30, 30))
    write_broken(root / "train")
    return root


def test_batches_are_L_ab_with_shapes_and_ranges(tiny_folder):
    dls = make_dataloaders(tiny_folder, DataConfig(size=16, bs=4), MachineConfig(workers=0))
    L, ab = dls.one_batch()
    assert L.shape == (4, 1, 16, 16) and ab.shape == (4, 2, 16, 16)
    assert L.dtype == ab.dtype == torch.float32
    assert L.min() >= -1 and L.max() <= 1
    assert ab.abs().max() <= 1.2
    assert ab.abs().mean() > 0.05  # colour photos: the target is not empty
    vL, vab = dls.valid.one_batch()
    assert vL.shape == (2, 1, 16, 16) and vab.shape == (2, 2, 16, 16)


def test_valid_batches_are_deterministic_and_match_an_independent_pipeline(tiny_folder):
    size = 16
    dls = make_dataloaders(tiny_folder, DataConfig(size=size, bs=4), MachineConfig(workers=0))
    first = [tuple(t.clone() for t in b) for b in dls.valid]
    second = list(dls.valid)
    assert len(first) == len(second) == 1
    for a, b in zip(first, second):
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=0, atol=0)

    # fastai's validation crop: squash the whole photo to size + extra, then take the centre size x size
    extra = 8  # ceil(16 * 0.14 / 8) * 8, fastai's default val_xtra
    off = extra // 2
    valid_files = sorted((tiny_folder / "valid").glob("*.jpg"))
    rgb = []
    for p in valid_files:
        im = Image.open(p).convert("RGB").resize((size + extra, size + extra), Image.BILINEAR)
        im = im.crop((off, off, off + size, off + size))
        rgb.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255)
    L, ab = rgb_to_lab_net(torch.stack(rgb))
    bL, bab = first[0]
    torch.testing.assert_close(bL.as_subclass(torch.Tensor), L, rtol=0, atol=1e-5)
    torch.testing.assert_close(bab.as_subclass(torch.Tensor), ab, rtol=0, atol=1e-5)


def test_dataset_with_broken_files_trains_with_workers(tiny_folder):
    """The broken files are screened out at indexing, so an epoch with worker processes never meets them."""
    dls = make_dataloaders(tiny_folder, DataConfig(size=16, bs=4), MachineConfig(workers=2))
    assert dls.train.n == 8 and dls.valid.n == 2
    model = torch.nn.Conv2d(1, 2, 3, padding=1)
    learn = Learner(dls, model, loss_func=torch.nn.functional.l1_loss)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-3)
    assert np.isfinite(learn.recorder.values[-1]).all()


def test_repeats_multiplies_training_crops(tiny_folder):
    dls = make_dataloaders(tiny_folder, DataConfig(size=16, bs=4, repeats=3), MachineConfig(workers=0))
    assert dls.train.n == 24 and dls.valid.n == 2


def test_dataloaders_need_train_and_valid(tmp_path, write_photos):
    write_photos(tmp_path / "train", 3, size=(8, 8))
    write_photos(tmp_path / "test", 1, prefix="t", size=(8, 8))
    index = index_dataset(tmp_path, progress=False)
    index.items = [(p, s) for p, s in index.items if s != "valid"]
    with pytest.raises(ValueError, match="both train and valid"):
        make_dataloaders(index, DataConfig(size=8, bs=2), MachineConfig(workers=0))


# ------------------------------------------------------------------------------------- the photo cache

SIZE = 48


@pytest.fixture
def index(fresh_photos):
    return index_dataset(fresh_photos, progress=False)


def test_rows_hold_the_photos_through_the_given_transform(index):
    cache = cache_split(index, "train", SIZE, Resize(SIZE), workers=0, progress=False)
    pixels = np.load(cache.path, mmap_mode="r")
    files = index.files("train")
    assert pixels.shape == (len(files), SIZE, SIZE, 3) and pixels.dtype == np.uint8 and cache.rows == [0, 1, 2, 3, 4]
    for row, f in zip(pixels, files):
        assert np.array_equal(row, np.asarray(Resize(SIZE)(open_photo(f), split_idx=1)))


def test_built_once_then_reused(index, monkeypatch):
    first = cache_split(index, "valid", SIZE, Resize(SIZE), workers=0, progress=False)
    monkeypatch.setattr("colorize.loaders._Decode.__getitem__", lambda self, i: pytest.fail("decoded again"))
    assert cache_split(index, "valid", SIZE, Resize(SIZE), workers=0, progress=False) == first


def test_a_changed_photo_builds_a_new_cache_and_reports_the_old_one(index, caplog):
    old = cache_split(index, "valid", SIZE, Resize(SIZE), workers=0, progress=False)
    (photo,) = index.files("valid")
    Image.new("RGB", (60, 40), (200, 30, 40)).save(photo)
    os.utime(photo, ns=(1, 1))  # a different modification time whatever the clock's resolution
    new = cache_split(index_dataset(index.root, progress=False), "valid", SIZE, Resize(SIZE), workers=0,
                      progress=False)
    assert new.path != old.path and old.path.exists()  # another run may still be reading it
    assert np.array_equal(np.load(new.path)[0, SIZE // 2, SIZE // 2], [200, 30, 40])
    assert "also holds 1 older valid caches" in caplog.text


def test_two_processes_asking_at_once_decode_each_photo_once(index, monkeypatch):
    decode, calls, count = _Decode.__getitem__, [], threading.Lock()

    def slow_decode(self, i):
        with count:
            calls.append(i)
        time.sleep(0.05)
        return decode(self, i)

    monkeypatch.setattr(_Decode, "__getitem__", slow_decode)
    with ThreadPoolExecutor(2) as pool:
        caches = list(pool.map(lambda _: cache_split(index, "train", SIZE, Resize(SIZE), workers=0, progress=False),
                               range(2)))
    assert caches[0] == caches[1] and sorted(calls) == list(range(len(index.files("train"))))


def test_not_enough_disk_space_is_an_error_before_writing(index, monkeypatch):
    monkeypatch.setattr("colorize.loaders.shutil.disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    with pytest.raises(OSError, match="GiB is free: free some space, or train with --no-cache"):
        cache_split(index, "train", SIZE, Resize(SIZE), workers=0, progress=False)
    assert not list((index.root / CACHE_DIR).glob("*.npy*"))


def test_an_interrupted_build_is_not_used_and_its_leftover_goes(index):
    done = cache_split(index, "valid", SIZE, Resize(SIZE), workers=0, progress=False)
    done.path.with_suffix(".json").unlink()  # as if killed before the build's last write ...
    np.save(done.path, np.zeros((1, SIZE, SIZE, 3), np.uint8))
    leftover = done.path.with_suffix(".npy.tmp")
    leftover.write_bytes(b"half a cache")  # ... or in the middle of it
    again = cache_split(index, "valid", SIZE, Resize(SIZE), workers=0, progress=False)
    assert np.load(again.path).any() and not leftover.exists()


def test_a_photo_broken_after_indexing_is_reported_and_left_out(index, caplog):
    broken = index.files("train")[2]
    rel = broken.relative_to(index.root).as_posix()
    broken.write_bytes(broken.read_bytes()[:200])  # truncated after the index was made
    os.utime(broken, ns=(1, 1))
    index = index_dataset(index.root, progress=False)  # the screening would catch it ...
    first_train = next(i for i, (_, split) in enumerate(index.items) if split == "train")
    index.items.insert(first_train + 1, (rel, "train"))  # ... so put it back, second, as a race would
    files = index.files("train")
    cache = cache_split(index, "train", SIZE, Resize(SIZE), workers=0, progress=False)
    assert cache.rows == [0, 2, 3, 4] and [r for r, _ in cache.failed] == [rel]
    assert "left out of the train cache" in caplog.text
    assert json.loads(cache.path.with_suffix(".json").read_text())["photos"] == len(files)
    pixels = np.load(cache.path)
    for row in cache.rows:  # the photos after the broken one are still in their own rows
        assert np.array_equal(pixels[row], np.asarray(Resize(SIZE)(open_photo(files[row]), split_idx=1)))


def test_validation_batches_are_those_of_the_uncached_pipeline(index):
    cached = make_dataloaders(index, DataConfig(size=SIZE, bs=2), MachineConfig(workers=0, cache=True))
    plain = make_dataloaders(index, DataConfig(size=SIZE, bs=2), MachineConfig(workers=0))
    for a, b in zip(cached.valid.one_batch(), plain.valid.one_batch()):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
    crop = RandomResizedCrop(SIZE, min_scale=0.35)
    (photo,) = index.files("valid")
    row = np.load(next((index.root / CACHE_DIR).glob("valid-*.npy")))[0]
    assert np.array_equal(row, np.asarray(crop(open_photo(photo), split_idx=1)))


def test_train_batches_draw_a_crop_and_flip_for_each_photo(index):
    dls = make_dataloaders(index, DataConfig(size=SIZE, bs=4, repeats=2), MachineConfig(workers=0, cache=True))
    L, ab = dls.train.one_batch()
    assert L.shape == (4, 1, SIZE, SIZE) and ab.shape == (4, 2, SIZE, SIZE)
    assert L.min() >= -1 and L.max() <= 1 and ab.abs().max() <= 1

    assert any(isinstance(t, AffineCoordTfm) for t in dls.train.after_batch.fs)  # the crop and flip run
    augment = device_augmentation(0.35)[0]
    same = TensorImage(torch.rand(1, 3, SIZE, SIZE).expand(8, -1, -1, -1).contiguous())
    out = augment(same, split_idx=0).as_subclass(torch.Tensor).flatten(1)
    assert len({tuple(row[:5].tolist()) for row in out}) == 8  # one photo, eight different crops
    assert torch.allclose(augment(same, split_idx=1), same, atol=1e-5)  # and none on validation


def test_a_cached_training_run(index, tmp_path):
    learn = train(index.root, tmp_path / "run", override(PRETRAIN_PRESETS["smoke"], cache=True))
    assert (tmp_path / "run" / "last.safetensors").exists()
    assert learn.recorder.values and all(np.isfinite(v).all() for v in learn.recorder.values)
    assert any((index.root / CACHE_DIR).glob("train-32px-*.npy"))

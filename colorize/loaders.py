"""Batches for training: fastai DataLoaders of photos decoded every epoch, or once into a uint8 cache.

`make_dataloaders` turns a `DatasetIndex` into DataLoaders whose batches are `(L, ab)` on the device.
Workers only decode, crop and resize; the Lab conversion runs batched on the device (`lab.LabSplit`).

The cache: a one-time, memory-mapped uint8 copy of a dataset at the training size, so epochs read
pixels, not JPEGs (see the README's performance table for what decoding costs a worker). Each split is
decoded once, by the workers, into `<work>/.colorize-cache/<split>-<size>px-<key>.npy` (N x size x size x 3
uint8, 192 KiB a photo at 256 px), and the training batches come from slices of that memory map. `<work>`
is the dataset's work folder (`data.work_dir_for`): the photo folder, or a folder under the user's
cache when the photos can't be written. The
random crop and flip then run on the device as one fastai affine transform per batch (`device_augmentation`).

What is cached: train photos centre-cropped to a square and resized to `size` (so the random crops
come from that square); valid photos exactly as the uncached valid pipeline makes them, so
validation numbers do not depend on the cache. The key covers the split's files (names, sizes,
modification times) and the size: a changed dataset builds a new cache (the old one is reported,
not deleted, as another run may still read it). The .json beside the .npy is written last; without
it the cache is rebuilt (an interrupted build never counts). One process builds at a time. Not
enough disk space is an error before anything is written. A file that can no longer be read is
reported, left out, and listed in the .json.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from fastai.data.core import DataLoaders, Datasets
from fastai.data.transforms import IntToFloatTensor, ToTensor
from fastai.torch_core import TensorImage, num_distrib
from fastai.vision.augment import FlipItem, RandomResizedCrop, Resize, aug_transforms
from filelock import FileLock
from fastprogress.fastprogress import progress_bar
from fasttransform import Transform
from torch.utils.data import DataLoader, Dataset

from .config import DataConfig, MachineConfig
from .data import BadImageError, DatasetIndex, index_dataset, open_photo
from .device import main_process_first, process_device
from .files import atomic_write_text, bars_can_draw, default_workers, fingerprint
from .lab import LabSplit

log = logging.getLogger(__name__)

CACHE_DIR = ".colorize-cache"
CACHE_VERSION = 1  # bump when what a cached row holds changes


@dataclass(frozen=True)
class SplitCache:
    """One split's cache: the .npy file, the rows that hold a photo, and [relative path, reason] of those left out."""

    path: Path
    rows: list[int]
    failed: list[list[str]]


def _key(index: DatasetIndex, split: str, rels: list[str], size: int) -> str:
    return fingerprint(index.root, rels, f"v{CACHE_VERSION}:{split}:{size}")[:16]


class _Decode(Dataset):
    """Photo i decoded and passed through `tfm` (a fastai transform, deterministic with split_idx=1) as HxWx3 uint8."""

    def __init__(self, files: list[Path], size: int, tfm):
        self.files, self.size, self.tfm = files, size, tfm

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        try:
            pixels = np.asarray(self.tfm(open_photo(self.files[i]), split_idx=1), dtype=np.uint8)
            if pixels.shape != (self.size, self.size, 3):
                raise BadImageError(f"{self.files[i]} came out {pixels.shape}, not {self.size}x{self.size}x3")
            return i, pixels, ""
        except BadImageError as e:
            return i, np.zeros((self.size, self.size, 3), np.uint8), str(e)


def _as_list(batch):
    return batch  # (i, pixels, error) triples: each row is written to the map as it comes, no stacking


def _finished(rels: list[str], path: Path) -> SplitCache | None:
    """The finished cache at `path`, or None: its .json, written last, marks it finished."""
    meta = path.with_suffix(".json")
    if not (path.exists() and meta.exists()):
        return None
    return _split_cache(rels, path, json.loads(meta.read_text())["failed"])


def _split_cache(rels: list[str], path: Path, failed: list[list[str]]) -> SplitCache:
    bad = {rel for rel, _ in failed}
    return SplitCache(path, [i for i, rel in enumerate(rels) if rel not in bad], failed)


def cache_split(index: DatasetIndex, split: str, size: int, tfm, workers: int | None = None,
                progress: bool = True) -> SplitCache:
    """The cache of `split` at `size` px, built on first use (decoding in `workers` processes) and reused after.

    The cache lives in `index.work_dir`. One process builds at a time (a lock file beside the caches);
    others wait, then reuse its work. Caches of other photos or sizes are left alone (another run may
    read them) and reported.
    """
    folder = index.work_dir / CACHE_DIR
    rels = [rel for rel, s in index.items if s == split]
    path = folder / f"{split}-{size}px-{_key(index, split, rels, size)}.npy"
    if (done := _finished(rels, path)) is not None:
        return done
    folder.mkdir(exist_ok=True)
    with FileLock(folder / f"{split}-{size}px.lock"):
        if (done := _finished(rels, path)) is not None:  # built while we waited
            return done
        for leftover in folder.glob(f"{split}-{size}px-*.tmp"):  # an interrupted build; nobody else builds now
            leftover.unlink()
        return _build(index, split, rels, size, tfm, path, workers, progress)


def _build(index, split, rels, size, tfm, path: Path, workers, progress) -> SplitCache:
    folder, need = path.parent, len(rels) * size * size * 3
    free = shutil.disk_usage(folder).free
    if need > 0.95 * free:  # a full disk under a memory map kills the process without a message
        raise OSError(f"caching the {split} photos at {size} px needs {need / 2**30:.1f} GiB in {folder}, "
                      f"{free / 2**30:.1f} GiB is free: free some space, or train with --no-cache")
    others = [p for p in folder.glob(f"{split}-*.npy") if p != path]
    if others:
        log.warning("%s also holds %d older %s caches (%.1f GiB: other photos or sizes); delete the ones no run "
                    "needs", folder, len(others), split, sum(p.stat().st_size for p in others) / 2**30)
    log.info("caching %d %s photos at %d px in %s (%.2f GiB, once)", len(rels), split, size, path, need / 2**30)
    tmp = path.with_suffix(".npy.tmp")
    pixels = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(rels), size, size, 3))
    workers = default_workers() if workers is None else workers
    loader = DataLoader(_Decode([index.root / r for r in rels], size, tfm), batch_size=32, num_workers=workers,
                        collate_fn=_as_list)
    failed = []
    for batch in progress_bar(loader, leave=False) if progress and bars_can_draw() else loader:
        for i, row, error in batch:
            pixels[i] = row
            if error:
                failed.append([rels[i], error])
    pixels.flush()
    del pixels
    os.replace(tmp, path)
    meta = {"split": split, "size": size, "photos": len(rels), "failed": failed}
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta))
    for rel, error in failed:
        log.warning("left out of the %s cache: %s", split, error)
    return _split_cache(rels, path, failed)


class CachedPhoto(Transform):
    """Item k -> the cached photo it points at, as a fastai `TensorImage` (3, size, size) uint8.

    `where[k]` is (cache number, row). The memory maps open lazily in each worker process.
    """

    def __init__(self, paths: list[Path], where: list[tuple[int, int]]):
        self.paths, self.where, self._maps = [str(p) for p in paths], where, None

    def encodes(self, k: int):
        if self._maps is None:
            self._maps = [np.load(p, mmap_mode="r") for p in self.paths]
        cache, row = self.where[k]
        return TensorImage(torch.from_numpy(np.array(self._maps[cache][row])).permute(2, 0, 1))

    def __getstate__(self):  # workers started by spawn open their own maps
        return {**self.__dict__, "_maps": None}


def cached_datasets(index: DatasetIndex, size: int, repeats: int, valid_tfm, workers: int | None = None,
                    progress: bool = True) -> Datasets:
    """fastai Datasets of train (each photo `repeats` times) and valid photos read from their caches."""
    train = cache_split(index, "train", size, Resize(size), workers, progress)
    valid = cache_split(index, "valid", size, valid_tfm, workers, progress)
    where = [(0, r) for r in train.rows] * repeats + [(1, r) for r in valid.rows]
    n_train = len(train.rows) * repeats
    return Datasets(list(range(len(where))), tfms=[[CachedPhoto([train.path, valid.path], where)]],
                    splits=[list(range(n_train)), list(range(n_train, len(where)))])


def device_augmentation(min_scale: float) -> list:
    """The train crop and flip as one per-photo fastai affine transform on the device, batched in one grid_sample.

    A square crop of `min_scale` to all of the photo's area, anywhere in it, resized back to the
    photo's size, and a horizontal flip half of the time; each photo of a batch draws its own.
    (The uncached path crops with fastai's RandomResizedCrop, which also varies the aspect ratio.)
    """
    return aug_transforms(max_rotate=0.0, min_zoom=1.0, max_zoom=min_scale ** -0.5, max_lighting=0.0, max_warp=0.0,
                          p_affine=1.0)


def train_subset(index: DatasetIndex, max_photos: int | None, seed: int) -> DatasetIndex:
    """`index` with at most `max_photos` of its training photos, drawn with `seed` (the same ones on every run and
    resume); valid and test are kept whole, so scores compare with a run on every photo. None: `index` itself."""
    train = [item for item in index.items if item[1] == "train"]
    if max_photos is None or len(train) <= max_photos:
        return index
    kept = set(random.Random(seed).sample(range(len(train)), max_photos))
    drop = {train[i][0] for i in range(len(train)) if i not in kept}
    return dataclasses.replace(index, items=[item for item in index.items if item[0] not in drop])


def _check_batch_size(n_train: int, bs: int) -> None:
    processes = max(1, num_distrib())  # in a distributed launch each process trains on its share of the crops
    share = -(-n_train // processes)
    if share < bs:  # fastai drops the last partial batch: an epoch would train on nothing
        shared = f" per process ({n_train} shared by {processes})" if processes > 1 else ""
        raise ValueError(f"only {share} training crops per epoch{shared} for batch size {bs}: "
                         "lower the batch size or raise `repeats` (crops per photo)")


def make_dataloaders(
    source: str | os.PathLike | DatasetIndex,
    data: DataConfig = DataConfig(),
    machine: MachineConfig = MachineConfig(),
    device=None,
    min_scale: float = 0.35,
    progress: bool = True,
) -> DataLoaders:
    """fastai DataLoaders for train and valid whose batches are `(L, ab)` on `device` (`device.process_device`).

    `data` gives the crop size, batch size (per process in a distributed launch), crops per photo
    (`repeats`) and split seed; `machine` the workers, whether to cache, and the work folder of the
    index and cache (`machine.work_dir`, see `data.work_dir_for`; default: beside the photos where
    they can be written, else the user's cache). Train: random resized crop (at least `min_scale` of
    the photo's area) and horizontal flip; valid: fastai's deterministic resize and centre crop.
    Without the cache the workers decode, crop and flip each photo every epoch; with it the photos
    are decoded once into a memory-mapped uint8 cache in the work folder (a progress bar while it
    builds unless `progress` is False) and the crop and flip run on the device.
    """
    size, bs, repeats, workers, work_dir = data.size, data.bs, data.repeats, machine.workers, machine.work_dir
    if isinstance(source, DatasetIndex) and work_dir is not None and Path(work_dir).resolve() != source.work_dir.resolve():
        raise ValueError(f"the index of {source.root} lives in {source.work_dir}, not {work_dir}: "
                         "pass work_dir to index_dataset, or pass the photo folder here")
    device = process_device(device)  # in a distributed launch: this process's GPU, and the process group joined
    with main_process_first():  # several processes: rank 0 indexes and caches, the others then read its files
        index = source if isinstance(source, DatasetIndex) else index_dataset(source, seed=data.seed, work_dir=work_dir)
        index = train_subset(index, data.max_photos, data.seed)
        train, valid = index.files("train") * repeats, index.files("valid")
        if not train or not valid:
            raise ValueError(f"{index.root} needs photos in both train and valid splits, found {index.counts}")
        _check_batch_size(len(train), bs)
        workers = default_workers() if workers is None else workers
        crop = RandomResizedCrop(size, min_scale=min_scale)  # on valid items: resize and centre crop
        if machine.cache:
            dsets = cached_datasets(index, size, repeats, crop, workers, progress)
            _check_batch_size(len(dsets.train), bs)  # less any photo the cache could not read
            after_item, augment = [], device_augmentation(min_scale)
        else:
            dsets = Datasets(train + valid, tfms=[[open_photo]],
                             splits=[list(range(len(train))), list(range(len(train), len(train) + len(valid)))])
            after_item, augment = [crop, FlipItem(0.5), ToTensor()], []
    return dsets.dataloaders(bs=bs, num_workers=workers, device=device, pin_memory=device.type == "cuda",
                             after_item=after_item, after_batch=[IntToFloatTensor(), *augment, LabSplit()])


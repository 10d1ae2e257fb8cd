"""Photos on disk -> screened index with splits -> fastai DataLoaders of uint8 RGB -> (L, ab) on the device.

Workers only decode, crop and resize; the Lab conversion runs batched on the device (`lab.LabSplit`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import sys
import tarfile
import tempfile
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from fastai.data.core import DataLoaders, Datasets
from fastai.data.transforms import IntToFloatTensor, ToTensor
from fastai.torch_core import default_device
from fastai.vision.augment import FlipItem, RandomResizedCrop
from fastai.vision.core import PILImage
from fastcore.basics import num_cpus
from fastcore.parallel import parallel
from fastprogress.fastprogress import IN_NOTEBOOK
from PIL import Image, ImageOps, UnidentifiedImageError

from .lab import LabSplit

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
SPLITS = ("train", "valid", "test")
# Folder names that mark a split; the Places365 Kaggle subset uses val_256/{train,valid,test}_samples.
SPLIT_DIRS = {
    "train": {"train", "training", "train_samples"},
    "valid": {"valid", "val", "validation", "valid_samples"},
    "test": {"test", "testing", "test_samples"},
}
SPLIT_FRACTIONS = {"valid": 0.1, "test": 0.1}  # for folders that come without splits; the rest trains
INDEX_NAME, EXCLUDED_NAME, META_NAME = "colorize-index.csv", "colorize-excluded.csv", "colorize-index.json"

PLACES365_HANDLE = "pankajkumar2002/places365"  # Kaggle: ~36k Places365 photos at 256x256
CIFAR10_URL = "https://s3.amazonaws.com/fast-ai-imageclas/cifar10.tgz"  # fastai's URLs.CIFAR


def bars_can_draw() -> bool:
    """Progress bars redraw in place: in a terminal or a notebook. In a file or a pipe they are only noise."""
    return IN_NOTEBOOK or sys.stdout.isatty()


def default_workers() -> int:
    """Worker processes when none are asked for: every core this process may use, at most 8."""
    return min(8, num_cpus())


class BadImageError(ValueError):
    """A file that cannot be decoded as a photo."""


class DownloadError(RuntimeError):
    """A dataset could not be fetched; the message says what to do."""


# ---------------------------------------------------------------------------------------- reading


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: alpha composited on white, 16-bit and float grays rescaled, CMYK converted."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float32)
        if im.mode.startswith("I;16"):
            top = 65535.0  # the mode says 16 bits: a dark photo is not an 8-bit one
        else:  # I and F carry no bit depth: guess it from the values
            top = 1.0 if im.mode == "F" and a.max(initial=0) <= 1.0 else 255.0 if a.max(initial=0) <= 255 else 65535.0
        return Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.has_transparency_data:  # an alpha band, or a transparent colour (tRNS) in P, L or RGB
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def load_rgb(path: str | os.PathLike, keep_alpha: bool = False) -> Image.Image:
    """Decode a photo fully, apply its EXIF orientation, return 8-bit RGB; `BadImageError` if it can't.

    With `keep_alpha`, a photo with transparency comes back RGBA instead (its colour not composited).
    """
    try:
        with Image.open(path) as im:
            im.load()  # a truncated file fails here, not later in a worker
            im = ImageOps.exif_transpose(im)
            return im.convert("RGBA") if keep_alpha and im.has_transparency_data else to_rgb(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise BadImageError(f"cannot read {path}: {e}") from e


def open_photo(path: str | os.PathLike) -> PILImage:
    """`load_rgb` as a fastai `PILImage` (what the item transforms expect)."""
    return PILImage(load_rgb(path))


def list_images(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files with an image extension among `paths`, folders searched recursively, sorted, no duplicates."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            found.update(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
        elif p.is_file():
            found.add(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return sorted(found)


def is_grayscale(im: Image.Image, tolerance: int = 6) -> bool:
    """True if a photo carries no colour: 99% of its pixels have channels within `tolerance` of each other."""
    if im.mode in ("1", "L", "LA", "I", "I;16", "F"):
        return True
    small = np.asarray(to_rgb(im).resize((64, 64), Image.BILINEAR), dtype=np.int16)  # (64,64,3)
    spread = small.max(axis=2) - small.min(axis=2)
    return float(np.percentile(spread, 99)) <= tolerance


def screen(path: str | os.PathLike) -> str | None:
    """Why a file can't be a training photo (empty, not an image, truncated, grayscale), or None if it can."""
    path = Path(path)
    if path.stat().st_size == 0:
        return "empty file"
    try:
        with Image.open(path) as im:
            im.load()
            if is_grayscale(im):
                return "grayscale (nothing to learn)"
    except (UnidentifiedImageError, SyntaxError) as e:
        return f"not an image ({e})"
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return f"unreadable ({e})"
    return None


# ------------------------------------------------------------------------------------ index & splits


@dataclass
class DatasetIndex:
    """The usable photos of a folder with their split, and the files screened out with the reason."""

    root: Path
    items: list[tuple[str, str]]  # (path relative to root, split)
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)

    def files(self, split: str) -> list[Path]:
        """Absolute paths of the photos in `split` (train, valid or test)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
        return [self.root / p for p, s in self.items if s == split]

    def excluded_from(self, split: str) -> list[tuple[Path, str]]:
        """(absolute path, reason) of the screened-out files that a `split` folder holds (they get no hashed split)."""
        return [(self.root / rel, why) for rel, why in self.excluded if _split_from_folders(Path(rel)) == split]

    @property
    def counts(self) -> dict[str, int]:
        """Photos per split, and how many files were excluded."""
        c = Counter(s for _, s in self.items)
        return {**{s: c[s] for s in SPLITS}, "excluded": len(self.excluded)}


def _split_from_folders(rel: Path) -> str | None:
    for part in rel.parts[:-1]:
        for split, names in SPLIT_DIRS.items():
            if part.lower() in names:
                return split
    return None


def _hash_unit(rel: str, seed: int) -> float:
    """A number in [0, 1) fixed by the photo's relative path and the seed alone."""
    return int(hashlib.sha1(f"{seed}:{rel}".encode()).hexdigest()[:15], 16) / 16**15


def assign_splits(rels: list[str], seed: int = 42) -> dict[str, str]:
    """Split relative paths into train/valid/test, from folder names where present, else seeded and stable.

    A photo outside split folders gets its split from a seeded hash of its own path: below 0.1 test,
    below 0.2 valid, else train (`SPLIT_FRACTIONS`). So adding or removing photos never moves another
    one between splits, and no photo trained on ever becomes a test photo. A folder that has train
    and test folders but no valid one gets valid photos from train the same way. In a folder too small
    for the fractions to reach every split, the train photos of lowest hash fill an empty test split
    (from 3 free photos) and valid split (from 2 photos): only there can an addition move one.
    """
    splits = {r: _split_from_folders(Path(r)) for r in rels}
    u = {r: _hash_unit(r, seed) for r in rels}
    free = [r for r, s in splits.items() if s is None]
    test, valid = SPLIT_FRACTIONS["test"], SPLIT_FRACTIONS["valid"]
    for r in free:
        splits[r] = "test" if u[r] < test else "valid" if u[r] < test + valid else "train"
    if "valid" not in splits.values():  # e.g. folders with train and test but no valid
        for r, s in splits.items():
            if s == "train" and u[r] < valid:
                splits[r] = "valid"
    for split, among, least in (("test", free, 3), ("valid", rels, 2)):
        if split not in splits.values() and len(among) >= least:
            train = [r for r in among if splits[r] == "train"]
            if len(train) > 1:
                splits[min(train, key=u.get)] = split
    return splits


def fingerprint(root: Path, rels: list[str], salt: str) -> str:
    """A hash of the files `rels` under `root` (names, sizes, modification times) and `salt`: it changes with them."""
    h = hashlib.sha1(salt.encode())
    for r in rels:
        st = (root / r).stat()
        h.update(f"{r}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def index_dataset(root: str | os.PathLike, seed: int = 42, progress: bool = True) -> DatasetIndex:
    """Index every photo under `root` once: screen out bad and grayscale files, assign splits.

    The index, the excluded list and a fingerprint of the files are written beside the photos;
    later calls reuse them until a file is added, removed or changed.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no data folder at {root}: download a dataset or point --data at a folder of photos")
    rels = [p.relative_to(root).as_posix() for p in list_images([root])]
    if not rels:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) under {root}")
    fp = fingerprint(root, rels, f"seed={seed}")
    meta_path = root / META_NAME
    if meta_path.exists() and json.loads(meta_path.read_text()).get("fingerprint") == fp:
        with open(root / INDEX_NAME, newline="") as f:
            items = [(r["path"], r["split"]) for r in csv.DictReader(f)]
        with open(root / EXCLUDED_NAME, newline="") as f:
            excluded = [(r["path"], r["reason"]) for r in csv.DictReader(f)]
        return DatasetIndex(root, items, excluded)

    reasons = parallel(screen, [root / r for r in rels], n_workers=default_workers(),
                       progress=progress and bars_can_draw(), threadpool=len(rels) < 200)
    excluded = [(r, why) for r, why in zip(rels, reasons) if why]
    good = [r for r, why in zip(rels, reasons) if not why]
    split_of = assign_splits(good, seed)
    index = DatasetIndex(root, [(r, split_of[r]) for r in good], excluded)
    _write_index(index, fp, seed)
    log.info("indexed %s: %s", root, index.counts)
    if excluded:
        log.warning("excluded %d of %d files under %s (list in %s)", len(excluded), len(rels), root, root / EXCLUDED_NAME)
    return index


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp"):
    """A temporary name beside `path` to write to; renamed to `path` when the block succeeds.

    Write then rename: a kill never leaves half a file under the real name for a later run to choke on.
    """
    tmp = path.with_name(path.name + suffix)
    yield tmp
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    """`path.write_text(text)` through `atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _write_index(index: DatasetIndex, fingerprint: str, seed: int) -> None:
    for name, header, rows in ((INDEX_NAME, ("path", "split"), index.items),
                               (EXCLUDED_NAME, ("path", "reason"), index.excluded)):
        with atomic_path(index.root / name) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
    meta = {"fingerprint": fingerprint, "seed": seed, "counts": index.counts}
    atomic_write_text(index.root / META_NAME, json.dumps(meta, indent=1))


# ----------------------------------------------------------------------------------------- batches


def _check_batch_size(n_train: int, bs: int) -> None:
    if n_train < bs:  # fastai drops the last partial batch: an epoch would train on nothing
        raise ValueError(f"only {n_train} training crops per epoch for batch size {bs}: "
                         "lower the batch size or raise `repeats` (crops per photo)")


def make_dataloaders(
    source: str | os.PathLike | DatasetIndex,
    size: int = 256,
    bs: int = 16,
    repeats: int = 1,
    workers: int | None = None,
    seed: int = 42,
    min_scale: float = 0.35,
    device=None,
    cache: bool = False,
    progress: bool = True,
) -> DataLoaders:
    """fastai DataLoaders for train and valid whose batches are `(L, ab)` on `device`.

    Train: random resized crop (at least `min_scale` of the photo's area) and horizontal flip;
    valid: fastai's deterministic resize and centre crop. `repeats` draws several crops of each
    training photo per epoch, for tiny photo sets. Without `cache` the workers decode, crop and flip
    each photo every epoch; with it the photos are decoded once into a memory-mapped uint8 cache
    beside the data (`colorize.cache`, a progress bar while it builds unless `progress` is False)
    and the crop and flip run on the device.
    """
    index = source if isinstance(source, DatasetIndex) else index_dataset(source, seed=seed)
    train, valid = index.files("train") * repeats, index.files("valid")
    if not train or not valid:
        raise ValueError(f"{index.root} needs photos in both train and valid splits, found {index.counts}")
    _check_batch_size(len(train), bs)
    workers = default_workers() if workers is None else workers
    crop = RandomResizedCrop(size, min_scale=min_scale)  # on valid items: resize and centre crop
    if cache:
        from .cache import cached_datasets, device_augmentation  # colorize.cache builds on this module

        dsets = cached_datasets(index, size, repeats, crop, workers, progress)
        _check_batch_size(len(dsets.train), bs)  # less any photo the cache could not read
        after_item, augment = [], device_augmentation(min_scale)
    else:
        dsets = Datasets(train + valid, tfms=[[open_photo]],
                         splits=[list(range(len(train))), list(range(len(train), len(train) + len(valid)))])
        after_item, augment = [crop, FlipItem(0.5), ToTensor()], []
    device = default_device() if device is None else torch.device(device)
    return dsets.dataloaders(bs=bs, num_workers=workers, device=device, pin_memory=device.type == "cuda",
                             after_item=after_item, after_batch=[IntToFloatTensor(), *augment, LabSplit()])


# ---------------------------------------------------------------------------------- sample photos


def _sample_arrays() -> dict[str, np.ndarray]:
    from skimage import data as skdata
    from sklearn.datasets import load_sample_images

    left, right, _ = skdata.stereo_motorcycle()
    china, flower = load_sample_images().images
    return {"astronaut": skdata.astronaut(), "coffee": skdata.coffee(), "chelsea": skdata.chelsea(),
            "camera": skdata.camera(),  # a true black-and-white photo: the screening drops it (nothing to learn)
            "rocket": skdata.rocket(), "motorcycle_left": left, "motorcycle_right": right,
            "china": china, "flower": flower}


SAMPLE_TEST = ("chelsea", "flower")  # held out: the demo colorizes these; the rest train and validate
SAMPLE_VALID = ("coffee",)


def sample_photos(dest: str | os.PathLike = "data/samples") -> Path:
    """Write the real photos shipped inside scikit-image and scikit-learn to `dest` in train/valid/test folders.

    Eight are in colour; one (camera) is black and white, so indexing shows the screening at work.

    No network needed; a second call finds them and writes nothing.
    """
    dest = Path(dest)
    for name, arr in _sample_arrays().items():
        split = "test" if name in SAMPLE_TEST else "valid" if name in SAMPLE_VALID else "train"
        out = dest / split / f"{name}.png"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(out, ".tmp.png") as tmp:  # PIL picks the format from the suffix
                Image.fromarray(arr).convert("RGB").save(tmp)
    return dest


# -------------------------------------------------------------------------------------- downloads

DONE_MARKER = ".colorize-complete.json"
STARTED_MARKER = ".colorize-download-started"


def _finish(dest: Path, root: Path, need: tuple[str, ...]) -> DatasetIndex:
    """Index a fresh download, check that every split in `need` has photos, and mark it complete."""
    index = index_dataset(root)
    empty = [s for s in need if index.counts[s] == 0]
    if empty:
        raise DownloadError(f"download in {dest} looks incomplete: no photos in split(s) {', '.join(empty)} "
                            f"(counts {index.counts}); run the same command with --force to fetch it again")
    atomic_write_text(dest / DONE_MARKER, json.dumps({"root": os.path.relpath(root, dest), "counts": index.counts}))
    (dest / STARTED_MARKER).unlink(missing_ok=True)
    log.info("%s: %s", dest, index.counts)
    return index


def _already_done(dest: Path) -> DatasetIndex | None:
    marker = dest / DONE_MARKER
    if not marker.exists():
        return None
    done = json.loads(marker.read_text())
    index = index_dataset(dest / done["root"])
    if index.counts != done["counts"]:
        raise DownloadError(f"{dest} was complete with {done['counts']} but now has {index.counts}: "
                            "files were added or removed; run with --force to download it again")
    return index


def _claim(dest: Path, force: bool) -> None:
    """Refuse to overwrite a folder of someone else's files; remember that this folder is ours."""
    if dest.exists() and any(dest.iterdir()) and not (dest / STARTED_MARKER).exists() and not force:
        raise DownloadError(f"{dest} already holds files that no colorize download put there; "
                            "choose another --dest, or pass --force to delete them and download again")
    if force and dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / STARTED_MARKER).touch()


def download_places365(dest: str | os.PathLike = "data/places365", force: bool = False) -> DatasetIndex:
    """Fetch the Kaggle Places365 subset with kagglehub into `dest` and index it; a no-op once complete.

    Credentials come the usual Kaggle ways (KAGGLE_USERNAME/KAGGLE_KEY, ~/.kaggle/kaggle.json, Colab
    secrets). An interrupted download is started again on the next call.
    """
    import kagglehub
    from kagglehub.config import get_kaggle_credentials

    dest = Path(dest)
    if not force and (index := _already_done(dest)) is not None:
        return index
    if get_kaggle_credentials() is None:
        raise DownloadError(
            "no Kaggle credentials: create an API token at https://www.kaggle.com/settings (Account -> API), "
            "then set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN), or save it as ~/.kaggle/kaggle.json "
            "(in Colab: add KAGGLE_USERNAME and KAGGLE_KEY as secrets)")
    resume = (dest / STARTED_MARKER).exists()
    _claim(dest, force)
    try:
        path = kagglehub.dataset_download(PLACES365_HANDLE, output_dir=str(dest), force_download=force or resume)
    except Exception as e:  # kagglehub raises requests/HTTP errors of several kinds
        raise DownloadError(
            f"could not download {PLACES365_HANDLE} from Kaggle ({type(e).__name__}: {e}). Check the network "
            "and your Kaggle credentials, then run the same command again: it picks up where it stopped") from e
    return _finish(dest, Path(path), need=SPLITS)


def fetch_url(url: str, dest: Path) -> Path:
    """Download `url` to the file `dest` with a progress bar (the only network call of `download_cifar10`)."""
    from fastdownload import download_url

    return Path(download_url(url, dest, show_progress=True))


def _refuse_absolute(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """tarfile's "data" filter, except that an absolute name is refused rather than made relative."""
    if member.name.startswith(("/", os.sep)):
        raise tarfile.AbsolutePathError(member)
    return tarfile.data_filter(member, dest)


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a tar archive, refusing absolute paths, `..`, links out of `dest` and device files."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        try:
            tar.extractall(dest, filter=_refuse_absolute)
        except tarfile.FilterError as e:
            raise DownloadError(f"refusing to extract {archive}: {e}") from e
    return dest


def download_cifar10(dest: str | os.PathLike = "data/cifar10", force: bool = False) -> DatasetIndex:
    """Fetch fastai's CIFAR-10 archive ({train,test}/<class>/*.png), extract it safely and index it."""
    dest = Path(dest)
    if not force and (index := _already_done(dest)) is not None:
        return index
    _claim(dest, force)
    archive = dest / "cifar10.tgz"
    try:
        fetch_url(CIFAR10_URL, archive)
    except Exception as e:
        raise DownloadError(f"could not download {CIFAR10_URL} ({type(e).__name__}: {e}); "
                            "check the network and run the same command again") from e
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        safe_extract(archive, tmp)
        tops = [p for p in Path(tmp).iterdir() if p.is_dir()]
        top = tops[0] if len(tops) == 1 else Path(tmp)
        target = dest / "cifar10"
        if target.exists():
            shutil.rmtree(target)
        os.replace(top, target) if top != Path(tmp) else shutil.copytree(tmp, target)
    archive.unlink()
    return _finish(dest, target, need=("train", "test"))

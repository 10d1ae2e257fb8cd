"""Photos on disk: decoding any mode, screening bad files, the index and its train/valid/test splits.

Files -> `index_dataset` (screened once, splits assigned, written to the dataset's work folder) ->
`DatasetIndex`, which `colorize.loaders` turns into batches.

The work folder holds what colorize writes about a dataset (the index, the excluded list, the photo
cache): the photo folder itself where it can be written, else a folder of its own under the user's
cache directory (`dataset_cache_dir`), so a read-only dataset (Kaggle's /kaggle/input, a shared mount)
is used in place and never written to.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from fastai.vision.core import PILImage
from fastcore.parallel import parallel
import platformdirs
from PIL import Image, ImageOps, UnidentifiedImageError

from .files import atomic_path, atomic_write_text, bars_can_draw, can_write_in, default_workers, fingerprint

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


class BadImageError(ValueError):
    """A file that cannot be decoded as a photo."""



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
    work_dir: Path | None = None  # where the index and the photo cache live; None: beside the photos (root)

    def __post_init__(self):
        self.work_dir = self.root if self.work_dir is None else self.work_dir

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


def dataset_cache_dir(root: str | os.PathLike) -> Path:
    """The work folder of a dataset that can't be written: `<user cache>/colorize/datasets/<name>-<hash>`.

    The hash is of the folder's resolved path, so each dataset (and each copy of one) gets its own.
    The user cache is ~/.cache on Linux ($XDG_CACHE_HOME if set), as platformdirs decides elsewhere.
    """
    resolved = Path(root).resolve()
    key = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    return Path(platformdirs.user_cache_dir("colorize")) / "datasets" / f"{resolved.name or 'root'}-{key}"


def work_dir_for(root: str | os.PathLike, work_dir: str | os.PathLike | None = None) -> Path:
    """The folder the index and the photo cache of the photos under `root` go to, created if need be.

    `work_dir` if given; else `root` itself where it can be written; else `dataset_cache_dir(root)`.
    """
    root = Path(root)
    if work_dir is None and can_write_in(root):
        return root
    work = Path(work_dir) if work_dir is not None else dataset_cache_dir(root)
    try:
        work.mkdir(parents=True, exist_ok=True)
        writable = can_write_in(work)
    except OSError as e:
        raise PermissionError(f"cannot create the work folder {work} for the index and cache of {root} ({e}): "
                              "choose a writable one with --work-dir") from e
    if not writable:
        raise PermissionError(f"cannot write in the work folder {work} for the index and cache of {root}: "
                              "choose a writable one with --work-dir")
    if work != root:
        log.info("%s: index and photo cache in %s%s", root, work, "" if work_dir is not None else
                 " (the photo folder can't be written; --work-dir chooses another place)")
    return work


def index_dataset(root: str | os.PathLike, seed: int = 42, progress: bool = True,
                  work_dir: str | os.PathLike | None = None) -> DatasetIndex:
    """Index every photo under `root` once: screen out bad and grayscale files, assign splits.

    The index, the excluded list and a fingerprint of the files are written to the work folder
    (`work_dir_for`: beside the photos if they can be written, else under the user's cache;
    `work_dir` chooses it); later calls reuse them until a file is added, removed or changed.
    Nothing is written under `root` unless it is the work folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no data folder at {root}: download a dataset or point --data at a folder of photos")
    rels = [p.relative_to(root).as_posix() for p in list_images([root])]
    if not rels:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) under {root}")
    work = work_dir_for(root, work_dir)
    fp = fingerprint(root, rels, f"seed={seed}")
    meta_path = work / META_NAME
    if meta_path.exists() and json.loads(meta_path.read_text()).get("fingerprint") == fp:
        with open(work / INDEX_NAME, newline="") as f:
            items = [(r["path"], r["split"]) for r in csv.DictReader(f)]
        with open(work / EXCLUDED_NAME, newline="") as f:
            excluded = [(r["path"], r["reason"]) for r in csv.DictReader(f)]
        return DatasetIndex(root, items, excluded, work)

    reasons = parallel(screen, [root / r for r in rels], n_workers=default_workers(),
                       progress=progress and bars_can_draw(), threadpool=len(rels) < 200)
    excluded = [(r, why) for r, why in zip(rels, reasons) if why]
    good = [r for r, why in zip(rels, reasons) if not why]
    split_of = assign_splits(good, seed)
    index = DatasetIndex(root, [(r, split_of[r]) for r in good], excluded, work)
    _write_index(index, fp, seed)
    log.info("indexed %s: %s (index in %s)", root, index.counts, work / INDEX_NAME)
    if excluded:
        log.warning("excluded %d of %d files under %s (list in %s)", len(excluded), len(rels), root,
                    work / EXCLUDED_NAME)
    return index


def _write_index(index: DatasetIndex, fingerprint: str, seed: int) -> None:
    for name, header, rows in ((INDEX_NAME, ("path", "split"), index.items),
                               (EXCLUDED_NAME, ("path", "reason"), index.excluded)):
        with atomic_path(index.work_dir / name) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
    meta = {"fingerprint": fingerprint, "seed": seed, "root": str(index.root.resolve()), "counts": index.counts}
    atomic_write_text(index.work_dir / META_NAME, json.dumps(meta, indent=1))


def sample_split(index: DatasetIndex, split: str, n: int, dest: str | os.PathLike) -> Path:
    """A dataset folder holding `n` photos of `split` spread evenly over it (the same ones every time), linked (not
    copied) into dest/<split>/: a smaller evaluation on the same photos. All of them if the split has no more."""
    files = sorted(index.files(split))
    picked = [files[round(i * len(files) / n)] for i in range(n)] if n < len(files) else files
    folder = Path(dest) / split
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {p.relative_to(index.root).as_posix().replace("/", "__"): p for p in picked}
    for old in folder.iterdir():
        if old.name not in wanted:
            old.unlink()
    for name, photo in wanted.items():
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(photo.resolve())
    return Path(dest)

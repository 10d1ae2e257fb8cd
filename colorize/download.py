"""Datasets to train on: the Places365 subset (Kaggle), CIFAR-10 (fastai's archive), and the sample photos
shipped inside scikit-image and scikit-learn (offline)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from .data import DatasetIndex, index_dataset, SPLITS
from .files import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

PLACES365_HANDLE = "pankajkumar2002/places365"  # Kaggle: ~36k Places365 photos at 256x256
CIFAR10_URL = "https://s3.amazonaws.com/fast-ai-imageclas/cifar10.tgz"  # fastai's URLs.CIFAR


class DownloadError(RuntimeError):
    """A dataset could not be fetched; the message says what to do."""


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

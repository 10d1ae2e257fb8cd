"""Datasets to train on: the Places365 subset (Kaggle), CIFAR-10 (fastai's archive), and the sample photos
shipped inside scikit-image and scikit-learn (offline)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

import kagglehub
import numpy as np
from kagglehub.config import get_kaggle_credentials
from kagglehub.kaggle_cache_resolver import (DEFAULT_KAGGLE_CACHE_MOUNT_FOLDER, KAGGLE_CACHE_MOUNT_FOLDER_ENV_VAR_NAME,
                                             DatasetKaggleCacheResolver)
from PIL import Image

from .data import DatasetIndex, index_dataset, SPLITS
from .files import atomic_path, atomic_write_text, can_write_in, drive_folder

log = logging.getLogger(__name__)

PLACES365_HANDLE = "pankajkumar2002/places365"  # Kaggle: ~36k Places365 photos at 256x256
# Under files.drive_folder(): the downloaded subset kept as one uncompressed tar (its photos are JPEGs), about 1 GB, so
# each notebook's fresh Colab disk unpacks it from Drive instead of downloading it again: once per Google account.
DRIVE_ARCHIVE = Path("data/places365.tar")
DRIVE_ROOT = "places365"  # the archive's one folder, unpacked under `dest`
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
    arrays = _sample_arrays()
    split = {name: "test" if name in SAMPLE_TEST else "valid" if name in SAMPLE_VALID else "train" for name in arrays}
    outs = {name: dest / split[name] / f"{name}.png" for name in arrays}
    missing = [name for name, out in outs.items() if not out.exists()]
    if missing and dest.is_dir() and not can_write_in(dest):
        raise PermissionError(f"{dest} can't be written and lacks {len(missing)} of the sample photos: "
                              "choose a writable folder for them")
    for name in missing:
        outs[name].parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(outs[name], ".tmp.png") as tmp:  # PIL picks the format from the suffix
            Image.fromarray(arrays[name]).convert("RGB").save(tmp)
    return dest


# -------------------------------------------------------------------------------------- downloads

DONE_MARKER = ".colorize-complete.json"
STARTED_MARKER = ".colorize-download-started"


def _index_whole(root: Path, need: tuple[str, ...], work_dir, what: str) -> DatasetIndex:
    """Index `root` and check that every split in `need` has photos; `what` ends the error message."""
    index = index_dataset(root, work_dir=work_dir)
    empty = [s for s in need if index.counts[s] == 0]
    if empty:
        raise DownloadError(f"{root} looks incomplete: no photos in split(s) {', '.join(empty)} "
                            f"(counts {index.counts}); {what}")
    return index


def _finish(dest: Path, root: Path, need: tuple[str, ...], work_dir) -> DatasetIndex:
    """Index a fresh download, check that every split in `need` has photos, and mark it complete."""
    index = _index_whole(root, need, work_dir, "run the same command with --force to fetch it again")
    atomic_write_text(dest / DONE_MARKER, json.dumps({"root": os.path.relpath(root, dest), "counts": index.counts}))
    (dest / STARTED_MARKER).unlink(missing_ok=True)
    log.info("%s: %s", dest, index.counts)
    return index


def _in_place(dest: Path, need: tuple[str, ...], work_dir) -> DatasetIndex:
    """A copy that is not ours to write (read-only, or linked to): indexed as it is, with no marker."""
    index = _index_whole(dest, need, work_dir, "it is not a complete copy of the dataset: point --dest elsewhere")
    log.info("%s used in place (%s): %s", dest, f"a link to {dest.resolve()}" if dest.is_symlink() else "read-only",
             index.counts)
    return index


def _already_done(dest: Path, need: tuple[str, ...], work_dir) -> DatasetIndex | None:
    """The index of a dataset already at `dest`: a complete download, or a copy to use in place; else None."""
    marker = dest / DONE_MARKER
    if marker.exists():
        done = json.loads(marker.read_text())
        index = index_dataset(dest / done["root"], work_dir=work_dir)
        if index.counts != done["counts"]:
            raise DownloadError(f"{dest} was complete with {done['counts']} but now has {index.counts}: "
                                "files were added or removed; run with --force to download it again")
        return index
    if dest.is_dir() and (dest.is_symlink() or not can_write_in(dest)):  # not ours to download into
        if not any(dest.iterdir()):
            raise DownloadError(f"{dest} is empty and can't be downloaded into (read-only, or a link): "
                                "choose another --dest")
        return _in_place(dest, need, work_dir)
    return None


def _claim(dest: Path, force: bool) -> None:
    """Refuse to overwrite a folder of someone else's files; remember that this folder is ours."""
    if dest.exists() and any(dest.iterdir()) and not (dest / STARTED_MARKER).exists() and not force:
        raise DownloadError(f"{dest} already holds files that no colorize download put there; "
                            "choose another --dest, or pass --force to delete them and download again")
    if dest.is_symlink():  # a link to a copy used in place: the link goes, never what it points at
        dest.unlink()
    elif force and dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / STARTED_MARKER).touch()


def _link(dest: Path, target: Path) -> None:
    """Make `dest` a symbolic link to the folder `target`, replacing a link or an empty folder of ours there."""
    if dest.is_symlink():
        dest.unlink()
    elif dest.is_dir() and {p.name for p in dest.iterdir()} <= {STARTED_MARKER}:
        (dest / STARTED_MARKER).unlink(missing_ok=True)
        dest.rmdir()
    elif dest.exists():
        raise DownloadError(f"{dest} already holds files, so it can't point at the copy in {target}: "
                            f"choose another --dest, or use --data {target} directly")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.symlink_to(target.resolve(), target_is_directory=True)


def kaggle_input_dir() -> Path:
    """Where a Kaggle notebook mounts the datasets attached to it: /kaggle/input, or kagglehub's override
    ($KAGGLE_CACHE_MOUNT_FOLDER)."""
    return Path(os.getenv(KAGGLE_CACHE_MOUNT_FOLDER_ENV_VAR_NAME, DEFAULT_KAGGLE_CACHE_MOUNT_FOLDER))


def attached_copy(handle: str) -> Path | None:
    """The folder of Kaggle dataset `handle` ("owner/slug") as a Kaggle notebook mounts it, if there; else None.

    Kaggle mounts an attached dataset at <input>/<slug> and, in newer notebooks, at
    <input>/datasets/<owner>/<slug> (`kaggle_input_dir` is <input>). Only the file system is asked.
    """
    owner, slug = handle.split("/")
    base = kaggle_input_dir()
    return next((d for d in (base / "datasets" / owner / slug, base / slug) if d.is_dir() and any(d.iterdir())), None)


def _in_kaggle_notebook() -> bool:
    """kagglehub's own test: in a Kaggle notebook it mounts datasets instead of downloading them."""
    return DatasetKaggleCacheResolver().is_supported()


def _use_mounted(dest: Path, copy: Path, work_dir) -> DatasetIndex:
    """Use a read-only copy of Places365 (mounted by Kaggle or Colab) in place: `dest` becomes a link to it."""
    _link(dest, copy)
    log.info("using the copy of %s at %s in place (nothing copied); %s links to it", PLACES365_HANDLE, copy, dest)
    return _in_place(dest, SPLITS, work_dir)


def download_places365(dest: str | os.PathLike = "data/places365", force: bool = False,
                       work_dir: str | os.PathLike | None = None) -> DatasetIndex:
    """Get the Kaggle Places365 subset at `dest` and index it; a no-op once there.

    In a Kaggle notebook the dataset is not downloaded: the copy Kaggle mounts read-only under
    /kaggle/input (attached with "Add Input", or attached by kagglehub) is used in place, `dest`
    becomes a link to it, and its index and photo cache go to a work folder (`data.work_dir_for`;
    `work_dir` chooses it). Elsewhere kagglehub downloads it into `dest` (or, in Colab, may serve a
    mounted copy, used the same way). Credentials come the usual Kaggle ways (KAGGLE_USERNAME/KAGGLE_KEY,
    ~/.kaggle/kaggle.json, Colab secrets). An interrupted download is started again on the next call.
    """
    dest = Path(dest)
    if not force and (index := _already_done(dest, SPLITS, work_dir)) is not None:
        return index
    if _in_kaggle_notebook():  # kagglehub attaches the dataset (if not yet) and returns where it is mounted
        try:
            copy = Path(kagglehub.dataset_download(PLACES365_HANDLE))
        except Exception as e:  # kagglehub raises requests/HTTP errors of several kinds
            if (copy := attached_copy(PLACES365_HANDLE)) is None:
                raise DownloadError(
                    f"could not attach {PLACES365_HANDLE} to this Kaggle notebook ({type(e).__name__}: {e}): add it "
                    "with Add Input (search for places365 by pankajkumar2002), then run the same command again") from e
            log.warning("kagglehub could not attach %s (%s: %s); using the copy mounted at %s", PLACES365_HANDLE,
                        type(e).__name__, e, copy)
        return _use_mounted(dest, copy, work_dir)
    if (copy := attached_copy(PLACES365_HANDLE)) is not None:  # mounted, though kagglehub sees no Kaggle notebook
        return _use_mounted(dest, copy, work_dir)
    home = drive_folder()  # in Colab with Drive mounted: the subset is kept there once, for every notebook
    kept = home / DRIVE_ARCHIVE if home is not None else None
    if kept is not None and kept.exists():
        return _unpack_kept(kept, dest, force, work_dir)
    if get_kaggle_credentials() is None:
        raise DownloadError(
            "no Kaggle credentials: create an API token at https://www.kaggle.com/settings (Account -> API), "
            "then set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN), or save it as ~/.kaggle/kaggle.json "
            "(in Colab: add KAGGLE_USERNAME and KAGGLE_KEY as secrets)")
    resume = (dest / STARTED_MARKER).exists()
    _claim(dest, force)
    try:
        path = Path(kagglehub.dataset_download(PLACES365_HANDLE, output_dir=str(dest), force_download=force or resume))
    except Exception as e:  # kagglehub raises requests/HTTP errors of several kinds
        raise DownloadError(
            f"could not download {PLACES365_HANDLE} from Kaggle ({type(e).__name__}: {e}). Check the network "
            "and your Kaggle credentials, then run the same command again: it picks up where it stopped") from e
    if not path.resolve().is_relative_to(dest.resolve()):  # kagglehub served a mounted copy (Colab's cache)
        return _use_mounted(dest, path, work_dir)
    index = _finish(dest, path, SPLITS, work_dir)
    if kept is not None:
        _keep(path, kept)
    return index


def _keep(root: Path, kept: Path) -> None:
    """Write the downloaded photos under `root` to the archive `kept` on Drive (atomically: a cut-off copy is never
    taken for a whole one)."""
    started = time.perf_counter()
    kept.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(kept) as tmp, tarfile.open(tmp, "w") as tar:
        tar.add(root, arcname=DRIVE_ROOT, filter=lambda m: None if Path(m.name).name.startswith(".colorize") else m)
    log.info("kept the Places365 subset on your Drive, %s (%.1f GB, in %.0f s): the next notebook unpacks it from "
             "there instead of downloading it", kept, kept.stat().st_size / 1e9, time.perf_counter() - started)


def _unpack_kept(kept: Path, dest: Path, force: bool, work_dir) -> DatasetIndex:
    """The Places365 subset unpacked at `dest` from the archive a download kept on Drive (`_keep`): no Kaggle call."""
    started = time.perf_counter()
    _claim(dest, force)
    safe_extract(kept, dest)
    log.info("unpacked the Places365 subset kept on your Drive, %s (%.1f GB), in %.0f s", kept,
             kept.stat().st_size / 1e9, time.perf_counter() - started)
    return _finish(dest, dest / DRIVE_ROOT, SPLITS, work_dir)


def photos_at(folder: str | os.PathLike) -> DatasetIndex:
    """The photos to train on at `folder`, indexed: a folder of your own photos is used as it is, with no Kaggle
    call; a missing or empty folder, or one a colorize download started or finished, gets the Places365 subset
    (`download_places365`)."""
    folder = Path(folder)
    ours = folder.is_symlink() or (folder / DONE_MARKER).exists() or (folder / STARTED_MARKER).exists()
    if folder.is_dir() and any(folder.iterdir()) and not ours:
        index = index_dataset(folder)
        log.info("%s: your photos, used as they are (no download): %s", folder, index.counts)
        return index
    return download_places365(folder)


def find_run_file(runs: str | os.PathLike, relative: str | os.PathLike) -> Path:
    """`runs / relative` (a run's checkpoint, e.g. "colab-l1/best.safetensors") if it is there; else, in a Kaggle
    notebook, the same file in a notebook output attached as an input (<input>/<output>/.../runs/colab-l1/...);
    else `runs / relative`, for the message that says how to make it."""
    mine = Path(runs) / relative
    if mine.exists() or Path(relative).is_absolute():
        return mine
    base, tail = kaggle_input_dir(), f"{Path(runs).name}/{relative}"
    # an output is mounted at <input>/<slug> or <input>/notebooks/<owner>/<slug>; its runs folder one level down at most
    found = sorted(p for depth in range(1, 5) for p in base.glob("*/" * depth + tail)) if base.is_dir() else []
    if found:
        log.info("%s: found in an attached notebook output, %s", relative, found[0])
    return found[0] if found else mine


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


def download_cifar10(dest: str | os.PathLike = "data/cifar10", force: bool = False,
                     work_dir: str | os.PathLike | None = None) -> DatasetIndex:
    """Fetch fastai's CIFAR-10 archive ({train,test}/<class>/*.png), extract it safely and index it.

    `work_dir` places the index and the photo cache (`data.work_dir_for`).
    """
    dest = Path(dest)
    if not force and (index := _already_done(dest, ("train", "test"), work_dir)) is not None:
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
    return _finish(dest, target, ("train", "test"), work_dir)

"""Small general helpers: atomic writes, can a folder be written, progress where a bar can draw, worker count,
a fingerprint of files."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from fastai.torch_core import num_distrib
from fastcore.basics import num_cpus
from fastprogress.fastprogress import IN_NOTEBOOK

from .hub import parse_hub_path

log = logging.getLogger(__name__)


def bars_can_draw() -> bool:
    """Progress bars redraw in place: in a terminal or a notebook. In a file or a pipe they are only noise.

    Nor in a process of a distributed launch from a notebook (`parallel.launch`): it is forked from the
    kernel, which shows none of the displays a fork sends.
    """
    return (IN_NOTEBOOK and num_distrib() <= 1) or sys.stdout.isatty()


def in_notebook() -> bool:
    """Whether this process runs in a Jupyter kernel (IPython's notebook front ends: Jupyter, Colab, Kaggle)."""
    return IN_NOTEBOOK


def log_to_stdout(level: int = logging.INFO) -> None:
    """Show colorize's log lines from `level` up on stdout, so a notebook prints them below the cell that logs them.

    Once: a second call adds no second handler. The command line sets its logging up itself.
    """
    logger = logging.getLogger("colorize")
    if not any(getattr(h, "colorize_stdout", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.colorize_stdout = True
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)


def default_workers() -> int:
    """Worker processes when none are asked for: every core this process may use, at most 8."""
    return min(8, num_cpus())



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


def can_write_in(folder: str | os.PathLike) -> bool:
    """Whether new files can be created in the existing `folder`, found out by creating one and deleting it.

    The file system itself answers: a read-only mount (a Kaggle dataset), permissions, ACLs, an NFS
    server that maps root to nobody. Permission bits alone mislead: root passes them everywhere.
    """
    try:
        fd, probe = tempfile.mkstemp(prefix=".colorize-probe-", dir=folder)
    except OSError as e:
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return False
        raise  # a full disk or a missing folder is an error, not an answer
    os.close(fd)
    os.unlink(probe)
    return True


DRIVE_MOUNT = Path("/content/drive")  # where Colab mounts Google Drive ($COLORIZE_DRIVE_MOUNT moves it, e.g. in a test)
DRIVE_RUNS = Path("MyDrive/colorize")  # where runs_dir keeps the runs on it: a relative RUNS_DIR goes under this
SMOKE_FOLDER = "smoke"  # smoke runs (and their photos' index) live in this sub-folder of the runs folder


def in_colab() -> bool:
    """Whether this process runs in Google Colab (its kernel has imported `google.colab`)."""
    return "google.colab" in sys.modules


def drive_folder() -> Path | None:
    """MyDrive/colorize on the Google Drive mounted in this Colab runtime (`runs_dir` mounts it); None elsewhere or
    before it is mounted."""
    mount = Path(os.environ.get("COLORIZE_DRIVE_MOUNT", DRIVE_MOUNT))
    return mount / DRIVE_RUNS if in_colab() and (mount / DRIVE_RUNS.parts[0]).is_dir() else None


def runs_dir(runs: str | os.PathLike, use_drive: bool = True, smoke: bool = False,
             drive_mount: Path | None = None) -> Path:
    """The folder a notebook keeps its runs (and reports) in: `runs`, on Google Drive in Colab if `use_drive`.

    Each Colab notebook runs in its own runtime, whose disk is wiped when it ends: on Drive, notebook 3 finds the
    run notebook 2 made, and a run cut off by the session limit resumes from its last finished epoch. In Colab,
    `use_drive` mounts Drive (Colab asks for permission once per runtime) and puts a relative `runs` under
    MyDrive/colorize/; elsewhere (your machine, Kaggle) it changes nothing. A smoke run goes into a `smoke`
    sub-folder, so a real run never meets a smoke checkpoint.
    """
    folder = Path(runs)
    if use_drive and in_colab():
        from google.colab import drive

        mount = Path(drive_mount or os.environ.get("COLORIZE_DRIVE_MOUNT", DRIVE_MOUNT))
        if not (mount / DRIVE_RUNS.parts[0]).is_dir():
            log.info("mounting Google Drive at %s: each notebook runs in its own Colab runtime, whose disk is wiped "
                     "when it ends, so the runs live on Drive, where the next notebook finds them", mount)
            drive.mount(str(mount))
        folder = mount / DRIVE_RUNS / folder
    return folder / SMOKE_FOLDER if smoke else folder


def unique_output(out_dir: Path, rel: Path, suffix: str, taken: set[Path]) -> Path:
    """`out_dir / rel` with `suffix`, or `-2`, `-3`, ... before it when an earlier input took that name; the name
    returned is added to `taken` (the names planned so far)."""
    out, n = out_dir / rel.with_suffix(suffix), 1
    while out in taken:
        n += 1
        out = out_dir / rel.with_name(f"{rel.stem}-{n}{suffix}")
    taken.add(out)
    return out


def fingerprint(root: Path, rels: list[str], salt: str) -> str:
    """A hash of the files `rels` under `root` (names, sizes, modification times) and `salt`: it changes with them."""
    h = hashlib.sha1(salt.encode())
    for r in rels:
        st = (root / r).stat()
        h.update(f"{r}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def ensure_file(path: str | os.PathLike, make: Callable[[], object], *, writes: tuple[str, ...], missing: str,
                make_if_missing: bool):
    """`path` as given if the file exists (or is an `hf://` path, fetched when read); else `make()` writes it when
    `make_if_missing` (into the folder of `path`, under the names `writes`), or a FileNotFoundError with the
    `missing` message says how to make it."""
    if parse_hub_path(path) is not None or Path(path).is_file():
        return path
    if not make_if_missing:
        raise FileNotFoundError(missing)
    if Path(path).name not in writes:
        raise ValueError(f"{path}: what is made in {Path(path).parent} is saved as {' and '.join(writes)}; name one")
    make()
    return path

"""Small general helpers: atomic writes, progress where a bar can draw, worker count, a fingerprint of files."""

from __future__ import annotations

import hashlib
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from fastai.torch_core import num_distrib
from fastcore.basics import num_cpus
from fastprogress.fastprogress import IN_NOTEBOOK


def bars_can_draw() -> bool:
    """Progress bars redraw in place: in a terminal or a notebook. In a file or a pipe they are only noise.

    Nor in a process of a distributed launch from a notebook (`run.launch`): it is forked from the
    kernel, which shows none of the displays a fork sends.
    """
    return (IN_NOTEBOOK and num_distrib() <= 1) or sys.stdout.isatty()


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



def fingerprint(root: Path, rels: list[str], salt: str) -> str:
    """A hash of the files `rels` under `root` (names, sizes, modification times) and `salt`: it changes with them."""
    h = hashlib.sha1(salt.encode())
    for r in rels:
        st = (root / r).stat()
        h.update(f"{r}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


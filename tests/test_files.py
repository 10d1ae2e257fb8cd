"""colorize.files: the writability probe, atomic writes and the fingerprint that tells when files changed."""

import os

import pytest

from colorize.files import atomic_path, atomic_write_text, can_write_in, fingerprint


def test_can_write_in_asks_the_file_system_and_leaves_nothing(tmp_path):
    assert can_write_in(tmp_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):  # a folder that isn't there is an error, not a "no"
        can_write_in(tmp_path / "missing")


def test_an_atomic_write_that_fails_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "config.json"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half of the n")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"  # the half-written file never took the real name
    atomic_write_text(path, "new")  # the next write reuses the leftover temporary name
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_fingerprint_changes_with_the_files_and_the_salt(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"1234")
    (tmp_path / "b.jpg").write_bytes(b"56")
    first = fingerprint(tmp_path, ["a.jpg", "b.jpg"], "32px")
    assert fingerprint(tmp_path, ["a.jpg", "b.jpg"], "32px") == first
    assert fingerprint(tmp_path, ["a.jpg", "b.jpg"], "64px") != first
    assert fingerprint(tmp_path, ["a.jpg"], "32px") != first
    st = (tmp_path / "a.jpg").stat()
    os.utime(tmp_path / "a.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # touched: same bytes, a new time
    assert fingerprint(tmp_path, ["a.jpg", "b.jpg"], "32px") != first

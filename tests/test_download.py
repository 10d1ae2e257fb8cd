"""colorize.download: the bundled sample photos, Places365 through kagglehub (Kaggle notebooks included), CIFAR-10,
and archives that try to escape their folder.

Everything runs offline on tiny images the tests make: only the network call (`kagglehub.dataset_download`,
`colorize.download.fetch_url`) is replaced. A read-only dataset is tested through the writability probe
(`files.can_write_in`, patched) and for real on a read-only bind mount where the machine allows one.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
from pathlib import Path

import kagglehub
import kagglehub.config
import pytest

from colorize import download
from colorize.data import INDEX_NAME, dataset_cache_dir, index_dataset, screen
from colorize.download import PLACES365_HANDLE, DownloadError, safe_extract, sample_photos

# ---------------------------------------------------------------------------------- sample_photos


def test_sample_photos_written_once(tmp_path):
    dest = sample_photos(tmp_path / "samples")
    files = sorted(dest.rglob("*.png"))
    assert len(files) == 9
    assert {f.parent.name for f in files} == {"train", "valid", "test"}
    assert {f.stem for f in (dest / "test").iterdir()} == set(download.SAMPLE_TEST)
    for f in files:  # real colour photos, all usable, and one black-and-white that the screening drops
        assert screen(f) == ("grayscale (nothing to learn)" if f.stem == "camera" else None), f
    mtimes = {f: f.stat().st_mtime_ns for f in files}

    sample_photos(dest)
    assert sorted(p for p in dest.rglob("*") if p.is_file()) == files
    assert {f: f.stat().st_mtime_ns for f in files} == mtimes

    index = index_dataset(dest, progress=False)
    assert index.counts == {"train": 5, "valid": 1, "test": 2, "excluded": 1}
    assert index.excluded == [("train/camera.png", "grayscale (nothing to learn)")]


def test_sample_photos_in_a_read_only_folder_are_used_and_never_rewritten(tmp_path, read_only, snapshot):
    dest = sample_photos(tmp_path / "samples")
    (dest / "train" / "rocket.png").unlink()
    read_only(dest)
    before = snapshot(dest)
    with pytest.raises(PermissionError, match="can't be written and lacks 1 of the sample photos"):
        sample_photos(dest)
    assert snapshot(dest) == before


# A real read-only mount: `folder` bind-mounted read-only over itself in a private mount namespace, so only


# --------------------------------------------------------------------------------------- downloads


@pytest.fixture
def kaggle_env(tmp_path, monkeypatch):
    """Fake Kaggle credentials in the environment; no real kaggle.json, token or mounted /kaggle/input can be read."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    for var in ("KAGGLE_API_TOKEN", "KAGGLE_KERNEL_RUN_TYPE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(kagglehub.config, "_kaggle_credentials", None)
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")
    monkeypatch.setenv("KAGGLE_CACHE_MOUNT_FOLDER", str(tmp_path / "no-kaggle-input"))  # no mounted datasets
    return monkeypatch


def drop_credentials(monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)


SPLIT_SIZES = {"train_samples": 6, "valid_samples": 3, "test_samples": 2}


class FakeKaggle:
    """Stands in for `kagglehub.dataset_download`: writes the Places365 subset's layout in miniature."""

    def __init__(self, colour_photo, fail_after: int | None = None):
        self.calls = []
        self.colour_photo, self.fail_after = colour_photo, fail_after

    def __call__(self, handle, path=None, *, force_download=False, output_dir=None):
        self.calls.append({"handle": handle, "path": path, "force_download": force_download, "output_dir": output_dir})
        written = 0
        for folder, n in SPLIT_SIZES.items():
            for i in range(n):
                if self.fail_after is not None and written == self.fail_after:
                    raise ConnectionError("connection reset by peer")
                out = Path(output_dir) / "val_256" / folder / f"{folder[:2]}{i:05d}.jpg"
                out.parent.mkdir(parents=True, exist_ok=True)
                self.colour_photo(16, 16, seed=written).save(out, quality=90)
                written += 1
        return output_dir


@pytest.fixture
def fake_kaggle(colour_photo):
    """A maker: `fake_kaggle(fail_after=None)`, a `FakeKaggle` that fails after writing that many photos."""
    return lambda fail_after=None: FakeKaggle(colour_photo, fail_after)


def test_places365_download_reports_counts_and_second_run_does_nothing(tmp_path, kaggle_env, caplog, fake_kaggle):
    fake = fake_kaggle()
    kaggle_env.setattr(kagglehub, "dataset_download", fake)
    dest = tmp_path / "places365"
    with caplog.at_level(logging.INFO, logger="colorize.data"):
        index = download.download_places365(dest)

    assert fake.calls == [{"handle": PLACES365_HANDLE, "path": None, "force_download": False, "output_dir": str(dest)}]
    assert index.counts == {"train": 6, "valid": 3, "test": 2, "excluded": 0}
    assert "'train': 6" in caplog.text and "'valid': 3" in caplog.text and "'test': 2" in caplog.text
    assert all("train_samples" in p.parent.name for p in index.files("train"))

    drop_credentials(kaggle_env)  # a complete download needs neither the network nor credentials
    again = download.download_places365(dest)
    assert len(fake.calls) == 1
    assert again.counts == index.counts and again.items == index.items


def test_places365_interrupted_download_recovers(tmp_path, kaggle_env, fake_kaggle):
    dest = tmp_path / "places365"
    broken = fake_kaggle(fail_after=5)
    kaggle_env.setattr(kagglehub, "dataset_download", broken)
    with pytest.raises(DownloadError, match="run the same command again") as info:
        download.download_places365(dest)
    assert "ConnectionError" in str(info.value)
    assert len(list(dest.rglob("*.jpg"))) == 5

    fake = fake_kaggle()
    kaggle_env.setattr(kagglehub, "dataset_download", fake)
    index = download.download_places365(dest)
    assert [c["force_download"] for c in fake.calls] == [True]
    assert index.counts == {"train": 6, "valid": 3, "test": 2, "excluded": 0}

    download.download_places365(dest)
    assert len(fake.calls) == 1


def test_places365_missing_credentials_say_what_to_do(tmp_path, kaggle_env, fake_kaggle):
    drop_credentials(kaggle_env)
    fake = fake_kaggle()
    kaggle_env.setattr(kagglehub, "dataset_download", fake)
    dest = tmp_path / "places365"
    with pytest.raises(DownloadError) as info:
        download.download_places365(dest)
    message = str(info.value)
    assert "KAGGLE_USERNAME" in message and "KAGGLE_KEY" in message and "kaggle.json" in message
    assert fake.calls == []
    assert not dest.exists()


def test_places365_kaggle_json_is_accepted(tmp_path, kaggle_env, fake_kaggle):
    drop_credentials(kaggle_env)
    config = tmp_path / "home" / ".kaggle"
    config.mkdir()
    (config / "kaggle.json").write_text(json.dumps({"username": "someone", "key": "0123"}))
    fake = fake_kaggle()
    kaggle_env.setattr(kagglehub, "dataset_download", fake)
    assert download.download_places365(tmp_path / "places365").counts["train"] == 6
    assert len(fake.calls) == 1


def test_places365_refuses_a_folder_of_someone_elses_files(tmp_path, kaggle_env, colour_photo, fake_kaggle):
    dest = tmp_path / "mine"
    dest.mkdir()
    colour_photo().save(dest / "holiday.jpg")
    fake = fake_kaggle()
    kaggle_env.setattr(kagglehub, "dataset_download", fake)
    with pytest.raises(DownloadError, match="--force"):
        download.download_places365(dest)
    assert fake.calls == []
    assert sorted(p.name for p in dest.iterdir()) == ["holiday.jpg"]

    download.download_places365(dest, force=True)
    assert [c["force_download"] for c in fake.calls] == [True]


def test_places365_download_missing_a_split_is_reported(tmp_path, kaggle_env, write_photos):
    def only_train(handle, path=None, *, force_download=False, output_dir=None):
        write_photos(Path(output_dir) / "val_256" / "train_samples", 4, size=(8, 8))
        return output_dir

    kaggle_env.setattr(kagglehub, "dataset_download", only_train)
    with pytest.raises(DownloadError, match="incomplete.*test"):
        download.download_places365(tmp_path / "places365")


@pytest.fixture
def places365_copy(write_photos):
    """A writer: `places365_copy(folder)`, the Places365 subset's layout in miniature
    (val_256/{train,valid,test}_samples) as Kaggle mounts it; returns the folder."""

    def write(folder) -> Path:
        for split_folder, n in SPLIT_SIZES.items():
            write_photos(folder / "val_256" / split_folder, n, prefix=split_folder[:2], size=(16, 16))
        return folder

    return write


def in_a_kaggle_notebook(monkeypatch, input_dir) -> None:
    """The environment a Kaggle notebook gives kagglehub (no Kaggle credentials), its mounts under `input_dir`."""
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.setenv("KAGGLE_DATA_PROXY_URL", "http://127.0.0.1:9")  # never reached: dataset_download is replaced
    monkeypatch.setenv("KAGGLE_CACHE_MOUNT_FOLDER", str(input_dir))


@pytest.mark.parametrize("layout", ["places365", "datasets/pankajkumar2002/places365"])
def test_places365_attached_to_a_kaggle_notebook_is_used_in_place(tmp_path, kaggle_env, read_only, layout, snapshot,
                                                                  places365_copy):
    copy = places365_copy(tmp_path / "input" / layout)
    read_only(tmp_path / "input")
    before = snapshot(tmp_path / "input")
    kaggle_env.setenv("KAGGLE_CACHE_MOUNT_FOLDER", str(tmp_path / "input"))
    drop_credentials(kaggle_env)  # Kaggle notebooks have none unless the user adds them
    kaggle_env.setattr(kagglehub, "dataset_download", lambda *a, **k: pytest.fail("downloaded an attached dataset"))
    dest = tmp_path / "working" / "data" / "places365"

    index = download.download_places365(dest)
    assert dest.is_symlink() and dest.resolve() == copy.resolve()  # `--data data/places365` works as anywhere
    assert index.root == dest and index.counts == {"train": 6, "valid": 3, "test": 2, "excluded": 0}
    assert index.work_dir == dataset_cache_dir(copy) and (index.work_dir / INDEX_NAME).exists()
    again = download.download_places365(dest)
    assert again.items == index.items and again.work_dir == index.work_dir
    assert index_dataset(dest, progress=False).items == index.items  # what the notebooks do next
    assert snapshot(tmp_path / "input") == before  # not a byte copied or written


def test_places365_in_a_kaggle_notebook_is_where_kagglehub_mounts_it(tmp_path, kaggle_env, read_only, places365_copy):
    in_a_kaggle_notebook(kaggle_env, tmp_path / "input")
    drop_credentials(kaggle_env)
    copy = places365_copy(tmp_path / "input" / "places365-mounted-by-kagglehub")
    read_only(copy)
    calls = []

    def attach(handle, path=None, *, force_download=False, output_dir=None):
        calls.append((handle, path, force_download, output_dir))
        return str(copy)

    kaggle_env.setattr(kagglehub, "dataset_download", attach)
    index = download.download_places365(tmp_path / "places365")
    assert calls == [(PLACES365_HANDLE, None, False, None)]  # attach it, no output_dir: Kaggle mounts, never copies
    assert (tmp_path / "places365").resolve() == copy.resolve() and index.counts["train"] == 6
    assert not any(p.name == INDEX_NAME for p in copy.rglob("*"))


def test_places365_in_a_kaggle_notebook_that_cant_attach_it_says_how(tmp_path, kaggle_env, places365_copy):
    in_a_kaggle_notebook(kaggle_env, tmp_path / "input")

    def no_attach(*args, **kwargs):
        raise ConnectionError("proxy unreachable")

    kaggle_env.setattr(kagglehub, "dataset_download", no_attach)
    with pytest.raises(DownloadError, match="Add Input"):
        download.download_places365(tmp_path / "places365")
    assert not (tmp_path / "places365").exists()

    copy = places365_copy(tmp_path / "input" / "places365")  # attached by hand: found on disk
    assert download.download_places365(tmp_path / "places365").root.resolve() == copy.resolve()


def test_places365_attached_copy_never_replaces_a_folder_of_files(tmp_path, kaggle_env, read_only, colour_photo,
                                                                  places365_copy):
    copy = places365_copy(tmp_path / "input" / "places365")
    read_only(copy)
    kaggle_env.setenv("KAGGLE_CACHE_MOUNT_FOLDER", str(tmp_path / "input"))
    dest = tmp_path / "mine"
    dest.mkdir()
    colour_photo().save(dest / "holiday.jpg")
    with pytest.raises(DownloadError, match=f"--data {copy}"):
        download.download_places365(dest)
    assert sorted(p.name for p in dest.iterdir()) == ["holiday.jpg"]


def test_a_read_only_dest_is_used_as_it_is_or_refused_if_empty(tmp_path, kaggle_env, read_only, snapshot,
                                                               places365_copy):
    kaggle_env.setattr(kagglehub, "dataset_download", lambda *a, **k: pytest.fail("downloaded into a read-only dest"))
    full, empty = places365_copy(tmp_path / "shared" / "places365"), tmp_path / "shared" / "empty"
    empty.mkdir()
    read_only(tmp_path / "shared")
    before = snapshot(tmp_path / "shared")
    assert download.download_places365(full).counts == {"train": 6, "valid": 3, "test": 2, "excluded": 0}
    with pytest.raises(DownloadError, match="empty and can't be downloaded into.*another --dest"):
        download.download_places365(empty)
    assert snapshot(tmp_path / "shared") == before  # no index, no marker, nothing


@pytest.mark.slow
def test_a_real_read_only_kaggle_input_is_used_in_place(tmp_path, run_on_read_only, snapshot, places365_copy):
    input_dir = tmp_path / "input"
    places365_copy(input_dir / "places365")
    before = snapshot(input_dir)
    code = f"""
import json
from colorize.download import download_places365
index = download_places365({str(tmp_path / "working" / "places365")!r})
print(json.dumps({{"root": str(index.root.resolve()), "work_dir": str(index.work_dir), "counts": index.counts}}))
"""
    env = {"XDG_CACHE_HOME": str(tmp_path / "user-cache"), "KAGGLE_CACHE_MOUNT_FOLDER": str(input_dir),
           "KAGGLE_CONFIG_DIR": str(tmp_path / "no-credentials"), "KAGGLE_USERNAME": "", "KAGGLE_KEY": ""}
    got = run_on_read_only(input_dir, code, env)
    assert got["root"] == str((input_dir / "places365").resolve())
    assert got["counts"] == {"train": 6, "valid": 3, "test": 2, "excluded": 0}
    assert Path(got["work_dir"]).parent == tmp_path / "user-cache" / "colorize" / "datasets"
    assert snapshot(input_dir) == before


CIFAR_CLASSES = ("cat", "ship")


@pytest.fixture
def make_cifar_tgz(colour_photo):
    """A writer: `make_cifar_tgz(path, n_train=10, n_test=3)`, fastai's cifar10.tgz layout in miniature:
    cifar10/{train,test}/<class>/*.png and labels.txt."""
    return lambda path, n_train=10, n_test=3: _cifar_tgz(colour_photo, path, n_train, n_test)


def _cifar_tgz(colour_photo, path, n_train: int, n_test: int) -> None:
    with tarfile.open(path, "w:gz") as tar:

        def add(name, payload: bytes):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))

        add("cifar10/labels.txt", "\n".join(CIFAR_CLASSES).encode())
        seed = 0
        for split, n in (("train", n_train), ("test", n_test)):
            for cls in CIFAR_CLASSES:
                for i in range(n):
                    buf = io.BytesIO()
                    colour_photo(32, 32, seed=seed).save(buf, "PNG")
                    seed += 1
                    add(f"cifar10/{split}/{cls}/{i}_{cls}.png", buf.getvalue())


def test_cifar10_download_extracts_and_indexes(tmp_path, monkeypatch, make_cifar_tgz):
    calls = []

    def fake_fetch(url, dest):
        calls.append(url)
        make_cifar_tgz(dest)
        return dest

    monkeypatch.setattr(download, "fetch_url", fake_fetch)
    dest = tmp_path / "cifar10"
    index = download.download_cifar10(dest)
    assert calls == [download.CIFAR10_URL]
    counts = index.counts  # valid: about 10% of CIFAR's train folder, by hash
    assert counts["train"] + counts["valid"] == 20 and counts["valid"] >= 1 and counts["test"] == 6
    assert index.root == dest / "cifar10"
    assert not (dest / "cifar10.tgz").exists()
    assert all(p.parent.parent.name == "test" for p in index.files("test"))
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == ["cifar10"]  # no leftovers

    again = download.download_cifar10(dest)
    assert calls == [download.CIFAR10_URL] and again.items == index.items


def test_cifar10_network_failure_says_run_again(tmp_path, monkeypatch):
    def offline(url, dest):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(download, "fetch_url", offline)
    with pytest.raises(DownloadError, match="run the same command again"):
        download.download_cifar10(tmp_path / "cifar10")


def evil_tar(path, name: str, link: str | None = None) -> None:
    with tarfile.open(path, "w") as tar:
        ok = tarfile.TarInfo("fine/ok.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        bad = tarfile.TarInfo(name)
        if link is None:
            bad.size = 4
            tar.addfile(bad, io.BytesIO(b"evil"))
        else:
            bad.type, bad.linkname = tarfile.SYMTYPE, link
            tar.addfile(bad)


def files_under(folder) -> set:
    return {p for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink_out"])
def test_safe_extract_refuses_members_that_escape(tmp_path, kind):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "box" / "dest"
    name, link = {
        "dotdot": ("../../outside/evil.txt", None),
        "absolute": (str(outside / "evil.txt"), None),
        "symlink_out": ("fine/link", str(outside / "target.txt")),
    }[kind]
    evil_tar(tmp_path / "evil.tar", name, link)
    before = files_under(tmp_path) - {tmp_path / "evil.tar"}

    with pytest.raises(DownloadError, match="refusing to extract"):
        safe_extract(tmp_path / "evil.tar", dest)
    after = files_under(tmp_path) - {tmp_path / "evil.tar"}
    assert {p for p in after - before if dest not in p.parents} == set()
    assert not (outside / "evil.txt").exists()
    assert not any("evil" in p.name for p in after)  # refused, not quietly rewritten inside dest


def test_safe_extract_extracts_a_normal_archive(tmp_path, make_cifar_tgz):
    make_cifar_tgz(tmp_path / "c.tgz", n_train=1, n_test=1)
    out = safe_extract(tmp_path / "c.tgz", tmp_path / "out")
    assert (out / "cifar10" / "train" / "cat" / "0_cat.png").is_file()
    assert (out / "cifar10" / "labels.txt").read_text().split() == list(CIFAR_CLASSES)


def test_a_folder_of_your_own_photos_is_used_as_it_is_without_a_kaggle_call(tmp_path, write_photos, monkeypatch):
    def no_kaggle(*args, **kwargs):
        raise AssertionError("Kaggle was called for a folder of the user's own photos")

    monkeypatch.setattr(download, "download_places365", no_kaggle)
    write_photos(tmp_path / "mine", 12)
    assert sum(download.photos_at(tmp_path / "mine").counts.values()) == 12
    with pytest.raises(AssertionError, match="Kaggle was called"):  # an empty folder is where Places365 goes
        download.photos_at(tmp_path / "empty")


def test_a_run_file_is_found_in_an_attached_kaggle_notebook_output(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_CACHE_MOUNT_FOLDER", str(tmp_path / "input"))
    runs = tmp_path / "working" / "runs"
    assert download.find_run_file(runs, "colab-l1/best.safetensors") == runs / "colab-l1/best.safetensors"  # not there
    attached = tmp_path / "input" / "notebooks" / "me" / "pretrain" / "runs" / "colab-l1" / "best.safetensors"
    attached.parent.mkdir(parents=True)
    attached.write_bytes(b"weights")
    assert download.find_run_file(runs, "colab-l1/best.safetensors") == attached
    (runs / "colab-l1").mkdir(parents=True)
    (runs / "colab-l1" / "best.safetensors").write_bytes(b"mine")
    assert download.find_run_file(runs, "colab-l1/best.safetensors") == runs / "colab-l1/best.safetensors"  # own first


def test_in_colab_the_download_is_kept_on_drive_and_a_fresh_disk_unpacks_it_without_kaggle(tmp_path, kaggle_env,
                                                                                          fake_kaggle, caplog):
    import sys
    import types

    kaggle_env.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))  # a Colab runtime
    kaggle_env.setenv("COLORIZE_DRIVE_MOUNT", str(tmp_path / "drive"))
    fake = fake_kaggle()
    kaggle_env.setattr(kagglehub, "dataset_download", fake)
    first = download.download_places365(tmp_path / "disk1" / "places365")  # Drive not mounted: nothing kept
    assert not (tmp_path / "drive").exists()
    (tmp_path / "drive" / "MyDrive").mkdir(parents=True)  # runs_dir mounted it
    with caplog.at_level(logging.INFO, logger="colorize.download"):
        index = download.download_places365(tmp_path / "disk2" / "places365")
    kept = tmp_path / "drive" / "MyDrive" / "colorize" / download.DRIVE_ARCHIVE
    assert len(fake.calls) == 2 and kept.exists() and "kept the Places365 subset on your Drive" in caplog.text
    with tarfile.open(kept) as tar:
        names = tar.getnames()
    assert len([n for n in names if n.endswith(".jpg")]) == sum(index.counts[s] for s in ("train", "valid", "test"))
    assert not [n for n in names if ".colorize" in n]  # no download markers

    drop_credentials(kaggle_env)  # the next notebook's fresh disk: no Kaggle call, no credentials needed
    kaggle_env.setattr(kagglehub, "dataset_download", lambda *a, **k: pytest.fail("downloaded what Drive keeps"))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="colorize.download"):
        unpacked = download.download_places365(tmp_path / "disk3" / "places365")
    assert unpacked.counts == index.counts and "unpacked the Places365 subset kept on your Drive" in caplog.text
    assert download.download_places365(tmp_path / "disk3" / "places365").counts == index.counts  # then: done
    assert first.counts == index.counts

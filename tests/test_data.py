"""colorize.data: decoding every PIL mode, screening, indexing/splits, DataLoaders, read-only datasets, sample
photos, downloads (Kaggle notebooks included).

Everything runs offline on tiny images the tests make; for downloads only the network call
(`kagglehub.dataset_download`, `colorize.download.fetch_url`) is replaced. A read-only dataset is
tested twice: through the writability probe (`files.can_write_in`, patched), and for real on a
read-only bind mount in a private mount namespace where the machine allows one (else skipped, saying why).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import kagglehub
import kagglehub.config
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

import colorize
from colorize import data, download
from colorize.data import (EXCLUDED_NAME, INDEX_NAME, META_NAME, assign_splits, BadImageError, dataset_cache_dir,
                           index_dataset, is_grayscale, load_rgb, screen)
from colorize.download import PLACES365_HANDLE, DownloadError, safe_extract, sample_photos
from colorize.config import DataConfig, MachineConfig
from colorize.files import can_write_in
from colorize.loaders import CACHE_DIR, make_dataloaders
from colorize.lab import rgb_to_lab_net

# ------------------------------------------------------------------------------------------ helpers


def colour_photo(h: int = 24, w: int = 32, seed: int = 0) -> Image.Image:
    """Random colour noise: unmistakably not grayscale, tiny."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def astronaut(size: int = 96) -> Image.Image:
    """A real colour photo (scikit-image), small."""
    return Image.fromarray(skdata.astronaut()).resize((size, size), Image.BILINEAR)


def jpeg_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **kw)
    return buf.getvalue()


def write_photos(folder, n: int, prefix: str = "p", seed: int = 0, size=(24, 32)) -> list:
    """`n` colour JPEGs of `size` (H, W) named prefix000.jpg...; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{prefix}{i:03d}.jpg"
        colour_photo(*size, seed=seed + i).save(p)
        paths.append(p)
    return paths


def write_broken(folder) -> dict[str, str]:
    """One broken file of each kind; returns {file name: start of the expected screening reason}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is a shopping list, not a photo\n")
    whole = jpeg_bytes(colour_photo(64, 64, seed=99), quality=95)
    (folder / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    gray = astronaut().convert("L").convert("RGB")
    gray.save(folder / "gray_as_rgb.jpg", quality=75)
    return {"empty.jpg": "empty file", "notes.jpg": "not an image", "cut.jpg": "unreadable",
            "gray_as_rgb.jpg": "grayscale"}


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def pixels(im: Image.Image) -> np.ndarray:
    assert im.mode == "RGB"
    return np.asarray(im).astype(int)  # (H,W,3)


# ---------------------------------------------------------------------------------------- load_rgb


def test_load_rgb_gray_modes_become_equal_channel_rgb(tmp_path):
    gray = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "l.png")
    out = pixels(load_rgb(tmp_path / "l.png"))
    assert out.shape == (2, 2, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_load_rgb_mode_1(tmp_path):
    im = Image.new("1", (3, 2), 0)
    im.putpixel((1, 0), 1)
    im.save(tmp_path / "bw.png")
    out = pixels(load_rgb(tmp_path / "bw.png"))
    assert out[0, 1].tolist() == [255, 255, 255]
    assert out[1, 2].tolist() == [0, 0, 0]


def test_load_rgb_la_composites_alpha_on_white(tmp_path):
    im = Image.new("LA", (3, 1))
    im.putdata([(100, 255), (100, 0), (100, 128)])  # opaque, transparent, half
    im.save(tmp_path / "la.png")
    out = pixels(load_rgb(tmp_path / "la.png"))
    assert out[0, 0].tolist() == [100, 100, 100]
    assert out[0, 1].tolist() == [255, 255, 255]
    np.testing.assert_allclose(out[0, 2], 100 * 128 / 255 + 255 * 127 / 255, atol=1.5)


def test_load_rgb_rgba_composites_on_white(tmp_path):
    im = Image.new("RGBA", (3, 1))
    im.putdata([(255, 0, 0, 255), (0, 0, 255, 0), (0, 0, 0, 128)])
    im.save(tmp_path / "rgba.png")
    out = pixels(load_rgb(tmp_path / "rgba.png"))
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[0, 1].tolist() == [255, 255, 255]  # fully transparent: white, not the hidden blue or black
    np.testing.assert_allclose(out[0, 2], [127, 127, 127], atol=1.5)


def test_load_rgb_rgb_with_a_transparent_colour_composites_it_on_white(tmp_path):
    im = Image.new("RGB", (4, 4), (10, 20, 30))
    im.putpixel((0, 0), (0, 0, 0))
    im.save(tmp_path / "trns.png", transparency=(0, 0, 0))  # a tRNS chunk: black is transparent
    out = np.asarray(load_rgb(tmp_path / "trns.png"))
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[1, 1]) == (10, 20, 30)


def test_load_rgb_palette_with_and_without_transparency(tmp_path):
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9)
    im = Image.new("P", (3, 1))
    im.putpalette(palette)
    im.putdata([0, 1, 2])
    im.save(tmp_path / "p.png")
    assert pixels(load_rgb(tmp_path / "p.png"))[0].tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 255]]

    im.save(tmp_path / "p_transparent.png", transparency=1)  # green is the transparent index
    assert Image.open(tmp_path / "p_transparent.png").mode == "P"
    out = pixels(load_rgb(tmp_path / "p_transparent.png"))
    assert out[0].tolist() == [[255, 0, 0], [255, 255, 255], [0, 0, 255]]


def test_load_rgb_cmyk(tmp_path):
    im = Image.new("CMYK", (3, 1))
    im.putdata([(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255)])  # paper white, full cyan, full black
    im.save(tmp_path / "cmyk.tif")
    out = pixels(load_rgb(tmp_path / "cmyk.tif"))
    assert out[0].tolist() == [[255, 255, 255], [0, 255, 255], [0, 0, 0]]

    im.save(tmp_path / "cmyk.jpg", quality=95)  # CMYK JPEGs exist in the wild; PIL decodes them
    np.testing.assert_allclose(pixels(load_rgb(tmp_path / "cmyk.jpg")), out, atol=40)


def test_load_rgb_16bit_gray_png_is_rescaled_not_clipped(tmp_path):
    a = np.array([[0, 32768], [65535, 16384]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")  # I;16 in current Pillow
    out = pixels(load_rgb(tmp_path / "g16.png"))
    np.testing.assert_allclose(out[..., 0], [[0, 128], [255, 64]], atol=1)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_load_rgb_dark_16bit_png_stays_dark(tmp_path):
    """A 16-bit photo whose values all happen to be <= 255 is nearly black, not an 8-bit photo."""
    a = np.array([[0, 100], [200, 255]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "dark16.png")
    assert Image.open(tmp_path / "dark16.png").mode == "I;16"
    out = pixels(load_rgb(tmp_path / "dark16.png"))
    assert out.max() <= 1


@pytest.mark.parametrize(
    "values, expected",
    [
        ([[0, 128], [255, 64]], [[0, 128], [255, 64]]),  # 32-bit ints holding 8-bit values
        ([[0, 32768], [65535, 16384]], [[0, 128], [255, 64]]),  # 32-bit ints holding 16-bit values
    ],
)
def test_load_rgb_mode_I(tmp_path, values, expected):
    Image.fromarray(np.array(values, dtype=np.int32), "I").save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    np.testing.assert_allclose(pixels(load_rgb(tmp_path / "i.tif"))[..., 0], expected, atol=1)


@pytest.mark.parametrize(
    "values, expected",
    [
        ([[0.0, 0.5], [1.0, 0.25]], [[0, 128], [255, 64]]),  # float in [0, 1]
        ([[0.0, 128.0], [255.0, 64.0]], [[0, 128], [255, 64]]),  # float in [0, 255]
    ],
)
def test_load_rgb_mode_F(tmp_path, values, expected):
    Image.fromarray(np.array(values, dtype=np.float32), "F").save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    np.testing.assert_allclose(pixels(load_rgb(tmp_path / "f.tif"))[..., 0], expected, atol=1)


@pytest.mark.parametrize("orientation, top_colour", [(6, "red"), (8, "blue")])
def test_load_rgb_applies_exif_orientation(tmp_path, orientation, top_colour):
    """Stored 40 wide x 20 tall, red left half, blue right half; the camera says rotate it."""
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"rot{orientation}.jpg"
    im.save(path, exif=exif, quality=95)
    assert Image.open(path).size == (40, 20)

    out = load_rgb(path)
    assert out.size == (20, 40)  # portrait after rotation
    a = pixels(out)
    top, bottom = a[5, 10], a[35, 10]
    red, blue = [255, 0, 0], [0, 0, 255]
    expect_top, expect_bottom = (red, blue) if top_colour == "red" else (blue, red)
    np.testing.assert_allclose(top, expect_top, atol=30)  # 6 = rotate 90 clockwise: left goes up
    np.testing.assert_allclose(bottom, expect_bottom, atol=30)


def test_load_rgb_rgb_jpeg_round_trip(tmp_path):
    im = astronaut(64)
    im.save(tmp_path / "a.png")
    np.testing.assert_array_equal(pixels(load_rgb(tmp_path / "a.png")), np.asarray(im))


@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "missing"])
def test_load_rgb_bad_files_raise_bad_image_error_with_path(tmp_path, kind):
    path = tmp_path / f"{kind}.jpg"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, I am not a JPEG")
    elif kind == "truncated":
        whole = jpeg_bytes(colour_photo(64, 64))
        path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(BadImageError) as info:
        load_rgb(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


# ------------------------------------------------------------------------------------------ screen


def test_screen_excludes_grayscale_photo_saved_as_rgb_jpeg(tmp_path):
    gray = astronaut().convert("L").convert("RGB")
    gray.save(tmp_path / "g.jpg", quality=75)
    assert Image.open(tmp_path / "g.jpg").mode == "RGB"
    assert screen(tmp_path / "g.jpg").startswith("grayscale")


def test_screen_excludes_single_channel_gray(tmp_path):
    astronaut().convert("L").save(tmp_path / "g.png")
    assert screen(tmp_path / "g.png").startswith("grayscale")


def test_screen_excludes_nearly_gray_scan(tmp_path):
    """A B&W print scanned in colour: channels differ by a level or two of sensor noise, still no colour."""
    g = np.asarray(astronaut().convert("L"), dtype=np.int16)[..., None]  # (H,W,1)
    noise = np.random.default_rng(0).integers(-2, 3, (*g.shape[:2], 3))
    Image.fromarray(np.clip(g + noise, 0, 255).astype(np.uint8)).save(tmp_path / "scan.png")
    assert screen(tmp_path / "scan.png").startswith("grayscale")


def test_screen_keeps_colour_photo(tmp_path):
    astronaut().save(tmp_path / "c.jpg", quality=75)
    assert screen(tmp_path / "c.jpg") is None


def test_screen_keeps_sepia_photo(tmp_path):
    g = np.asarray(astronaut().convert("L"), dtype=np.float32)[..., None]  # (H,W,1)
    sepia = np.clip(g * np.array([1.0, 0.85, 0.65]) + np.array([20, 5, 0]), 0, 255).astype(np.uint8)
    Image.fromarray(sepia).save(tmp_path / "sepia.jpg", quality=75)
    assert screen(tmp_path / "sepia.jpg") is None


def test_is_grayscale_on_images_in_memory():
    assert is_grayscale(astronaut().convert("L"))
    assert is_grayscale(astronaut().convert("L").convert("RGB"))
    assert not is_grayscale(astronaut())
    assert not is_grayscale(colour_photo())


def test_screen_gives_reasons_for_broken_files(tmp_path):
    expected = write_broken(tmp_path)
    for name, reason in expected.items():
        got = screen(tmp_path / name)
        assert got is not None and got.startswith(reason), (name, got)
    assert "truncated" in screen(tmp_path / "cut.jpg")


# ----------------------------------------------------------------------------------- index_dataset


def test_index_excludes_broken_files_with_counts_and_lists_them(tmp_path, caplog):
    root = tmp_path / "photos"
    good = write_photos(root, 10)
    expected = write_broken(root / "sub")
    with caplog.at_level(logging.INFO, logger="colorize.data"):
        index = index_dataset(root, progress=False)

    assert index.counts["excluded"] == len(expected) == 4
    assert sum(index.counts[s] for s in ("train", "valid", "test")) == len(good)
    indexed = {p.name for s in ("train", "valid", "test") for p in index.files(s)}
    assert indexed == {p.name for p in good}
    assert "excluded 4 of 14" in caplog.text

    rows = read_csv(root / EXCLUDED_NAME)
    assert {r["path"]: r["reason"].split(" (")[0] for r in rows} == {f"sub/{n}": why.split(" (")[0]
                                                                    for n, why in expected.items()}
    listed = read_csv(root / INDEX_NAME)
    assert sorted(r["path"] for r in listed) == sorted(p.name for p in good)
    assert {r["split"] for r in listed} <= {"train", "valid", "test"}


def test_index_of_folder_without_images_says_so(tmp_path):
    (tmp_path / "readme.txt").write_text("no photos here")
    with pytest.raises(FileNotFoundError, match="no images"):
        index_dataset(tmp_path, progress=False)
    with pytest.raises(FileNotFoundError, match="no data folder"):
        index_dataset(tmp_path / "nope", progress=False)


def test_index_files_rejects_unknown_split(tmp_path):
    write_photos(tmp_path, 3)
    with pytest.raises(ValueError, match="train, valid, test"):
        index_dataset(tmp_path, progress=False).files("training")


def split_map(index) -> dict[str, str]:
    return dict(index.items)


def test_seeded_split_is_deterministic_and_near_80_10_10(tmp_path):
    write_photos(tmp_path, 200, size=(8, 8))
    a = index_dataset(tmp_path, seed=1, progress=False)
    b = index_dataset(tmp_path, seed=2, progress=False)
    again = index_dataset(tmp_path, seed=1, progress=False)
    assert split_map(again) == split_map(a)
    assert split_map(b) != split_map(a)
    for index in (a, b):  # each photo is a 10% draw for test and for valid: binomial(200, 0.1) is 20 +- 4.2
        assert 150 <= index.counts["train"] <= 170 and 10 <= index.counts["valid"] <= 30
        assert 10 <= index.counts["test"] <= 30


def test_adding_or_removing_photos_moves_no_other(tmp_path):
    write_photos(tmp_path, 50, size=(8, 8))
    before = split_map(index_dataset(tmp_path, progress=False))
    for i in range(5):
        colour_photo(8, 8, seed=1000 + i).save(tmp_path / f"new{i}.jpg")
    (tmp_path / next(iter(before))).unlink()
    after = split_map(index_dataset(tmp_path, progress=False))
    assert "new0.jpg" in after and len(after) == 54
    assert {r: s for r, s in after.items() if r in before} == {r: s for r, s in before.items() if r in after}


@pytest.mark.parametrize("n", [2, 3, 5])
def test_a_tiny_folder_still_gets_a_valid_photo_and_from_three_a_test_photo(tmp_path, n):
    splits = assign_splits([f"p{i}.jpg" for i in range(n)], seed=0)
    counts = Counter(splits.values())
    assert counts["valid"] >= 1 and counts["train"] >= 1 and (counts["test"] >= 1) == (n >= 3)


def test_train_and_test_folders_lend_valid_photos_from_train(tmp_path):
    rels = [f"train/p{i}.jpg" for i in range(100)] + [f"test/q{i}.jpg" for i in range(10)]
    splits = assign_splits(rels)
    assert all(splits[r] == "test" for r in rels[100:])
    assert 3 <= sum(splits[r] == "valid" for r in rels[:100]) <= 20  # about 10% of train


def test_places365_folder_splits_are_used(tmp_path):
    base = tmp_path / "val_256"
    want = {}
    for folder, split, n in (("train_samples", "train", 6), ("valid_samples", "valid", 3), ("test_samples", "test", 2)):
        for p in write_photos(base / folder, n, prefix=folder, size=(8, 8)):
            want[p.relative_to(tmp_path).as_posix()] = split
    index = index_dataset(tmp_path, progress=False)
    assert split_map(index) == want
    assert index.counts == {"train": 6, "valid": 3, "test": 2, "excluded": 0}


def test_train_and_test_folders_without_valid_take_valid_from_train(tmp_path):
    train = write_photos(tmp_path / "train" / "cats", 20, size=(8, 8))
    test = write_photos(tmp_path / "test" / "cats", 4, prefix="t", size=(8, 8))
    index = index_dataset(tmp_path, progress=False)
    assert index.counts == {"train": 18, "valid": 2, "test": 4, "excluded": 0}
    assert set(index.files("valid")) <= set(train)
    assert set(index.files("test")) == set(test)


def test_index_is_reused_until_files_change(tmp_path, monkeypatch):
    root = tmp_path / "photos"
    write_photos(root, 12, size=(8, 8))
    first = index_dataset(root, progress=False)

    def must_not_screen(path):
        raise AssertionError(f"screened {path} again although nothing changed")

    monkeypatch.setattr(data, "screen", must_not_screen)
    reused = index_dataset(root, progress=False)
    assert reused.items == first.items and reused.excluded == first.excluded

    calls = []

    def counting_screen(path):
        calls.append(path)
        return screen(path)  # the real one, imported above

    monkeypatch.setattr(data, "screen", counting_screen)
    colour_photo(8, 8, seed=500).save(root / "added.jpg")
    rebuilt = index_dataset(root, progress=False)
    assert len(calls) == 13
    assert "added.jpg" in split_map(rebuilt)

    calls.clear()
    (root / "p000.jpg").write_bytes(b"")  # a file that changes is screened again
    changed = index_dataset(root, progress=False)
    assert calls and ("p000.jpg", "empty file") in changed.excluded
    assert "p000.jpg" not in split_map(changed)


# --------------------------------------------------------------------------------- make_dataloaders


@pytest.fixture
def tiny_folder(tmp_path):
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
    from fastai.learner import Learner

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


def test_dataloaders_need_train_and_valid(tmp_path):
    write_photos(tmp_path / "train", 3, size=(8, 8))
    write_photos(tmp_path / "test", 1, prefix="t", size=(8, 8))
    index = index_dataset(tmp_path, progress=False)
    index.items = [(p, s) for p, s in index.items if s != "valid"]
    with pytest.raises(ValueError, match="both train and valid"):
        make_dataloaders(index, DataConfig(size=8, bs=2), MachineConfig(workers=0))


# ------------------------------------------------------------------------------------ read-only datasets


def snapshot(folder) -> dict:
    """Every file and folder under `folder` with its size and modification time: any write changes it."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """Mark folders read-only for colorize's writability probe (`can_write_in`); the user cache goes to tmp_path."""
    marked = []

    def probe(folder):
        return not any(Path(folder).resolve().is_relative_to(m) for m in marked) and can_write_in(folder)

    for module in (data, download):
        monkeypatch.setattr(module, "can_write_in", probe)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    return lambda folder: marked.append(Path(folder).resolve())


def test_can_write_in_asks_the_file_system_and_leaves_nothing(tmp_path):
    assert can_write_in(tmp_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):  # a folder that isn't there is an error, not a "no"
        can_write_in(tmp_path / "missing")


def test_dataset_cache_dir_is_one_per_folder_under_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    a, b = tmp_path / "a" / "photos", tmp_path / "b" / "photos"
    assert dataset_cache_dir(a).parent == tmp_path / "xdg" / "colorize" / "datasets"
    assert dataset_cache_dir(a).name.startswith("photos-") and dataset_cache_dir(a) != dataset_cache_dir(b)
    assert dataset_cache_dir(a) == dataset_cache_dir(tmp_path / "b" / ".." / "a" / "photos")  # the resolved path


def test_a_folder_that_cant_be_written_is_used_in_place(tmp_path, read_only, monkeypatch, caplog):
    root = tmp_path / "photos"
    write_photos(root / "train", 6, size=(20, 20))
    write_photos(root / "valid", 2, prefix="v", size=(20, 20))
    write_broken(root / "train")
    read_only(root)
    before = snapshot(root)
    with caplog.at_level(logging.INFO, logger="colorize.data"):
        index = index_dataset(root, progress=False)

    work = tmp_path / "user-cache" / "colorize" / "datasets" / dataset_cache_dir(root).name
    assert index.root == root and index.work_dir == work
    assert {p.name for p in work.iterdir()} == {INDEX_NAME, EXCLUDED_NAME, META_NAME}
    assert index.counts == {"train": 6, "valid": 2, "test": 0, "excluded": 4}
    assert str(work) in caplog.text and "can't be written" in caplog.text
    monkeypatch.setattr(data, "screen", lambda path: pytest.fail("screened again although nothing changed"))
    assert index_dataset(root, progress=False).items == index.items  # found again where it was put

    dls = make_dataloaders(root, DataConfig(size=16, bs=2), MachineConfig(workers=0, cache=True), progress=False)
    assert dls.one_batch()[0].shape == (2, 1, 16, 16)
    assert any((work / CACHE_DIR).glob("train-16px-*.npy"))
    assert snapshot(root) == before  # nothing written beside the photos


def test_work_dir_chooses_where_the_index_and_cache_go(tmp_path):
    root, work = tmp_path / "photos", tmp_path / "elsewhere" / "work"
    write_photos(root / "train", 4, size=(20, 20))
    write_photos(root / "valid", 2, prefix="v", size=(20, 20))
    before = snapshot(root)
    index = index_dataset(root, progress=False, work_dir=work)
    assert index.work_dir == work and (work / INDEX_NAME).exists()
    make_dataloaders(index, DataConfig(size=16, bs=2), MachineConfig(workers=0, cache=True, work_dir=str(work)), progress=False)
    assert any((work / CACHE_DIR).glob("valid-16px-*.npy"))
    assert snapshot(root) == before  # a writable photo folder too is left alone when a work folder is given
    with pytest.raises(ValueError, match="pass work_dir to index_dataset"):
        make_dataloaders(index, DataConfig(size=16, bs=2), MachineConfig(workers=0, work_dir=str(tmp_path / "another")))


def test_a_work_dir_that_cant_be_written_says_what_to_do(tmp_path, read_only):
    write_photos(tmp_path / "photos", 3, size=(8, 8))
    read_only(tmp_path / "work")
    with pytest.raises(PermissionError, match="cannot write in the work folder .*--work-dir"):
        index_dataset(tmp_path / "photos", progress=False, work_dir=tmp_path / "work")


def test_sample_photos_in_a_read_only_folder_are_used_and_never_rewritten(tmp_path, read_only):
    dest = sample_photos(tmp_path / "samples")
    (dest / "train" / "rocket.png").unlink()
    read_only(dest)
    before = snapshot(dest)
    with pytest.raises(PermissionError, match="can't be written and lacks 1 of the sample photos"):
        sample_photos(dest)
    assert snapshot(dest) == before


# A real read-only mount: `folder` bind-mounted read-only over itself in a private mount namespace, so only
# the child process sees it read-only. As root `unshare --mount` allows it; elsewhere a user namespace may.
MOUNT_NAMESPACES = (("unshare", "--mount", "--propagation", "private"),
                    ("unshare", "--user", "--map-root-user", "--mount"))
READ_ONLY_THEN_RUN = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$1" -c "$2"'


@pytest.fixture(scope="session")
def mount_namespace(tmp_path_factory) -> tuple[str, ...]:
    """A command prefix under which `READ_ONLY_THEN_RUN` really makes a read-only mount; skips if none works."""
    probe = tmp_path_factory.mktemp("mount-probe")
    attempt = f"import pathlib; pathlib.Path({str(probe / 'written')!r}).touch()"
    for prefix in MOUNT_NAMESPACES:
        if shutil.which(prefix[0]) is None:
            continue
        run = subprocess.run([*prefix, "sh", "-c", READ_ONLY_THEN_RUN, str(probe), sys.executable, attempt],
                             capture_output=True, text=True, timeout=120)
        if run.returncode != 0 and "Read-only file system" in run.stderr and not (probe / "written").exists():
            return prefix
    pytest.skip("this machine allows no private read-only bind mount (unshare --mount needs root or user "
                "namespaces): the real read-only test did not run; the probe-based tests cover the mechanism")


def run_on_read_only(prefix, folder, code: str, env: dict) -> dict:
    """Run Python `code` in a child that sees `folder` mounted read-only; returns the JSON its last line prints."""
    repo = Path(colorize.__file__).resolve().parents[1]
    env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([*prefix, "sh", "-c", READ_ONLY_THEN_RUN, str(folder), sys.executable, code],
                         capture_output=True, text=True, timeout=600, env=env, cwd=repo)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_real_read_only_mount_is_indexed_and_cached_without_a_write(tmp_path, mount_namespace):
    root = tmp_path / "photos"
    write_photos(root / "train", 6, size=(20, 20))
    write_photos(root / "valid", 2, prefix="v", size=(20, 20))
    before = snapshot(root)
    code = f"""
import json
from colorize.config import DataConfig, MachineConfig
from colorize.data import index_dataset
from colorize.files import can_write_in
from colorize.loaders import make_dataloaders
root = {str(root)!r}
assert not can_write_in(root)
index = index_dataset(root, progress=False)
L, ab = make_dataloaders(index, DataConfig(size=16, bs=2), MachineConfig(workers=0, cache=True), progress=False).one_batch()
print(json.dumps({{"work_dir": str(index.work_dir), "counts": index.counts, "L": list(L.shape)}}))
"""
    got = run_on_read_only(mount_namespace, root, code, {"XDG_CACHE_HOME": str(tmp_path / "user-cache")})
    work = Path(got["work_dir"])
    assert work.parent == tmp_path / "user-cache" / "colorize" / "datasets"
    assert got["counts"] == {"train": 6, "valid": 2, "test": 0, "excluded": 0} and got["L"] == [2, 1, 16, 16]
    assert (work / INDEX_NAME).exists() and any((work / CACHE_DIR).glob("train-16px-*.npy"))
    assert snapshot(root) == before


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

    def __init__(self, fail_after: int | None = None):
        self.calls = []
        self.fail_after = fail_after

    def __call__(self, handle, path=None, *, force_download=False, output_dir=None):
        self.calls.append({"handle": handle, "path": path, "force_download": force_download, "output_dir": output_dir})
        written = 0
        for folder, n in SPLIT_SIZES.items():
            for i in range(n):
                if self.fail_after is not None and written == self.fail_after:
                    raise ConnectionError("connection reset by peer")
                out = Path(output_dir) / "val_256" / folder / f"{folder[:2]}{i:05d}.jpg"
                out.parent.mkdir(parents=True, exist_ok=True)
                colour_photo(16, 16, seed=written).save(out, quality=90)
                written += 1
        return output_dir


def test_places365_download_reports_counts_and_second_run_does_nothing(tmp_path, kaggle_env, caplog):
    fake = FakeKaggle()
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


def test_places365_interrupted_download_recovers(tmp_path, kaggle_env):
    dest = tmp_path / "places365"
    broken = FakeKaggle(fail_after=5)
    kaggle_env.setattr(kagglehub, "dataset_download", broken)
    with pytest.raises(DownloadError, match="run the same command again") as info:
        download.download_places365(dest)
    assert "ConnectionError" in str(info.value)
    assert len(list(dest.rglob("*.jpg"))) == 5

    fake = FakeKaggle()
    kaggle_env.setattr(kagglehub, "dataset_download", fake)
    index = download.download_places365(dest)
    assert [c["force_download"] for c in fake.calls] == [True]
    assert index.counts == {"train": 6, "valid": 3, "test": 2, "excluded": 0}

    download.download_places365(dest)
    assert len(fake.calls) == 1


def test_places365_missing_credentials_say_what_to_do(tmp_path, kaggle_env):
    drop_credentials(kaggle_env)
    fake = FakeKaggle()
    kaggle_env.setattr(kagglehub, "dataset_download", fake)
    dest = tmp_path / "places365"
    with pytest.raises(DownloadError) as info:
        download.download_places365(dest)
    message = str(info.value)
    assert "KAGGLE_USERNAME" in message and "KAGGLE_KEY" in message and "kaggle.json" in message
    assert fake.calls == []
    assert not dest.exists()


def test_places365_kaggle_json_is_accepted(tmp_path, kaggle_env):
    drop_credentials(kaggle_env)
    config = tmp_path / "home" / ".kaggle"
    config.mkdir()
    (config / "kaggle.json").write_text(json.dumps({"username": "someone", "key": "0123"}))
    fake = FakeKaggle()
    kaggle_env.setattr(kagglehub, "dataset_download", fake)
    assert download.download_places365(tmp_path / "places365").counts["train"] == 6
    assert len(fake.calls) == 1


def test_places365_refuses_a_folder_of_someone_elses_files(tmp_path, kaggle_env):
    dest = tmp_path / "mine"
    dest.mkdir()
    colour_photo().save(dest / "holiday.jpg")
    fake = FakeKaggle()
    kaggle_env.setattr(kagglehub, "dataset_download", fake)
    with pytest.raises(DownloadError, match="--force"):
        download.download_places365(dest)
    assert fake.calls == []
    assert sorted(p.name for p in dest.iterdir()) == ["holiday.jpg"]

    download.download_places365(dest, force=True)
    assert [c["force_download"] for c in fake.calls] == [True]


def test_places365_download_missing_a_split_is_reported(tmp_path, kaggle_env):
    def only_train(handle, path=None, *, force_download=False, output_dir=None):
        write_photos(Path(output_dir) / "val_256" / "train_samples", 4, size=(8, 8))
        return output_dir

    kaggle_env.setattr(kagglehub, "dataset_download", only_train)
    with pytest.raises(DownloadError, match="incomplete.*test"):
        download.download_places365(tmp_path / "places365")


def places365_copy(folder) -> Path:
    """The Places365 subset's layout in miniature (val_256/{train,valid,test}_samples), as Kaggle mounts it."""
    for split_folder, n in SPLIT_SIZES.items():
        write_photos(folder / "val_256" / split_folder, n, prefix=split_folder[:2], size=(16, 16))
    return folder


def in_a_kaggle_notebook(monkeypatch, input_dir) -> None:
    """The environment a Kaggle notebook gives kagglehub (no Kaggle credentials), its mounts under `input_dir`."""
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.setenv("KAGGLE_DATA_PROXY_URL", "http://127.0.0.1:9")  # never reached: dataset_download is replaced
    monkeypatch.setenv("KAGGLE_CACHE_MOUNT_FOLDER", str(input_dir))


@pytest.mark.parametrize("layout", ["places365", "datasets/pankajkumar2002/places365"])
def test_places365_attached_to_a_kaggle_notebook_is_used_in_place(tmp_path, kaggle_env, read_only, layout):
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


def test_places365_in_a_kaggle_notebook_is_where_kagglehub_mounts_it(tmp_path, kaggle_env, read_only):
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


def test_places365_in_a_kaggle_notebook_that_cant_attach_it_says_how(tmp_path, kaggle_env):
    in_a_kaggle_notebook(kaggle_env, tmp_path / "input")

    def no_attach(*args, **kwargs):
        raise ConnectionError("proxy unreachable")

    kaggle_env.setattr(kagglehub, "dataset_download", no_attach)
    with pytest.raises(DownloadError, match="Add Input"):
        download.download_places365(tmp_path / "places365")
    assert not (tmp_path / "places365").exists()

    copy = places365_copy(tmp_path / "input" / "places365")  # attached by hand: found on disk
    assert download.download_places365(tmp_path / "places365").root.resolve() == copy.resolve()


def test_places365_attached_copy_never_replaces_a_folder_of_files(tmp_path, kaggle_env, read_only):
    copy = places365_copy(tmp_path / "input" / "places365")
    read_only(copy)
    kaggle_env.setenv("KAGGLE_CACHE_MOUNT_FOLDER", str(tmp_path / "input"))
    dest = tmp_path / "mine"
    dest.mkdir()
    colour_photo().save(dest / "holiday.jpg")
    with pytest.raises(DownloadError, match=f"--data {copy}"):
        download.download_places365(dest)
    assert sorted(p.name for p in dest.iterdir()) == ["holiday.jpg"]


def test_a_read_only_dest_is_used_as_it_is_or_refused_if_empty(tmp_path, kaggle_env, read_only):
    kaggle_env.setattr(kagglehub, "dataset_download", lambda *a, **k: pytest.fail("downloaded into a read-only dest"))
    full, empty = places365_copy(tmp_path / "shared" / "places365"), tmp_path / "shared" / "empty"
    empty.mkdir()
    read_only(tmp_path / "shared")
    before = snapshot(tmp_path / "shared")
    assert download.download_places365(full).counts == {"train": 6, "valid": 3, "test": 2, "excluded": 0}
    with pytest.raises(DownloadError, match="empty and can't be downloaded into.*another --dest"):
        download.download_places365(empty)
    assert snapshot(tmp_path / "shared") == before  # no index, no marker, nothing


def test_a_real_read_only_kaggle_input_is_used_in_place(tmp_path, mount_namespace):
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
    got = run_on_read_only(mount_namespace, input_dir, code, env)
    assert got["root"] == str((input_dir / "places365").resolve())
    assert got["counts"] == {"train": 6, "valid": 3, "test": 2, "excluded": 0}
    assert Path(got["work_dir"]).parent == tmp_path / "user-cache" / "colorize" / "datasets"
    assert snapshot(input_dir) == before


CIFAR_CLASSES = ("cat", "ship")


def make_cifar_tgz(path, n_train: int = 10, n_test: int = 3) -> None:
    """fastai's cifar10.tgz layout in miniature: cifar10/{train,test}/<class>/*.png and labels.txt."""
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


def test_cifar10_download_extracts_and_indexes(tmp_path, monkeypatch):
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


def test_safe_extract_extracts_a_normal_archive(tmp_path):
    make_cifar_tgz(tmp_path / "c.tgz", n_train=1, n_test=1)
    out = safe_extract(tmp_path / "c.tgz", tmp_path / "out")
    assert (out / "cifar10" / "train" / "cat" / "0_cat.png").is_file()
    assert (out / "cifar10" / "labels.txt").read_text().split() == list(CIFAR_CLASSES)

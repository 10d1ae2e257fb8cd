"""colorize.data: decoding every PIL mode, screening, indexing and splits, and where the index goes when the photo
folder can't be written (probed through `files.can_write_in`, and for real on a read-only bind mount in a private
mount namespace where the machine allows one, else skipped, saying why).

Everything runs offline on tiny images the tests make (the photo makers are conftest fixtures).
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorize import data
from colorize.config import DataConfig, MachineConfig
from colorize.data import (EXCLUDED_NAME, INDEX_NAME, META_NAME, assign_splits, BadImageError, dataset_cache_dir,
                           index_dataset, is_grayscale, load_rgb, screen)
from colorize.loaders import CACHE_DIR, make_dataloaders


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


def test_load_rgb_rgb_jpeg_round_trip(tmp_path, astronaut):
    im = astronaut(64)
    im.save(tmp_path / "a.png")
    np.testing.assert_array_equal(pixels(load_rgb(tmp_path / "a.png")), np.asarray(im))


@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "missing"])
def test_load_rgb_bad_files_raise_bad_image_error_with_path(tmp_path, kind, colour_photo, jpeg_bytes):
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


def test_screen_excludes_grayscale_photo_saved_as_rgb_jpeg(tmp_path, astronaut):
    gray = astronaut().convert("L").convert("RGB")
    gray.save(tmp_path / "g.jpg", quality=75)
    assert Image.open(tmp_path / "g.jpg").mode == "RGB"
    assert screen(tmp_path / "g.jpg").startswith("grayscale")


def test_screen_excludes_single_channel_gray(tmp_path, astronaut):
    astronaut().convert("L").save(tmp_path / "g.png")
    assert screen(tmp_path / "g.png").startswith("grayscale")


def test_screen_excludes_nearly_gray_scan(tmp_path, astronaut):
    """A B&W print scanned in colour: channels differ by a level or two of sensor noise, still no colour."""
    g = np.asarray(astronaut().convert("L"), dtype=np.int16)[..., None]  # (H,W,1)
    noise = np.random.default_rng(0).integers(-2, 3, (*g.shape[:2], 3))
    Image.fromarray(np.clip(g + noise, 0, 255).astype(np.uint8)).save(tmp_path / "scan.png")
    assert screen(tmp_path / "scan.png").startswith("grayscale")


def test_screen_keeps_colour_photo(tmp_path, astronaut):
    astronaut().save(tmp_path / "c.jpg", quality=75)
    assert screen(tmp_path / "c.jpg") is None


def test_screen_keeps_sepia_photo(tmp_path, astronaut):
    g = np.asarray(astronaut().convert("L"), dtype=np.float32)[..., None]  # (H,W,1)
    sepia = np.clip(g * np.array([1.0, 0.85, 0.65]) + np.array([20, 5, 0]), 0, 255).astype(np.uint8)
    Image.fromarray(sepia).save(tmp_path / "sepia.jpg", quality=75)
    assert screen(tmp_path / "sepia.jpg") is None


def test_is_grayscale_on_images_in_memory(colour_photo, astronaut):
    assert is_grayscale(astronaut().convert("L"))
    assert is_grayscale(astronaut().convert("L").convert("RGB"))
    assert not is_grayscale(astronaut())
    assert not is_grayscale(colour_photo())


def test_screen_gives_reasons_for_broken_files(tmp_path, write_broken):
    expected = write_broken(tmp_path)
    for name, reason in expected.items():
        got = screen(tmp_path / name)
        assert got is not None and got.startswith(reason), (name, got)
    assert "truncated" in screen(tmp_path / "cut.jpg")


# ----------------------------------------------------------------------------------- index_dataset


def test_index_excludes_broken_files_with_counts_and_lists_them(tmp_path, caplog, write_photos, write_broken):
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


def test_index_files_rejects_unknown_split(tmp_path, write_photos):
    write_photos(tmp_path, 3)
    with pytest.raises(ValueError, match="train, valid, test"):
        index_dataset(tmp_path, progress=False).files("training")


def split_map(index) -> dict[str, str]:
    return dict(index.items)


def test_seeded_split_is_deterministic_and_near_80_10_10(tmp_path, write_photos):
    write_photos(tmp_path, 200, size=(8, 8))
    a = index_dataset(tmp_path, seed=1, progress=False)
    b = index_dataset(tmp_path, seed=2, progress=False)
    again = index_dataset(tmp_path, seed=1, progress=False)
    assert split_map(again) == split_map(a)
    assert split_map(b) != split_map(a)
    for index in (a, b):  # each photo is a 10% draw for test and for valid: binomial(200, 0.1) is 20 +- 4.2
        assert 150 <= index.counts["train"] <= 170 and 10 <= index.counts["valid"] <= 30
        assert 10 <= index.counts["test"] <= 30


def test_adding_or_removing_photos_moves_no_other(tmp_path, colour_photo, write_photos):
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


def test_places365_folder_splits_are_used(tmp_path, write_photos):
    base = tmp_path / "val_256"
    want = {}
    for folder, split, n in (("train_samples", "train", 6), ("valid_samples", "valid", 3), ("test_samples", "test", 2)):
        for p in write_photos(base / folder, n, prefix=folder, size=(8, 8)):
            want[p.relative_to(tmp_path).as_posix()] = split
    index = index_dataset(tmp_path, progress=False)
    assert split_map(index) == want
    assert index.counts == {"train": 6, "valid": 3, "test": 2, "excluded": 0}


def test_train_and_test_folders_without_valid_take_valid_from_train(tmp_path, write_photos):
    train = write_photos(tmp_path / "train" / "cats", 20, size=(8, 8))
    test = write_photos(tmp_path / "test" / "cats", 4, prefix="t", size=(8, 8))
    index = index_dataset(tmp_path, progress=False)
    assert index.counts == {"train": 18, "valid": 2, "test": 4, "excluded": 0}
    assert set(index.files("valid")) <= set(train)
    assert set(index.files("test")) == set(test)


def test_index_is_reused_until_files_change(tmp_path, monkeypatch, colour_photo, write_photos):
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


# ------------------------------------------------------------------- where the index goes: work folders


def test_dataset_cache_dir_is_one_per_folder_under_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    a, b = tmp_path / "a" / "photos", tmp_path / "b" / "photos"
    assert dataset_cache_dir(a).parent == tmp_path / "xdg" / "colorize" / "datasets"
    assert dataset_cache_dir(a).name.startswith("photos-") and dataset_cache_dir(a) != dataset_cache_dir(b)
    assert dataset_cache_dir(a) == dataset_cache_dir(tmp_path / "b" / ".." / "a" / "photos")  # the resolved path


def test_a_folder_that_cant_be_written_is_used_in_place(tmp_path, read_only, monkeypatch, caplog, write_photos,
                                                        write_broken, snapshot):
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


def test_work_dir_chooses_where_the_index_and_cache_go(tmp_path, write_photos, snapshot):
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


def test_a_work_dir_that_cant_be_written_says_what_to_do(tmp_path, read_only, write_photos):
    write_photos(tmp_path / "photos", 3, size=(8, 8))
    read_only(tmp_path / "work")
    with pytest.raises(PermissionError, match="cannot write in the work folder .*--work-dir"):
        index_dataset(tmp_path / "photos", progress=False, work_dir=tmp_path / "work")


@pytest.mark.slow
def test_a_real_read_only_mount_is_indexed_and_cached_without_a_write(tmp_path, run_on_read_only, write_photos,
                                                                      snapshot):
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
    got = run_on_read_only(root, code, {"XDG_CACHE_HOME": str(tmp_path / "user-cache")})
    work = Path(got["work_dir"])
    assert work.parent == tmp_path / "user-cache" / "colorize" / "datasets"
    assert got["counts"] == {"train": 6, "valid": 2, "test": 0, "excluded": 0} and got["L"] == [2, 1, 16, 16]
    assert (work / INDEX_NAME).exists() and any((work / CACHE_DIR).glob("train-16px-*.npy"))
    assert snapshot(root) == before


def test_a_sample_of_a_split_links_the_same_spread_photos_and_indexes_as_that_split(tmp_path, write_photos):
    from colorize.data import index_dataset, sample_split

    write_photos(tmp_path / "photos" / "test", 10)
    write_photos(tmp_path / "photos" / "train", 4, prefix="t")
    index = index_dataset(tmp_path / "photos")
    dest = sample_split(index, "test", 4, tmp_path / "sample")
    linked = sorted(p.name for p in (dest / "test").iterdir())
    assert linked == ["test__p000.jpg", "test__p002.jpg", "test__p005.jpg", "test__p008.jpg"]
    assert index_dataset(dest).counts == {"train": 0, "valid": 0, "test": 4, "excluded": 0}
    assert sample_split(index, "test", 2, dest) == dest and len(list((dest / "test").iterdir())) == 2
    assert len(list((sample_split(index, "test", 50, tmp_path / "all") / "test").iterdir())) == 10

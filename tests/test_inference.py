"""Full-resolution colorization: sizes and modes, the original lightness kept, folders with bad files, safety."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import color, data

from colorize.cli import main
from colorize.archive import colorize_archive
from colorize.inference import RENDER_SIZE, check_render_size, colorize_image
from colorize.models import load_generator, save_generator

RENDER = 64  # the tiny generator's size: keeps every test a fraction of a second


@pytest.fixture(scope="module")
def model(tiny_generator):
    return tiny_generator(RENDER).eval()


def lightness(im: Image.Image) -> np.ndarray:
    """(H,W) CIE L in [0,100] by scikit-image, the independent oracle."""
    return color.rgb2lab(np.asarray(im.convert("RGB")))[..., 0]


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
@pytest.mark.parametrize("size", [(37, 23), (101, 3), (1, 1)])
def test_output_has_the_input_size_for_any_mode(model, mode, size):
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8), "RGBA").convert(mode)
    out = colorize_image(model, im, render_size=RENDER)
    assert out.mode == ("RGBA" if mode == "RGBA" else "RGB") and out.size == size


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_kept(model, mode):
    rgba = Image.fromarray(data.astronaut()).resize((60, 40)).convert("RGBA")
    alpha = np.zeros((40, 60), np.uint8)
    alpha[10:30, 20:50] = 255
    rgba.putalpha(Image.fromarray(alpha))
    im = rgba.convert(mode) if mode != "P" else rgba.convert("P", palette=Image.Palette.ADAPTIVE)
    if mode == "P":
        im.info["transparency"] = im.getpixel((0, 0))  # the fully transparent corner's palette entry
    out = colorize_image(model, im, render_size=RENDER)
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3] > 0, np.asarray(im.convert("RGBA"))[..., 3] > 0)


def test_runs_without_autograd(model):
    seen = []
    hook = model.register_forward_hook(lambda module, args, out: seen.append(torch.is_inference_mode_enabled()))
    try:
        colorize_image(model, Image.new("RGB", (40, 30), (90, 120, 30)), render_size=RENDER)
    finally:
        hook.remove()
    assert seen == [True]


def test_refuses_a_generator_in_training_mode(model):
    model.train()
    try:
        with pytest.raises(ValueError, match="eval"):
            colorize_image(model, Image.new("RGB", (8, 8)), render_size=RENDER)
    finally:
        model.eval()


def test_output_keeps_the_original_lightness(model):
    photo = Image.fromarray(data.astronaut()).resize((257, 193))  # odd size, not the render size
    out = colorize_image(model, photo, render_size=RENDER)
    assert np.abs(lightness(out) - lightness(photo)).mean() < 1.0
    assert np.abs(color.rgb2lab(np.asarray(out))[..., 1:]).mean() > 1.0  # and the model's colour is there


def test_colour_input_is_treated_as_its_grayscale(model):
    photo = Image.fromarray(data.coffee()).resize((120, 90))
    L = lightness(photo)
    gray = Image.fromarray((color.lab2rgb(np.stack([L, 0 * L, 0 * L], -1)) * 255).round().astype(np.uint8))
    a = np.asarray(colorize_image(model, photo, render_size=RENDER), dtype=float)
    b = np.asarray(colorize_image(model, gray, render_size=RENDER), dtype=float)
    assert np.abs(a - b).mean() < 1.0  # uint8 levels: the colour of the input never reaches the model


def test_grayscale_input(model):
    gray = Image.fromarray(data.camera()).resize((131, 97))  # a true black-and-white photo, mode L
    out = colorize_image(model, gray, render_size=RENDER)
    assert out.size == gray.size
    assert np.abs(lightness(out) - lightness(gray)).mean() < 1.0


def test_files_keep_their_transparency_and_a_tiny_render_size_is_refused(model, tmp_path):
    rgba = Image.fromarray(data.astronaut()).resize((30, 20)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((30, 20)))
    rgba.save(tmp_path / "logo.png")
    with pytest.raises(ValueError, match="render size 16: choose a multiple of 32 from 32 to 1024"):
        colorize_archive(model, [tmp_path / "logo.png"], tmp_path / "out", render_size=16, progress=False)
    assert not (tmp_path / "out").exists()
    (written,) = colorize_archive(model, [tmp_path / "logo.png"], tmp_path / "out", render_size=RENDER,
                               progress=False).written
    out = Image.open(written)
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], np.asarray(rgba)[..., 3])


@pytest.fixture
def photo_dir(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(data.chelsea()).resize((45, 30)).save(src / "cat.jpg")
    Image.fromarray(data.coffee()).resize((40, 30)).save(src / "sub" / "coffee.png")
    good = (src / "cat.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (src / "notes.jpg").write_text("not a photo at all")
    return src


def test_folder_with_bad_files_writes_the_rest(model, photo_dir, tmp_path, caplog):
    before = {p: p.read_bytes() for p in photo_dir.rglob("*") if p.is_file()}
    with caplog.at_level(logging.WARNING, logger="colorize.archive"):
        result = colorize_archive(model, [photo_dir], tmp_path / "out", render_size=RENDER, progress=False)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in result.written) == ["cat.png", "sub/coffee.png"]
    assert Image.open(tmp_path / "out" / "cat.png").size == (45, 30)
    assert sorted(p.name for p, _ in result.failed) == ["notes.jpg", "truncated.jpg"]
    assert "notes.jpg" in caplog.text and "truncated.jpg" in caplog.text
    assert {p: p.read_bytes() for p in photo_dir.rglob("*") if p.is_file()} == before  # inputs untouched


def test_refuses_to_overwrite_inputs(model, photo_dir):
    coffee = photo_dir / "sub" / "coffee.png"
    before = coffee.read_bytes()
    with pytest.raises(ValueError, match="overwrite"):
        colorize_archive(model, [coffee], photo_dir / "sub", render_size=RENDER, progress=False)
    with pytest.raises(ValueError, match="overwrite"):
        colorize_archive(model, [photo_dir], photo_dir, render_size=RENDER, progress=False)
    assert coffee.read_bytes() == before
    assert sorted(p.name for p in photo_dir.rglob("*.png")) == ["coffee.png"]  # nothing written


def test_rerun_into_a_folder_inside_the_inputs(model, photo_dir):
    for _ in range(2):  # the second run must not take the first run's outputs for photos
        result = colorize_archive(model, [photo_dir], photo_dir / "colorized", render_size=RENDER, progress=False)
        assert sorted(p.relative_to(photo_dir).as_posix() for p in result.written + result.skipped) == [
            "colorized/cat.png", "colorized/sub/coffee.png"]


def test_same_names_are_disambiguated(model, photo_dir, tmp_path):
    Image.open(photo_dir / "cat.jpg").save(photo_dir / "sub" / "cat.png")
    result = colorize_archive(model, [photo_dir / "cat.jpg", photo_dir / "sub" / "cat.png"], tmp_path / "out",
                            render_size=RENDER, progress=False)
    assert [p.name for p in result.written] == ["cat.png", "cat-2.png"]


def test_checkpoint_round_trip_colorizes_identically(model, tmp_path):
    photo = Image.fromarray(data.chelsea()).resize((90, 61))
    path = save_generator(model, tmp_path / "g.safetensors")
    again = load_generator(path)
    assert np.array_equal(np.asarray(colorize_image(model, photo, RENDER)),
                          np.asarray(colorize_image(again, photo, RENDER)))


@pytest.mark.parametrize("size", [16, 100, 2048, 256.5, True])
def test_one_render_size_rule(size):
    """The rule the CLI, the app's slider and the widgets share: multiples of 32 from 32 to 1024."""
    with pytest.raises(ValueError, match=f"render size {size}: choose a multiple of 32"):
        check_render_size(size)
    assert check_render_size(RENDER_SIZE) == RENDER_SIZE == 256 and check_render_size(96.0) == 96


def test_apply_refuses_a_render_size_outside_the_rule_before_loading(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["apply", str(tmp_path), "--model", "nope.safetensors", "--out", str(tmp_path), "--render-size", "100"])
    assert "render size 100: choose a multiple of 32" in capsys.readouterr().err


def test_bad_rendering_settings_are_refused_once_before_any_photo(model, tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    for bad, message in [(dict(propagation="levin", render_size=512), "use propagation 'fast'"),
                         (dict(propagation="slow"), "propagation is 'slow'; choose one of: fast, levin, off"),
                         (dict(reach=0), "reach 0"), (dict(precision="fp64"), "precision is 'fp64'; choose one of")]:
        with pytest.raises(ValueError, match=message):
            colorize_archive(model, [tmp_path / "a.png"], tmp_path / "out", progress=False, **bad)
    assert not (tmp_path / "out").exists()

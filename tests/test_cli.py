"""The `colorize` command line end to end on tiny data: the same functions the notebooks call, with clear errors."""

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from colorize.cli import build_parser, config_from_args, main
from colorize.config import (GAN_PRESETS, HINTS_PRESETS, PRETRAIN_PRESETS, GanConfig, PretrainConfig, get_preset,
                             override)
from colorize.demo import run_demo


def test_every_recipe_field_is_a_flag_and_overrides_the_preset():
    args = build_parser().parse_args(["gan", "--data", "d", "--out", "o", "--preset", "cifar-spectral",
                                      "--smoothing", "0.8", "--no-critic-init", "--decay-steps", "1000"])
    config = config_from_args(args, GAN_PRESETS, GanConfig)
    assert (config.smoothing, config.critic.init, config.decay_steps) == (0.8, False, 1000.0)
    assert config.critic.norm == "spectral" and config.data.epochs == 100  # the rest is the preset's
    args = build_parser().parse_args(["pretrain", "--data", "d", "--out", "o", "--no-pretrained", "--epochs", "3"])
    config = config_from_args(args, PRETRAIN_PRESETS, PretrainConfig)
    assert (config.generator.pretrained, config.data.epochs, config.lr) == (False, 3, 1e-4)


def test_unknown_preset_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as stop:  # argparse, before any work
        main(["pretrain", "--data", "d", "--out", "o", "--preset", "nope"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err and all(name in err for name in ("places365", "colab", "demo", "smoke"))


def test_download_without_credentials_says_what_to_do(tmp_path, monkeypatch, caplog):
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KAGGLE_CACHE_MOUNT_FOLDER", str(tmp_path / "no-kaggle-input"))  # not a Kaggle notebook
    import kagglehub

    monkeypatch.setattr(kagglehub, "dataset_download", lambda *a, **k: pytest.fail("tried the network"))
    assert main(["download", "places365", "--dest", str(tmp_path / "places")]) == 2
    assert "no Kaggle credentials" in caplog.text and "KAGGLE_USERNAME" in caplog.text


def test_apply_colorizes_a_folder_and_skips_a_broken_file(tmp_path, capsys, tiny_checkpoint):
    ckpt = tiny_checkpoint(tmp_path / "g.safetensors")
    photos = tmp_path / "in"
    photos.mkdir()
    Image.new("RGB", (45, 30), (200, 120, 40)).save(photos / "a.jpg")
    Image.new("L", (20, 33), 90).save(photos / "b.png")
    (photos / "broken.jpg").write_text("not a photo")
    assert main(["apply", str(photos), "--model", str(ckpt), "--out", str(tmp_path / "out"), "--render-size", "32"]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["a.png", "b.png", "colorize-apply.csv", "colorize-apply.json"]  # the photos and the summary
    assert Image.open(tmp_path / "out" / "a.png").size == (45, 30)
    assert "broken.jpg" in capsys.readouterr().out


def test_apply_with_a_file_that_is_not_a_checkpoint(tmp_path, caplog):
    bad = tmp_path / "model.safetensors"
    bad.write_text("hello")
    assert main(["apply", str(tmp_path), "--model", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not a colorize generator checkpoint" in caplog.text


@pytest.mark.slow
def test_colorize_is_installed_as_a_command():
    out = subprocess.run([sys.executable, "-m", "colorize.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("download", "pretrain", "gan", "apply", "evaluate", "export", "demo"):
        assert command in out.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_asked_for_on_a_machine_without_one(tmp_path, caplog):
    assert main(["pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--device", "cuda"]) == 2
    assert "--device cuda: this torch" in caplog.text and "sees no CUDA GPU" in caplog.text
    assert not (tmp_path / "run").exists()


def test_an_unknown_preset_is_named_plainly():
    """For Python callers (the CLI's --preset is refused by argparse first)."""
    with pytest.raises(KeyError) as missing:
        get_preset(PRETRAIN_PRESETS, "nosuch")
    assert missing.value.args[0] == "unknown preset 'nosuch'; choose one of: places365, colab, demo, finetune, smoke"


def test_flag_help_names_the_presets_that_differ_from_the_default(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    help = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--cache, --no-cache default False (places365 True, colab True, finetune True)" in help
    assert "--size SIZE default 256 (demo 64, smoke 32)" in help
    assert "--seed SEED default 42 " in help  # the same in every preset: nothing added


@pytest.mark.slow
def test_demo_writes_gallery_and_metrics(tmp_path):
    report = run_demo(tmp_path / "demo", data=tmp_path / "samples", pretrain_config=PRETRAIN_PRESETS["smoke"],
                      gan_config=override(GAN_PRESETS["smoke"], epochs=1), hints_config=HINTS_PRESETS["smoke"])
    out = tmp_path / "demo"
    assert (out / "gallery.png").exists() and (out / "l1" / "best.safetensors").exists()
    assert (out / "gan" / "last.safetensors").exists()
    results = json.loads((out / "evaluation" / "results.json").read_text())  # colorize evaluate's own report
    assert set(results["models"]) == {"grayscale baseline (ab = 0)", "L1 generator", "GAN generator", "hint generator"}
    curve = results["hint_curve"]
    assert curve["counts"] == [0, 1, 2, 5, 10, 20, 50, 100] and len(curve["models"]["hint generator"]["psnr_rgb"]) == 8
    assert (out / "evaluation" / "hint_curve.png").exists() and Image.open(out / "chelsea_hints.png").size == \
        Image.open(tmp_path / "samples" / "test" / "chelsea.png").size
    assert results["n_images"] == 2 and sorted(results["files"]) == ["test/chelsea.png", "test/flower.png"]
    for m in results["models"].values():
        assert 0 < m["psnr_rgb"] < 100 and "delta_colorfulness" in m
    # full resolution: the colorized photos keep the originals' sizes
    original = Image.open(tmp_path / "samples" / "test" / "chelsea.png")
    assert Image.open(out / "chelsea_gan.png").size == original.size
    assert "gallery" in report and "results.md" in report and "PSNR RGB" in report


def test_apply_evaluate_and_flicker_flags_default_to_the_librarys_values():
    """The flags are made from the options values: given nothing, the CLI builds the library's defaults."""
    from colorize.cli import options_from_args
    from colorize.evaluate import EvalOptions
    from colorize.flicker import FlickerOptions, measure_flicker
    from colorize.inference import Rendering
    from colorize.video import VideoOptions

    parse = build_parser().parse_args
    args = parse(["apply", "x.png", "--model", "m", "--out", "o"])
    assert options_from_args(args, Rendering) == Rendering() and options_from_args(args, VideoOptions) == VideoOptions()
    args = parse(["flicker", "c.mp4", "--models", "m", "--out", "o"])
    assert options_from_args(args, FlickerOptions) == FlickerOptions()
    rendering = options_from_args(args, Rendering)
    assert rendering == Rendering() and measure_flicker.__defaults__ == (None, None)  # None: Rendering()'s values
    args = parse(["evaluate", "--data", "d", "--models", "m", "--out", "o"])
    assert options_from_args(args, EvalOptions) == EvalOptions()
    args = parse(["evaluate", "--data", "d", "--models", "m", "--out", "o", "--hints", "5,0,2", "--precision", "auto"])
    assert options_from_args(args, EvalOptions) == EvalOptions(hints=(0, 2, 5), precision="auto")
    args = parse(["apply", "x.png", "--model", "m", "--out", "o", "--render-size", "64", "--reach", "2",
                  "--propagation", "off", "--temporal", "0"])
    assert options_from_args(args, Rendering) == Rendering(64, propagation="off", reach=2.0)
    assert options_from_args(args, VideoOptions).temporal == 0.0


@pytest.mark.parametrize("argv, message", [
    (["apply", "x", "--model", "m", "--out", "o", "--propagation", "slow"], "invalid choice: 'slow'"),
    (["evaluate", "--data", "d", "--models", "m", "--out", "o", "--hints", "1,x"], "give whole numbers of hints"),
    (["flicker", "c", "--models", "m", "--out", "o", "--render-size", "40"], "render size 40: choose a multiple"),
])
def test_a_bad_flag_is_refused_by_argparse_with_the_librarys_message(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err

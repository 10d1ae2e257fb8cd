"""`colorize evaluate` on real photos with tiny generators: report contents, skipped files, galleries,
determinism, the protocol against skimage, and the README rewrite."""

import dataclasses
import json
import logging
import os
import shutil
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import color, data
from skimage.metrics import peak_signal_noise_ratio

from colorize.evaluate import BASELINE, COLUMNS, EvalOptions, Protocol, evaluate, protocol_crop, render
from colorize.readme import RESULTS_END, RESULTS_START, update_readme_results
from colorize.data import index_dataset, load_rgb

SIZE = 32  # protocol size: tiny crops keep each evaluation a second or two on a CPU
GEN_SIZE = 64  # the tiny generators are built (and "trained") at 64
TEST_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
MODELS = ("l1-run", "gan-run")  # run folders: the table names them l1-run/best, gan-run/best


def refuse(url, *args, **kwargs):
    raise urllib.error.URLError("offline (test)")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Real photos in test/ (one grayscale, one truncated: both must be skipped and counted), one in train/."""
    root = tmp_path_factory.mktemp("data")
    (root / "test").mkdir()
    (root / "train").mkdir()
    for name in TEST_PHOTOS:
        Image.fromarray(getattr(data, name)()).convert("RGB").save(root / "test" / f"{name}.png")
    Image.fromarray(data.camera()).save(root / "test" / "camera.png")  # black and white: no colour to score
    Image.fromarray(data.chelsea()).save(root / "test" / "broken.jpg")
    good = (root / "test" / "broken.jpg").read_bytes()
    (root / "test" / "broken.jpg").write_bytes(good[: len(good) // 3])
    Image.fromarray(data.coffee()).save(root / "train" / "coffee.png")
    return root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_checkpoint):
    runs = tmp_path_factory.mktemp("runs")
    return [tiny_checkpoint(runs / run / "best.safetensors", seed, size=GEN_SIZE) for seed, run in enumerate(MODELS)]


@pytest.fixture(scope="module")
def offline_report(dataset, checkpoints, tmp_path_factory):
    """The default metrics (AlexNet LPIPS, Inception FID) with no network: both must come out as skipped."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch")))
        mp.setattr(torch.hub, "download_url_to_file", refuse)
        return evaluate(dataset, checkpoints, tmp_path_factory.mktemp("report"),
                        EvalOptions(size=SIZE, bs=len(TEST_PHOTOS), n_gallery=3, n_hardest=3, progress=False),
                        device="cpu")


def test_results_have_a_row_per_model_and_a_column_per_metric(offline_report):
    results = json.loads(offline_report.paths["results_json"].read_text())
    assert list(results["models"]) == [BASELINE, "l1-run/best", "gan-run/best"]
    assert results["n_images"] == len(TEST_PHOTOS) and results["split"] == "test" and results["size"] == SIZE
    for row in results["models"].values():
        assert row["n_images"] == len(TEST_PHOTOS)
        for key in ("psnr_rgb", "psnr_ab", "ssim", "colorfulness", "delta_colorfulness"):
            assert isinstance(row[key], float) and np.isfinite(row[key]), key
        assert set(row["lpips"]) == {"skipped"} and set(row["fid"]) == {"skipped"}  # a reason, never a number
        assert "offline (test)" in row["lpips"]["skipped"]
    assert results["models"][BASELINE]["colorfulness"] == pytest.approx(0, abs=0.5)  # ab = 0 is gray
    assert results["models"][BASELINE]["delta_colorfulness"] < -5

    md = offline_report.paths["results_md"].read_text()
    assert md == offline_report.markdown
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert all(title in table[0] for title, _ in COLUMNS.values())
    assert len(table) == 2 + 3  # header, rule, baseline + two models
    for line in table[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 1 + len(COLUMNS)
        by_key = dict(zip(COLUMNS, cells[1:]))
        assert by_key["lpips"] == by_key["fid"] == "skipped"
    assert f"{len(TEST_PHOTOS)} images evaluated, 2 skipped" in md
    assert f"centred square of each photo resized to {SIZE}x{SIZE}" in md and "split `test`" in md
    assert "LPIPS skipped: " in md and "offline (test)" in md


def test_grayscale_and_broken_files_are_skipped_and_counted(offline_report):
    results = offline_report.results
    assert results["n_skipped"] == 2
    reasons = {s["path"]: s["reason"] for s in results["skipped"]}
    assert set(reasons) == {"test/camera.png", "test/broken.jpg"}
    assert "grayscale" in reasons["test/camera.png"]
    assert not any(f.endswith(("camera.png", "broken.jpg")) for f in results["files"])


def test_galleries_name_their_files(offline_report):
    results = offline_report.results
    per_image_ab = results["per_image"]["l1-run/best"]["psnr_ab"]
    worst_first = [results["files"][i] for i in np.argsort(per_image_ab, kind="stable")]
    hardest = results["galleries"]["hardest"]
    assert hardest["files"] == worst_first[:3]
    assert "l1-run/best" in hardest["caption"]
    for g in results["galleries"].values():
        assert all(f in g["caption"] for f in g["files"])
        assert f"`{g['path']}`: {g['caption']}" in offline_report.markdown
        with Image.open(offline_report.paths["results_json"].parent / g["path"]) as im:
            assert im.width > 4 * 100 and im.height > len(g["files"]) * 100  # 4 columns, one row per photo
    assert results["galleries"]["gallery"]["files"] == [results["files"][i] for i in (0, 2, 5)]  # spread out


def test_baseline_matches_skimage_on_the_protocol_crop(dataset, offline_report):
    results = offline_report.results
    ours = results["per_image"][BASELINE]["psnr_rgb"]
    ref = []
    for rel in results["files"]:
        crop = protocol_crop(Image.open(dataset / rel), SIZE) / 255.0
        lab = color.rgb2lab(crop)
        lab[..., 1:] = 0
        ref.append(peak_signal_noise_ratio(crop, color.lab2rgb(lab), data_range=1.0))
    np.testing.assert_allclose(ours, ref, atol=0.05)  # dB; kornia vs skimage Lab in float32


def test_protocol_crop_is_shorter_side_resize_then_centre_crop():
    photo = Image.fromarray(data.chelsea())  # 451 x 300
    crop = protocol_crop(photo, SIZE)
    w = round(photo.width * SIZE / photo.height)
    resized = np.asarray(photo.resize((w, SIZE), Image.Resampling.BILINEAR))
    left = (w - SIZE) // 2
    assert crop.shape == (SIZE, SIZE, 3)
    assert np.abs(crop.astype(int) - resized[:, left : left + SIZE]).mean() < 2  # uint8 levels: same crop


def test_two_runs_give_identical_results(dataset, checkpoints, tmp_path, tiny_features):
    options = EvalOptions(size=SIZE, bs=len(TEST_PHOTOS), lpips_net=None, fid_feature=tiny_features(4), n_gallery=2,
                          n_hardest=2, progress=False)
    first = evaluate(dataset, checkpoints[:1], tmp_path / "a", options, device="cpu")
    evaluate(dataset, checkpoints[:1], tmp_path / "b", dataclasses.replace(options, progress=True), device="cpu")
    assert isinstance(first.results["models"]["l1-run/best"]["fid"], float)
    assert (tmp_path / "a" / "results.json").read_bytes() == (tmp_path / "b" / "results.json").read_bytes()


def test_a_file_that_breaks_after_indexing_is_skipped_and_counted(dataset, checkpoints, offline_report, tmp_path,
                                                                   caplog):
    root = tmp_path / "data"
    shutil.copytree(dataset, root)
    index_dataset(root, progress=False)
    victim = root / "test" / "coffee.png"
    stat = victim.stat()
    victim.write_bytes(b"\0" * stat.st_size)  # same size and mtime: the cached index still lists it
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with caplog.at_level(logging.WARNING, logger="colorize.evaluate"):
        report = evaluate(root, checkpoints[:1], tmp_path / "out",
                          EvalOptions(size=SIZE, bs=4, lpips_net=None, fid_feature=None, n_gallery=1, n_hardest=1,
                                      progress=False), names=["only"], device="cpu")  # bs 4: 2 batches
    assert list(report.results["models"]) == [BASELINE, "only"]
    assert report.results["n_images"] == offline_report.results["n_images"] - 1
    assert report.results["n_skipped"] == offline_report.results["n_skipped"] + 1
    assert "test/coffee.png" in {s["path"] for s in report.results["skipped"]}
    assert "coffee.png" in caplog.text


def test_model_names_must_be_distinct(dataset, checkpoints, tmp_path):
    with pytest.raises(ValueError, match="names"):
        evaluate(dataset, [checkpoints[0], checkpoints[0]], tmp_path)
    with pytest.raises(ValueError, match="checkpoint"):
        evaluate(dataset, [], tmp_path)


README = "# colorize\n\nIntro.\n\n## Results\n\n{block}\n\n## Licence\n\nApache-2.0\n"


def test_a_missing_checkpoint_is_refused_before_any_output(dataset, checkpoints, tmp_path):
    with pytest.raises(FileNotFoundError, match="no generator checkpoint"):
        evaluate(dataset, [checkpoints[0], tmp_path / "nope.safetensors"], tmp_path / "report", EvalOptions(size=SIZE))
    assert not (tmp_path / "report").exists()


def test_a_size_other_than_the_models_is_warned_about(dataset, checkpoints, tmp_path, caplog):
    evaluate(dataset, checkpoints[:1], tmp_path, EvalOptions(size=SIZE, lpips_net=None, fid_feature=None, n_gallery=1,
                                                             n_hardest=1, progress=False), device="cpu")
    assert f"was built for {GEN_SIZE} px photos; evaluating it at {SIZE} px" in caplog.text


def test_readme_results_are_rewritten_between_the_markers(offline_report, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README.format(block=f"{RESULTS_START}\nold numbers\n{RESULTS_END}"))
    note = "`colorize evaluate --data data/samples --models runs/demo/l1/best.safetensors --out runs/demo/eval`"
    update_readme_results(readme, offline_report.paths["results_md"], note)
    text = readme.read_text()
    assert "old numbers" not in text
    assert text.startswith("# colorize\n\nIntro.\n\n## Results\n\n") and text.endswith("\n\n## Licence\n\nApache-2.0\n")
    inside = text.split(RESULTS_START)[1].split(RESULTS_END)[0]
    assert offline_report.markdown.strip() in inside and f"Source: {note}" in inside
    update_readme_results(readme, offline_report.paths["results_md"], note)
    assert readme.read_text() == text  # rerunning changes nothing


@pytest.mark.parametrize("block", ["no markers here", f"{RESULTS_END}\nswapped\n{RESULTS_START}",
                                   f"{RESULTS_START}\nonly the start"])
def test_readme_without_markers_is_refused_and_left_alone(offline_report, tmp_path, block):
    readme = tmp_path / "README.md"
    readme.write_text(README.format(block=block))
    with pytest.raises(ValueError, match=RESULTS_START):
        update_readme_results(readme, offline_report.paths["results_md"], "note")
    assert readme.read_text() == README.format(block=block)


def test_evaluate_reads_on_one_screen():
    """evaluate() is under 40 lines and no function in evaluate.py takes more than six parameters."""
    import ast
    import inspect

    import colorize.evaluate as module

    tree = ast.parse(inspect.getsource(module))
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    (main_function,) = [f for f in functions if f.name == "evaluate"]
    assert main_function.end_lineno - main_function.lineno + 1 < 40
    for f in functions:
        names = [p.arg for p in f.args.posonlyargs + f.args.args + f.args.kwonlyargs if p.arg not in ("self", "cls")]
        n = len(names) + bool(f.args.vararg) + bool(f.args.kwarg)
        assert n <= 6, f"{f.name} takes {n} parameters"


def test_gallery_columns_read_input_then_outputs_then_the_original(dataset):
    """Every gallery in the project reads left to right: the gray input, each model's colours, the original."""
    files = [dataset / "test" / f"{TEST_PHOTOS[0]}.png"]
    protocol = Protocol.resolve(EvalOptions(size=SIZE, progress=False), device="cpu")
    gray_ab = lambda L: torch.zeros_like(L).expand(-1, 2, -1, -1)  # noqa: E731
    red_ab = lambda L: torch.cat([torch.full_like(L, 0.5), torch.zeros_like(L)], 1)  # noqa: E731
    (row,) = render({BASELINE: gray_ab, "red": red_ab}, files, protocol)
    crop = protocol_crop(load_rgb(files[0]), SIZE)
    gray, red, original = (np.asarray(c, dtype=float) for c in row)
    assert np.abs(original - crop).max() <= 1  # the truth, last
    assert np.abs(gray - gray.mean(axis=2, keepdims=True)).max() <= 2  # ab = 0: neutral
    assert (red[..., 0] - red[..., 1]).mean() > 30  # a = +55: red


def test_an_evaluation_is_projected_and_one_over_the_limit_stops_on_a_cpu_before_scoring(dataset, checkpoints,
                                                                                        tmp_path, caplog,
                                                                                        monkeypatch):
    import colorize.clock
    from colorize.clock import CpuGuardStop

    caplog.set_level(logging.INFO, logger="colorize")
    options = EvalOptions(size=SIZE, lpips_net=None, fid_feature=None, n_gallery=1, n_hardest=1, progress=False,
                          hints=(0, 5), allow_cpu=False)
    evaluate(dataset, checkpoints[:1], tmp_path / "short", options, device="cpu")  # seconds: under the free limit
    projected = [m for m in caplog.messages if m.startswith("evaluating ")]
    assert projected and "on 6 photos, hint curves of l1-run/best" in projected[0], caplog.messages
    assert "on this cpu (projected from 4 photos)" in projected[0]
    monkeypatch.setattr(colorize.clock, "CPU_GUARD_FREE_S", 0)  # these tiny photos are projected at seconds
    with pytest.raises(CpuGuardStop, match=r"^evaluating 6 photos on this CPU would take about .* Stopped before "
                                           r"scoring \(no report written\): use a GPU") as stopped:
        evaluate(dataset, checkpoints[:1], tmp_path / "long", options, device="cpu")
    assert stopped.value._render_traceback_()[0].startswith("Stopped: evaluating 6 photos")  # IPython: no traceback
    assert not (tmp_path / "long" / "results.json").exists()
    evaluate(dataset, checkpoints[:1], tmp_path / "allowed", dataclasses.replace(options, allow_cpu=True),
             device="cpu")
    assert (tmp_path / "allowed" / "results.json").exists()

"""Every benchmark script runs end to end on the CPU at its smallest size: train_throughput.py reports every
configuration with its rate, FLOPs and settings; inference_speed.py and video_speed.py every measure.
(benchmarks/budget.py has its own test.)"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "train_throughput.py"
RECORD_KEYS = {"config", "device", "device_name", "torch", "fastai", "precision", "memory_format", "batch", "size",
               "workers", "cache", "images_per_s", "gpu_mem_peak_gb", "gflops_per_image", "mfu", "load_avg_1m"}


def load_script(path: Path = SCRIPT):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load_script()


@pytest.mark.slow
def test_one_record_per_configuration_and_a_summary(bench, fresh_photos, capsys):
    photos = fresh_photos
    bench.main(["--device", "cpu", "--size", "32", "--bs", "4", "--steps", "2", "--warmup", "1", "--workers", "0",
                "--threads", "1", "--data", str(photos), "--train-images", "1000"])
    lines = capsys.readouterr().out.strip().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert [r["config"] for r in records] == list(bench.CONFIGS)
    for r in records:
        assert RECORD_KEYS <= set(r), RECORD_KEYS - set(r)
        assert r["images_per_s"] > 0 and r["batch"] == 4 and r["size"] == 32 and r["device"] == "cpu"
        assert r["gpu_mem_peak_gb"] is None and r["mfu"] is None  # no GPU, no peak to divide by
    by = {r["config"]: r for r in records}
    assert by["loader"]["worker_ms_per_photo"] > 0 and by["baseline_loader"]["worker_ms_per_photo"] > 0
    assert by["pipeline"]["cache"] and by["gan"]["cache"] and by["loader"]["cache"] and not by["baseline"]["cache"]
    (cache,) = [json.loads(line.removeprefix("cache: ")) for line in lines if line.startswith("cache: ")]
    assert cache["photos"] == 6 and cache["size"] == 32 and cache["built"] is True  # 5 train + 1 valid sample photos
    assert by["pipeline"]["precision"] == by["baseline"]["precision"] == "fp32"  # the CPU trains in fp32
    # fwd + bwd of the same generator, counted on the real steps: equal for the L1 configurations, more for the GAN
    gflops = {k: by[k]["gflops_per_image"] for k in ("model", "pipeline", "baseline")}
    assert len(set(gflops.values())) == 1 and gflops["model"] > 0, gflops
    assert by["gan"]["gflops_per_image"] > by["pipeline"]["gflops_per_image"]
    summary = [line for line in lines if line.startswith("summary: ")]
    assert len(summary) == 1
    s = json.loads(summary[0].removeprefix("summary: "))
    rates = {k: by[k]["images_per_s"] for k in bench.SUMMARY_CONFIGS}
    assert s["pipeline/model"] == pytest.approx(rates["pipeline"] / rates["model"], rel=0.02)
    assert s["pipeline/baseline"] == pytest.approx(rates["pipeline"] / rates["baseline"], rel=0.02)
    assert s["gan/pipeline"] == pytest.approx(rates["gan"] / rates["pipeline"], rel=0.02)
    if s["places365_train_images_from"].startswith("assumed"):
        assert s["places365_train_images"] == 1000
    hours = 20 * s["places365_train_images"] * (1 / rates["pipeline"] + 1 / rates["gan"]) / 3600
    assert s["projected_hours"] == pytest.approx(hours, rel=0.02)


def test_no_cache_decodes_in_the_workers(bench, fresh_photos, capsys):
    photos = fresh_photos
    bench.main(["--device", "cpu", "--size", "32", "--bs", "4", "--steps", "1", "--warmup", "1", "--workers", "0",
                "--threads", "1", "--data", str(photos), "--configs", "loader", "--no-cache"])
    lines = capsys.readouterr().out.strip().splitlines()
    (record,) = [json.loads(line) for line in lines if line.startswith("{")]
    assert record["config"] == "loader" and record["cache"] is False and record["images_per_s"] > 0
    assert not any(line.startswith("cache: ") for line in lines) and not (photos / ".colorize-cache").exists()


def test_flop_counter_sees_the_generators_known_cost(tiny_generator):
    """~57 GFLOP forward per 256x256 image (the ResNet-18 DynamicUnet), and a backward of about twice that."""
    model = tiny_generator(64)
    with FlopCounterMode(display=False) as counter:
        out = model(torch.zeros(1, 1, 64, 64))
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        out.square().mean().backward()
    backward = counter.get_total_flops()
    assert 50e9 < forward * (256 / 64) ** 2 < 65e9  # conv FLOPs scale with the pixel count
    assert 1.8 < backward / forward < 2.1  # no input gradient for the first conv: a little under 2


@pytest.mark.parametrize("name, peak", [("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12),
                                        ("NVIDIA H200", 989e12), ("NVIDIA A100-SXM4-40GB", 312e12),
                                        ("NVIDIA L4", 121e12), ("Tesla T4", 65e12), ("NVIDIA L40S", None)])
def test_peak_table(bench, monkeypatch, name, peak):
    monkeypatch.setattr(bench, "device_name", lambda device: name)
    assert bench.peak_flops(torch.device("cuda", 0)) == peak
    assert bench.peak_flops(torch.device("cpu")) is None


def test_every_benchmark_script_is_run_by_a_test():
    """A new script in benchmarks/ cannot be left out: each is named by a test here (budget.py, hint_edges.py,
    reference_pairs.py and archive_speed.py by their modules' own: test_budget, test_propagate, test_reference,
    test_archive)."""
    tested = {"train_throughput.py", "inference_speed.py", "video_speed.py", "budget.py", "hint_edges.py",
              "reference_pairs.py", "archive_speed.py"}
    assert {p.name for p in BENCHMARKS.glob("*.py")} <= tested, "add a smoke test for the new benchmark script"


@pytest.mark.slow  # three fresh processes (the peak-memory child, `colorize apply` twice): each imports torch and fastai
def test_inference_speed_prints_every_measure_at_its_smoke_size(capsys):
    load_script(BENCHMARKS / "inference_speed.py").main(["--smoke", "--threads", "1"])
    out = capsys.readouterr().out
    for measure in ("1 MP photo (116x87), colorize_image", "12 MP photo (400x300), colorize_image",
                    "20 hints (fast propagation)", "peak RSS", "400x300 photo, dull colours",
                    "400x300 photo, saturated colours", "`colorize apply` photo_12mp.jpg, dull generator, 20 hints",
                    "guided / plain, through the CLI"):
        assert measure in out, (measure, out)
    ratio = next(line for line in out.splitlines() if "guided / plain, through the CLI" in line)
    assert float(ratio.split()[-4].rstrip("x")) > 0  # a ratio, then its target and verdict


def test_the_dull_generator_is_the_same_network_with_colours_near_gray(tmp_path, tiny_checkpoint):
    bench = load_script(BENCHMARKS / "inference_speed.py")
    from colorize.models import load_generator

    ckpt = str(tiny_checkpoint(tmp_path / "g.safetensors"))
    dull = load_generator(bench.dull_checkpoint(ckpt, tmp_path / "dull.safetensors"))
    L = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        before, after = load_generator(ckpt)(L).abs().mean(), dull(L).abs().mean()
    assert after < 0.1 * before and after > 0  # colours, but near gray


def test_video_speed_reports_every_mode_at_a_tiny_size(capsys):
    summary = load_script(BENCHMARKS / "video_speed.py").main(["--frames", "3", "--size", "64x48", "--render-size",
                                                                "32", "--threads", "1"])
    steady = summary["runs"][1]["temporal"]
    modes = [(r["temporal"], r["keyframes"]) for r in summary["runs"]]
    assert modes == [(0.0, 1), (steady, 1), (steady, 4), (steady, 8)] and steady > 0  # per frame, stabilised, K 4, 8
    assert all(r["frames"] == 3 and r["fps_wall"] > 0 for r in summary["runs"])
    assert "stabilisation adds" in capsys.readouterr().out

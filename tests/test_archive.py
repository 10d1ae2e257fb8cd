"""A folder of photos streamed through the model (`colorize.archive`): a run stopped part-way finishes the rest on a
rerun with every photo written exactly once and none left partial; a changed model or rendering is redone; a
broken photo is reported and skipped; photos of different sizes share a batch and keep their own lightness;
two processes under torchrun split a folder; each photo takes its own hints (a folder of hints files by name, one
file for all), and a bad one is that photo's failure."""

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorize import archive
from colorize.apply import apply_paths, hints_source
from colorize.archive import ArchiveOptions, colorize_archive, read_fingerprint
from colorize.inference import Rendering, colorize_image

RENDER = Rendering(32)


@pytest.fixture(scope="module")
def model(tiny_generator):
    return tiny_generator(32).eval()


def summary(out: Path) -> tuple[list[dict], dict]:
    with open(out / "colorize-apply.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, json.loads((out / "colorize-apply.json").read_text())


def check_complete(out: Path, n: int) -> None:
    """`n` outputs, every one decodes whole, no temporary file left."""
    outputs = sorted(out.rglob("*.png"))
    assert len(outputs) == n
    for p in outputs:
        with Image.open(p) as im:
            im.load()
    assert not list(out.rglob("*.tmp"))


def test_a_run_stopped_part_way_finishes_the_rest_on_a_rerun_each_photo_written_once(model, tmp_path, write_photos,
                                                                                    monkeypatch):
    n, stop_at = 11, 4
    write_photos(tmp_path / "in", n)
    out = tmp_path / "out"
    writes, through_model = Counter(), []
    save, batch = archive.save_output, archive.colorize_batch

    lock = threading.Lock()

    def counted_save(image, path, record):
        with lock:  # the encoding threads one at a time, so the count is exact
            if sum(writes.values()) == stop_at:  # the kill: half a file under the temporary name, then nothing more
                path.with_name(path.name + ".tmp").write_bytes(b"\x89PNG\r\n\x1a\n half")
                raise RuntimeError("killed")
            save(image, path, record)
            writes[path] += 1

    def counted_batch(model, L, *args):
        through_model.append(L.shape[0])
        return batch(model, L, *args)

    monkeypatch.setattr(archive, "save_output", counted_save)
    monkeypatch.setattr(archive, "colorize_batch", counted_batch)
    options = ArchiveOptions(batch=3, workers=2)
    with pytest.raises(RuntimeError, match="killed"):
        colorize_archive(model, [tmp_path / "in"], out, RENDER, options, progress=False)
    assert sum(writes.values()) == stop_at and list(out.glob("*.tmp"))  # a partial file was left behind
    # the rerun: nothing fails, each write counted
    monkeypatch.setattr(archive, "save_output", lambda image, path, record: (save(image, path, record),
                                                                           writes.update([path])))
    through_model.clear()
    result = colorize_archive(model, [tmp_path / "in"], out, RENDER, options, progress=False)
    assert len(writes) == n and set(writes.values()) == {1}  # every photo written, and exactly once
    assert sum(through_model) == n - stop_at  # the model saw only the photos not done
    assert len(result.written) == n - stop_at and len(result.skipped) == stop_at and not result.failed
    check_complete(out, n)
    rows, counts = summary(out)
    assert Counter(r["status"] for r in rows) == {"done": n - stop_at, "skipped": stop_at}
    assert (counts["done"], counts["skipped"], counts["failed"]) == (n - stop_at, stop_at, 0)
    assert sorted(Path(r["input"]).name for r in rows) == [f"p{i:03d}.jpg" for i in range(n)]


def test_a_changed_model_or_rendering_is_redone_and_overwrite_redoes_all(model, tiny_generator, tmp_path, write_photos):
    write_photos(tmp_path / "in", 3)
    out = tmp_path / "out"

    def run(m, rendering=RENDER, **options):
        r = colorize_archive(m, [tmp_path / "in"], out, rendering, ArchiveOptions(**options), progress=False)
        return len(r.written), len(r.skipped)

    assert run(model) == (3, 0)
    first = read_fingerprint(out / "p000.png")
    assert json.loads(first)["rendering"]["render_size"] == 32
    assert run(model) == (0, 3)
    other = tiny_generator(32, seed=1).eval()
    assert run(other) == (3, 0)  # other weights: not done
    assert read_fingerprint(out / "p000.png") != first
    assert run(other, Rendering(64)) == (3, 0)  # another render size: not done
    assert run(other, Rendering(64)) == (0, 3)
    assert run(other, Rendering(64), overwrite=True) == (3, 0)
    assert run(other, Rendering(64), format="jpeg") == (3, 0)  # JPEG outputs beside the PNGs, recorded in a comment
    assert run(other, Rendering(64), format="jpeg") == (0, 3)
    assert sorted(p.name for p in out.glob("p000.*")) == ["p000.jpg", "p000.png"]


def test_a_broken_photo_is_reported_and_skipped(model, tmp_path, write_photos, write_broken):
    write_photos(tmp_path / "in", 2)
    broken = write_broken(tmp_path / "in")
    unreadable = {name for name, reason in broken.items() if reason != "grayscale"}  # a gray photo is a photo
    result = apply_paths(model, [tmp_path / "in"], tmp_path / "out", RENDER, progress=False)
    assert sorted(p.name for p, _ in result.failed) == sorted(unreadable)
    assert all("cannot read" in reason for _, reason in result.failed)
    assert len(result.written) == 2 + len(broken) - len(unreadable)
    rows, counts = summary(tmp_path / "out")
    assert {Path(r["input"]).name for r in rows if r["status"] == "failed"} == unreadable
    assert counts["failed"] == len(unreadable) and counts["done"] == len(result.written)
    check_complete(tmp_path / "out", len(result.written))



def test_where_a_bar_can_draw_it_counts_photos_with_the_rate(model, tmp_path, write_photos, monkeypatch, capsys):
    write_photos(tmp_path / "in", 3)
    monkeypatch.setattr(archive, "bars_can_draw", lambda: True)
    colorize_archive(model, [tmp_path / "in"], tmp_path / "out", RENDER, ArchiveOptions(batch=2))
    out = capsys.readouterr().out
    assert "[3/3 " in out and "photos/s]" in out
    monkeypatch.setattr(archive, "bars_can_draw", lambda: False)  # a log file or a pipe: no bar
    colorize_archive(model, [tmp_path / "in"], tmp_path / "out", RENDER, ArchiveOptions(overwrite=True))
    assert "photos/s]" not in capsys.readouterr().out

def test_photos_of_different_sizes_share_a_batch_and_keep_their_own_lightness(model, tmp_path, astronaut):
    sizes = [(45, 30), (20, 33), (64, 64), (31, 17)]
    (tmp_path / "in").mkdir()
    for i, size in enumerate(sizes):
        astronaut(96).resize(size).save(tmp_path / "in" / f"a{i}.png")
    result = colorize_archive(model, [tmp_path / "in"], tmp_path / "out", RENDER, ArchiveOptions(batch=4),
                              progress=False)
    assert len(result.written) == len(sizes)
    for i, size in enumerate(sizes):
        batched = np.asarray(Image.open(tmp_path / "out" / f"a{i}.png"), dtype=int)
        alone = np.asarray(colorize_image(model, Image.open(tmp_path / "in" / f"a{i}.png"), RENDER), dtype=int)
        assert batched.shape[:2] == size[::-1] and np.abs(batched - alone).max() <= 1  # one uint8 level of rounding


@pytest.mark.slow
def test_two_processes_under_torchrun_split_a_folder(tmp_path, write_photos, tiny_checkpoint, free_port):
    n = 7
    write_photos(tmp_path / "in", n)
    ckpt = tiny_checkpoint(tmp_path / "g.safetensors")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "colorize", "apply", str(tmp_path / "in"), "--model", str(ckpt),
           "--out", str(out), "--render-size", "32", "--device", "cpu", "--batch", "2"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    rows, counts = summary(out)
    assert sorted(Path(r["input"]).name for r in rows) == [f"p{i:03d}.jpg" for i in range(n)]  # each once, none missed
    assert {r["status"] for r in rows} == {"done"}
    assert Counter(r["rank"] for r in rows) == {"0": 4, "1": 3}  # both processes worked, each its share
    assert counts["processes"] == 2 and counts["done"] == n and len(counts["seconds_by_rank"]) == 2
    check_complete(out, n)
    assert run.stdout.count("wrote 7 file(s)") == 1  # one summary, rank 0's


@pytest.mark.slow
def test_a_process_that_fails_under_torchrun_stops_every_process_with_its_reason(tmp_path, write_photos, tiny_checkpoint,
                                                                                 free_port):
    """Process 1's share holds p003, whose temporary output name is taken by a folder (a real fault, in one process
    only): both processes stop at the gather naming process 1 and the reason, and what process 0 wrote is whole.
    Unmet, process 0 learns only that a peer closed its connection (gloo), or waits for the collective's timeout
    where the failed process lives on (a notebook) or NCCL does not notice; the subprocess timeout fails a hang."""
    write_photos(tmp_path / "in", 6)
    ckpt = tiny_checkpoint(tmp_path / "g.safetensors")
    out = tmp_path / "out"
    (out / "p003.png.tmp").mkdir(parents=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "colorize", "apply", str(tmp_path / "in"), "--model", str(ckpt),
           "--out", str(out), "--render-size", "32", "--device", "cpu", "--batch", "2"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode != 0
    said = [line for line in run.stderr.splitlines() if "process 1 of 2 failed: IsADirectoryError" in line]
    assert len(said) == 2 and all("p003.png.tmp" in line for line in said), run.stderr[-3000:]  # both processes
    assert sorted(p.name for p in out.glob("*.png")) == ["p000.png", "p002.png", "p004.png"]  # process 0's share
    assert not (out / "colorize-apply.json").exists()


def test_transparency_is_kept_inputs_are_never_written_over_and_earlier_outputs_are_not_photos(model, tmp_path,
                                                                                               astronaut):
    src = tmp_path / "in"
    src.mkdir()
    rgba = astronaut(96).resize((30, 20)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((30, 20)))
    rgba.save(src / "logo.png")
    astronaut(96).save(src / "cat.jpg")
    for rerun in (False, True):  # the second run keeps the first's outputs and takes none of them for photos
        result = apply_paths(model, [src], src / "colorized", RENDER, progress=False)
        assert sorted(p.name for p in (result.skipped if rerun else result.written)) == ["cat.png", "logo.png"]
        assert not (result.written if rerun else result.skipped)
    out = Image.open(src / "colorized" / "logo.png")
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], np.asarray(rgba)[..., 3])
    before = (src / "cat.jpg").read_bytes()
    with pytest.raises(ValueError, match="overwrite"):  # cat.jpg's JPEG output would be cat.jpg itself
        apply_paths(model, [src], src, RENDER, progress=False, archive=ArchiveOptions(format="jpeg"))
    assert (src / "cat.jpg").read_bytes() == before


def test_the_benchmark_runs_at_smoke_size_and_reports_each_rate_beside_the_model_only_one(capsys):
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "archive_speed.py"
    spec = importlib.util.spec_from_file_location("archive_speed", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    record = bench.main(["--smoke"])
    assert set(record["photos_per_s"]) == {"model only", "streamed, 1 process"}
    assert all(rate > 0 for rate in record["photos_per_s"].values())
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1]) == record
    share = record["photos_per_s"]["streamed, 1 process"] / record["photos_per_s"]["model only"]
    assert f"{share:.0%}" in out and ("PASS" in out) == (share >= bench.TARGET)


@pytest.mark.slow
def test_colorize_apply_killed_with_sigkill_finishes_the_rest_on_a_rerun(tmp_path, write_photos, tiny_checkpoint):
    n = 40
    write_photos(tmp_path / "in", n, size=(96, 128))
    ckpt = tiny_checkpoint(tmp_path / "g.safetensors")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "colorize", "apply", str(tmp_path / "in"), "--model", str(ckpt), "--out", str(out),
           "--render-size", "32", "--batch", "2", "--workers", "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 240
    try:
        while len(list(out.glob("*.png"))) < 3:
            assert proc.poll() is None and time.time() < deadline, "the run ended or hung before its third photo"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    kept = {p: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert 3 <= len(kept) < n, "the kill came too late to test anything"
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the photos done before the kill were not written again
    check_complete(out, n)
    rows, counts = summary(out)
    assert (counts["done"], counts["skipped"], counts["failed"]) == (n - len(kept), len(kept), 0)
    assert {Path(r["output"]) for r in rows if r["status"] == "skipped"} == set(kept)


def test_a_hints_folder_gives_each_photo_its_own_and_a_changed_or_bad_file_touches_that_photo_alone(model, tmp_path,
                                                                                                   astronaut):
    (tmp_path / "in").mkdir()
    for name in ("a", "b", "c"):
        astronaut(48).save(tmp_path / "in" / f"{name}.png")
    hints = tmp_path / "hints"
    hints.mkdir()
    red = [{"x": 24, "y": 24, "color": "#ff0000", "size": 16}]
    (hints / "a.json").write_text(json.dumps(red))
    (hints / "b.json").write_text(json.dumps([{"x": 500, "y": 1, "color": "red"}]))  # outside a 48x48 photo
    out = tmp_path / "out"
    result = apply_paths(model, [tmp_path / "in"], out, RENDER, hints_source(hints), progress=False)
    assert [p.name for p, _ in result.failed] == ["b.png"] and "outside the photo" in result.failed[0][1]
    assert sorted(p.name for p in result.written) == ["a.png", "c.png"]
    automatic = np.asarray(colorize_image(model, astronaut(48), RENDER), dtype=float)
    a, c = (np.asarray(Image.open(out / f"{n}.png"), dtype=float) for n in ("a", "c"))
    assert np.abs(c - automatic).max() <= 1  # no file: no hints
    centre = (slice(20, 28), slice(20, 28))
    assert a[centre][..., 0].mean() - a[centre][..., 1:].mean() > automatic[centre][..., 0].mean() \
        - automatic[centre][..., 1:].mean() + 20  # redder where the hint is
    rows = {Path(r["input"]).name: r for r in summary(out)[0]}
    assert (rows["a.png"]["hints"], rows["c.png"]["hints"], rows["b.png"]["status"]) == ("1", "0", "failed")
    (hints / "a.json").write_text(json.dumps([{**red[0], "color": "#0000ff"}]))  # an edited file redoes its photo
    (hints / "b.json").unlink()
    result = apply_paths(model, [tmp_path / "in"], out, RENDER, hints_source(hints), progress=False)
    assert sorted(p.name for p in result.written) == ["a.png", "b.png"]
    assert [p.name for p in result.skipped] == ["c.png"]


def test_one_hints_file_for_a_folder_is_checked_against_each_photo(model, tmp_path, astronaut):
    (tmp_path / "in").mkdir()
    astronaut(64).save(tmp_path / "in" / "big.png")
    astronaut(64).resize((40, 30)).save(tmp_path / "in" / "small.png")
    hint = [{"x": 50, "y": 10, "color": "#20c040", "size": 8}]  # inside 64x64, outside 40x30
    result = apply_paths(model, [tmp_path / "in"], tmp_path / "out", RENDER, hint, progress=False)
    assert [p.name for p in result.written] == ["big.png"]
    assert [p.name for p, _ in result.failed] == ["small.png"] and "hint 1 of 1" in result.failed[0][1]
    assert result.hints[tmp_path / "in" / "big.png"].entries == hint

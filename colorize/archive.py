"""Many photos: decoding and encoding streamed beside the model, resumable, sharded over processes.

`colorize_archive` runs three stages at once, with bounded queues between them, so none waits for the
others while there is work: threads decode photos (and squeeze each to the render size), the model
thread feeds batches of `ArchiveOptions.batch` photos through the engine (`inference.colorize_batch`),
and threads join each prediction with its photo's own full-resolution lightness (`inference.compose`)
and encode it (PNG, or JPEG). Decoding, the colour conversion and the encoders release the GIL.

Every output is written under a temporary name and renamed when complete (`files.atomic_path`), and
carries what made it (`fingerprint`: the weights' hash, the `Rendering`, the hints) in its PNG text
chunk or JPEG comment. A rerun skips an output that is there with the same fingerprint, so a killed run
finishes the rest and a changed model or rendering redoes them; `overwrite` redoes all. A photo that
cannot be read (or written) is reported and skipped.

Under `torchrun` or `accelerate launch` (WORLD_SIZE > 1) each process takes every WORLD_SIZE-th photo
from the sorted plan on its own device, and rank 0 writes one summary, gathered from all, beside the
outputs: `colorize-apply.csv` (each input: done, skipped or failed, with the reason and the rank) and
`colorize-apply.json` (the counts, seconds and rate).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from fastai.torch_core import num_distrib, rank_distrib
from fastprogress.fastprogress import progress_bar
from PIL import Image, PngImagePlugin
from torch import nn

from .config import Recipe, choice, option, options_of
from .data import BadImageError, IMAGE_EXTS, load_rgb, to_rgb
from .device import choose_precision
from .files import atomic_path, atomic_write_text, bars_can_draw, default_workers
from .hintmaps import check_hints, user_hint_map
from .inference import (PNG_COMPRESS_LEVEL, Rendering, colorize_batch, compose, model_device, plan_outputs,
                        render_lightness, rendering_of)
from .parallel import weights_digest

log = logging.getLogger(__name__)

FORMATS = {"png": ".png", "jpeg": ".jpg"}  # output format -> the outputs' suffix
JPEG_QUALITY = 95  # PIL's scale: high enough that the colours do not band
FINGERPRINT_KEY = "colorize"  # the PNG text chunk that records what made the output
SUMMARY = "colorize-apply"  # .csv and .json beside the outputs
LOG_EVERY_S = 30.0  # without a bar, a progress line at most this often


@dataclass(frozen=True)
class ArchiveOptions(Recipe):
    """How a folder of photos is worked through (the `Rendering` says how each is colorized)."""

    batch: int = option(8, "photos through the model at once")
    workers: int | None = option(None, "threads decoding, and as many encoding, beside the model (default: one "
                                 "per core, at most 8)")
    format: str = choice("png", tuple(FORMATS), help="the photos' output format: png (lossless) or jpeg")
    overwrite: bool = option(False, "colorize every photo again, even those already done with this model and "
                             "rendering")

    def check(self):
        if self.batch < 1 or (self.workers is not None and self.workers < 1):
            raise ValueError(f"batch {self.batch}, workers {self.workers}: each must be at least 1")


@dataclass
class ColorizeResult:
    """What `colorize_archive` (or `apply.apply_paths`) wrote, the inputs it could not read with the reason, and the
    outputs it kept because an earlier run had made them alike."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (input path, reason)
    skipped: list[Path] = field(default_factory=list)  # outputs already done with this model and rendering


def fingerprint(model: nn.Module, rendering: Rendering, hints: list | None = None) -> str:
    """What makes an output: the weights' hash, the rendering (its precision as resolved on the model's device) and
    the hints, as one line of JSON; an output that records another was made otherwise and is redone."""
    resolved = rendering.replace(precision=choose_precision(model_device(model), rendering.precision))
    hints_hash = hashlib.sha256(json.dumps(hints, sort_keys=True).encode()).hexdigest()[:16] if hints else None
    return json.dumps({"model": weights_digest(model.state_dict()), "rendering": dataclasses.asdict(resolved),
                       "hints": hints_hash}, sort_keys=True)


def read_fingerprint(path: Path) -> str | None:
    """The fingerprint an output records (PNG text chunk or JPEG comment), or None: none, or not an image."""
    try:
        with Image.open(path) as im:
            found = im.info.get(FINGERPRINT_KEY) if im.format == "PNG" else im.info.get("comment")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    return found.decode(errors="replace") if isinstance(found, bytes) else found


def save_output(image: Image.Image, path: Path, record: str) -> None:
    """`image` to `path` (its suffix picks PNG or JPEG) with `record` in it, under a temporary name renamed when
    complete; nothing is left under either name if writing fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        try:
            if path.suffix == FORMATS["jpeg"]:
                image.convert("RGB").save(tmp, "JPEG", quality=JPEG_QUALITY, comment=record)
            else:
                info = PngImagePlugin.PngInfo()
                info.add_itxt(FINGERPRINT_KEY, record)
                image.save(tmp, "PNG", compress_level=PNG_COMPRESS_LEVEL, pnginfo=info)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


@dataclass
class _Photo:
    """One decoded photo on its way: its full-resolution pixels (H,W,3) uint8, its alpha, L (1,1,S,S) at the
    render size, and the predicted ab once the model has run."""

    src: Path
    dst: Path
    pixels: np.ndarray
    alpha: Image.Image | None
    L: torch.Tensor
    size: tuple[int, int]  # (W, H)
    ab: torch.Tensor | None = None


def _decode(src: Path, dst: Path, render_size: int) -> _Photo:
    image = load_rgb(src, keep_alpha=True)
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    pixels = np.asarray(to_rgb(image))  # (H,W,3) uint8
    return _Photo(src, dst, pixels, alpha, render_lightness([pixels], render_size), image.size)


def _encode(photo: _Photo, record: str) -> None:
    out = Image.fromarray(compose(photo.pixels, photo.ab), "RGB")  # the photo's own L at full resolution
    if photo.alpha is not None:
        out.putalpha(photo.alpha)
    save_output(out, photo.dst, record)


def _stream(model: nn.Module, pairs: list[tuple[Path, Path]], rendering: Rendering, options: ArchiveOptions,
            record: str, points: list) -> Iterator[tuple[Path, Path, str, str]]:
    """(input, output, "done" or "failed", reason) for each pair as it finishes: decoding, the model and encoding
    run at once, each stage at most a few batches ahead of the next."""
    device, S = model_device(model), rendering.render_size
    workers = options.workers or default_workers()
    ahead = options.batch + workers  # photos a stage may hold beyond the one that follows it: one batch, and one
    # more for each worker, keeps the model fed without holding many full-resolution photos
    finished: queue.Queue = queue.Queue()
    stop = threading.Event()

    def put(item, q: queue.Queue) -> bool:  # a blocking put that gives up when the run stops
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    decoded: queue.Queue = queue.Queue(maxsize=ahead)

    def feed(pool: ThreadPoolExecutor):  # decode in order, `ahead` at most waiting for the model
        for src, dst in pairs:
            if stop.is_set() or not put((src, dst, pool.submit(_decode, src, dst, S)), decoded):
                return
        put(None, decoded)

    encoding = threading.BoundedSemaphore(ahead)

    def encoded(photo: _Photo, job: Future):
        encoding.release()
        error = job.exception()
        if isinstance(error, OSError):  # a full disk, a folder that cannot be written
            finished.put((photo.src, photo.dst, "failed", f"cannot write {photo.dst}: {error}"))
        elif error is not None:
            finished.put(error)
        else:
            finished.put((photo.src, photo.dst, "done", ""))

    def run_model(encoder: ThreadPoolExecutor):
        try:
            batch: list[_Photo] = []
            while True:
                try:
                    item = decoded.get(timeout=0.1)
                except queue.Empty:
                    if stop.is_set():
                        return
                    continue
                if item is not None:
                    src, dst, job = item
                    try:
                        batch.append(job.result())
                    except BadImageError as e:
                        log.warning("skipped %s: %s", src, e)
                        finished.put((src, dst, "failed", str(e)))
                if batch and (item is None or len(batch) == options.batch):
                    L = torch.cat([p.L for p in batch]).to(device)  # (B,1,S,S)
                    hint_map = user_hint_map(points, batch[0].size, S, device) if points else None  # one photo
                    ab = colorize_batch(model, L, hint_map, rendering)  # (B,2,S,S)
                    for i, photo in enumerate(batch):
                        photo.ab, photo.L = ab[i:i + 1], None
                        while not encoding.acquire(timeout=0.1):
                            if stop.is_set():
                                return
                        encoder.submit(_encode, photo, record).add_done_callback(
                            lambda job, photo=photo: encoded(photo, job))
                    batch = []
                if item is None or stop.is_set():
                    return
        except BaseException as e:  # the model's error ends the run: the main thread raises it
            finished.put(e)

    with ThreadPoolExecutor(workers, thread_name_prefix="colorize-decode") as decoder, \
            ThreadPoolExecutor(workers, thread_name_prefix="colorize-encode") as encoder:
        threads = [threading.Thread(target=feed, args=(decoder,), daemon=True),
                   threading.Thread(target=run_model, args=(encoder,), daemon=True)]
        for t in threads:
            t.start()
        try:
            for _ in range(len(pairs)):
                item = finished.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            decoder.shutdown(wait=False, cancel_futures=True)
            for t in threads:
                t.join()


def colorize_archive(model: nn.Module, inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                     rendering: Rendering | int | None = None, options: ArchiveOptions | None = None,
                     hints: list | None = None, progress: bool = True, **settings) -> ColorizeResult:
    """Colorize photos and folders of photos (recursively) into `out_dir`, streamed, resumable and sharded (see the
    module's docstring); never touches the inputs. Returns every process's written, skipped and failed photos.

    `rendering` as for `inference.colorize_image` (a `Rendering`, a render size); the fields of it and of
    `options` also as keywords (`render_size=64, format="jpeg"`). Transparency is kept (RGBA out for a photo
    with an alpha channel or a transparent palette colour; JPEG drops it). `hints` (a hints file's points)
    need exactly one photo, and are checked against it before anything is written.
    """
    start = time.perf_counter()
    options = options_of(ArchiveOptions, options, settings)
    rendering = rendering_of(rendering, **settings)
    out_dir, inputs = Path(out_dir), [str(p) for p in inputs]
    pairs = plan_outputs(inputs, out_dir, FORMATS[options.format])
    if not pairs:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) found in {', '.join(inputs)}")
    points = []
    if hints:
        if len(pairs) != 1:
            raise ValueError(f"hints are points of one photo, but {len(pairs)} photos were given: colorize that "
                             "photo alone with its hints file")
        points = check_hints(hints, load_rgb(pairs[0][0], keep_alpha=True).size)  # bad: an error, nothing written
    rank, world = _join_processes(model)
    record = fingerprint(model, rendering, hints)
    rows, todo, error = [], [], None
    t0 = time.perf_counter()
    try:  # a process that fails still meets the others at the gather, which then raises on every one
        for src, dst in pairs[rank::world]:  # this process's share of the sorted plan
            dst.with_name(dst.name + ".tmp").unlink(missing_ok=True)  # a killed run's partial output
            if not options.overwrite and read_fingerprint(dst) == record:
                rows.append((src, dst, "skipped", "done before with this model and rendering", rank))
            else:
                todo.append((src, dst))
        if rows:
            log.info("%d of %d photo(s) already colorized with this model and rendering: kept", len(rows), len(pairs))
        stream = _stream(model, todo, rendering, options, record, points)
        # one bar, rank 0's, counting its share: the processes move at about the same pace
        drawn = progress and bars_can_draw() and todo and rank == 0
        bar = progress_bar(stream, total=len(todo), leave=False) if drawn else None
        t0, said = time.perf_counter(), time.perf_counter()
        for n, (src, dst, status, reason) in enumerate(bar if bar is not None else stream, 1):
            rows.append((src, dst, status, reason, rank))
            rate = n / max(time.perf_counter() - t0, 1e-9)
            if bar is not None:
                bar.comment = f"{rate:.2f} photos/s"
            elif time.perf_counter() - said > LOG_EVERY_S:
                said = time.perf_counter()
                log.info("%d/%d photos, %.2f photos/s, about %.0f s left", n, len(todo), rate,
                         (len(todo) - n) / rate)
    except Exception as e:
        error = e
    seconds = time.perf_counter() - t0
    rows, seconds_by_rank = _gathered(rows, seconds, world, error)
    order = {str(src): i for i, (src, _) in enumerate(pairs)}
    rows.sort(key=lambda r: order[str(r[0])])  # the plan's order: the inputs' as given, each folder's sorted
    result = ColorizeResult(written=[Path(r[1]) for r in rows if r[2] == "done"],
                            failed=[(Path(r[0]), r[3]) for r in rows if r[2] == "failed"],
                            skipped=[Path(r[1]) for r in rows if r[2] == "skipped"])
    if rank == 0:
        _write_summary(out_dir, rows, seconds_by_rank, time.perf_counter() - start, record)
        streamed = max(seconds_by_rank)  # the slowest process's
        log.info("colorized %d photo(s) into %s in %.1f s (%.2f photos/s); kept %d done before; skipped %d unreadable",
                 len(result.written), out_dir, streamed, len(result.written) / max(streamed, 1e-9),
                 len(result.skipped), len(result.failed))
    return result


def _join_processes(model: nn.Module) -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) alone; in a distributed launch the process group is joined (gloo
    between CPUs, NCCL between GPUs) if loading the model has not done it (`device.process_device`)."""
    world = max(1, num_distrib())  # fastai says 0 outside a launch
    if world > 1 and not dist.is_initialized():
        from accelerate import PartialState

        PartialState(cpu=model_device(model).type != "cuda")
    return rank_distrib(), world


class ProcessFailed(RuntimeError):
    """A process of a distributed apply failed: every process raises this once all have met at the gather."""


def _gathered(rows: list, seconds: float, world: int, error: Exception | None = None) -> tuple[list, list[float]]:
    """Every process's rows and seconds; this process's alone outside a distributed launch. Every process comes
    here, one that failed with its `error`, so none waits forever for it; then each raises `ProcessFailed`
    naming the processes that failed and why (what they wrote is complete and kept: a rerun finishes the rest)."""
    if world <= 1:
        if error is not None:
            raise error
        return rows, [seconds]
    parts = [None] * world
    said = None if error is None else f"{type(error).__name__}: {error}"
    dist.all_gather_object(parts, ([tuple(map(str, r[:2])) + r[2:] for r in rows], seconds, said))
    failed = [(rank, said) for rank, (_, _, said) in enumerate(parts) if said is not None]
    if failed:
        raise ProcessFailed("; ".join(f"process {rank} of {world} failed: {said}" for rank, said in failed)) from error
    return [r for part, _, _ in parts for r in part], [s for _, s, _ in parts]


def _write_summary(out_dir: Path, rows: list, seconds_by_rank: list[float], total_s: float, record: str) -> None:
    """colorize-apply.csv (one line per input) and colorize-apply.json (counts, seconds, rate) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / f"{SUMMARY}.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["input", "output", "status", "reason", "rank"])
        writer.writerows((str(src), str(dst), status, reason, rank) for src, dst, status, reason, rank in rows)
    counts = {k: sum(r[2] == k for r in rows) for k in ("done", "skipped", "failed")}
    streamed = max(seconds_by_rank)
    atomic_write_text(out_dir / f"{SUMMARY}.json", json.dumps({
        **counts, "processes": len(seconds_by_rank), "seconds_by_rank": seconds_by_rank, "total_seconds": total_s,
        "photos_per_s": counts["done"] / streamed if streamed > 0 else None,
        "fingerprint": json.loads(record)}, indent=2) + "\n")

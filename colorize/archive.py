"""Many photos: decoding and encoding streamed beside the model, resumable, sharded over processes.

`colorize_archive` runs three stages at once, with bounded queues between them, so none waits for the
others while there is work: threads decode photos (and squeeze each to the render size), the model
thread feeds batches of `ArchiveOptions.batch` photos through the engine (`inference.colorize_batch`),
and threads join each prediction with its photo's own full-resolution lightness (`inference.compose`)
and encode it (PNG, or JPEG). Decoding, the colour conversion and the encoders release the GIL.

Each photo may take its own hints from a `HintsSource` (one hints file for all, a folder of them by name,
a reference photo: `reference.ReferenceHints`), asked in the decoding threads; a source with nothing for a
photo says why (`PhotoHints.note`), and the photo is colorized automatically.

Every output is written under a temporary name and renamed when complete (`files.atomic_path`), and
carries what made it (`fingerprint`: the weights' hash, the `Rendering`, and what decides that photo's
hints, `HintsSource.identity`) in its PNG text chunk or JPEG comment, with the hints it took (for a later
run's summary). A rerun skips an output that is there with the same fingerprint, so a killed run
finishes the rest and a changed model, rendering or hints redoes them; `overwrite` redoes all. A photo
that cannot be read (or written), or whose hints do not fit it, is reported and skipped.

Under `torchrun` or `accelerate launch` (WORLD_SIZE > 1) each process takes every WORLD_SIZE-th photo
from the sorted plan on its own device, and rank 0 writes one summary, gathered from all, beside the
outputs: `colorize-apply.csv` (each input: done, skipped or failed, with the reason and the rank; the
hints it took, whether its source fell back to automatic, and the source's note) and `colorize-apply.json`
(the counts, seconds and rate).
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
from typing import Callable, Iterable, Iterator, Sequence

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
TOOK = "took"  # the record's entry for the hints an output took (not part of its fingerprint)
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


@dataclass(frozen=True)
class PhotoHints:
    """One input's hints from a `HintsSource`: hints-file entries in its pixels, and where they came from."""

    entries: list = field(default_factory=list)
    note: str = ""  # one line for the log and the summary: where the hints came from, or why there are none
    fell_back: bool = False  # the source had no hints that fit this input: it was colorized automatically


class HintsSource:
    """Where each input of a run takes its hints from: one hints file for all, a folder of them by name
    (`apply.hints_source`), a reference photo (`reference.ReferenceHints`). A subclass says what decides an input's
    hints before it is decoded (`identity`, recorded in the output's fingerprint) and gives them once it is
    (`photo`, called in a decoding thread; a ValueError there is that photo's failure, not the run's)."""

    def check(self, inputs: Sequence[Path]) -> None:
        """Refuse the run before anything is written (an error), e.g. hints that cannot fit any of `inputs`."""

    def identity(self, src: Path):
        """What decides `src`'s hints (JSON-able, cheap: no decoding), or None when it takes none."""
        raise NotImplementedError

    def photo(self, src: Path, image: Image.Image) -> PhotoHints:
        """`src`'s hints, given its decoded photo (any mode, at full resolution)."""
        raise NotImplementedError

    def video(self, src: Path) -> tuple[list, Callable | None]:
        """A video's hints: entries (each with an optional "frame") known before decoding, and an optional hook
        that `video.colorize_video` calls on every frame as it decodes it, for more (`video.FrameHook`)."""
        return [], None

    def video_done(self, src: Path, entries: list, hook) -> PhotoHints:
        """What the video took, after it is colorized: the entries, and those the hook placed, with a note."""
        return PhotoHints(list(entries))


class FixedHints(HintsSource):
    """The same hints-file entries for every input; each input checks them against its own size."""

    def __init__(self, entries: list):
        self.entries = list(entries)

    def identity(self, src: Path):
        return self.entries or None

    def photo(self, src: Path, image: Image.Image) -> PhotoHints:
        return PhotoHints(self.entries)

    def video(self, src: Path):
        return self.entries, None


@dataclass
class ColorizeResult:
    """What `colorize_archive` (or `apply.apply_paths`) wrote, the inputs it could not read with the reason, the
    outputs it kept because an earlier run had made them alike, and the hints each input written took."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (input path, reason)
    skipped: list[Path] = field(default_factory=list)  # outputs already done with this model and rendering
    hints: dict[Path, PhotoHints] = field(default_factory=dict)  # input -> its hints, for the inputs written here

    @property
    def fell_back(self) -> list[tuple[Path, str]]:
        """(input, note) for each input written whose hints source had nothing that fit it: colorized automatically."""
        return [(src, h.note) for src, h in self.hints.items() if h.fell_back]


def made_by(model: nn.Module, rendering: Rendering) -> dict:
    """What makes every output of a run: the weights' hash and the rendering (its precision as resolved on the
    model's device); computed once per run."""
    resolved = rendering.replace(precision=choose_precision(model_device(model), rendering.precision))
    return {"model": weights_digest(model.state_dict()), "rendering": dataclasses.asdict(resolved)}


def fingerprint(made: dict, hints) -> str:
    """An output's fingerprint: `made_by` and what decides its hints (`HintsSource.identity`, a hints-file list), as
    one line of JSON; an output that records another was made otherwise and is redone."""
    hints_hash = hashlib.sha256(json.dumps(hints, sort_keys=True).encode()).hexdigest()[:16] if hints else None
    return json.dumps({**made, "hints": hints_hash}, sort_keys=True)


def _recorded(record: str, hints: PhotoHints | None) -> str:
    """What an output records: its fingerprint, and (not part of what makes it) the hints it took: their number,
    whether their source fell back to automatic, and the source's note, for a later run's summary."""
    if hints is None:
        return record
    took = {"hints": len(hints.entries), "fell_back": hints.fell_back, "note": hints.note}
    return json.dumps({**json.loads(record), TOOK: took}, sort_keys=True)


def _done_alike(found: str | None, record: str) -> dict | None:
    """What an earlier output took ({} where it records nothing) if it was made as `record` says, else None."""
    try:
        made = json.loads(found) if found is not None else None
    except json.JSONDecodeError:
        return None
    if not isinstance(made, dict):
        return None
    took = made.pop(TOOK, {})
    return took if json.dumps(made, sort_keys=True) == record else None


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


class _Unfit(Exception):
    """A photo whose hints do not fit it: that photo's failure."""


@dataclass
class _Photo:
    """One decoded photo on its way: its full-resolution pixels (H,W,3) uint8, its alpha, L (1,1,S,S) at the
    render size, its hints (and their points), and the predicted ab once the model has run."""

    src: Path
    dst: Path
    record: str  # its fingerprint
    pixels: np.ndarray
    alpha: Image.Image | None
    L: torch.Tensor
    size: tuple[int, int]  # (W, H)
    hints: PhotoHints | None = None
    points: list = field(default_factory=list)  # hintmaps.HintPoint of `hints`, checked against `size`
    ab: torch.Tensor | None = None


def _decode(src: Path, dst: Path, record: str, render_size: int, source: HintsSource | None) -> _Photo:
    image = load_rgb(src, keep_alpha=True)
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    pixels = np.asarray(to_rgb(image))  # (H,W,3) uint8
    photo = _Photo(src, dst, record, pixels, alpha, render_lightness([pixels], render_size), image.size)
    if source is not None:
        try:
            photo.hints = source.photo(src, image)
            photo.points = check_hints(photo.hints.entries, image.size)
        except ValueError as e:
            raise _Unfit(f"its hints do not fit it: {e}") from None
    return photo


def _encode(photo: _Photo) -> None:
    out = Image.fromarray(compose(photo.pixels, photo.ab), "RGB")  # the photo's own L at full resolution
    if photo.alpha is not None:
        out.putalpha(photo.alpha)
    save_output(out, photo.dst, _recorded(photo.record, photo.hints))


def _hint_maps(batch: list[_Photo], S: int, device) -> torch.Tensor | None:
    """The batch's hint maps (B,3,S,S), each photo's own (all zero without hints), or None when none has hints."""
    if not any(p.points for p in batch):
        return None
    return torch.cat([user_hint_map(p.points, p.size, S, device) for p in batch])


def _stream(model: nn.Module, pairs: list[tuple[Path, Path, str]], rendering: Rendering, options: ArchiveOptions,
            source: HintsSource | None) -> Iterator[tuple[Path, Path, str, str, PhotoHints | None]]:
    """(input, output, "done" or "failed", reason, its hints) for each (input, output, fingerprint) as it finishes:
    decoding (and the hints source), the model and encoding run at once, each stage at most a few batches ahead of
    the next."""
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
        for src, dst, record in pairs:
            if stop.is_set() or not put((src, dst, pool.submit(_decode, src, dst, record, S, source)), decoded):
                return
        put(None, decoded)

    encoding = threading.BoundedSemaphore(ahead)

    def encoded(photo: _Photo, job: Future):
        encoding.release()
        error = job.exception()
        if isinstance(error, OSError):  # a full disk, a folder that cannot be written
            finished.put((photo.src, photo.dst, "failed", f"cannot write {photo.dst}: {error}", photo.hints))
        elif error is not None:
            finished.put(error)
        else:
            finished.put((photo.src, photo.dst, "done", "", photo.hints))

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
                    except (BadImageError, _Unfit) as e:
                        log.warning("skipped %s: %s", src, e)
                        finished.put((src, dst, "failed", str(e), None))
                if batch and (item is None or len(batch) == options.batch):
                    L = torch.cat([p.L for p in batch]).to(device)  # (B,1,S,S)
                    ab = colorize_batch(model, L, _hint_maps(batch, S, device), rendering)  # (B,2,S,S)
                    for i, photo in enumerate(batch):
                        photo.ab, photo.L = ab[i:i + 1], None
                        while not encoding.acquire(timeout=0.1):
                            if stop.is_set():
                                return
                        encoder.submit(_encode, photo).add_done_callback(
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
                     hints: list | HintsSource | None = None, progress: bool = True, **settings) -> ColorizeResult:
    """Colorize photos and folders of photos (recursively) into `out_dir`, streamed, resumable and sharded (see the
    module's docstring); never touches the inputs. Returns every process's written, skipped and failed photos.

    `rendering` as for `inference.colorize_image` (a `Rendering`, a render size); the fields of it and of
    `options` also as keywords (`render_size=64, format="jpeg"`). Transparency is kept (RGBA out for a photo
    with an alpha channel or a transparent palette colour; JPEG drops it). `hints`: a hints file's points, for
    exactly one photo and checked against it before anything is written; or a `HintsSource`, each photo's own.
    """
    start = time.perf_counter()
    options = options_of(ArchiveOptions, options, settings)
    rendering = rendering_of(rendering, **settings)
    out_dir, inputs = Path(out_dir), [str(p) for p in inputs]
    pairs = plan_outputs(inputs, out_dir, FORMATS[options.format])
    if not pairs:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) found in {', '.join(inputs)}")
    source = hints if isinstance(hints, HintsSource) else None
    if hints and source is None:
        if len(pairs) != 1:
            raise ValueError(f"hints are points of one photo, but {len(pairs)} photos were given: colorize that "
                             "photo alone with its hints file")
        check_hints(hints, load_rgb(pairs[0][0], keep_alpha=True).size)  # bad: an error, nothing written
        source = FixedHints(hints)
    if source is not None:
        source.check([src for src, _ in pairs])
    rank, world = _join_processes(model)
    made = made_by(model, rendering)
    rows, todo, error = [], [], None
    t0 = time.perf_counter()
    took: dict[Path, PhotoHints] = {}
    try:  # a process that fails still meets the others at the gather, which then raises on every one
        for src, dst in pairs[rank::world]:  # this process's share of the sorted plan
            record = fingerprint(made, source.identity(src) if source is not None else None)
            dst.with_name(dst.name + ".tmp").unlink(missing_ok=True)  # a killed run's partial output
            before = None if options.overwrite else _done_alike(read_fingerprint(dst), record)
            if before is not None:
                fell = {True: "yes", False: "no"}.get(before.get("fell_back"), "")
                rows.append((src, dst, "skipped", "done before with this model, rendering and hints", rank,
                             before.get("hints", ""), fell, before.get("note", "")))
            else:
                todo.append((src, dst, record))
        if rows:
            log.info("%d of %d photo(s) already colorized with this model, rendering and hints: kept", len(rows),
                     len(pairs))
        stream = _stream(model, todo, rendering, options, source)
        # one bar, rank 0's, counting its share: the processes move at about the same pace
        drawn = progress and bars_can_draw() and todo and rank == 0
        bar = progress_bar(stream, total=len(todo), leave=False) if drawn else None
        t0, said = time.perf_counter(), time.perf_counter()
        for n, (src, dst, status, reason, photo_hints) in enumerate(bar if bar is not None else stream, 1):
            if photo_hints is not None and status == "done":
                took[Path(src)] = photo_hints
                if photo_hints.fell_back:
                    log.info("%s: %s", src, photo_hints.note)
            h = photo_hints or PhotoHints()
            rows.append((src, dst, status, reason, rank, len(h.entries) if photo_hints else "",
                         ("yes" if h.fell_back else "no") if photo_hints else "", h.note))
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
                            skipped=[Path(r[1]) for r in rows if r[2] == "skipped"],
                            hints={src: took[src] for src, _ in pairs if src in took})
    if rank == 0:
        _write_summary(out_dir, rows, seconds_by_rank, time.perf_counter() - start,
                       {**made, "hints": "per photo" if source is not None else None})
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


def _write_summary(out_dir: Path, rows: list, seconds_by_rank: list[float], total_s: float, made: dict) -> None:
    """colorize-apply.csv (one line per input) and colorize-apply.json (counts, seconds, rate) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / f"{SUMMARY}.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["input", "output", "status", "reason", "rank", "hints", "fell_back", "note"])
        writer.writerows((str(src), str(dst), *rest) for src, dst, *rest in rows)
    counts = {k: sum(r[2] == k for r in rows) for k in ("done", "skipped", "failed")}
    streamed = max(seconds_by_rank)
    atomic_write_text(out_dir / f"{SUMMARY}.json", json.dumps({
        **counts, "fell_back": sum(r[6] == "yes" for r in rows), "processes": len(seconds_by_rank),
        "seconds_by_rank": seconds_by_rank, "total_seconds": total_s,
        "photos_per_s": counts["done"] / streamed if streamed > 0 else None, "fingerprint": made}, indent=2) + "\n")

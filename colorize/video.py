"""Colorize video: frames in (PyAV), colorized in batches by the engine, stabilised along the flow, frames out.

Output is H.264 in yuv420p (plays in browsers) in an MP4, every frame at the source's size and frame rate
(constant: the average rate), the audio stream kept (copied when MP4 can hold its codec, else re-encoded
to AAC). Each batch of frames goes through `inference.colorize_batch` as photos do (the model sees each
frame squeezed to the render size) and each frame keeps its own full-resolution lightness
(`inference.compose`); with `VideoOptions.temporal` 0 a frame comes out as `colorize_image` gives it.
With `VideoOptions.keyframes` K > 1 (or "auto") the network runs only on keyframes (every K-th frame, scene
cuts) and the frames between take their colour along the flow (`keyframes`). Memory holds one batch of frames (with
keyframes: a batch of keyframes and the frames between them), whatever the length. Before anything is
written the whole file is demuxed (`scan`, no decoding) so a truncated or damaged one is refused at once.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import av
import numpy as np
import torch
import torch.nn.functional as F
from fastprogress.fastprogress import progress_bar
from PIL import Image
from torch import nn

from .config import option, options_of
from .files import atomic_path, bars_can_draw, unique_output
from .hintmaps import HintPoint, check_hints, user_hint_map
from .inference import Rendering, check_eval, colorize_batch, compose, model_device, render_lightness, rendering_of
from .keyframes import (FAIL_AREA, Item, between, chain, check_keyframes, keyed, keyframe_colours, parse_keyframes,
                        segments)
from .lab import pixels_to_rgb, rgb_to_lightness
from .temporal import DEFAULT_TEMPORAL, FramePair, Stabiliser, carry_point, check_temporal

log = logging.getLogger(__name__)

VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm"}
BATCH = 8  # frames through the model at once
CRF = 18  # x264 quality: visually lossless for most footage (23 is x264's default)
MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}  # audio codecs an MP4 holds as they are
ODD_SIZE_FIX = 'ffmpeg -i IN -vf "crop=trunc(iw/2)*2:trunc(ih/2)*2" OUT'
LOG_EVERY_S = 10.0  # where no bar can draw, a progress line this often
# (t, the frame (H,W,3) uint8 RGB, its FramePair with the frame before or None) -> hints-file entries placed on frame t
FrameHook = Callable[[int, np.ndarray, "FramePair | None"], list]


class BadVideoError(ValueError):
    """A video that cannot be colorized as it is: unreadable, truncated, no video stream, odd frame size."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds."""

    width: int
    height: int
    fps: Fraction  # average frame rate
    frames: int  # as the container declares it, or estimated from the duration (0 if neither is known)
    audio: str | None  # the first audio stream's codec, if any


@dataclass
class VideoResult:
    """A written video: its path, the frames written and where scene cuts were found (stabilised runs)."""

    path: Path
    frames: int
    cuts: list[int] = field(default_factory=list)


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


def _open(path: Path):
    try:
        return av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise BadVideoError(f"{path} is not a video FFmpeg can read ({e}); is it damaged or cut short?") from None


def _info(path: Path, container) -> VideoInfo:
    if not container.streams.video:
        raise BadVideoError(f"{path} has no video stream (only {len(container.streams)} other stream(s))")
    v = container.streams.video[0]
    w, h = v.codec_context.width, v.codec_context.height
    if w % 2 or h % 2:
        raise BadVideoError(f"{path} is {w}x{h}: H.264 in yuv420p (what browsers play) needs an even width and "
                            f"height; crop a pixel first, e.g. {ODD_SIZE_FIX}")
    fps = v.average_rate or v.guessed_rate
    if not fps:
        raise BadVideoError(f"{path}: its frame rate is unknown; remux it first, e.g. ffmpeg -i IN -r 25 OUT.mp4")
    frames = v.frames or (round(container.duration / av.time_base * fps) if container.duration else 0)
    audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
    return VideoInfo(w, h, Fraction(fps), int(frames), audio)


def probe(path: str | os.PathLike) -> VideoInfo:
    """Size, frame rate, frame count and audio codec of a video, or a BadVideoError saying what is wrong."""
    path = Path(path)
    with _open(path) as c:
        return _info(path, c)


def read_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """The frames of a video as RGB (H,W,3) uint8, in order; a BadVideoError if it is bad (see `_frames`)."""
    path = Path(path)
    with _open(path) as c:
        _info(path, c)
        yield from _frames(path, c)


def _frames(path: Path, c, audio: Callable | None = None) -> Iterator[np.ndarray]:
    """The frames of the open container `c` as RGB (H,W,3) uint8; `audio(packet)` gets the first audio
    stream's packets as they are demuxed. A file that stops decoding, or ends before the frames it
    declares, is a BadVideoError."""
    streams = [c.streams.video[0]] + ([c.streams.audio[0]] if audio and c.streams.audio else [])
    n = 0
    try:
        for packet in c.demux(streams):
            if packet.stream.type == "audio":
                audio(packet)
                continue
            for frame in packet.decode():
                yield frame.to_ndarray(format="rgb24")
                n += 1
    except av.FFmpegError as e:
        raise BadVideoError(f"{path} stops decoding after frame {n} ({e}): it is truncated or damaged") from None
    declared = c.streams.video[0].frames  # exact where the container counts them (MP4, MOV)
    expected = declared or _info(path, c).frames  # else estimated from the duration (Matroska, WebM)
    if n < expected - (0 if declared else 2 + expected // 50):
        raise BadVideoError(f"{path} ends after {n} of the {expected} frames its header promises: it is truncated")
    if n == 0:
        raise BadVideoError(f"{path} holds no frame that decodes")


def scan(path: str | os.PathLike) -> VideoInfo:
    """Demux every packet of the video stream, decoding none (a fraction of a second for minutes of film), and
    refuse with a BadVideoError a file that cannot be read to its end or holds fewer packets than the frames it
    declares: what a truncated download or a damaged copy does, found before any frame is colorized."""
    path = Path(path)
    with _open(path) as c:
        info = _info(path, c)
        n = 0
        try:
            for packet in c.demux(c.streams.video[0]):
                n += packet.size > 0
        except av.FFmpegError as e:
            raise BadVideoError(f"{path} is damaged after {n} frames ({e}); nothing was colorized") from None
        declared = c.streams.video[0].frames  # exact where the container counts them (MP4, MOV)
    expected = declared or info.frames  # else estimated from the duration (Matroska, WebM), as `_frames` does
    if n == 0 or n < expected - (0 if declared else 2 + expected // 50):
        raise BadVideoError(f"{path} holds {n} of the {expected} frames its header declares: it is truncated or "
                            "damaged; nothing was colorized")
    return info


def frame_progress(frames: Iterable, total: int, on: bool = True, what: str = "colorizing") -> Iterator:
    """`frames` passed through with progress: a fastprogress bar where one can draw and the total is known, else
    a log line every LOG_EVERY_S seconds with the frames done, the rate and the time left."""
    if not on:
        yield from frames
        return
    if bars_can_draw() and total:
        yield from progress_bar(frames, total=total)
        return
    start = last = time.perf_counter()
    n = 0
    for n, frame in enumerate(frames, start=1):
        yield frame
        now = time.perf_counter()
        if now - last >= LOG_EVERY_S:
            last, rate = now, n / (now - start)
            left = f", {(total - n) / rate:.0f} s left" if total > n else ""
            log.info("%s: frame %d of %s, %.2f frames/s%s", what, n, total or "?", rate, left)
    if n:
        log.info("%s: %d frames in %.1f s", what, n, time.perf_counter() - start)


def frame_hints(hints: list | None, size: tuple[int, int]) -> dict[int, list[HintPoint]]:
    """Hint entries (a hints file's list) -> {frame: points}. An entry's optional "frame" (default 0) is the
    frame it is placed on; from there it is carried along the flow."""
    by_frame: dict[int, list] = {}
    for i, entry in enumerate(hints or [], start=1):
        frame = entry.get("frame", 0) if isinstance(entry, dict) else 0
        if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
            raise ValueError(f"hint {i} {entry}: \"frame\" must be a frame number >= 0")
        point = {k: v for k, v in entry.items() if k != "frame"} if isinstance(entry, dict) else entry
        by_frame.setdefault(frame, []).append(point)
    return {f: check_hints(entries, size) for f, entries in by_frame.items()}


@dataclass(frozen=True)
class VideoOptions:
    """How the frames of a video are carried along the motion, checked once when it is made (the `Rendering` says
    how each frame is colorized)."""

    temporal: float = option(DEFAULT_TEMPORAL, "videos: weight of the colour carried along the optical flow from "
                             "the previous frame, in [0, 1) (0 colorizes every frame on its own)")
    keyframes: int | str = option(1, "videos: the network runs on every K-th frame and at scene cuts, the frames "
                                  "between take the colour carried along the optical flow from the keyframes on both "
                                  "sides (0 or 1: every frame; 4 is several times faster; auto: a keyframe once a "
                                  "fifth of the frame is out of the last one's reach along the flow)",
                                  parse=parse_keyframes)
    batch: int = BATCH  # frames (with keyframes: keyframes) through the model at once

    def __post_init__(self):
        check_temporal(self.temporal)
        object.__setattr__(self, "keyframes", check_keyframes(self.keyframes))
        if self.batch < 1:
            raise ValueError(f"batch {self.batch}: frames through the model at once, at least 1")


def video_settings(rendering, video: VideoOptions | None, settings: dict) -> tuple[Rendering, VideoOptions]:
    """The `Rendering` and `VideoOptions` of a public entry: given whole, or as keywords of their fields."""
    video = options_of(VideoOptions, video, settings)
    return rendering_of(rendering, **settings), video


def colorized_frames(model: nn.Module, frames: Iterable[np.ndarray], rendering: Rendering | int | None = None,
                     video: VideoOptions | None = None, hints: list | None = None,
                     stabiliser_out: list | None = None, **settings) -> Iterator[np.ndarray]:
    """RGB frames (H,W,3) uint8 in -> colorized RGB frames (H,W,3) uint8 out, one for one, in order.

    Each batch of `video.batch` frames goes through the engine (`inference.colorize_batch`) at the render
    size; ab is joined with each frame's own full-resolution L (`inference.compose`). `video.temporal` > 0
    blends the colour carried along the flow (`temporal.Stabiliser`); `video.keyframes` K > 1 runs the network
    on keyframes only (`keyframes`, the module docstring). `hints`: points of a hints file, each
    with an optional "frame", carried along the flow; as for a photo, every model takes them.
    `stabiliser_out`, a list, receives the Stabiliser, for its scene cuts. `rendering` and `video` may be
    given as keywords of their fields (`render_size=32, temporal=0`).
    """
    rendering, video = video_settings(rendering, video, settings)
    check_eval(model)
    it = iter(frames)
    first = next(it, None)
    if first is None:
        return
    H, W = first.shape[:2]
    yield from _colorized(model, itertools.chain([first], it), rendering, video, frame_hints(hints, (W, H)),
                          stabiliser_out)


def colorized_variants(model: nn.Module, frames: Iterable[np.ndarray], temporals: tuple[float, ...],
                       rendering: Rendering | int | None = None, batch: int = BATCH) -> Iterator[tuple[np.ndarray, ...]]:
    """As `colorized_frames` per frame, at several blend weights from ONE model pass: each frame comes out as a
    tuple, one colorized frame (H,W,3) uint8 per weight in `temporals` (0: the prediction as it is)."""
    for t in temporals:
        check_temporal(t)
    rendering = rendering_of(rendering)
    check_eval(model)
    yield from _colorized(model, frames, rendering, VideoOptions(batch=batch), {}, None, tuple(temporals))


def _tracked(frames: Iterable[np.ndarray], stab: Stabiliser, placed: dict[int, list[HintPoint]],
             relate: bool, place: FrameHook | None = None) -> Iterator[Item]:
    """Frames -> `keyframes.Item`s: each related to the previous one along the flow (`relate`, or hints to
    carry) and carrying its hint points (`extra`): those placed on it (and those `place` gives it), and those
    of the frame before moved along the flow; a point the flow and the matching lose is dropped, and the log
    says so."""
    points: list[HintPoint] = []
    W, H = None, None
    for t, frame in enumerate(frames):
        pair = None
        if relate or placed or place:
            pair = stab.relate(rgb_to_lightness(pixels_to_rgb(frame))[0, 0].numpy())  # (H,W) full-res L
        if place:
            found = place(t, frame, pair)
            if found:
                placed = {**placed, t: check_hints(found, frame.shape[1::-1]) + placed.get(t, [])}  # a person's
                # hints on this frame come last: they paint over those found
        if placed or place:
            H, W = frame.shape[:2]
            scale = (W / stab.size[0], H / stab.size[1])
            kept = []
            for pt in points:
                moved = carry_point(pair, pt.x, pt.y, scale)
                if moved is None:
                    log.info("hint #%02x%02x%02x at (%d, %d) dropped at frame %d: %s", *pt.rgb, pt.x, pt.y, t,
                             "a scene cut" if pair.cut else "it left the frame or is not found again by matching")
                    continue
                kept.append(dataclasses.replace(pt, x=min(W - 1, max(0, moved[0])), y=min(H - 1, max(0, moved[1]))))
            points = kept + placed.get(t, [])
        yield Item(t, frame, pair, points)


@torch.inference_mode()
def _colorized(model: nn.Module, frames: Iterable[np.ndarray], rendering: Rendering, video: VideoOptions,
               placed: dict[int, list[HintPoint]], stabiliser_out: list | None,
               temporals: tuple[float, ...] | None = None, place: FrameHook | None = None) -> Iterator:
    """`colorized_frames` once its settings and hints are checked (`placed`: {frame: points}; `place`, more found
    as the frames are decoded). `temporals` (per frame only): several blend weights at once from one model pass,
    each frame a tuple, one per weight."""
    it = iter(frames)
    first = next(it, None)
    if first is None:
        return
    H, W = first.shape[:2]
    weights = temporals or (video.temporal,)
    stab = Stabiliser(W, H, weights[0])
    if stabiliser_out is not None:
        stabiliser_out.append(stab)
    items = _tracked(itertools.chain([first], it), stab, placed, keyed(video.keyframes) or max(weights) > 0, place)
    hinted = bool(placed) or place is not None
    if keyed(video.keyframes):
        yield from _keyframed(model, items, rendering, video, stab, hinted)
        return
    blenders = [stab] + [Stabiliser(W, H, w) for w in weights[1:]]  # stab relates, each blends at its weight
    device, S = model_device(model), rendering.render_size
    while chunk := [item for _, item in zip(range(video.batch), items)]:
        maps = [user_hint_map(item.extra, (W, H), S, device) for item in chunk] if hinted else None
        L = render_lightness([item.frame for item in chunk], S, device)  # (B,1,S,S)
        ab = colorize_batch(model, L, torch.cat(maps) if maps else None, rendering)  # (B,2,S,S) ab/110
        w, h = stab.size
        small = F.interpolate(ab, size=(h, w), mode="bilinear", align_corners=False) if max(weights) > 0 else None
        for k, item in enumerate(chunk):
            outs = []
            for blender in blenders:
                a = ab[k : k + 1]
                if blender.temporal > 0:
                    steady = blender.blend(small[k].permute(1, 2, 0).cpu().numpy(), item.pair)  # (h,w,2)
                    a = torch.from_numpy(steady).permute(2, 0, 1)[None].to(device)
                outs.append(compose(item.frame, a))
            yield tuple(outs) if temporals else outs[0]


def _keyframed(model: nn.Module, items: Iterator[Item], rendering: Rendering, video: VideoOptions, stab: Stabiliser,
               hinted: bool) -> Iterator[np.ndarray]:
    """Frames through keyframes (`keyframes` module): segments gathered until `video.batch` keyframes go
    through the engine at once; a frame between whose unreached area exceeds FAIL_AREA goes through it too.
    Hints reach the network where it runs (keyframes), and from there the frames between along the flow."""
    device, S = model_device(model), rendering.render_size
    w, h = stab.size

    def predict(chosen: list[Item]) -> list[np.ndarray]:  # frames -> ab (h,w,2) at the working resolution
        out = []
        for i in range(0, len(chosen), video.batch):
            chunk = chosen[i:i + video.batch]
            H, W = chunk[0].frame.shape[:2]
            maps = torch.cat([user_hint_map(c.extra, (W, H), S, device) for c in chunk]) if hinted else None
            ab = colorize_batch(model, render_lightness([c.frame for c in chunk], S, device), maps, rendering)
            small = F.interpolate(ab, size=(h, w), mode="bilinear", align_corners=False)  # (B,2,h,w)
            out += list(small.permute(0, 2, 3, 1).float().cpu().numpy())
        return out

    def composed(item: Item, ab: np.ndarray) -> np.ndarray:
        return compose(item.frame, torch.from_numpy(np.ascontiguousarray(ab)).permute(2, 0, 1)[None].to(device))

    previous = None  # (h,w,2) the colour of the last keyframe given out
    for group in _groups(segments(items, video.keyframes), video.batch):
        keys = [seg[0] for seg in group if seg[0].starts_scene] + [seg[-1] for seg in group if len(seg) > 1]
        predicted = {k.t: ab for k, ab in zip(keys, predict(keys))}
        for run in _runs(group):
            chains = [chain([item.pair for item in seg[1:]]) for seg in run if len(seg) > 1]
            starts = run[0][0].starts_scene
            ends = [predicted[seg[-1].t] for seg in run[:len(chains)]]
            preds = [predicted[run[0][0].t] if starts else previous] + ends
            colours = keyframe_colours(preds, chains, video.temporal, first=None if starts else previous)
            if starts:
                yield composed(run[0][0], colours[0])
            for seg, link, start, end in zip(run, chains, colours, colours[1:]):
                mids = between(start, end, link)
                again = [k for k, (_, unreached) in enumerate(mids) if unreached.mean() > FAIL_AREA]
                for k, own in zip(again, predict([seg[1 + k] for k in again])):
                    ab, unreached = mids[k]
                    mids[k] = (np.where(unreached[..., None], own, ab), unreached)
                for item, (ab, _) in zip(seg[1:-1], mids):
                    yield composed(item, ab)
                yield composed(seg[-1], end)
            previous = colours[-1]


def _runs(group: list[list[Item]]) -> Iterator[list[list[Item]]]:
    """A group's segments split into runs that share their end keyframes, each in one scene."""
    run: list[list[Item]] = []
    for seg in group:
        if run and seg[0].starts_scene:
            yield run
            run = []
        run.append(seg)
    if run:
        yield run


def _groups(segs: Iterable[list[Item]], batch: int) -> Iterator[list[list[Item]]]:
    """Segments gathered until they hold `batch` frames for the network (a scene's first frame, each end)."""
    group, n = [], 0
    for seg in segs:
        group.append(seg)
        n += seg[0].starts_scene + (len(seg) > 1)
        if n >= batch:
            yield group
            group, n = [], 0
    if group:
        yield group


def _audio_writer(out, info: VideoInfo, template):
    """A function that writes the source's audio packets into `out` (copied, or re-encoded to AAC), and a flush."""
    if info.audio in MP4_AUDIO:
        stream = out.add_stream_from_template(template)

        def copy(packet):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)

        return copy, lambda: None
    stream = out.add_stream("aac", rate=template.codec_context.sample_rate)

    def encode(packet):
        for frame in packet.decode():
            frame.pts = None
            out.mux(stream.encode(frame))

    return encode, lambda: out.mux(stream.encode(None))


def colorize_video(model: nn.Module, src: str | os.PathLike, dst: str | os.PathLike,
                   rendering: Rendering | int | None = None, video: VideoOptions | None = None,
                   hints: list | None = None, progress: bool = True,
                   on_frame: Callable[[int, int, np.ndarray], None] | None = None, place: FrameHook | None = None,
                   **settings) -> VideoResult:
    """Colorize the video `src` into the MP4 `dst` (see the module docstring); `dst` appears only when complete.

    `rendering`, `video` and `hints` as for `colorized_frames`. `progress`: a bar, or log lines with the rate
    and time left (`frame_progress`). `on_frame(done, total, rgb)` is called after each frame with the frame written (total 0 when
    unknown); an exception it raises stops the work, and nothing is left. `place(t, rgb, pair)` is called on each
    frame as it is decoded (`pair`: its `temporal.FramePair` with the frame before, None for the first) and returns
    hints-file entries to place on it (a reference matched into the frames: `reference.ReferenceHints`).
    A bad input is a BadVideoError, found by `scan` before any frame is colorized (or, if the damage shows only
    in decoding, while writing), and nothing is left at `dst` nor a folder made for it.
    """
    rendering, video = video_settings(rendering, video, settings)
    check_eval(model)
    src, dst = Path(src), Path(dst)
    scan(src)
    with _open(src) as c:
        return _colorize_open(model, src, c, dst, rendering, video, hints, progress, on_frame, place)


def _colorize_open(model, src: Path, c, dst: Path, rendering: Rendering, video: VideoOptions, hints, progress,
                   on_frame, place: FrameHook | None = None) -> VideoResult:
    info = _info(src, c)
    template = c.streams.audio[0] if c.streams.audio else None
    placed = frame_hints(hints, (info.width, info.height))  # a bad hint: an error before anything is written
    made = [d for d in [dst.parent, *dst.parent.parents] if not d.exists()]  # removed again if this fails
    dst.parent.mkdir(parents=True, exist_ok=True)
    stabs: list[Stabiliser] = []
    with atomic_path(dst, ".part") as tmp:
        try:
            with av.open(str(tmp), "w", format="mp4") as out:
                v = out.add_stream("libx264", rate=info.fps, options={"crf": str(CRF)})
                v.width, v.height, v.pix_fmt = info.width, info.height, "yuv420p"
                write_audio, flush_audio = _audio_writer(out, info, template) if template else (None, lambda: None)
                colour = _colorized(model, _frames(src, c, audio=write_audio), rendering, video, placed, stabs,
                                    place=place)
                colour = frame_progress(colour, info.frames, progress, f"colorizing {src.name}")
                n = 0
                for n, rgb in enumerate(colour, start=1):
                    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                    frame.pts, frame.time_base = n - 1, 1 / info.fps
                    out.mux(v.encode(frame))
                    if on_frame:
                        on_frame(n, info.frames, rgb)
                out.mux(v.encode(None))
                flush_audio()
        except BaseException:
            tmp.unlink(missing_ok=True)
            for d in made:  # innermost first; only folders this call made and left empty
                if d.exists() and not any(d.iterdir()):
                    d.rmdir()
            raise
    cuts = stabs[0].cuts if stabs else []
    log.info("colorized %s: %d frames at %dx%d -> %s%s", src, n, info.width, info.height, dst,
             f" (scene cuts at frames {cuts})" if cuts else "")
    return VideoResult(dst, n, cuts)


def list_videos(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Video files among `paths` (files as given, folders searched recursively), sorted within each folder."""
    found = []
    for p in map(Path, paths):
        found += sorted(f for f in p.rglob("*") if f.is_file() and is_video(f)) if p.is_dir() else [p] * is_video(p)
    return found


def plan_videos(inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike) -> list[tuple[Path, Path]]:
    """(input, output) pairs of the videos among `inputs`: `<stem>.mp4` in `out_dir`, folders keep their
    subfolders; videos already inside `out_dir` are not picked up; a plan that would overwrite an input is refused."""
    out_dir, pairs, taken = Path(out_dir), [], set()
    for root in map(Path, inputs):
        for f in list_videos([root]):
            if root.is_dir() and f.resolve().is_relative_to(out_dir.resolve()):
                continue
            rel = f.relative_to(root) if root.is_dir() else Path(f.name)
            pairs.append((f, unique_output(out_dir, rel, ".mp4", taken)))
    sources = {f.resolve() for f, _ in pairs}
    clash = [out for _, out in pairs if out.resolve() in sources]
    if clash:
        raise ValueError(f"writing to {out_dir} would overwrite the input video {clash[0]}; choose another output folder")
    return pairs


def relate_frames(previous: np.ndarray, current: np.ndarray) -> FramePair:
    """How frame `current` relates to `previous` (both RGB (H,W,3) uint8), as the stabiliser sees it: flow
    both ways and the trusted mask at the working resolution, and whether it is a cut. For drawing."""
    H, W = current.shape[:2]
    stab = Stabiliser(W, H)
    for frame in (previous, current):
        pair = stab.relate(rgb_to_lightness(pixels_to_rgb(frame))[0, 0].numpy())
    return pair


def pan_zoom_frames(photo: Image.Image, frames: int = 48, size: tuple[int, int] = (640, 360)) -> Iterator[np.ndarray]:
    """A camera panning right across `photo` and zooming in: `frames` RGB frames (H,W,3) uint8 at `size` (W,H)."""
    photo, (W, H) = photo.convert("RGB"), size
    pw, ph = photo.size
    for i in range(frames):
        cw = min(pw, ph * W / H) * (0.8 - 0.25 * i / max(1, frames))  # the crop narrows: a zoom in
        ch = cw * H / W
        x0, y0 = (pw - cw) * i / max(1, frames), (ph - ch) / 2  # and moves right: a pan
        yield np.asarray(photo.resize((W, H), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch)))


def pan_zoom_clip(photo: Image.Image, dst: str | os.PathLike, frames: int = 48, size: tuple[int, int] = (640, 360),
                  fps: int = 25, tone_hz: float = 440.0) -> Path:
    """A colour clip to try video on (notebooks, benchmarks, tests): `pan_zoom_frames` of `photo` (`size` even),
    H.264, with a tone as AAC audio. Written to a temporary name, then renamed to `dst`."""
    (W, H), dst = size, Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst, ".part") as tmp, av.open(str(tmp), "w", format="mp4") as c:
        v = c.add_stream("libx264", rate=fps, options={"crf": str(CRF)})
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        a = c.add_stream("aac", rate=16000)
        for frame in pan_zoom_frames(photo, frames, size):
            c.mux(v.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        c.mux(v.encode(None))
        mux_tone(c, a, seconds=frames / fps, hz=tone_hz)
    return dst


def mux_tone(container, stream, seconds: float, hz: float = 440.0, amplitude: float = 0.2) -> None:
    """A sine tone of `seconds` encoded into the audio `stream` (mono, float samples at its rate) and flushed."""
    rate = stream.codec_context.sample_rate
    n = int(rate * seconds)
    tone = (amplitude * np.sin(2 * np.pi * hz * np.arange(n) / rate)).astype(np.float32)[None]  # (1,n)
    for k in range(0, n, 1024):
        frame = av.AudioFrame.from_ndarray(tone[:, k:k + 1024], format="flt", layout="mono")
        frame.sample_rate, frame.pts = rate, k
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))

"""`colorize apply`'s work, for the CLI, the app and the notebooks alike: photos, videos and folders of both, routed,
each with its own hints (none, a hints file, a folder of them by name, a reference photo: `archive.HintsSource`)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable

from fastai.torch_core import num_distrib, rank_distrib
from PIL import Image
from torch import nn

from .archive import ArchiveOptions, ColorizeResult, FixedHints, HintsSource, PhotoHints, colorize_archive
from .data import list_images
from .files import atomic_write_text
from .hintmaps import read_hints_file
from .inference import Rendering
from .video import VIDEO_EXTS, BadVideoError, VideoOptions, colorize_video, is_video, plan_videos

log = logging.getLogger(__name__)


class HintsFolder(HintsSource):
    """A folder of hints files, one per input by name: `<stem>.json` for `<stem>.png` (or any photo or video); an
    input without one takes no hints. A file that is not a hints list is that input's failure."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def _file(self, src: Path) -> Path:
        return self.folder / f"{Path(src).stem}.json"

    def identity(self, src: Path):
        path = self._file(src)
        return path.read_text() if path.is_file() else None  # the file's text: an edit redoes the photo

    def _entries(self, src: Path) -> list:
        return read_hints_file(self._file(src)) if self._file(src).is_file() else []

    def photo(self, src: Path, image: Image.Image) -> PhotoHints:
        entries = self._entries(src)
        return PhotoHints(entries, f"{len(entries)} hints from {self._file(src)}" if entries else "")

    def video(self, src: Path):
        return self._entries(src), None


def hints_source(path: str | os.PathLike) -> list | HintsFolder:
    """`--hints PATH`: a hints file's entries (for one input, or the same for every input), or a folder of
    `<stem>.json` hints files, one per input by name."""
    return HintsFolder(path) if Path(path).is_dir() else read_hints_file(path)


def save_hints(path: str | os.PathLike, taken: dict[Path, PhotoHints], several: bool) -> None:
    """The hints each input took: one hints file at `path` for one input (unless `path` is a folder), else
    `path/<stem>.json` each."""
    path = Path(path)
    for src, hints in taken.items():
        dst = path / f"{Path(src).stem}.json" if several or path.is_dir() else path
        dst.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(dst, json.dumps(hints.entries, indent=1) + "\n")


def apply_paths(model: nn.Module, inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                rendering: Rendering = Rendering(), hints: list | HintsSource | None = None,
                video: VideoOptions = VideoOptions(), progress: bool = True, archive: ArchiveOptions = ArchiveOptions(),
                save_hints_to: str | os.PathLike | None = None) -> ColorizeResult:
    """Colorize photos and videos (files, or folders searched recursively) into `out_dir`: photos as PNG or JPEG,
    streamed and resumable (`archive.colorize_archive`, as `archive` says), videos as `<stem>.mp4`
    (`video.colorize_video`); never touches the inputs.

    Unreadable files are skipped and listed in `failed`; a bad video given alone is the error itself.
    `hints`: a hints file's entries (for one photo or video, or checked against each of several: one that does not
    fit is that input's failure), or a `HintsSource` (`hints_source`, `reference.ReferenceHints`); the inputs whose
    source had nothing for them are `result.fell_back`. `save_hints_to`: the hints each input written took, as a
    hints file (one input) or a folder of `<stem>.json` (several). In a distributed launch each process takes its
    share of the photos (the result lists all of them) and of the videos (the result lists its own).
    """
    inputs = [str(p) for p in inputs]
    videos = plan_videos(inputs, out_dir)  # videos given, and those inside folders
    photo_inputs = [p for p in inputs if not is_video(p)]
    photos = [p for p in list_images(photo_inputs) if not is_video(p)]
    if not photos and not videos:
        raise FileNotFoundError(f"no photos or videos ({', '.join(sorted(VIDEO_EXTS))}) found in {', '.join(inputs)}")
    several = len(photos) + len(videos) > 1
    if isinstance(hints, list) and (several or videos):
        hints = FixedHints(hints)  # one photo alone keeps its strict check in colorize_archive
    if isinstance(hints, HintsSource):
        hints.check([src for src, _ in videos])  # photos: colorize_archive checks them, before anything is written
    result = colorize_archive(model, photo_inputs, out_dir, rendering, archive, hints or None, progress) if photos \
        else ColorizeResult()
    alone = len(videos) == 1 and not photos  # then a bad video is the error itself, not a skipped file
    for src, dst in videos[rank_distrib()::max(1, num_distrib())]:  # a video is one process's work
        entries, hook = hints.video(src) if isinstance(hints, HintsSource) else ([], None)
        try:
            result.written.append(colorize_video(model, src, dst, rendering, video, entries or None, progress,
                                                 place=hook).path)
        except (BadVideoError, ValueError) as e:  # unreadable, or its hints do not fit it
            if alone:
                raise
            log.warning("skipped %s: %s", src, e)
            result.failed.append((src, str(e)))
            continue
        if isinstance(hints, HintsSource):
            result.hints[src] = took = hints.video_done(src, entries, hook)
            if took.fell_back:
                log.info("%s: %s", src, took.note)
    if save_hints_to:
        save_hints(save_hints_to, result.hints, several)
    return result

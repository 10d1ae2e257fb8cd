"""`colorize apply`'s work, for the CLI, the app and the notebooks alike: photos, videos and folders of both, routed."""

from __future__ import annotations

import logging
import os
from typing import Iterable

from fastai.torch_core import num_distrib, rank_distrib
from torch import nn

from .archive import ArchiveOptions, ColorizeResult, colorize_archive
from .data import list_images
from .inference import Rendering
from .video import VIDEO_EXTS, BadVideoError, VideoOptions, colorize_video, is_video, plan_videos

log = logging.getLogger(__name__)


def apply_paths(model: nn.Module, inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                rendering: Rendering = Rendering(), hints: list | None = None, video: VideoOptions = VideoOptions(),
                progress: bool = True, archive: ArchiveOptions = ArchiveOptions()) -> ColorizeResult:
    """Colorize photos and videos (files, or folders searched recursively) into `out_dir`: photos as PNG or JPEG,
    streamed and resumable (`archive.colorize_archive`, as `archive` says), videos as `<stem>.mp4`
    (`video.colorize_video`); never touches the inputs.

    Unreadable files are skipped and listed in `failed`; a bad video given alone is the error itself.
    `hints` (a hints file's entries) belong to exactly one photo or video. In a distributed launch each process
    takes its share of the photos (the result lists all of them) and of the videos (the result lists its own).
    """
    inputs = [str(p) for p in inputs]
    videos = plan_videos(inputs, out_dir)  # videos given, and those inside folders
    photo_inputs = [p for p in inputs if not is_video(p)]
    photos = [p for p in list_images(photo_inputs) if not is_video(p)]
    if not photos and not videos:
        raise FileNotFoundError(f"no photos or videos ({', '.join(sorted(VIDEO_EXTS))}) found in {', '.join(inputs)}")
    if hints and len(photos) + len(videos) > 1:
        raise ValueError(f"hints belong to one photo or video, but {len(photos) + len(videos)} were given: colorize "
                         "that one alone with its hints file")
    result = colorize_archive(model, photo_inputs, out_dir, rendering, archive, hints, progress) if photos \
        else ColorizeResult()
    alone = len(videos) == 1 and not photos  # then a bad video is the error itself, not a skipped file
    for src, dst in videos[rank_distrib()::max(1, num_distrib())]:  # a video is one process's work
        try:
            result.written.append(colorize_video(model, src, dst, rendering, video, hints, progress).path)
        except BadVideoError as e:
            if alone:
                raise
            log.warning("skipped %s: %s", src, e)
            result.failed.append((src, str(e)))
    return result

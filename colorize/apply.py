"""`colorize apply`'s work, for the CLI, the app and the notebooks alike: photos, videos and folders of both, routed."""

from __future__ import annotations

import logging
import os
from typing import Iterable

from torch import nn

from .data import list_images
from .inference import ColorizeResult, Rendering, colorize_files
from .video import VIDEO_EXTS, BadVideoError, VideoOptions, colorize_video, is_video, plan_videos

log = logging.getLogger(__name__)


def apply_paths(model: nn.Module, inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                rendering: Rendering = Rendering(), hints: list | None = None, video: VideoOptions = VideoOptions(),
                progress: bool = True) -> ColorizeResult:
    """Colorize photos and videos (files, or folders searched recursively) into `out_dir`: photos as PNG
    (`inference.colorize_files`), videos as `<stem>.mp4` (`video.colorize_video`); never touches the inputs.

    Unreadable files are skipped and listed in `failed`; a bad video given alone is the error itself.
    `hints` (a hints file's entries) belong to exactly one photo or video.
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
    result = colorize_files(model, photo_inputs, out_dir, rendering, progress, hints) if photos else ColorizeResult()
    alone = len(videos) == 1 and not photos  # then a bad video is the error itself, not a skipped file
    for src, dst in videos:
        try:
            result.written.append(colorize_video(model, src, dst, rendering, video, hints, progress).path)
        except BadVideoError as e:
            if alone:
                raise
            log.warning("skipped %s: %s", src, e)
            result.failed.append((src, str(e)))
    return result

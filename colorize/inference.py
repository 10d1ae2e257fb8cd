"""Colorize any photo at full resolution: the generator sees a small square, the output keeps the photo's own L.

The model input is the photo resized to `render_size` x `render_size`; its predicted ab is upsampled
bilinearly to the photo's size and joined with the ORIGINAL full-resolution L, so the output has the
input's size and lightness. Colour inputs lose their colour on the way (only L reaches the model).

A generator that takes hints (`colorize.hintmaps`) also gets a hint map at the render size, made from
points in the ORIGINAL photo's pixels; without hints it colorizes automatically (an all-zero map).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from fastprogress.fastprogress import progress_bar
from PIL import Image
from torch import nn

from .data import BadImageError, IMAGE_EXTS, list_images, load_rgb, to_rgb
from .files import bars_can_draw
from .device import autocast_for, choose_precision
from .hintmaps import check_hints, takes_hints, user_hint_map
from .lab import generator_input, lab_net_to_rgb, pixels_to_rgb, rgb_to_lightness, rgb_to_pixels

log = logging.getLogger(__name__)

CHUNK_PIXELS = 1 << 18  # full-resolution Lab work runs on bands of ~260k pixels: little memory, cache-friendly
PNG_COMPRESS_LEVEL = 1  # still lossless; a 12 MP photo writes in ~0.5 s instead of ~2 s at the default 6


def _check_render_size(render_size: int) -> None:
    if render_size < 32:
        raise ValueError(f"render size {render_size}: it must be at least 32 px (the encoder halves it 5 times); "
                         "256 is the usual")


def _check_hints_fit(model: nn.Module, hints) -> None:
    if hints and not takes_hints(model):
        raise ValueError("hints were given but this generator takes none (it was trained on L alone); use a "
                         "checkpoint of `colorize hints`, or leave the hints out")


@torch.inference_mode()
def colorize_image(model: nn.Module, image: Image.Image, render_size: int = 256, precision: str = "auto",
                   hints=None) -> Image.Image:
    """Colorize one photo of any size and PIL mode; returns an RGB image of the same size and lightness.

    The generator (in eval mode, on any device) runs at `render_size` x `render_size`; it must map
    L (1,1,S,S) in [-1,1] to ab/110 (1,2,S,S) as `models.build_generator` does, or, for a generator
    that takes hints, cat(L, hint map) (1,4,S,S). `hints`: a list of points in the photo's pixels,
    `[{"x": 410, "y": 220, "color": "#b03020", "size": 12}, ...]` (see `hintmaps.check_hints`); only a
    colour's ab counts. A photo with transparency comes back RGBA with the same alpha (colorized as
    if laid on white). The model runs in `precision` (`device.choose_precision`: auto is mixed
    precision on a GPU, fp32 on the CPU); the colour conversion always in fp32.
    """
    _check_render_size(render_size)
    _check_hints_fit(model, hints)
    if model.training:
        raise ValueError("the generator is in training mode (batch norm would use this photo's statistics); "
                         "call model.eval() first")
    device = next(model.parameters()).device
    points = check_hints(hints, image.size) if hints else []
    alpha = image.convert("RGBA").getchannel("A") if image.has_transparency_data else None
    image = to_rgb(image)
    W, H = image.size
    small = np.asarray(image.resize((render_size, render_size), Image.Resampling.BILINEAR))  # antialiased
    x = rgb_to_lightness(pixels_to_rgb(small, device))  # (1,1,S,S) in [-1,1]
    if takes_hints(model):
        x = generator_input(x, user_hint_map(points, (W, H), render_size, device))  # (1,4,S,S)
    with autocast_for(device, choose_precision(device, precision)):
        ab = model(x).float()  # (1,2,S,S) ab/110
    ab = F.interpolate(ab, size=(H, W), mode="bilinear", align_corners=False)  # (1,2,H,W)

    out = Image.new("RGB", (W, H))
    rows = max(1, CHUNK_PIXELS // W)
    for top in range(0, H, rows):
        band = np.asarray(image.crop((0, top, W, min(H, top + rows))))  # (h,W,3) uint8 of the original photo
        L = rgb_to_lightness(pixels_to_rgb(band, device))  # (1,1,h,W) in [-1,1], full resolution
        rgb = lab_net_to_rgb(L, ab[:, :, top : top + rows])  # (1,3,h,W) in [0,1]
        out.paste(Image.fromarray(rgb_to_pixels(rgb)[0], "RGB"), (0, top))
    if alpha is not None:
        out.putalpha(alpha)
    return out


@dataclass
class ColorizeResult:
    """What `colorize_files` wrote, and the inputs it skipped with the reason."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (input path, reason)


def plan_outputs(inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike) -> list[tuple[Path, Path]]:
    """(input, output) pairs: files keep their name as .png in `out_dir`, folders keep their subfolders.

    A name already taken by an earlier input gets `-2`, `-3`, ... Files already inside `out_dir` are
    not picked up from input folders. A plan that would write over an input is refused before anything
    is written.
    """
    out_dir, pairs, seen, taken = Path(out_dir), [], set(), set()
    for root in map(Path, inputs):
        files = list_images([root])
        if root.resolve() in out_dir.resolve().parents:  # earlier results in a subfolder are not photos to redo
            files = [f for f in files if not f.resolve().is_relative_to(out_dir.resolve())]
        for f in files:
            if f.resolve() in seen:
                continue
            seen.add(f.resolve())
            rel = f.relative_to(root) if root.is_dir() else Path(f.name)
            out, n = out_dir / rel.with_suffix(".png"), 1
            while out in taken:
                n += 1
                out = out_dir / rel.with_name(f"{rel.stem}-{n}.png")
            taken.add(out)
            pairs.append((f, out))
    clash = [out for _, out in pairs if out.resolve() in seen]
    if clash:
        raise ValueError(
            f"writing to {out_dir} would overwrite {len(clash)} input photo(s), e.g. {clash[0]}; "
            "choose an output folder outside the inputs"
        )
    return pairs


def colorize_files(
    model: nn.Module,
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    render_size: int = 256,
    progress: bool = True,
    precision: str = "auto",
    hints=None,
) -> ColorizeResult:
    """Colorize photos and folders of photos (recursively) into `out_dir` as PNG; never touches the inputs.

    A file that cannot be read is logged, recorded in `failed` and skipped; the rest are written.
    Transparency is kept (RGBA out for a photo with an alpha channel or a transparent palette colour).
    `hints` (points in the photo's pixels, see `colorize_image`) need exactly one input photo; they
    are checked against it before anything is written.
    """
    _check_render_size(render_size)
    _check_hints_fit(model, hints)
    inputs = [str(p) for p in inputs]
    pairs = plan_outputs(inputs, out_dir)
    if not pairs:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) found in {', '.join(inputs)}")
    if hints:
        if len(pairs) != 1:
            raise ValueError(f"hints are points of one photo, but {len(pairs)} photos were given: colorize that "
                             "photo alone with its hints file")
        check_hints(hints, load_rgb(pairs[0][0], keep_alpha=True).size)  # a bad hint: an error, nothing written
    result = ColorizeResult()
    for src, dst in progress_bar(pairs) if progress and bars_can_draw() else pairs:
        try:
            image = load_rgb(src, keep_alpha=True)
        except BadImageError as e:
            log.warning("skipped %s: %s", src, e)
            result.failed.append((src, str(e)))
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        colorize_image(model, image, render_size, precision, hints=hints).save(dst, compress_level=PNG_COMPRESS_LEVEL)
        result.written.append(dst)
    log.info("colorized %d photo(s) into %s; skipped %d", len(result.written), out_dir, len(result.failed))
    return result

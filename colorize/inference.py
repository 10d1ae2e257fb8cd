"""Colorize any photo at full resolution: the generator sees a small square, the output keeps the photo's own L.

The model input is the photo resized to `render_size` x `render_size`; its predicted ab is upsampled
bilinearly to the photo's size and joined with the ORIGINAL full-resolution L (`lab.lab_net_to_rgb`,
which reduces chroma rather than change L), so the output has the input's size and lightness. Colour
inputs lose their colour on the way (only L reaches the model).

Colour hints (points in the ORIGINAL photo's pixels) work with every generator: they become a hint map
at the render size; a generator that takes hints (`GeneratorSpec.takes_hints`) reads it with L, and
then, for every generator, what the prediction still misses at the hinted pixels is spread along
lightness (`propagate.propagate`: `fast`, `levin` or `off`; `reach` says how far).
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

from .config import PROPAGATIONS
from .data import BadImageError, IMAGE_EXTS, list_images, load_rgb, to_rgb
from .device import autocast_for, choose_precision
from .files import bars_can_draw, unique_output
from .hintmaps import HintPoint, check_hints, user_hint_map
from .lab import generator_input, lab_net_to_rgb, pixels_to_rgb, rgb_to_lightness, rgb_to_pixels
from .propagate import check_levin_size, propagate

log = logging.getLogger(__name__)

RENDER_SIZE = 256  # the size the generators are trained at: the square the model sees by default
RENDER_SIZES = (32, 1024, 32)  # valid render sizes: min, max, step (the encoder halves its input 5 times)
REACH = 1.0  # how far a hint's colour travels under propagation (`propagate.propagate`'s default)
CHUNK_PIXELS = 1 << 18  # full-resolution Lab work runs on bands of ~260k pixels: little memory, cache-friendly
PNG_COMPRESS_LEVEL = 1  # still lossless; a 12 MP photo writes in ~0.5 s instead of ~2 s at the default 6


def check_render_size(render_size) -> int:
    """The one rule for a render size (CLI, app, widgets, `colorize_image`): a multiple of 32 from 32 to 1024."""
    lo, hi, step = RENDER_SIZES
    if isinstance(render_size, bool) or int(render_size) != render_size or not lo <= render_size <= hi \
            or render_size % step:
        raise ValueError(f"render size {render_size}: choose a multiple of {step} from {lo} to {hi} ({RENDER_SIZE} "
                         "is what the models are trained at)")
    return int(render_size)


@dataclass(frozen=True)
class Rendering:
    """How every photo of one call is rendered, checked once: the square the model sees, its arithmetic, the
    hints' propagation (`config.PROPAGATIONS`) and reach."""

    size: int = RENDER_SIZE
    precision: str = "auto"
    propagation: str = "fast"
    reach: float = REACH

    def __post_init__(self):
        check_render_size(self.size)
        choose_precision("cpu", self.precision)  # refuses an unknown name
        if self.propagation not in PROPAGATIONS:
            raise ValueError(f"unknown propagation {self.propagation!r}: choose one of {', '.join(PROPAGATIONS)}")
        if self.propagation == "levin":
            check_levin_size(self.size, self.size)  # the exact solver runs at the render size
        if not self.reach > 0:
            raise ValueError(f"reach {self.reach}: it must be > 0 ({REACH} is the default; larger carries a "
                             "hint's colour further)")


@torch.inference_mode()
def colorize_image(model: nn.Module, image: Image.Image, render_size: int = RENDER_SIZE, precision: str = "auto",
                   hints=None, propagation: str = "fast", reach: float = REACH) -> Image.Image:
    """Colorize one photo of any size and PIL mode; returns an RGB image of the same size and lightness.

    The generator (in eval mode, on any device) runs at `render_size` x `render_size`; it maps
    L (1,1,S,S) in [-1,1] to ab/110 (1,2,S,S) as `models.build_generator` does (a generator that takes
    hints: cat(L, hint map) (1,4,S,S)). `hints`: a list of points in the photo's pixels,
    `[{"x": 410, "y": 220, "color": "#b03020", "size": 12}, ...]` (see `hintmaps.check_hints`); only a
    colour's ab counts, spread by `propagation` ("fast", "levin" or "off") as far as `reach` says. A
    photo with transparency comes back RGBA with the same alpha (colorized as if laid on white). The
    model runs in `precision` (`device.choose_precision`: auto is mixed precision on a GPU, fp32 on
    the CPU); the colour conversion always in fp32.
    """
    rendering = Rendering(render_size, precision, propagation, reach)
    return _colorize(model, image, rendering, check_hints(hints, image.size) if hints else [])


def _colorize(model: nn.Module, image: Image.Image, rendering: Rendering, points: list[HintPoint]) -> Image.Image:
    """`colorize_image` once its settings and hints are checked."""
    if model.training:
        raise ValueError("the generator is in training mode (batch norm would use this photo's statistics); "
                         "call model.eval() first")
    device, S = next(model.parameters()).device, rendering.size
    alpha = image.convert("RGBA").getchannel("A") if image.has_transparency_data else None
    image = to_rgb(image)
    W, H = image.size
    small = np.asarray(image.resize((S, S), Image.Resampling.BILINEAR))  # antialiased
    L = rgb_to_lightness(pixels_to_rgb(small, device))  # (1,1,S,S) in [-1,1]
    hint_map = user_hint_map(points, (W, H), S, device) if points else None  # (1,3,S,S)
    with autocast_for(device, choose_precision(device, rendering.precision)):
        ab = model(generator_input(L, hint_map) if model.spec.takes_hints else L).float()  # (1,2,S,S) ab/110
    if hint_map is not None:
        ab = propagate(L, ab, hint_map, rendering.propagation, rendering.reach)  # what the model missed, spread
    ab = F.interpolate(ab, size=(H, W), mode="bilinear", align_corners=False)  # (1,2,H,W)

    out = Image.new("RGB", (W, H))
    rows = max(1, CHUNK_PIXELS // W)
    for top in range(0, H, rows):
        band = np.asarray(image.crop((0, top, W, min(H, top + rows))))  # (h,W,3) uint8 of the original photo
        L = rgb_to_lightness(pixels_to_rgb(band, device))  # (1,1,h,W) in [-1,1], full resolution
        rgb = lab_net_to_rgb(L, ab[:, :, top : top + rows])  # (1,3,h,W) in [0,1], L kept exactly
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
            pairs.append((f, unique_output(out_dir, rel, ".png", taken)))
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
    render_size: int = RENDER_SIZE,
    progress: bool = True,
    precision: str = "auto",
    hints=None,
    propagation: str = "fast",
    reach: float = REACH,
) -> ColorizeResult:
    """Colorize photos and folders of photos (recursively) into `out_dir` as PNG; never touches the inputs.

    A file that cannot be read is logged, recorded in `failed` and skipped; the rest are written.
    Transparency is kept (RGBA out for a photo with an alpha channel or a transparent palette colour).
    `hints` (points in the photo's pixels, see `colorize_image`) need exactly one input photo; they
    are checked against it before anything is written.
    """
    rendering = Rendering(render_size, precision, propagation, reach)
    inputs = [str(p) for p in inputs]
    pairs = plan_outputs(inputs, out_dir)
    if not pairs:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) found in {', '.join(inputs)}")
    points = []
    if hints:
        if len(pairs) != 1:
            raise ValueError(f"hints are points of one photo, but {len(pairs)} photos were given: colorize that "
                             "photo alone with its hints file")
        points = check_hints(hints, load_rgb(pairs[0][0], keep_alpha=True).size)  # bad: an error, nothing written
    result = ColorizeResult()
    for src, dst in progress_bar(pairs) if progress and bars_can_draw() else pairs:
        try:
            image = load_rgb(src, keep_alpha=True)
        except BadImageError as e:
            log.warning("skipped %s: %s", src, e)
            result.failed.append((src, str(e)))
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        with torch.inference_mode():
            colorized = _colorize(model, image, rendering, points)
        colorized.save(dst, compress_level=PNG_COMPRESS_LEVEL)
        result.written.append(dst)
    log.info("colorized %d photo(s) into %s; skipped %d", len(result.written), out_dir, len(result.failed))
    return result

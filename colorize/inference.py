"""THE engine: L at the render size (+ a hint map) -> ab; photos of any size colorized at full resolution with it.

`colorize_batch` is the one place the generator runs at inference: L (B,1,S,S) in [-1,1] at the render
size, with a hint map where the model takes hints, in the `Rendering`'s precision, then what the
prediction still misses at the hints spread along lightness (`propagate.propagate`). Photos
(`colorize_image`; folders of them: `archive.colorize_archive`), video frames (`video.colorized_frames`),
evaluation's scorers (`evaluate`), the flicker report (`flicker`) and the Guide tab (`guide`) all call it.

A photo is squeezed to `render_size` x `render_size` for the model (`render_lightness`); the predicted ab
is upsampled bilinearly to the photo's size and joined with the ORIGINAL full-resolution L (`compose`,
through `lab.lab_net_to_rgb`, which reduces chroma rather than change L), so the output has the input's
size and lightness. Colour inputs lose their colour on the way (only L reaches the model).

Colour hints (points in the ORIGINAL photo's pixels) work with every generator: they become a hint map
at the render size; a generator that takes hints (`GeneratorSpec.takes_hints`) reads it with L, and
then, for every generator, the residual at the hinted pixels is spread (`Rendering.propagation`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .config import PRECISIONS, PROPAGATIONS, Recipe, choice, option
from .data import list_images, to_rgb
from .device import autocast_for, choose_precision
from .files import unique_output
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
class Rendering(Recipe):
    """How every photo (or frame) of one call is rendered, checked once when it is made: the square the model
    sees, its arithmetic, the hints' propagation and reach. Every colorizing function takes it whole."""

    render_size: int = option(RENDER_SIZE, f"size the model sees: a multiple of {RENDER_SIZES[2]} from "
                              f"{RENDER_SIZES[0]} to {RENDER_SIZES[1]}",
                              parse=lambda text: check_render_size(int(text)))
    precision: str = choice("auto", PRECISIONS, help="the model's arithmetic: auto is bf16 on GPUs that have it, "
                            "fp16 on older GPUs, fp32 on the CPU")
    propagation: str = choice("fast", PROPAGATIONS, help="how hints spread along lightness: fast, levin (exact, "
                              "up to 256 px), off (the model alone)")
    reach: float = option(REACH, "how far a hint's colour travels under propagation (larger: further)")

    def check(self):
        object.__setattr__(self, "render_size", check_render_size(self.render_size))  # 96.0 (a slider's) -> 96
        if self.propagation == "levin":
            check_levin_size(self.render_size, self.render_size)  # the exact solver runs at the render size
        if not self.reach > 0:
            raise ValueError(f"reach {self.reach}: it must be > 0 ({REACH} is the default; larger carries a "
                             "hint's colour further)")


def rendering_of(rendering: Rendering | int | None = None, **settings) -> Rendering:
    """The one `Rendering` of a public entry: `rendering` itself, or a render size, or the defaults, with any of
    its fields given as keywords (`render_size=`, `precision=`, `propagation=`, `reach=`) replaced."""
    if isinstance(rendering, Rendering):
        return rendering.replace(**settings) if settings else rendering
    if rendering is not None:
        settings = {"render_size": rendering, **settings}
    return Rendering(**settings)


def check_eval(model: nn.Module) -> None:
    """Refuse a generator in training mode: its batch norm would use the photo's own statistics."""
    if model.training:
        raise ValueError("the generator is in training mode (batch norm would use this photo's statistics); "
                         "call model.eval() first")


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def colorize_batch(model: nn.Module, L: torch.Tensor, hint_map: torch.Tensor | None = None,
                   rendering: Rendering = Rendering(), known: torch.Tensor | None = None) -> torch.Tensor:
    """THE engine: L (B,1,S,S) in [-1,1] at the render size [+ hint map (B,3,S,S), `lab.encode_hints`] -> ab
    (B,2,S,S) scaled by 1/110, fp32, on L's device.

    The generator (eval mode) reads L, or cat(L, hint map) where its spec takes hints (an all-zero map
    without hints), under autocast in `rendering.precision`; then the residual at the hinted pixels is
    spread along lightness (`rendering.propagation`, `.reach`). S is L's own size. `known`: this model's
    ab for this L without hints, from an earlier call: an automatic model's output does not depend on the
    hints, so it is not run again (the Guide tab's clicks).
    """
    check_eval(model)
    if known is None or (model.spec.takes_hints and hint_map is not None):
        with autocast_for(L.device, choose_precision(L.device, rendering.precision)):
            ab = model(generator_input(L, hint_map) if model.spec.takes_hints else L).float()  # (B,2,S,S)
    else:
        ab = known
    if hint_map is not None:
        ab = propagate(L, ab, hint_map, rendering.propagation, rendering.reach)  # what the model missed, spread
    return ab


def render_lightness(frames: Sequence[np.ndarray], render_size: int, device=None) -> torch.Tensor:
    """RGB pictures (H,W,3) uint8 (each its own size) -> L (B,1,S,S) in [-1,1]: each squeezed to S x S (PIL's
    antialiased bilinear), as the model sees it."""
    S = render_size
    small = np.stack([np.asarray(Image.fromarray(f).resize((S, S), Image.Resampling.BILINEAR)) for f in frames])
    return rgb_to_lightness(pixels_to_rgb(small, device))


@torch.inference_mode()
def compose(pixels: np.ndarray, ab: torch.Tensor) -> np.ndarray:
    """A picture's colour: RGB (H,W,3) uint8 and ab (1,2,h,w) ab/110 at any size -> RGB (H,W,3) uint8 with the
    picture's own L exactly (`lab.lab_net_to_rgb`), ab upsampled bilinearly; in bands of CHUNK_PIXELS."""
    H, W = pixels.shape[:2]
    ab = F.interpolate(ab.float(), size=(H, W), mode="bilinear", align_corners=False)  # (1,2,H,W)
    out = np.empty_like(pixels)
    rows = max(1, CHUNK_PIXELS // W)
    for top in range(0, H, rows):
        L = rgb_to_lightness(pixels_to_rgb(pixels[top:top + rows], ab.device))  # (1,1,h,W) full resolution
        out[top:top + rows] = rgb_to_pixels(lab_net_to_rgb(L, ab[:, :, top:top + rows]))[0]  # L kept exactly
    return out


def colorize_image(model: nn.Module, image: Image.Image, rendering: Rendering | int | None = None, hints=None,
                   **settings) -> Image.Image:
    """Colorize one photo of any size and PIL mode; returns an RGB image of the same size and lightness.

    The generator (in eval mode, on any device) maps L (1,1,S,S) in [-1,1] to ab/110 (1,2,S,S) as
    `models.build_generator` does (a hint model: cat(L, hint map)). `rendering`: a `Rendering` (or a
    render size), its fields also as keywords (`render_size=64, propagation="levin"`). `hints`: a list
    of points in the photo's pixels, `[{"x": 410, "y": 220, "color": "#b03020", "size": 12}, ...]` (see
    `hintmaps.check_hints`); only a colour's ab counts. A photo with transparency comes back RGBA with the
    same alpha (colorized as if laid on white). The colour conversion always runs in fp32.
    """
    rendering = rendering_of(rendering, **settings)
    return render_photo(model, image, rendering, check_hints(hints, image.size) if hints else [])


def render_photo(model: nn.Module, image: Image.Image, rendering: Rendering, points: list[HintPoint]) -> Image.Image:
    """`colorize_image` once its rendering and hints are checked."""
    device = model_device(model)
    alpha = image.convert("RGBA").getchannel("A") if image.has_transparency_data else None
    pixels = np.asarray(to_rgb(image))  # (H,W,3) uint8
    H, W = pixels.shape[:2]
    L = render_lightness([pixels], rendering.render_size, device)  # (1,1,S,S)
    hint_map = user_hint_map(points, (W, H), rendering.render_size, device) if points else None  # (1,3,S,S)
    out = Image.fromarray(compose(pixels, colorize_batch(model, L, hint_map, rendering)), "RGB")
    if alpha is not None:
        out.putalpha(alpha)
    return out


def plan_outputs(inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                 suffix: str = ".png") -> list[tuple[Path, Path]]:
    """(input, output) pairs: files keep their name with `suffix` in `out_dir`, folders keep their subfolders.

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
            pairs.append((f, unique_output(out_dir, rel, suffix, taken)))
    clash = [out for _, out in pairs if out.resolve() in seen]
    if clash:
        raise ValueError(
            f"writing to {out_dir} would overwrite {len(clash)} input photo(s), e.g. {clash[0]}; "
            "choose an output folder outside the inputs"
        )
    return pairs

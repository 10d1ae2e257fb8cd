"""Suggested colours for a hint: the model's colour there, the colours already used, and every colour that exists
at that pixel's lightness, drawn as one picture to click on.

The colours that exist at a lightness L are the (a, b) whose Lab colour is inside the sRGB gamut; Zhang et al.
2017's interface shows this ab gamut at the point's L beside the photo, so a hint's colour can be one the
photo's lightness allows. A colour's lightness does not matter to a hint (only its ab counts), so the grid
shows each ab at the point's own lightness: what the photo will look like there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from PIL import Image, ImageColor, ImageDraw

from .lab import AB_SCALE, L_SCALE, lab_net_to_rgb, pixels_to_rgb, rgb_to_lab_net, rgb_to_lightness, rgb_to_pixels

GRID = 19  # ab cells a side: a and b from -AB_REACH to +AB_REACH (Zhang et al.'s interface: a 2-D ab plane)
AB_REACH = 108.0  # the grid's extent in a and b: sRGB reaches about -108 (blue) to +98 (magenta)
GAMUT_TOL = 0.5  # an (a, b) is in gamut if Lab -> RGB -> Lab gives it back within this (in ab units)
CELL = 16  # px a side of one swatch in the picture
USED = GRID - 2  # colours already used shown in the first row, after the model's colour and a gap


def gamut_at(lightness: float, grid: int = GRID) -> list[list[str | None]]:
    """The (grid, grid) ab plane at CIE `lightness` (0..100): "#rrggbb" where (a, b) is an sRGB colour, else None.

    Rows run from b = +AB_REACH (yellow, top) to -AB_REACH (blue); columns from a = -AB_REACH (green) to +AB_REACH (red).
    """
    steps = torch.linspace(-AB_REACH, AB_REACH, grid)
    b, a = torch.meshgrid(steps.flip(0), steps, indexing="ij")  # (G,G) each
    ab = torch.stack([a, b])[None] / AB_SCALE  # (1,2,G,G) ab/110
    L = torch.full((1, 1, grid, grid), lightness / L_SCALE - 1.0)  # (1,1,G,G) in [-1,1]
    rgb = lab_net_to_rgb(L, ab)  # (1,3,G,G) in [0,1]
    back = rgb_to_lab_net(rgb)[1]  # (1,2,G,G): differs from ab where the colour was out of gamut
    inside = ((back - ab).abs().amax(1)[0] * AB_SCALE < GAMUT_TOL).numpy()  # (G,G)
    pixels = rgb_to_pixels(rgb)[0]  # (G,G,3) uint8
    return [[_hex(pixels[i, j]) if inside[i, j] else None for j in range(grid)] for i in range(grid)]


def _hex(rgb) -> str:
    r, g, b = (int(v) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


@dataclass(frozen=True)
class Palette:
    """The suggested colours as cells: row 0 the model's colour, a gap, the used colours; rows 1.. the gamut."""

    cells: list[list[str | None]]  # (rows, GRID) "#rrggbb" or None (an empty cell)

    def picture(self) -> Image.Image:
        """The palette as RGBA, CELL px a cell, empty cells transparent (a click there picks nothing)."""
        rows, cols = len(self.cells), len(self.cells[0])
        image = Image.new("RGBA", (cols * CELL, rows * CELL + CELL // 2), (0, 0, 0, 0))
        draw = ImageDraw.Draw(image)
        for i, row in enumerate(self.cells):
            top = i * CELL + (CELL // 2 if i else 0)  # half a cell between the first row and the gamut
            for j, colour in enumerate(row):
                if colour is not None:
                    draw.rectangle([j * CELL, top, (j + 1) * CELL - 2, top + CELL - 2], fill=colour)
        return image

    def colour_at(self, x: int, y: int) -> str | None:
        """The colour of the cell at pixel (x, y) of `picture()`, or None off every swatch."""
        i = 0 if y < CELL else (y - CELL // 2) // CELL
        j = x // CELL
        if CELL <= y < CELL + CELL // 2 or not (0 <= y and 0 <= i < len(self.cells) and 0 <= j < len(self.cells[0])):
            return None
        return self.cells[i][j]


def suggest(model_colour: str | None, used: Sequence[str], lightness: float) -> Palette:
    """The palette at a click: the model's colour there, up to USED distinct colours already used (latest first),
    and the gamut at the pixel's CIE `lightness` (0..100)."""
    distinct = list(dict.fromkeys(_hex(ImageColor.getrgb(c)[:3]) for c in reversed(used)))[:USED]
    first = [model_colour, None, *distinct]
    first += [None] * (GRID - len(first))
    return Palette([first, *gamut_at(lightness)])


def lightness_at(image: Image.Image, x: int, y: int, radius: int = 1) -> float:
    """CIE L (0..100) of a photo around pixel (x, y): the mean over a (2 radius + 1) square inside the photo."""
    W, H = image.size
    box = (max(0, x - radius), max(0, y - radius), min(W, x + radius + 1), min(H, y + radius + 1))
    L = rgb_to_lightness(pixels_to_rgb(image.convert("RGB").crop(box)))  # (1,1,h,w) in [-1,1]
    return float((L.mean() + 1) * L_SCALE)

"""Suggested hint colours: the gamut at a lightness against scikit-image's Lab, the palette's cells and clicks."""

import numpy as np
import pytest
from PIL import Image
from skimage import color
from skimage.color.colorconv import rgb_from_xyz

from colorize.swatches import AB_REACH, CELL, GRID, gamut_at, lightness_at, suggest


def linear_rgb(L, a, b):
    """Linear sRGB of a Lab colour by scikit-image, unclipped: inside [0,1] iff the colour is in the sRGB gamut."""
    xyz = color.lab2xyz(np.array([[[L, a, b]]], dtype=float))[0, 0]
    return rgb_from_xyz @ xyz


@pytest.mark.parametrize("lightness", [20, 50, 85])
def test_gamut_at_a_lightness_is_the_srgb_gamut_and_keeps_that_lightness(lightness):
    cells = gamut_at(lightness)
    steps = np.linspace(-AB_REACH, AB_REACH, GRID)
    checked = 0
    for i, b in enumerate(steps[::-1]):
        for j, a in enumerate(steps):
            rgb = linear_rgb(lightness, a, b)
            margin = min(rgb.min(), 1 - rgb.max())
            if abs(margin) < 0.01:
                continue  # on the gamut's edge: either answer is fine
            assert (cells[i][j] is not None) == (margin > 0), (lightness, a, b, rgb)
            if cells[i][j] is not None:
                shown = color.rgb2lab(np.array([[Image.new("RGB", (1, 1), cells[i][j]).getpixel((0, 0))]]) / 255)
                assert np.allclose(shown[0, 0], [lightness, a, b], atol=1.5), (cells[i][j], shown, a, b)
                checked += 1
    assert checked >= 10
    assert cells[GRID // 2][GRID // 2] is not None  # gray exists at every lightness


def test_palette_cells_are_what_a_click_picks():
    palette = suggest("#805030", ["#ff0000", "#00ff00", "#FF0000"], 60)
    assert palette.cells[0][:4] == ["#805030", None, "#ff0000", "#00ff00"]  # the model's; a gap; used, latest first
    picture = palette.picture()
    assert picture.size == (GRID * CELL, (GRID + 1) * CELL + CELL // 2)
    for i, row in enumerate(palette.cells):
        for j, colour in enumerate(row):
            x, y = j * CELL + CELL // 2, i * CELL + CELL // 2 + (CELL // 2 if i else 0)  # a cell's middle
            assert palette.colour_at(x, y) == colour
            r, g, b, alpha = picture.getpixel((x, y))
            assert (alpha == 0) if colour is None else (f"#{r:02x}{g:02x}{b:02x}", alpha) == (colour, 255)
    assert palette.colour_at(5, CELL + 2) is None  # the gap between the first row and the gamut
    assert palette.colour_at(GRID * CELL + 3, 5) is None and palette.colour_at(-1, 5) is None


def test_lightness_at_a_point_is_cie_l():
    image = Image.new("RGB", (20, 10), (90, 140, 200))
    image.paste((10, 10, 10), (0, 0, 3, 10))
    expected = color.rgb2lab(np.array([[[90, 140, 200]]]) / 255)[0, 0, 0]
    assert lightness_at(image, 10, 5) == pytest.approx(expected, abs=0.05)
    assert lightness_at(image, 0, 0) < 10  # the dark band in the corner

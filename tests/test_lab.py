"""Lab conversion against skimage.color as the oracle, and the network scaling."""

import itertools

import numpy as np
import pytest
import torch
from kornia.color import lab_to_rgb
from skimage import color, data

from colorize.lab import AB_SCALE, GAMUT_TOL, L_SCALE, LabSplit, lab_net_to_rgb, pixels_to_rgb, rgb_to_lab_net, rgb_to_pixels

TOL = 0.05  # max abs error in L, a, b units: kornia and skimage use the same formulas


def _to_batch(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float()  # (1,3,H,W)


def _corners_and_random(n=4096, seed=0) -> np.ndarray:
    corners = np.array(list(itertools.product([0.0, 1.0], repeat=3)))  # the 8 corners of the RGB cube
    rng = np.random.default_rng(seed)
    pts = np.concatenate([corners, rng.random((n, 3)), rng.choice([0.0, 1.0], (64, 3)) * rng.random((64, 1))])
    return pts.reshape(1, -1, 3)  # (1,N,3) "image"


@pytest.mark.parametrize("rgb", [data.astronaut() / 255.0, data.coffee() / 255.0, _corners_and_random()],
                         ids=["astronaut", "coffee", "random+corners"])
def test_rgb_to_lab_matches_skimage(rgb):
    L, ab = rgb_to_lab_net(_to_batch(rgb))
    ours = torch.cat([(L + 1) * L_SCALE, ab * AB_SCALE], 1)[0].permute(1, 2, 0).numpy()
    ref = color.rgb2lab(rgb)
    assert np.abs(ours - ref).max() <= TOL


@pytest.mark.parametrize("rgb", [data.chelsea() / 255.0, _corners_and_random(seed=1)], ids=["chelsea", "random"])
def test_lab_to_rgb_matches_skimage(rgb):
    lab = color.rgb2lab(rgb)
    L = torch.from_numpy(lab[..., :1]).permute(2, 0, 1)[None].float() / L_SCALE - 1
    ab = torch.from_numpy(lab[..., 1:]).permute(2, 0, 1)[None].float() / AB_SCALE
    ours = lab_net_to_rgb(L, ab)[0].permute(1, 2, 0).numpy()
    # the round trip lands back on the photo, as skimage's own inverse does
    assert np.abs(ours - color.lab2rgb(lab)).max() < 1e-3
    assert np.abs(ours - rgb).max() < 1e-3


def test_scaling_ranges_on_gamut():
    L, ab = rgb_to_lab_net(_to_batch(_corners_and_random()))
    assert L.min() >= -1 - 1e-6 and L.max() <= 1 + 1e-6
    assert ab.abs().max() <= 1.0  # ab/110 covers the sRGB gamut (|a|,|b| < 110)
    assert ab.abs().max() > 0.7  # and is not a needlessly loose scale


def test_labsplit_batch_transform_round_trip():
    rgb = torch.rand(3, 3, 8, 8)  # (B,3,H,W) in [0,1]
    L, ab = LabSplit()((rgb,))
    assert L.shape == (3, 1, 8, 8) and ab.shape == (3, 2, 8, 8)
    (back,) = LabSplit().decode((L, ab))
    assert torch.allclose(back, rgb, atol=1e-3)


def test_pixels_round_trip_through_float_rgb():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    rgb = pixels_to_rgb(pixels)
    assert rgb.shape == (2, 3, 5, 7) and rgb.dtype == torch.float32 and 0 <= rgb.min() and rgb.max() <= 1
    assert torch.equal(rgb[1, :, 2, 3], torch.from_numpy(pixels[1, 2, 3]).float() / 255)  # channels first
    assert np.array_equal(rgb_to_pixels(rgb), pixels)
    assert pixels_to_rgb(pixels[0]).shape == (1, 3, 5, 7)  # one photo becomes a batch of one


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_lightness_and_hue_are_kept_for_an_absurdly_saturated_prediction(name):
    """ab = +-5 (x110: far outside any gamut) on a real photo's L: chroma gives way, L and hue stay (skimage oracle)."""
    photo = getattr(data, name)()[::2, ::2]  # (H,W,3) uint8, half size keeps the test quick
    L = rgb_to_lab_net(pixels_to_rgb(photo))[0]  # (1,1,H,W)
    wild = (torch.rand(1, 2, *L.shape[2:], generator=torch.Generator().manual_seed(0)) * 2 - 1) * 5
    L_photo = color.rgb2lab(photo)[..., 0]
    out = color.rgb2lab(rgb_to_pixels(lab_net_to_rgb(L, wild))[0])
    assert np.abs(out[..., 0] - L_photo).mean() < 0.3
    chroma = np.hypot(out[..., 1], out[..., 2])
    hue_in = np.arctan2(wild[0, 1].numpy(), wild[0, 0].numpy())
    hue_out = np.arctan2(out[..., 2], out[..., 1])
    turn = np.abs(np.angle(np.exp(1j * (hue_out - hue_in))))[chroma > 10]  # radians, where there is a hue to keep
    assert chroma.mean() > 20 and np.median(turn) < 0.05
    # the check can fail: clipping RGB instead shifts the lightness by far more
    clipped = lab_to_rgb(torch.cat([(L + 1) * L_SCALE, wild * AB_SCALE], 1), clip=True)
    assert np.abs(color.rgb2lab(rgb_to_pixels(clipped)[0])[..., 0] - L_photo).mean() > 3


def _skimage_max_chroma(L: np.ndarray, hue: np.ndarray, steps: int = 30, tol: float = 0.0) -> np.ndarray:
    """The oracle: the largest chroma in sRGB at (L, hue), by bisection on skimage's own Lab -> XYZ -> linear RGB,
    within `tol` of its faces."""
    lo, hi = np.zeros_like(L), np.full_like(L, 200.0)
    for _ in range(steps):
        mid = (lo + hi) / 2
        lab = np.stack([L, mid * np.cos(hue), mid * np.sin(hue)], axis=-1)[None]  # (1,N,3)
        linear = color.lab2xyz(lab)[0] @ color.colorconv.rgb_from_xyz.T
        ok = ((linear >= -tol) & (linear <= 1 + tol)).all(axis=-1)
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return lo


def _random_colours(n: int, amplitude: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n colours as an (1,1,1,n) L in [-1,1] and (1,2,1,n) ab of up to `amplitude` (x110 ab units), seeded."""
    g = torch.Generator().manual_seed(seed)
    L = torch.rand(1, 1, 1, n, generator=g) * 1.9 - 0.95  # L 2.5 to 97.5: away from black and white
    return L, (torch.rand(1, 2, 1, n, generator=g) * 2 - 1) * amplitude


@pytest.mark.parametrize("amplitude", [0.1, 1.0, 5.0], ids=["dull", "saturated", "absurd"])
def test_any_colour_comes_out_in_gamut_with_its_lightness_and_hue(amplitude):
    """Dull colours pass unchanged; saturated ones keep L and hue and lose only the chroma that does not fit."""
    L, ab = _random_colours(4000, amplitude)
    rgb = lab_net_to_rgb(L, ab)[0, :, 0].T.double().numpy()  # (N,3) in [0,1] (clamped: the test is that it fits)
    out = color.rgb2lab(rgb[None])[0]  # (N,3) skimage's Lab of what came out
    lab_in = torch.cat([(L + 1) * L_SCALE, ab * AB_SCALE], 1)[0, :, 0].T.double().numpy()
    assert np.abs(out[:, 0] - lab_in[:, 0]).max() < 0.02  # L kept: no pixel was clipped
    chroma_in, chroma_out = np.hypot(*lab_in[:, 1:].T), np.hypot(*out[:, 1:].T)
    hue_in = np.arctan2(lab_in[:, 2], lab_in[:, 1])
    fits = chroma_in <= _skimage_max_chroma(lab_in[:, 0], hue_in)
    best = _skimage_max_chroma(lab_in[:, 0], hue_in, tol=GAMUT_TOL)  # and float noise outside: clipped
    assert np.abs(out[fits] - lab_in[fits]).max() < 0.02  # a colour that fits is left as it is
    hue_turn = np.abs(np.angle(np.exp(1j * (np.arctan2(out[:, 2], out[:, 1]) - hue_in))))
    assert hue_turn[chroma_out > 5].max() < 0.01  # radians
    # the fitted chroma against the oracle's: at most 0.02 over it (float), and not needlessly less
    given_up = best[~fits] - chroma_out[~fits]
    assert given_up.min() > -0.02 and given_up.mean() < 0.3 and np.quantile(given_up, 0.99) < 1.0, given_up
    assert fits.mean() > 0.95 if amplitude < 0.2 else fits.mean() < 0.5  # the dull ones fit, bar the darkest


def test_the_chroma_table_is_the_largest_chroma_in_gamut_at_its_nodes():
    """Each entry of the table against the oracle at its (L, hue), and the two hue ends the same."""
    from colorize.lab import GAMUT_HUES, GAMUT_ROWS, max_chroma_table

    table = max_chroma_table().double().numpy()
    assert table.shape == (GAMUT_ROWS, GAMUT_HUES + 1) and np.array_equal(table[:, 0], table[:, -1])
    rows, cols = np.meshgrid(np.arange(0, GAMUT_ROWS, 16), np.arange(0, GAMUT_HUES + 1, 36), indexing="ij")
    L, hue = rows.ravel() * 100 / (GAMUT_ROWS - 1), -np.pi + cols.ravel() * 2 * np.pi / GAMUT_HUES
    assert np.abs(table[rows.ravel(), cols.ravel()] - _skimage_max_chroma(L, hue)).max() < 0.01
    assert table.max() > 130 and table[0].max() < 0.01 and table[-1].max() < 0.01  # blue's 134; black, white: gray


def test_max_chroma_table_is_kept_per_device_and_dtype():
    from colorize.lab import max_chroma_table

    assert max_chroma_table("cpu", torch.float32) is max_chroma_table("cpu", torch.float32)
    assert max_chroma_table("cpu", torch.float64).dtype == torch.float64


def test_the_table_fits_nearly_every_colour_and_bisection_only_the_rare_rest(monkeypatch):
    """The cost does not follow the colours: of 40k absurdly saturated colours (all outside), the table caps all but
    a handful; only those go through the bisection's ten steps."""
    from colorize import lab

    bisected = []
    fit_chroma = lab._fit_chroma
    monkeypatch.setattr(lab, "_fit_chroma", lambda rows: bisected.append(len(rows)) or fit_chroma(rows))
    L, ab = _random_colours(40_000, 5.0, seed=1)
    lab_net_to_rgb(L, ab)
    assert sum(bisected) < 0.005 * 40_000, bisected

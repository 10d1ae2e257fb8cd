"""Colour propagation: Levin et al.'s affinities against a loop transcription of their code, hints honoured,
colours stopping at lightness edges, and no change without hints."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d
from skimage import data, transform

from colorize.config import PROPAGATIONS
from colorize.lab import encode_hints
from colorize.propagate import (LEVIN_MAX_PIXELS, PROPAGATORS, crossing_share, levin_matrix, levin_weights,
                                propagate)

METHODS = ("fast", "levin")


def loop_affinities(y: np.ndarray) -> np.ndarray:
    """Levin et al.'s getColorExposure.m, line by line (wd = 1), for every pixel: the dense (N,N) weights."""
    n, m = y.shape
    W = np.zeros((n * m, n * m))
    for i in range(n):
        for j in range(m):
            gvals, cols = [], []
            for ii in range(max(0, i - 1), min(i + 2, n)):
                for jj in range(max(0, j - 1), min(j + 2, m)):
                    if ii != i or jj != j:
                        gvals.append(y[ii, jj])
                        cols.append(ii * m + jj)
            t_val = y[i, j]
            window = np.array(gvals + [t_val])
            c_var = np.mean((window - np.mean(window)) ** 2)
            csig = c_var * 0.6
            mgv = min((g - t_val) ** 2 for g in gvals)
            if csig < -mgv / math.log(0.01):
                csig = -mgv / math.log(0.01)
            if csig < 0.000002:
                csig = 0.000002
            g = np.exp(-((np.array(gvals) - t_val) ** 2) / csig)
            W[i * m + j, cols] = g / g.sum()
    return W


def two_regions(size=32):
    """L (1,1,S,S): a dark left half and a light right half (a strong lightness edge down the middle)."""
    L = torch.full((1, 1, size, size), -0.6)
    L[..., size // 2:] = 0.6
    return L


def hint_map(size, points, side=2):
    """(1,3,S,S) hint map with side x side hints at (row, col) of colour (a, b) in ab/110."""
    ab = torch.zeros(1, 2, size, size)
    mask = torch.zeros(1, 1, size, size)
    for (r, c), colour in points:
        ab[0, :, r:r + side, c:c + side] = torch.as_tensor(colour).reshape(2, 1, 1)
        mask[0, 0, r:r + side, c:c + side] = 1
    return encode_hints(ab, mask)


def test_levin_affinities_match_a_loop_transcription_of_their_code():
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 1, (9, 9))
    y[:, 5:] = y[:, 5:] * 0.1 + 0.9  # an edge, and a flat-ish region where the variance floors matter
    y[0, 0] = y[0, 1] = y[1, 0] = y[1, 1] = 0.5  # a flat corner: the 2e-6 floor
    W = levin_weights(y).toarray()
    np.testing.assert_allclose(W, loop_affinities(y), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(W.sum(1), 1.0)


def test_levin_matrix_keeps_hinted_rows_as_constraints():
    rng = np.random.default_rng(1)
    y = rng.uniform(0, 1, (5, 6))
    mask = np.zeros((5, 6), bool)
    mask[2, 3] = True
    A = levin_matrix(y, mask).toarray()
    row = 2 * 6 + 3
    assert A[row, row] == 1 and np.count_nonzero(A[row]) == 1
    np.testing.assert_allclose(A.sum(1), np.where(mask.ravel(), 1.0, 0.0), atol=1e-12)  # I - W: free rows sum to 0


@pytest.mark.parametrize("method", METHODS)
def test_hints_are_honoured_at_their_pixels(method):
    torch.manual_seed(0)
    L = torch.rand(2, 1, 40, 40) * 2 - 1
    ab = torch.rand(2, 2, 40, 40) * 0.6 - 0.3  # a prediction
    hints = torch.cat([hint_map(40, [((5, 5), (0.5, -0.2)), ((30, 20), (-0.4, 0.1))]),
                       hint_map(40, [((12, 33), (0.2, 0.6))])])
    out = propagate(L, ab, hints, method)
    assert out.shape == ab.shape and out.dtype == ab.dtype and out.device == ab.device
    mask = hints[:, 2:3].bool().expand_as(ab)
    assert torch.equal(out[mask], hints[:, :2][mask])
    assert not torch.equal(out[~mask], ab[~mask])  # and they moved the colours around them


# both fade towards the prediction with distance (a hint's colour stays near it at the default reach, 1): at these
# reaches a hint fills its 15x32 region (levin) or nearly (fast)
@pytest.mark.parametrize("method, reach, tol", [("levin", 10, 0.05), ("fast", 3, 0.15)])
def test_colours_stop_at_a_strong_lightness_edge(method, reach, tol):
    L = two_regions(32)
    red, blue = torch.tensor([0.5, 0.3])[:, None, None], torch.tensor([-0.1, -0.5])[:, None, None]
    out = propagate(L, torch.zeros(1, 2, 32, 32), hint_map(32, [((15, 4), red), ((15, 26), blue)]), method, reach)
    left, right = out[0, :, :, :15], out[0, :, :, 17:]  # (2,32,15) each, away from the edge's two columns
    assert (left - red).abs().max() < tol and (right - blue).abs().max() < tol
    assert (left - blue).abs().min() > 0.3 and (right - red).abs().min() > 0.3  # neither colour crossed


def test_fast_keeps_the_prediction_across_an_edge_from_a_hint_on_one_side():
    L = two_regions(256)
    ab = torch.full((1, 2, 256, 256), 0.1)
    out = propagate(L, ab, hint_map(256, [((125, 40), (0.6, 0.4))], side=6), "fast", reach=30)
    assert (out[0, :, :, :120] - torch.tensor([0.6, 0.4])[:, None, None]).abs().max() < 0.06  # its region takes it
    assert (out[0, :, :, 136:] - 0.1).abs().max() < 1e-3  # the far side keeps the prediction


def test_fast_reach_sets_how_far_a_hint_travels():
    L = torch.zeros(1, 1, 256, 256)  # flat: only distance limits a hint
    hints = hint_map(256, [((125, 125), (0.6, 0.0))], side=6)
    corner = [propagate(L, torch.zeros(1, 2, 256, 256), hints, "fast", reach=r)[0, 0, -1, -1].item()
              for r in (0.1, 1, 10, 100)]
    assert corner[0] < 0.02 and corner[-1] > 0.3 and corner == sorted(corner)  # further with a longer reach


@pytest.mark.parametrize("method", PROPAGATIONS)
def test_no_hints_change_nothing(method):
    torch.manual_seed(0)
    L = torch.rand(1, 1, 24, 24) * 2 - 1
    ab = torch.rand(1, 2, 24, 24) - 0.5
    out = propagate(L, ab, torch.zeros(1, 3, 24, 24), method)
    assert torch.equal(out, ab)


def test_off_returns_the_prediction_unchanged():
    ab = torch.rand(1, 2, 16, 16)
    assert torch.equal(propagate(torch.zeros(1, 1, 16, 16), ab, hint_map(16, [((3, 3), (0.5, 0.5))]), "off"), ab)


def test_levin_refuses_large_photos_naming_fast():
    side = math.isqrt(LEVIN_MAX_PIXELS) + 1
    with pytest.raises(ValueError, match="'fast'"):
        propagate(torch.zeros(1, 1, side, side), torch.zeros(1, 2, side, side),
                  hint_map(side, [((3, 3), (0.5, 0.5))]), "levin")


def test_bad_arguments_say_what_is_valid():
    L, ab, hints = torch.zeros(1, 1, 8, 8), torch.zeros(1, 2, 8, 8), torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match="fast, levin, off"):
        propagate(L, ab, hints, "bilateral")
    with pytest.raises(ValueError, match="reach"):
        propagate(L, ab, hints, "fast", reach=0)
    with pytest.raises(ValueError, match=r"\(B,3,H,W\)"):
        propagate(L, ab, hints[:, :2], "fast")


def test_the_registry_offers_exactly_the_configured_names():
    assert tuple(PROPAGATORS) == PROPAGATIONS


def textured_edge(size=128, step=30.0, blur=3.0):
    """(1,1,S,S) network L: the camera photo's lightness texture (std 6 L units) with a vertical edge of `step`
    L units in the middle, blurred over `blur` px as a real boundary is."""
    tex = transform.resize(data.camera().astype(float), (size, size), anti_aliasing=True)
    tex = (tex - tex.mean()) / tex.std()
    side = gaussian_filter1d(np.where(np.arange(size) >= size // 2, 1.0, -1.0), blur)
    return torch.from_numpy(np.clip(50 + 6 * tex + step / 2 * side[None, :], 0, 100) / 50 - 1).float()[None, None]


@pytest.mark.parametrize("method", METHODS)
def test_a_hint_stays_on_its_side_of_a_strong_edge_and_the_far_side_keeps_the_model(method):
    size = 128
    ab = torch.full((1, 2, size, size), -0.05)  # the model's colour
    out = propagate(textured_edge(size), ab, hint_map(size, [((64, 32), (0.5, 0.3))], side=3), method)
    far = np.broadcast_to(np.arange(size) >= size // 2, (size, size))
    assert crossing_share(ab[0].numpy(), out[0].numpy(), far) < 0.15
    assert (out - ab)[0, :, :, 32:36].abs().mean() > 0.05  # and the hint did colour its own side
    assert (out - ab)[0, :, :, -size // 4:].abs().max() < 0.01  # the far quarter keeps the model's colour


@pytest.mark.parametrize("method", METHODS)
def test_one_hint_fades_back_to_the_model_with_distance_on_a_flat_photo(method):
    size = 128
    out = propagate(torch.zeros(1, 1, size, size), torch.zeros(1, 2, size, size),
                    hint_map(size, [((10, 10), (0.5, 0.3))], side=3), method)  # no edge anywhere
    near, corner = out[0, 0, 12, 16].item(), out[0, 0, -1, -1].item()
    assert near > 0.1 and corner < 0.1 * near  # not a global shift (Levin et al.'s system alone gives 0.5 everywhere)


def test_an_infinite_reach_is_levin_et_al_s_system_exactly():
    out = propagate(torch.rand(1, 1, 24, 24) * 2 - 1, torch.zeros(1, 2, 24, 24),
                    hint_map(24, [((3, 3), (0.5, 0.3))], side=2), "levin", reach=math.inf)
    torch.testing.assert_close(out[0], torch.tensor([0.5, 0.3])[:, None, None].expand(2, 24, 24))  # one hint: a shift


def test_crossing_share_counts_the_change_on_the_far_side():
    before, after = np.zeros((2, 4, 4)), np.zeros((2, 4, 4))
    after[0, :, 0] = 3.0  # near side
    after[1, :, 3] = 1.0  # far side
    far = np.zeros((4, 4), bool)
    far[:, 2:] = True
    assert crossing_share(before, after, far) == pytest.approx(0.25)
    assert crossing_share(before, before, far) == 0.0


def test_the_hint_edges_benchmark_runs_and_reports_both_propagations(capsys):
    import runpy
    from pathlib import Path

    bench = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "hint_edges.py"))
    bench["main"](["--size", "64"])
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [r[1].strip() for r in rows] == ["fast", "levin"]
    assert all(float(r[2]) < 0.15 for r in rows)  # the worst crossing share

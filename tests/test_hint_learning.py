"""The widened generator learns to follow colour hints: in a file of its own, the longest hint test runs on its own
pytest worker (`--dist loadfile`) beside test_hints.py."""

import pytest
import torch

from colorize.hintmaps import draw_hints, paint_hints
from colorize.lab import generator_input
from colorize.models import widen_for_hints


@pytest.mark.slow
def test_the_widened_generator_learns_to_follow_hints_where_lightness_says_nothing(tiny_generator):
    """Photos of one random colour each, under a lightness texture that says nothing about it: only the hints
    tell the colour. After 150 Adam steps on simulated hints (Zhang et al.'s p = 1/8, 1-9 px), 5 hints must cut the
    colour error of new photos by 40% or more against no hints (measured: 0.085 vs 0.202)."""
    g = torch.Generator().manual_seed(0)

    def photos_of_one_colour(n):
        L = 0.2 + 0.05 * torch.randn(n, 1, 32, 32, generator=g)  # (n,1,32,32): texture only
        ab = ((torch.rand(n, 2, 1, 1, generator=g) - 0.5) * 0.8).expand(n, 2, 32, 32)  # one colour per photo
        return L, ab

    model = widen_for_hints(tiny_generator(32, seed=0)).train()
    # fused: one kernel over all 31M parameters instead of a loop over them, a third of each CPU step saved
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    for _ in range(150):
        L, ab = photos_of_one_colour(8)
        loss = (model(generator_input(L, paint_hints(ab, draw_hints(g, 8, 32, 32)))) - ab).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    L, ab = photos_of_one_colour(64)
    with torch.no_grad():
        hinted = (model(generator_input(L, paint_hints(ab, draw_hints(g, 64, 32, 32, count=5)))) - ab).abs().mean()
        blind = (model(generator_input(L)) - ab).abs().mean()
    assert hinted < 0.6 * blind, (hinted.item(), blind.item())

"""How much of one hint's colour change crosses a strong lightness edge, for each propagation: a hint
should stay on its side of a strong edge and fade back to the model's colour.

    .venv/bin/python benchmarks/hint_edges.py [--size 128]

The photos have a known edge: the lightness texture of real photos (scikit-image's grass, camera, astronaut,
normalised to a standard deviation of 6 L units around L 50) with a step of 20 or 30 L units down the middle, sharp
or blurred over a few pixels as real boundaries are. One 1/40-of-the-photo hint sits a quarter of the way in on the
left; the prediction is gray. Printed per propagation: the share of the colour change that lands right of the edge
(`propagate.crossing_share`; target < 0.15), the mean change left of it as a fraction of the hint's (how much of its
own region a hint colours), and the largest mean change in the right-most tenth (target: ~0, the model's colour).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from skimage import color, data, transform

from colorize.lab import encode_hints
from colorize.propagate import crossing_share, propagate

TEXTURES = ("grass", "camera", "astronaut")
EDGES = ((20, 0), (20, 3), (30, 3))  # (step in L units, blur sigma in px at 256 px)
HINT = (0.5, 0.3)  # ab/110: a saturated red


def edge_photo(size: int, texture: str, step: float, blur: float) -> torch.Tensor:
    """(1,1,S,S) network L: a real photo's lightness texture with a vertical edge of `step` L units in the middle."""
    tex = getattr(data, texture)()
    tex = color.rgb2gray(tex) if tex.ndim == 3 else tex.astype(float)
    tex = transform.resize(tex, (size, size), anti_aliasing=True)
    tex = (tex - tex.mean()) / (tex.std() + 1e-9)
    side = np.where(np.arange(size) >= size // 2, 1.0, -1.0)
    side = gaussian_filter1d(side, blur * size / 256) if blur else side
    L = np.clip(50 + 6 * tex + step / 2 * side[None, :], 0, 100)
    return torch.from_numpy(L / 50 - 1).float()[None, None]


def one_hint(size: int) -> torch.Tensor:
    """(1,3,S,S) hint map: one square hint of HINT a quarter of the way in on the left, half-way down."""
    side = max(2, size // 40)
    ab, mask = torch.zeros(1, 2, size, size), torch.zeros(1, 1, size, size)
    r, c = size // 2, size // 4
    ab[0, :, r:r + side, c:c + side] = torch.tensor(HINT)[:, None, None]
    mask[0, 0, r:r + side, c:c + side] = 1
    return encode_hints(ab, mask)


def measure(size: int, method: str) -> dict:
    """Worst and mean crossing share over the photos, the mean share of its own side a hint colours, the far strip."""
    far = np.broadcast_to(np.arange(size) >= size // 2, (size, size))
    crossing, near, strip = [], [], []
    for texture in TEXTURES:
        for step, blur in EDGES:
            gray = torch.zeros(1, 2, size, size)
            out = propagate(edge_photo(size, texture, step, blur), gray, one_hint(size), method)
            change = (out - gray).abs().sum(1)[0].numpy()  # (S,S)
            crossing.append(crossing_share(gray[0].numpy(), out[0].numpy(), far))
            near.append(change[:, : size // 2 - 2].mean() / sum(map(abs, HINT)))
            strip.append(change[:, -(size // 10):].mean())
    return {"crossing max": max(crossing), "crossing mean": float(np.mean(crossing)),
            "own side coloured": float(np.mean(near)), "far strip": max(strip)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128, help="photo side in px (levin takes up to 256)")
    args = p.parse_args(argv)
    print(f"| propagation | crossing max | crossing mean | own side coloured | far strip |  ({args.size} px)")
    print("| --- | --- | --- | --- | --- |")
    for method in ("fast", "levin"):
        r = measure(args.size, method)
        print(f"| {method} | {r['crossing max']:.3f} | {r['crossing mean']:.3f} | {r['own side coloured']:.3f} | "
              f"{r['far strip']:.4f} |")


if __name__ == "__main__":
    main()

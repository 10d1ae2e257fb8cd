"""Hint maps: simulated hints for training and evaluation, a user's hints file.

The hint map is encoded in `colorize.lab` (`encode_hints`, `generator_input`): the hint's ab where a
hint is and 0 elsewhere, plus a 0/1 mask, after L: 4 input channels.

Simulated hints follow Zhang et al. 2017, "Real-Time User-Guided Image Colorization with Learned Deep
Priors", as their code draws them (richzhang/colorization-pytorch, `util.add_color_patches_rand_gt`):
  - the number of hints per image is geometric: after each hint another follows with probability
    1 - p, so P(k hints) = (1 - p)^k p for k = 0, 1, 2, ...; p = 1/8 (`--sample_p .125` in their
    scripts/train_siggraph.sh) gives a mean of (1 - p)/p = 7 and no hint at all for 1 image in 8;
  - each hint is a square patch, its side P drawn uniformly from 1..9 px (`--sample_Ps 1 2 ... 9`);
  - its top-left corner is `int(clip(N((H-P+1)/2, ((H-P+1)/4)^2), 0, H-P))` down and the same across
    (their `samp='normal'`): centre-biased, about 95% of draws inside the image before clipping;
  - its colour is the mean true ab over the patch (`use_avg=True`); a later patch paints over an
    earlier one where they overlap.
Their PSNR-vs-hints sweep (test_sweep.py) reveals a given number of 6x6 patches at 256 px.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from fastai.vision.all import ItemTransform, TensorImage
from PIL import Image, ImageColor

from .lab import LabSplit, encode_hints, generator_input, rgb_to_lab_net

HINT_P = 1 / 8  # Zhang et al. 2017: geometric number of hints, p = 1/8 (scripts/train_siggraph.sh --sample_p .125)
HINT_SIDES = (1, 9)  # Zhang et al. 2017: patch side uniform in 1..9 px (options/base_options.py --sample_Ps)
EVAL_SIDE = 6  # Zhang et al. 2017's sweep: 6x6 patches at 256 px (test_sweep.py sample_Ps = [6])
EVAL_SIZE = 256  # ... the size that patch side is given at; other evaluation sizes scale it
MAX_HINTS = 512  # a cap on the geometric draw; reaching it has probability (7/8)^512, about 1e-30
DEFAULT_HINT_FRACTION = 5 / 256  # a user's hint without "size": 5 px at the usual 256 px render (mid 1..9)
HINT_KEYS = {"x", "y", "color", "size"}


# ------------------------------------------------------------------------------- simulated hints


@dataclass(frozen=True)
class HintDraws:
    """Where simulated hints go, for B images with up to K hints each (slot k of image b is used iff k < count[b]).

    All (B,K) int64 on the CPU, so the same seeds give the same hints on any device.
    """

    count: torch.Tensor  # (B,) hints per image
    side: torch.Tensor  # (B,K) patch side in px
    top: torch.Tensor  # (B,K) row of the patch's top-left pixel
    left: torch.Tensor  # (B,K) column of the patch's top-left pixel


def _corner(g: torch.Generator, extent: int, side: torch.Tensor) -> torch.Tensor:
    """Zhang et al.'s centre-biased corner: int(clip(N((E-P+1)/2, ((E-P+1)/4)^2), 0, E-P)) for sides P (B,K)."""
    span = (extent - side + 1).double()
    z = torch.randn(side.shape, generator=g, dtype=torch.float64)
    return (span / 2 + z * span / 4).clamp(torch.zeros_like(span), (extent - side).double()).floor().long()


def draw_hints(g: torch.Generator, n: int, height: int, width: int, p: float = HINT_P,
               sides: tuple[int, int] = HINT_SIDES, count: int | None = None) -> HintDraws:
    """Draw the hints of `n` images of height x width from `g` (a CPU generator): how many, their sides, places.

    `count` None: a geometric number per image, P(k) = (1-p)^k p; else exactly `count` each. Sides are
    uniform in `sides` (inclusive), at most the image's shorter side.
    """
    if not 0 < p <= 1:
        raise ValueError(f"p is the geometric distribution's stop probability, in (0, 1]; got {p}")
    lo, hi = min(sides[0], height, width), min(sides[1], height, width)
    if lo < 1 or hi < lo:
        raise ValueError(f"patch sides {sides}: need 1 <= lowest <= highest")
    if count is None:
        u = 1.0 - torch.rand(n, generator=g, dtype=torch.float64)  # (0, 1]: P(k >= j) = P(u <= (1-p)^j) = (1-p)^j
        counts = (u.log() / math.log1p(-p)).floor().clamp(max=MAX_HINTS).long() if p < 1 else torch.zeros(n).long()
    else:
        counts = torch.full((n,), int(count), dtype=torch.long)
    k = int(counts.max()) if n else 0
    side = torch.randint(lo, hi + 1, (n, k), generator=g)
    top = _corner(g, height, side)
    left = _corner(g, width, side)
    return HintDraws(counts, side, top, left)


def draw_hints_per_photo(seeds: Sequence[int], height: int, width: int, p: float = HINT_P,
                         sides: tuple[int, int] = HINT_SIDES, count: int | None = None) -> HintDraws:
    """`draw_hints` for each image from its own seed: an image's hints do not depend on the rest of its batch."""
    draws = [draw_hints(torch.Generator().manual_seed(s), 1, height, width, p, sides, count) for s in seeds]
    k = max((int(d.count[0]) for d in draws), default=0)

    def stack(field: str, fill: int) -> torch.Tensor:  # (1,k_i) each -> (B,k); padded slots are never painted
        return torch.cat([F.pad(getattr(d, field), (0, k - d.side.shape[1]), value=fill) for d in draws]) if draws \
            else torch.zeros(0, k, dtype=torch.long)

    count = torch.cat([d.count for d in draws]) if draws else torch.zeros(0, dtype=torch.long)
    return HintDraws(count, stack("side", 1), stack("top", 0), stack("left", 0))


def paint_hints(ab: torch.Tensor, draws: HintDraws) -> torch.Tensor:
    """The hint map of `draws` on true ab (B,2,H,W) scaled by 1/110 -> (B,3,H,W) (`lab.encode_hints`), on ab's device.

    Each patch gets the mean true ab over itself; a later patch paints over an earlier one.
    """
    B, _, H, W = ab.shape
    dev = ab.device
    count, side, top, left = (t.to(dev) for t in (draws.count, draws.side, draws.top, draws.left))
    K = side.shape[1]
    colour = ab.new_zeros(B, K, 2)  # mean true ab of each patch
    for s in side.unique().tolist():
        pooled = F.avg_pool2d(ab, s, stride=1)  # (B,2,H-s+1,W-s+1): the mean over the s x s patch at each corner
        b, k = (side == s).nonzero(as_tuple=True)
        colour[b, k] = pooled[b, :, top[b, k], left[b, k]].to(colour.dtype)  # (n,2)
    rows, cols = torch.arange(H, device=dev), torch.arange(W, device=dev)
    hint_ab, mask = torch.zeros_like(ab), torch.zeros(B, 1, H, W, dtype=torch.bool, device=dev)
    for k in range(K):
        live = (k < count)[:, None]  # (B,1)
        in_rows = (rows >= top[:, k, None]) & (rows < top[:, k, None] + side[:, k, None]) & live  # (B,H)
        in_cols = (cols >= left[:, k, None]) & (cols < left[:, k, None] + side[:, k, None])  # (B,W)
        cover = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # (B,1,H,W)
        hint_ab = torch.where(cover, colour[:, k, :, None, None], hint_ab)
        mask |= cover
    return encode_hints(hint_ab, mask)


def photo_seeds(L: torch.Tensor, seed: int) -> list[int]:
    """A seed per photo from its own lightness (B,1,H,W): the same photo gets the same seed in any batch.

    L is sampled on a 16x16 grid and quantised to 256 levels before hashing, so float noise in the
    last bits does not change the seed.
    """
    B, _, H, W = L.shape
    ys = torch.linspace(0, H - 1, 16, device=L.device).round().long()
    xs = torch.linspace(0, W - 1, 16, device=L.device).round().long()
    grid = ((L[:, 0][:, ys][:, :, xs].float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    salt = f"{seed}:{H}x{W}".encode()
    return [int.from_bytes(hashlib.blake2b(g.tobytes() + salt, digest_size=8).digest(), "little") >> 1 for g in grid]


class SimulatedHints(ItemTransform):
    """Batch transform on the device: `(L, ab)` -> `(cat(L, hint map), ab)`, hints drawn after Zhang et al. 2017.

    `fixed` False (training): a new draw every batch from a generator seeded with `seed`. `fixed`
    True (validation): each photo's hints seeded from its own lightness (`photo_seeds`), the same
    every epoch, so the validation loss is comparable from epoch to epoch. `hint_transforms` makes
    the pair for a fastai DataLoaders' after_batch. `decodes` drops the hint map again.
    """

    order = LabSplit.order + 1  # on the (L, ab) pair LabSplit makes

    def __init__(self, seed: int = 0, p: float = HINT_P, sides: tuple[int, int] = HINT_SIDES, fixed: bool = False,
                 split_idx: int | None = None):
        super().__init__(split_idx=split_idx)
        self.seed, self.p, self.sides, self.fixed = seed, p, tuple(sides), fixed
        self.generator = torch.Generator().manual_seed(seed)

    def encodes(self, b):
        L, ab = b[:2]  # (B,1,H,W) in [-1,1], (B,2,H,W) ab/110
        B, _, H, W = ab.shape
        if self.fixed:
            draws = draw_hints_per_photo(photo_seeds(L, self.seed), H, W, self.p, self.sides)
        else:
            draws = draw_hints(self.generator, B, H, W, self.p, self.sides)
        x = generator_input(L, paint_hints(ab.float(), draws))  # (B,4,H,W)
        return (TensorImage(x), ab) + tuple(b[2:])

    def decodes(self, b):
        x = b[0]
        return (TensorImage(x[:, :1]),) + tuple(b[1:])


def hint_transforms(seed: int = 0, p: float = HINT_P, sides: tuple[int, int] = HINT_SIDES) -> list[SimulatedHints]:
    """After-batch transforms for hint training: fresh hints on training batches, fixed ones on validation batches."""
    return [SimulatedHints(seed, p, sides, fixed=False, split_idx=0),
            SimulatedHints(seed, p, sides, fixed=True, split_idx=1)]


def eval_side(size: int) -> int:
    """Side of an evaluation hint patch at `size` px: Zhang et al.'s 6 px at 256, scaled, at least 1."""
    return max(1, round(EVAL_SIDE * size / EVAL_SIZE))


# ----------------------------------------------------------------------------------- a user's hints


@dataclass(frozen=True)
class HintPoint:
    """One user hint: a colour at a point of the ORIGINAL photo; only the colour's ab counts."""

    x: float  # centre, in the photo's pixels from the left
    y: float  # centre, in the photo's pixels from the top
    rgb: tuple[int, int, int]  # the picked colour
    size: float | None = None  # patch side in the photo's pixels; None: DEFAULT_HINT_FRACTION of its longer side

    def ab(self) -> torch.Tensor:
        """The picked colour's (a, b) scaled by 1/110, (2,): its lightness is dropped."""
        rgb = torch.tensor(self.rgb, dtype=torch.float32).view(1, 3, 1, 1) / 255
        return rgb_to_lab_net(rgb)[1].view(2)


def read_hints_file(path: str | os.PathLike) -> list:
    """The entries of a hints JSON file (a list), or one clear error: missing, not JSON, not a list."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no hints file at {path}")
    try:
        entries = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"hints file {path} is not JSON ({e}); write a list such as "
                         '[{"x": 410, "y": 220, "color": "#b03020"}]') from None
    if not isinstance(entries, list):
        raise ValueError(f"hints file {path} holds a JSON {type(entries).__name__}, not a list of points such as "
                         '[{"x": 410, "y": 220, "color": "#b03020"}]')
    return entries


def _number(entry, key, i, n):
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"hint {i} of {n} {json.dumps(entry)}: {key} must be a number, got {json.dumps(value)}")
    return float(value)


def check_hints(entries: Sequence, photo_size: tuple[int, int]) -> list[HintPoint]:
    """Validate hint entries against a photo of `photo_size` (W,H); one ValueError naming the first bad entry.

    Each entry: {"x": .., "y": .. (pixels of the original photo, 0 <= x < W, 0 <= y < H), "color": "#rgb",
    "#rrggbb" or a CSS colour name (PIL.ImageColor), optional "size": patch side in pixels > 0}.
    """
    W, H = photo_size
    points, n = [], len(entries)
    for i, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise ValueError(f"hint {i} of {n} is {json.dumps(entry)}, not an object like "
                             '{"x": 410, "y": 220, "color": "#b03020"}')
        missing, unknown = {"x", "y", "color"} - entry.keys(), entry.keys() - HINT_KEYS
        if missing or unknown:
            what = "; ".join(([f"missing {', '.join(sorted(missing))}"] if missing else [])
                             + ([f"unknown key {', '.join(sorted(unknown))} (known: x, y, color, size)"] if unknown else []))
            raise ValueError(f"hint {i} of {n} {json.dumps(entry)}: {what}")
        x, y = _number(entry, "x", i, n), _number(entry, "y", i, n)
        if not (0 <= x < W and 0 <= y < H):
            raise ValueError(f"hint {i} of {n} {json.dumps(entry)}: the point ({x:g}, {y:g}) is outside the photo, "
                             f"which is {W}x{H} pixels (x in [0, {W}), y in [0, {H}))")
        colour = entry["color"]
        try:
            rgb = ImageColor.getrgb(colour)[:3] if isinstance(colour, str) else None
        except ValueError:
            rgb = None
        if rgb is None:
            raise ValueError(f"hint {i} of {n} {json.dumps(entry)}: colour {json.dumps(colour)} does not parse; "
                             "use #rgb, #rrggbb or a CSS colour name such as \"firebrick\"")
        size = _number(entry, "size", i, n) if "size" in entry else None
        if size is not None and size <= 0:
            raise ValueError(f"hint {i} of {n} {json.dumps(entry)}: size is the patch side in pixels, it must be > 0")
        points.append(HintPoint(x, y, tuple(rgb), size))
    return points


def user_hint_map(points: Sequence[HintPoint], photo_size: tuple[int, int], render_size: int,
                  device=None) -> torch.Tensor:
    """The hint map (1,3,S,S) of user hints on a photo of `photo_size` (W,H) squeezed to S = `render_size`.

    A hint's patch (side `size` photo pixels, or DEFAULT_HINT_FRACTION of the longer side) is mapped
    to the render square, at least 1 px a side; later hints paint over earlier ones.
    """
    W, H = photo_size
    S = render_size
    hint_ab = torch.zeros(1, 2, S, S, device=device)
    mask = torch.zeros(1, 1, S, S, device=device)
    for pt in points:
        side = pt.size if pt.size is not None else DEFAULT_HINT_FRACTION * max(W, H)
        w, h = (max(1, min(S, round(side * S / extent))) for extent in (W, H))  # patch in render pixels
        cx, cy = (pt.x + 0.5) * S / W, (pt.y + 0.5) * S / H  # the point's centre in render coordinates
        left = min(max(0, round(cx - w / 2)), S - w)  # the patch centred on the point, inside the square
        top = min(max(0, round(cy - h / 2)), S - h)
        hint_ab[0, :, top:top + h, left:left + w] = pt.ab().to(device)[:, None, None]
        mask[0, :, top:top + h, left:left + w] = 1
    return encode_hints(hint_ab, mask)


def hints_from_photo(photo: Image.Image, count: int, seed: int = 0, size: float | None = None) -> list[dict]:
    """`count` hints taken from a colour photo's own colours, as a hints-file list (a simulated user).

    Places as the simulated training hints (centre-biased, `draw_hints`), squares of `size` photo pixels
    (default DEFAULT_HINT_FRACTION of the longer side), each coloured with the photo's mean colour there.
    """
    photo = photo.convert("RGB")
    W, H = photo.size
    side = max(1, min(W, H, round(size if size is not None else DEFAULT_HINT_FRACTION * max(W, H))))
    d = draw_hints(torch.Generator().manual_seed(seed), 1, H, W, sides=(side, side), count=count)
    pixels = torch.from_numpy(np.array(photo)).float()  # (H,W,3), a writable copy
    hints = []
    for top, left in zip(d.top[0].tolist(), d.left[0].tolist()):
        r, g, b = pixels[top:top + side, left:left + side].mean(dim=(0, 1)).round().int().tolist()
        hints.append({"x": left + side // 2, "y": top + side // 2, "color": f"#{r:02x}{g:02x}{b:02x}", "size": side})
    return hints

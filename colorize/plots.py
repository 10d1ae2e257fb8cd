"""Galleries and curves; the only module that imports matplotlib. Functions return a Figure, callers show or save it."""

from __future__ import annotations

import textwrap
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from .lab import gray_rgb, lab_net_to_rgb, pixels_to_rgb, rgb_to_lab_net


def _as_array(img) -> np.ndarray:
    """PIL image, (3,H,W)/(1,H,W) tensor in [0,1], or (H,W[,3]) array -> (H,W,3) or (H,W) array for imshow."""
    if isinstance(img, Image.Image):
        return np.asarray(img)
    if isinstance(img, torch.Tensor):
        img = img.detach().float().cpu().clamp(0, 1)
        return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()
    return np.asarray(img)


def gallery(rows: Sequence[Sequence], columns: Sequence[str], row_labels: Sequence[str] | None = None,
            cell: float = 2.5, title: str | None = None):
    """A grid of images: one row per photo, one column per version (e.g. grayscale | prediction | original)."""
    n, m = len(rows), len(columns)
    fig, axes = plt.subplots(n, m, figsize=(cell * m, cell * n), squeeze=False)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            a = _as_array(img)
            axes[i, j].imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1 if a.dtype != np.uint8 else 255)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(columns[j])
        if row_labels:
            axes[i, 0].set_ylabel(row_labels[i], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def photo_grid(images: Sequence, titles: Sequence[str] | None = None, ncols: int = 4, cell: float = 2.5,
               title: str | None = None):
    """Photos in rows of `ncols`, each with an optional caption (e.g. its file name and size)."""
    ncols = max(1, min(ncols, len(images)))
    nrows = max(1, -(-len(images) // ncols))  # ceil
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            a = _as_array(images[i])
            ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=255 if a.dtype == np.uint8 else 1)
            if titles:
                ax.set_title(titles[i], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def batch_gallery(L: torch.Tensor, predictions: dict[str, torch.Tensor], ab_true: torch.Tensor | None = None,
                  max_rows: int = 8, cell: float = 2.5, title: str | None = None):
    """Gallery of a batch: L (B,1,H,W) in [-1,1], each prediction and the truth as ab (B,2,H,W) scaled by 1/110."""
    k = min(max_rows, L.shape[0])
    cols = {"grayscale": list(gray_rgb(L[:k]))}  # (k,3,H,W) in [0,1]
    for name, ab in predictions.items():
        cols[name] = list(lab_net_to_rgb(L[:k], ab[:k]))
    if ab_true is not None:
        cols["original"] = list(lab_net_to_rgb(L[:k], ab_true[:k]))
    rows = [[cols[c][i] for c in cols] for i in range(k)]
    return gallery(rows, list(cols), cell=cell, title=title)


def lab_split(img: Image.Image, cell: float = 3.0):
    """One photo shown as the model sees it: RGB, the L channel (input) and the a and b channels (target)."""
    rgb = pixels_to_rgb(img.convert("RGB"))  # (1,3,H,W) in [0,1]
    L, ab = rgb_to_lab_net(rgb)  # (1,1,H,W), (1,2,H,W)
    panels = [("photo (RGB)", _as_array(rgb[0]), None), ("L: lightness (input)", _as_array(gray_rgb(L)[0]), None),
              ("a: green - red (target)", ab[0, 0].numpy(), "RdYlGn_r"), ("b: blue - yellow (target)", ab[0, 1].numpy(), "YlGnBu_r")]
    fig, axes = plt.subplots(1, 4, figsize=(cell * 4, cell))
    for ax, (name, a, cmap) in zip(axes, panels):
        ax.imshow(a, cmap=cmap, **({"vmin": -0.5, "vmax": 0.5} if name[0] in "ab" else {}))
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def history_curves(history, columns: Sequence[str] | None = None, title: str | None = None):
    """Loss/metric curves from a history table (a pandas DataFrame read from history.csv), one panel per column."""
    columns = list(columns or [c for c in history.columns if c not in ("epoch", "time")])
    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 2.8), squeeze=False)
    for ax, c in zip(axes[0], columns):
        ax.plot(history["epoch"] + 1, history[c], marker="o")
        ax.set_title(c, fontsize=9)
        ax.set_xlabel("epoch")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def captioned_gallery(rows: Sequence[Sequence], columns: Sequence[str], caption: str,
                      row_labels: Sequence[str] | None = None, cell: float = 2.5, title: str | None = None):
    """`gallery` with a caption under the panels (e.g. which files the rows are); save with bbox_inches="tight"."""
    fig = gallery(rows, columns, row_labels=row_labels, cell=cell, title=title)
    width = max(40, int(fig.get_figwidth() * 14))  # characters per line at fontsize 8
    fig.text(0.5, 0.0, textwrap.fill(caption, width), ha="center", va="top", fontsize=8)
    return fig


def save_figure(fig, path, dpi: int = 100):
    """Write a Figure (captions outside the axes included) and close it so long runs don't pile up figures."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def before_after(before: Image.Image, after: Image.Image, position: float, divider: int = 2) -> Image.Image:
    """A before/after slider's frame: `before` left of `position` (a fraction of the width), `after` right, a line between."""
    if before.size != after.size:
        raise ValueError(f"before is {before.size} but after is {after.size}: resize one to the other's size first")
    if not 0.0 <= position <= 1.0:
        raise ValueError(f"position is a fraction of the width in [0, 1], got {position}")
    frame = after.convert("RGB")  # a copy, also for an RGB `after`
    x = round(position * frame.width)
    frame.paste(before.convert("RGB").crop((0, 0, x, frame.height)), (0, 0))
    frame.paste((255, 255, 255), (max(0, x - divider // 2), 0, min(frame.width, x + (divider + 1) // 2), frame.height))
    return frame


def hint_curve(curve: dict, title: str | None = None):
    """PSNR RGB and ab against the number of colour hints (the "hint_curve" of an evaluation's results.json).

    Hint models are lines with markers; automatic models, which ignore hints, flat dashed lines at their
    automatic score. The x axis is linear up to 1 hint and logarithmic above, so 0 hints has its place.
    """
    counts = curve["counts"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, (key, label) in zip(axes, (("psnr_rgb", "PSNR RGB (dB)"), ("psnr_ab", "PSNR ab (dB)"))):
        for name, row in curve["models"].items():
            if row["takes_hints"]:
                ax.plot(counts, row[key], marker="o", label=name)
            else:
                ax.plot([counts[0], counts[-1]], [row["automatic"][key]] * 2, linestyle="--",
                        label=f"{name} (automatic: ignores hints)")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.set_xlabel("colour hints per photo")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def hints_picture(L: torch.Tensor, hints: torch.Tensor) -> torch.Tensor:
    """The hint map drawn on its photo: the hint colours (with the photo's L) where hinted, the gray photo
    dimmed elsewhere. L (B,1,H,W) in [-1,1], hints (B,3,H,W) as `lab.encode_hints` -> RGB (B,3,H,W) in [0,1]."""
    mask = hints[:, 2:3]
    gray = lab_net_to_rgb(L, torch.zeros_like(hints[:, :2])) * 0.6  # dimmed so the patches stand out
    return torch.where(mask > 0, lab_net_to_rgb(L, hints[:, :2]), gray)


def hint_gallery(L: torch.Tensor, hints: torch.Tensor, predictions: dict[str, torch.Tensor],
                 ab_true: torch.Tensor | None = None, max_rows: int = 4, cell: float = 2.5, title: str | None = None):
    """What a hint generator sees and makes, one row per photo: grayscale L, the hints on it, the mask,
    each prediction (ab (B,2,H,W) scaled by 1/110) and the original."""
    k = min(max_rows, L.shape[0])
    cols = {"grayscale (input)": list((L[:k] + 1) / 2), "hints (a, b)": list(hints_picture(L[:k], hints[:k])),
            "mask": list(hints[:k, 2:3])}
    cols.update({name: list(lab_net_to_rgb(L[:k], ab[:k])) for name, ab in predictions.items()})
    if ab_true is not None:
        cols["original"] = list(lab_net_to_rgb(L[:k], ab_true[:k]))
    return gallery([[cols[c][i] for c in cols] for i in range(k)], list(cols), cell=cell, title=title)


def hint_counts(counts: Sequence[int], p: float, title: str | None = None):
    """Histogram of the number of hints per image against the geometric P(k) = (1-p)^k p it was drawn from."""
    counts = np.asarray(counts)
    k = np.arange(0, max(int(counts.max()), int(3 / p)) + 1)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(k, np.bincount(counts, minlength=len(k))[: len(k)] / len(counts), label=f"drawn ({len(counts)} images)")
    ax.plot(k, p * (1 - p) ** k, color="C1", marker=".", label=f"geometric, p = {p:g}: mean {(1 - p) / p:g}")
    ax.set_xlabel("hints per image")
    ax.set_ylabel("fraction of images")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def ab_over_time(series: dict[str, np.ndarray], title: str | None = "mean colour of each frame"):
    """Each frame's mean a and mean b (Lab units) over time, one line per method: flicker shows as jitter.

    `series`: {method: (T,2) array of (mean a, mean b)}.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2), sharex=True)
    for name, ab in series.items():
        for k, ax in enumerate(axes):
            ax.plot(np.asarray(ab)[:, k], label=name, lw=1.2)
    for ax, channel in zip(axes, "ab"):
        ax.set_xlabel("frame")
        ax.set_ylabel(f"mean {channel}")
    axes[1].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def flow_picture(flow: np.ndarray) -> np.ndarray:
    """Optical flow (H,W,2) in pixels -> (H,W,3) uint8, the usual colour wheel: hue = direction, value = speed."""
    import matplotlib.colors as mcolors

    dx, dy = flow[..., 0], flow[..., 1]
    speed = np.hypot(dx, dy)
    hsv = np.stack([(np.arctan2(dy, dx) / (2 * np.pi)) % 1, np.ones_like(speed),
                    speed / max(float(speed.max()), 1e-6)], axis=-1)
    return (mcolors.hsv_to_rgb(hsv) * 255).round().astype(np.uint8)


def flow_and_mask(previous: np.ndarray, current: np.ndarray, flow: np.ndarray, trusted: np.ndarray):
    """Two frames, the flow between them (colour wheel) and the mask of pixels whose flow is trusted (white)."""
    return gallery([[previous, current, flow_picture(flow), trusted.astype(np.float32)]],
                   ["frame t-1", "frame t", "flow t -> t-1", "trusted (not occluded)"], cell=3.0)

"""Galleries and curves; the only module that imports matplotlib. Functions return a Figure, callers show or save it."""

from __future__ import annotations

import math
import textwrap
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.ticker import MaxNLocator
from PIL import Image

from .lab import AB_SCALE, L_SCALE, gray_rgb, lab_net_to_rgb, pixels_to_rgb, rgb_to_lab_net


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
                  max_rows: int = 8, cell: float = 2.5, title: str | None = None, hints: torch.Tensor | None = None,
                  mask: bool = False):
    """Gallery of a batch, in every gallery's column order: grayscale (input) | hints | each model | original.

    L (B,1,H,W) in [-1,1]; each prediction and the truth ab (B,2,H,W) scaled by 1/110; hints (B,3,H,W) as
    `lab.encode_hints` (a hint model's input besides L), drawn on the gray photo when given, and their mask
    in a column of its own if `mask`.
    """
    k = min(max_rows, L.shape[0])
    cols = {"grayscale (input)": list(gray_rgb(L[:k]))}  # (k,3,H,W) in [0,1]
    if hints is not None:
        cols["hints (input)"] = list(hints_picture(L[:k], hints[:k]))
        if mask:
            cols["mask"] = list(hints[:k, 2:3])
    for name, ab in predictions.items():
        cols[name] = list(lab_net_to_rgb(L[:k], ab[:k]))
    if ab_true is not None:
        cols["original"] = list(lab_net_to_rgb(L[:k], ab_true[:k]))
    rows = [[cols[c][i] for c in cols] for i in range(k)]
    return gallery(rows, list(cols), cell=cell, title=title)


LAB_SPLIT_L = 70.0  # the lightness (Lab units) at which lab_split draws a and b as the colours they are


def ab_colormap(channel: int, extent: float, lightness: float = LAB_SPLIT_L, n: int = 256) -> ListedColormap:
    """The colours of a (channel 0) or b (channel 1) from -extent to +extent Lab units, the other one 0, at a
    fixed lightness: gray in the middle (a = 0 or b = 0 is no colour), green-red for a, blue-yellow for b."""
    values = torch.linspace(-extent, extent, n) / AB_SCALE  # (n,) ab/110
    ab = torch.zeros(1, 2, 1, n)
    ab[0, channel, 0] = values
    L = torch.full((1, 1, 1, n), lightness / L_SCALE - 1.0)  # (1,1,1,n) in [-1,1]
    rgb = lab_net_to_rgb(L, ab)[0, :, 0].T.numpy()  # (n,3) in [0,1]
    return ListedColormap(rgb, name="ab"[channel])


def lab_split(img: Image.Image, cell: float = 3.0):
    """One photo as the model sees it: RGB, the L channel (input), and a and b (target) in Lab units.

    a and b are drawn as the colours they are at a fixed lightness (gray where they are 0), on one symmetric
    scale with a colour bar, so a = 0 and b = 0 look neutral and the two channels compare directly.
    """
    rgb = pixels_to_rgb(img.convert("RGB"))  # (1,3,H,W) in [0,1]
    L, ab = rgb_to_lab_net(rgb)  # (1,1,H,W), (1,2,H,W)
    ab_lab = (ab[0] * AB_SCALE).numpy()  # (2,H,W) in Lab units
    extent = max(10.0, 10.0 * math.ceil(np.percentile(np.abs(ab_lab), 99.5) / 10))  # symmetric: 0 in the middle
    fig, axes = plt.subplots(1, 4, figsize=(cell * 4.4, cell))
    axes[0].imshow(_as_array(rgb[0]))
    axes[0].set_title("photo (RGB)", fontsize=9)
    shown = axes[1].imshow((L[0, 0].numpy() + 1.0) * L_SCALE, cmap="gray", vmin=0, vmax=100)
    axes[1].set_title("L: lightness (input)", fontsize=9)
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04, label="L (0 black, 100 white)")
    for channel, (ax, name) in enumerate(zip(axes[2:], ("a: green (-) to red (+)", "b: blue (-) to yellow (+)"))):
        shown = ax.imshow(ab_lab[channel], cmap=ab_colormap(channel, extent), vmin=-extent, vmax=extent)
        ax.set_title(f"{name} (target)", fontsize=9)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label=f"{'ab'[channel]} (Lab units; 0: no colour)")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


# history.csv columns drawn together on one panel: (title, y label, {column: legend}, reference line, y range).
# The critic's panels have fixed ranges so a wiggle of 0.004 around ln 2 does not fill the axis like a climb.
LOSS_PANELS = (
    ("L1 loss", "mean |ab error| / 110", {"train_loss": "train", "g_l1": "train (G's L1 term)", "valid_loss": "valid"},
     None, None),
    ("generator's adversarial loss", "BCE (nats)", {"g_adv": "train"}, None, (0, None)),
    ("critic's loss", "BCE (nats)", {"d_real": "on real pairs", "d_fake": "on generated pairs"},
     (math.log(2), "ln 2: guessing"), (0, None)),
    ("critic's accuracy", "fraction of patches right", {"d_acc_real": "on real pairs", "d_acc_fake": "on generated pairs"},
     (0.5, "0.5: guessing"), (0, 1.02)),
    ("validation PSNR", "dB (higher is better)", {"psnr": "valid"}, None, None),
)


def _loss_panels(columns: Sequence[str]) -> list[tuple]:
    """The panels of LOSS_PANELS a history has, then one panel per other column."""
    gan = "g_l1" in columns  # a GAN's train_loss is G's whole objective, not an L1: it gets a panel of its own
    panels = [(t, y, {c: label for c, label in curves.items() if c in columns and not (gan and c == "train_loss")},
               ref, ylim) for t, y, curves, ref, ylim in LOSS_PANELS]
    panels = [p for p in panels if p[2]]
    drawn = {c for p in panels for c in p[2]}
    objective = ("generator's objective", "adversarial + weighted L1")
    return panels + [(*(objective if gan and c == "train_loss" else (c, c)), {c: "train"}, None, None)
                     for c in columns if c not in drawn]


def history_curves(history, title: str | None = None, per_row: int = 3):
    """A run's history.csv (a pandas DataFrame) as curves that read: related losses on shared axes (train with
    valid; the critic's losses with an ln 2 line, its accuracies with a 0.5 line), whole-epoch ticks, units."""
    numeric = [c for c in history.columns if c not in ("epoch", "time") and np.issubdtype(history[c].dtype, np.number)]
    panels = _loss_panels(numeric)
    ncols = min(per_row, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    epochs = history["epoch"] + 1  # history.csv counts from 0; the first epoch is epoch 1
    for ax, (name, ylabel, curves, ref, ylim) in zip(axes.flat, panels):
        for column, label in curves.items():
            ax.plot(epochs, history[column], marker="o", label=label)
        if ref is not None:
            ax.axhline(ref[0], color="gray", linestyle="--", linewidth=1, label=ref[1])
        if ylim is not None:
            top = max(1.0, float(np.nanmax(history[list(curves)].to_numpy())) * 1.05)
            ax.set_ylim(ylim[0], ylim[1] if ylim[1] is not None else top)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if len(curves) > 1 or ref is not None:
            ax.legend(fontsize=8)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
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

    One line per method: solid for a model that reads hints, dashed for an automatic model whose colours the hints
    correct along lightness (and the no-network row). The x axis is linear up to 1 hint and logarithmic above,
    so 0 hints has its place.
    """
    counts = curve["counts"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, (key, label) in zip(axes, (("psnr_rgb", "PSNR RGB (dB)"), ("psnr_ab", "PSNR ab (dB)"))):
        for name, row in curve["models"].items():
            ax.plot(counts, row[key], marker="o", linestyle="-" if row["takes_hints"] else "--", label=name)
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
    gray = gray_rgb(L) * 0.6  # dimmed so the patches stand out
    return torch.where(mask > 0, lab_net_to_rgb(L, hints[:, :2]), gray)


def hint_gallery(L: torch.Tensor, hints: torch.Tensor, predictions: dict[str, torch.Tensor],
                 ab_true: torch.Tensor | None = None, max_rows: int = 4, cell: float = 2.5, title: str | None = None):
    """What a hint generator sees and makes (`batch_gallery` with its hints and their mask): grayscale (input) |
    hints (input) | mask | each prediction | original."""
    return batch_gallery(L, predictions, ab_true, max_rows=max_rows, cell=cell, title=title, hints=hints, mask=True)


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

"""Guiding a model by hand: one photo's hints as a frozen session value, and the pure steps that change it.

A `GuideSession` holds the decoded photo, the `Rendering`, the model, the photo's lightness at the render size,
the model's own prediction there (no hints), the hints (hints-file entries, in the photo's pixels) and the
colorized result at full resolution. Each step (`place`, `select`, `move`, `recolour`, `delete`, `touch`, `undo`,
`clear`, `load`, `rerender`) returns a new session and runs the network only where the result depends on it; one
hint is the selected one (the last placed, or the one `select` picked), which `recolour`, `move` and `delete` act
on, and `undo` takes back the last step that changed the hints. An automatic model's output
does not depend on the hints, so a step is propagation and the full-resolution composition alone
(`inference.colorize_batch`'s `known`); a hint model runs once per step. The app's Guide tab (`app.py`) and
the notebook widget (`widgets.HintPicker`) are thin views over these steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageColor, ImageDraw
from torch import nn

from .data import to_rgb
from .hintmaps import check_hints, user_hint_map
from .inference import Rendering, check_eval, colorize_batch, compose, model_device, render_lightness
from .swatches import Palette, lightness_at, suggest


@dataclass(frozen=True, eq=False)
class GuideSession:
    """One photo being guided: what the steps below read, and the result of its hints."""

    model: nn.Module  # in eval mode
    rendering: Rendering
    pixels: np.ndarray  # (H,W,3) uint8, the photo as read (its lightness is kept; its colour is not used)
    alpha: Image.Image | None  # the photo's transparency, put back on `image()`
    L: torch.Tensor  # (1,1,S,S) in [-1,1]: the photo at the render size, as the model sees it
    prediction: torch.Tensor  # (1,2,S,S) ab/110: the model's own colours, without hints
    plain: np.ndarray  # (H,W,3) uint8: the model's own colorization at full resolution
    hints: tuple[dict, ...] = ()  # hints-file entries {"x", "y", "color", "size"} in the photo's pixels
    result: np.ndarray | None = None  # (H,W,3) uint8: the colorization with `hints`
    chosen: int | None = None  # the selected hint's index in `hints`; None: the last
    history: tuple[tuple[tuple[dict, ...], int | None], ...] = ()  # (hints, chosen) before each step, for `undo`

    @property
    def selected(self) -> int | None:
        """The index of the hint that `recolour`, `move` and `delete` act on (the last placed, unless one was
        selected), or None without hints."""
        if not self.hints:
            return None
        return self.chosen if self.chosen is not None and self.chosen < len(self.hints) else len(self.hints) - 1

    @property
    def size(self) -> tuple[int, int]:
        """The photo's (W,H)."""
        return self.pixels.shape[1], self.pixels.shape[0]

    def image(self) -> Image.Image:
        """The result as a PIL image at the photo's size (RGBA where the photo has transparency)."""
        out = Image.fromarray(self.result, "RGB")
        if self.alpha is not None:
            out.putalpha(self.alpha)
        return out

    def colour_at(self, x: int, y: int, plain: bool = False) -> str:
        """The result's colour (or the model's own, `plain`) at pixel (x, y), as "#rrggbb"."""
        r, g, b = (self.plain if plain else self.result)[int(y), int(x)]
        return f"#{r:02x}{g:02x}{b:02x}"

    def palette(self) -> Palette | None:
        """The suggested colours for the selected hint (None without one): the model's own colour at its point, the
        colours used, and every colour at the point's lightness (over the hint's square)."""
        if not self.hints:
            return None
        hint = self.hints[self.selected]
        x, y, side = int(hint["x"]), int(hint["y"]), int(hint.get("size", 1))
        return suggest(self.colour_at(x, y, plain=True), [h["color"] for h in self.hints],
                       lightness_at(Image.fromarray(self.pixels), x, y, radius=side // 2))

    def marked(self) -> np.ndarray:
        """The result (H,W,3) uint8 with a ring in each hint's colour around its point; the selected hint's is
        thicker."""
        view = Image.fromarray(self.result, "RGB")
        draw = ImageDraw.Draw(view)
        r = ring_radius(self.size)
        for i, h in enumerate(self.hints):
            box = [h["x"] - r, h["y"] - r, h["x"] + r, h["y"] + r]
            width = max(1, r // (2 if i == self.selected else 3))
            draw.ellipse(box, outline="white", width=max(2, width) + 2)
            draw.ellipse(box, outline=ImageColor.getrgb(h["color"])[:3], width=width)
        return np.asarray(view)


def ring_radius(photo_size: tuple[int, int]) -> int:
    """The radius of a hint's ring on the view, in photo pixels: visible on a phone photo and a 12 MP one alike."""
    return max(4, round(max(photo_size) / 80))


def start(model: nn.Module, photo: Image.Image, rendering: Rendering = Rendering(),
          hints: Sequence[dict] = ()) -> GuideSession:
    """A session on `photo` (any PIL mode; decoded once, here): the model runs once for its own colours, and once
    more if it reads `hints`."""
    alpha = photo.convert("RGBA").getchannel("A") if photo.has_transparency_data else None
    return _begin(model, np.asarray(to_rgb(photo)), alpha, rendering, hints)


def _begin(model: nn.Module, pixels: np.ndarray, alpha: Image.Image | None, rendering: Rendering,
           hints: Sequence[dict]) -> GuideSession:
    check_eval(model)
    L = render_lightness([pixels], rendering.render_size, model_device(model))  # (1,1,S,S)
    prediction = colorize_batch(model, L, None, rendering)  # (1,2,S,S)
    plain = compose(pixels, prediction)
    session = GuideSession(model, rendering, pixels, alpha, L, prediction, plain, (), plain)
    return _coloured(session, hints) if hints else session


def _coloured(session: GuideSession, hints: Sequence[dict], chosen: int | None = None) -> GuideSession:
    """The session with `hints` and their colorization, the history as it was; a bad entry is a ValueError."""
    hints = tuple(dict(h) for h in hints)
    points = check_hints(hints, session.size)
    if not points:
        return dataclasses.replace(session, hints=(), result=session.plain, chosen=None)
    s = session.rendering.render_size
    hint_map = user_hint_map(points, session.size, s, session.L.device)  # (1,3,S,S)
    ab = colorize_batch(session.model, session.L, hint_map, session.rendering, known=session.prediction)
    return dataclasses.replace(session, hints=hints, result=compose(session.pixels, ab), chosen=chosen)


def _changed(session: GuideSession, hints: Sequence[dict], chosen: int | None = None) -> GuideSession:
    """A step that changes the hints: as `_coloured`, the hints before it kept for `undo`."""
    after = _coloured(session, hints, chosen)
    return dataclasses.replace(after, history=(*session.history, (session.hints, session.chosen)))


def load(session: GuideSession, hints: Sequence[dict]) -> GuideSession:
    """The session with `hints` (a hints file's entries) instead of its own; a bad entry is a ValueError naming it."""
    return _changed(session, hints)


def hint_side(photo_size: tuple[int, int], hint_size: float, render_size: int) -> int:
    """A hint's side in the photo's pixels for `hint_size` px at the render size (the photo's longer side)."""
    return max(1, round(float(hint_size) * max(photo_size) / int(render_size)))


def place(session: GuideSession, x: int, y: int, side: int, colour: str | None = None) -> GuideSession:
    """A hint at (x, y) (photo pixels), `side` pixels a side, in `colour` (default: the current result's there); it
    is the selected one."""
    colour = colour or session.colour_at(x, y)
    return _changed(session, [*session.hints, {"x": int(x), "y": int(y), "color": colour, "size": int(side)}])


def nearest(session: GuideSession, x: float, y: float, radius: float | None = None) -> int | None:
    """The index of the hint nearest (x, y) (photo pixels) within `radius` (default: twice its ring's radius, or
    half its square's side if that is larger), or None."""
    best, index = None, None
    for i, h in enumerate(session.hints):
        reach = radius if radius is not None else max(2 * ring_radius(session.size), (h.get("size") or 0) / 2)
        d = ((h["x"] - x) ** 2 + (h["y"] - y) ** 2) ** 0.5
        if d <= reach and (best is None or d < best):
            best, index = d, i
    return index


def select(session: GuideSession, x: float, y: float, radius: float | None = None) -> GuideSession:
    """The hint nearest (x, y) selected (`nearest`); a ValueError where no hint is that near."""
    index = nearest(session, x, y, radius)
    if index is None:
        raise ValueError("no hint there: click on a hint's ring to select it")
    return dataclasses.replace(session, chosen=index)


def _check_selected(session: GuideSession, what: str) -> int:
    if session.selected is None:
        raise ValueError(f"no hint to {what} yet: click on the result to place one")
    return session.selected


def move(session: GuideSession, x: int, y: int) -> GuideSession:
    """The selected hint moved to (x, y) (photo pixels), its colour and size kept; it stays selected."""
    i = _check_selected(session, "move")
    hints = list(session.hints)
    hints[i] = {**hints[i], "x": int(x), "y": int(y)}
    return _changed(session, hints, i)


def recolour(session: GuideSession, colour: str) -> GuideSession:
    """The selected hint in `colour`."""
    i = _check_selected(session, "colour")
    hints = list(session.hints)
    hints[i] = {**hints[i], "color": colour}
    return _changed(session, hints, session.chosen)


def delete(session: GuideSession) -> GuideSession:
    """The selected hint removed; the last one left is selected."""
    i = _check_selected(session, "delete")
    return _changed(session, [h for k, h in enumerate(session.hints) if k != i])


def touch(session: GuideSession, x: int, y: int) -> GuideSession:
    """A click in select-and-move mode: on another hint's ring, that hint selected; elsewhere, the selected hint
    moved there."""
    index = nearest(session, x, y)
    if index is not None and index != session.selected:
        return dataclasses.replace(session, chosen=index)
    return move(session, x, y)


def undo(session: GuideSession) -> GuideSession:
    """The hints (and selection) as they were before the last step that changed them (nothing to undo: the same
    session)."""
    if not session.history:
        return session
    hints, chosen = session.history[-1]
    return dataclasses.replace(_coloured(session, hints, chosen), history=session.history[:-1])


def clear(session: GuideSession) -> GuideSession:
    """No hints: the model's own colours."""
    return _changed(session, ())


def rerender(session: GuideSession, rendering: Rendering, model: nn.Module | None = None) -> GuideSession:
    """The same photo and hints under another rendering or model: the network runs again only for another model
    or render size (another propagation or reach reuses the prediction)."""
    model = model if model is not None else session.model
    if model is not session.model or rendering.render_size != session.rendering.render_size:
        fresh = _begin(model, session.pixels, session.alpha, rendering, session.hints)
        return dataclasses.replace(fresh, chosen=session.chosen, history=session.history)
    return _coloured(dataclasses.replace(session, rendering=rendering), session.hints, session.chosen)

"""Notebook widgets (ipywidgets: Jupyter and Colab): place colour hints on a photo and see a model follow them."""

from __future__ import annotations

import io

import ipywidgets as w
from PIL import Image, ImageColor, ImageDraw, ImageOps
from torch import nn

from . import guide
from .hintmaps import DEFAULT_HINT_FRACTION
from .inference import Rendering, rendering_of

VIEW_PX = 512  # the longer side of the picture the widget shows; the result itself keeps the photo's size


class HintPicker:
    """Place colour hints on a photo (x, y sliders in the photo's pixels, a colour picker, a patch size) and see
    any generator's colorization follow them (the steps of `guide`, as the app's Guide tab takes them); `hints` is
    the list `colorize apply --hints` reads.

    `add`, `undo` and `clear` are buttons; a slider move only moves the cross on the shown picture, a
    button recolorizes. In code: set `x.value`, `y.value`, `colour.value`, then `add.click()`, or `place(hint)`.
    `result` is the latest colorization at the photo's full size. `rendering` as for `inference.colorize_image`
    (a `Rendering`, a render size, or its fields as keywords).
    """

    def __init__(self, model: nn.Module, photo: Image.Image, rendering: Rendering | int | None = None,
                 colour: str = "#b03020", **settings):
        self.model, self.photo = model, photo.convert("RGB")
        self.session = guide.start(model, self.photo, rendering_of(rendering, **settings))
        W, H = self.photo.size
        self.x = w.IntSlider(value=W // 2, min=0, max=W - 1, description="x (px)", continuous_update=False)
        self.y = w.IntSlider(value=H // 2, min=0, max=H - 1, description="y (px)", continuous_update=False)
        default = max(1, round(DEFAULT_HINT_FRACTION * max(W, H)))
        self.size = w.IntSlider(value=default, min=1, max=max(2, max(W, H) // 4), description="size (px)")
        self.colour = w.ColorPicker(value=colour, description="colour")
        self.add, self.undo, self.clear = (w.Button(description=d) for d in ("add hint", "undo", "clear"))
        self.view = w.Image(format="png")
        self.status = w.Label()
        self.add.on_click(lambda _: self._step(guide.place, self.x.value, self.y.value, self.size.value,
                                               self.colour.value))
        self.undo.on_click(lambda _: self._step(guide.undo))
        self.clear.on_click(lambda _: self._step(guide.clear))
        for control in (self.x, self.y, self.size, self.colour):
            control.observe(lambda _: self._draw(), names="value")
        self.widget = w.VBox([w.HBox([self.x, self.y]), w.HBox([self.colour, self.size]),
                              w.HBox([self.add, self.undo, self.clear, self.status]), self.view])
        self._step(lambda session: session)

    def place(self, hint: dict) -> None:
        """Add a hint (an entry of a hints file) as a user would: set the sliders and the colour, press "add hint"."""
        W, H = self.photo.size
        default = max(1, round(DEFAULT_HINT_FRACTION * max(W, H)))
        self.x.value, self.y.value, self.colour.value = round(hint["x"]), round(hint["y"]), hint["color"]
        self.size.value = round(hint.get("size", default))
        self.add.click()

    @property
    def hints(self) -> list[dict]:
        return list(self.session.hints)

    @property
    def result(self) -> Image.Image:
        return self.session.image()

    def _step(self, step, *args) -> None:
        """Take one of `guide`'s steps on the session and redraw."""
        self.session = step(self.session, *args)
        self.status.value = f"{len(self.session.hints)} hint(s)"
        self._draw()

    def _draw(self) -> None:
        """The result, screen-sized, with a square around each hint (in its colour) and a cross at the cursor."""
        scale = min(1.0, VIEW_PX / max(self.photo.size))
        view = ImageOps.scale(self.result.convert("RGB"), scale)
        draw = ImageDraw.Draw(view)
        for h in self.hints:
            r = max(2, h["size"] * scale / 2)
            cx, cy = h["x"] * scale, h["y"] * scale
            draw.rectangle([cx - r, cy - r, cx + r, cy + r], outline="white", width=3)
            draw.rectangle([cx - r, cy - r, cx + r, cy + r], outline=ImageColor.getrgb(h["color"]), width=1)
        cx, cy = self.x.value * scale, self.y.value * scale
        for colour, width in (("black", 3), ("white", 1)):
            draw.line([cx - 8, cy, cx + 8, cy], fill=colour, width=width)
            draw.line([cx, cy - 8, cx, cy + 8], fill=colour, width=width)
        buffer = io.BytesIO()
        view.save(buffer, format="png")
        self.view.value = buffer.getvalue()

"""`colorize app`: a local Gradio page, and API, that colorizes uploaded photos with one or more generators.

Offline and private by default: `launch` binds to 127.0.0.1, makes no share link, sends no analytics,
and serves a theme in the system's fonts, so the page fetches nothing from the internet. Requests
queue one at a time. Uploads and results live in Gradio's temporary folder and are deleted an hour
after they are made, and when the server stops.

Endpoints (for `gradio_client.Client(url).predict(..., api_name=...)`):
    /colorize       photo file [, model name, render size] -> the colorized PNG at the photo's size
    /colorize_many  list of photo files [, model name, render size] -> gallery of PNGs, one zip of them
    /guide          photo file, hints as a JSON string (a hints file's text) [, model, render size, propagation,
                    reach] -> the PNG
    /colorize_video video file [, model name, render size, temporal] -> the colorized MP4 (clips up to
                    MAX_VIDEO_SECONDS; longer ones: `colorize apply`)

The Guide tab works with every model, on the photo uploaded in the Colorize tab: a click on the result
places a hint there; suggested colours (the model's own there, those used, every colour that exists at
that point's lightness) and a colour picker recolour it; a hint-size, a reach and a propagation control
shape how it spreads; the hints download as the file `colorize apply --hints` reads, and such a file can
be loaded.
"""

from __future__ import annotations

import html
import json
import logging
import os
import uuid
import zipfile
from functools import partial
from pathlib import Path
from typing import Mapping, Sequence

import gradio as gr
from PIL import Image, ImageColor, ImageDraw
from torch import nn

from .data import IMAGE_EXTS, BadImageError, load_rgb
from .config import PROPAGATIONS
from .device import inference_device
from .hintmaps import check_hints, read_hints_file
from .inference import (PNG_COMPRESS_LEVEL, REACH, RENDER_SIZE, RENDER_SIZES, check_render_size, colorize_files,
                        colorize_image)
from .models import load_generator, model_name
from .swatches import Palette, lightness_at, suggest
from .temporal import DEFAULT_TEMPORAL
from .video import VIDEO_EXTS, BadVideoError, colorize_video, probe

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"  # this machine only; --host 0.0.0.0 opens it to the network
DEFAULT_PORT = 7860  # Gradio's usual port
CACHE_CLEANUP = (3600, 3600)  # Gradio's delete_cache: every hour, delete uploads and results over an hour old
SANS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace"]
MAX_VIDEO_SECONDS = 20  # a longer clip is the CLI's: on a CPU a 256 px model colorizes a few frames a second
SHARE_WARNING = ("--share: Gradio makes a public link to this app through its relay server; anyone with the link "
                 "can use the app, run your models and see what is uploaded until you stop it")


def offline_theme() -> gr.themes.Base:
    """Gradio's default look in the system's fonts: the page loads no web font."""
    return gr.themes.Default(font=SANS, font_mono=MONO)


def load_models(checkpoints: Sequence[str | os.PathLike], device=None) -> dict[str, nn.Module]:
    """Generators by name (run folder/file stem, as `colorize evaluate` names them), loaded in eval mode."""
    names = [model_name(c) for c in checkpoints]
    if len(set(names)) != len(names):
        raise ValueError(f"two checkpoints share a name ({', '.join(names)}); pass build_app a dict "
                         "{name: model} to tell them apart")
    return {name: load_generator(c, device=inference_device(device)) for name, c in zip(names, checkpoints)}


def _results_dir() -> Path:
    """A new folder for one request's results inside Gradio's cache, which `delete_cache` empties."""
    path = Path(gr.utils.get_upload_folder()) / "colorize" / uuid.uuid4().hex
    path.mkdir(parents=True)
    return path


def _refuse(message: str) -> gr.Error:
    """The error a page shows for the user's input: logged in one line, no traceback, HTML-escaped."""
    log.warning("refused: %s", message)
    return gr.Error(html.escape(message, quote=False), print_exception=False)


def _model(models: Mapping[str, nn.Module], name: str | None) -> nn.Module:
    if name is None:
        return next(iter(models.values()))
    if name not in models:
        raise _refuse(f"no model named {name!r}; this app has: {', '.join(models)}")
    return models[name]


def _check_size(render_size) -> int:
    """The slider's value under `inference.check_render_size`'s rule, or `gr.Error`."""
    try:
        return check_render_size(render_size)
    except ValueError as e:
        raise _refuse(str(e)) from None


def _load_photo(photo: str | None) -> Image.Image:
    """An uploaded photo as `colorize apply` reads it (EXIF orientation applied, transparency kept), or `gr.Error`."""
    if photo is None:
        raise _refuse("upload a photo first")
    name = Path(photo).name
    try:
        return load_rgb(photo, keep_alpha=True)
    except BadImageError as e:
        reason = str(e.__cause__ or e).replace(photo, name)  # the name the user knows, not the upload folder's path
        raise _refuse(f"{name} is not a photo this app can read ({reason}); upload a "
                      f"{', '.join(sorted(x.lstrip('.').upper() for x in IMAGE_EXTS))} file") from e


def colorize_upload(models: Mapping[str, nn.Module], photo: str | None, model: str | None = None,
                    render_size: int = RENDER_SIZE) -> tuple[str, str]:
    """One uploaded photo -> (its colorized PNG, a PNG of the photo as read) for the download and the slider.

    Both are at the photo's full size, EXIF orientation applied and transparency kept. A file that is
    not a readable photo raises `gr.Error`, which the page shows as a message.
    """
    if photo is None:
        raise _refuse("upload a photo first")
    generator, size = _model(models, model), _check_size(render_size)
    name = Path(photo).name
    image = _load_photo(photo)
    out = _results_dir()
    before, after = out / f"{Path(name).stem}.png", out / f"{Path(name).stem}-colorized.png"
    image.save(before, compress_level=PNG_COMPRESS_LEVEL)
    colorize_image(generator, image, render_size=size).save(after, compress_level=PNG_COMPRESS_LEVEL)
    log.info("colorized %s (%dx%d) with %s at %d px", name, *image.size, model, size)
    return str(after), str(before)


def colorize_uploads(models: Mapping[str, nn.Module], photos: list[str] | None, model: str | None = None,
                     render_size: int = RENDER_SIZE) -> tuple[list[tuple[str, str]], str]:
    """Several uploaded photos -> (gallery of (PNG, caption), one zip of the PNGs); unreadable ones are skipped.

    Skipped files are named in a warning on the page; `gr.Error` if none could be read.
    """
    if not photos:
        raise _refuse("upload one or more photos first")
    generator, size = _model(models, model), _check_size(render_size)
    out = _results_dir()
    result = colorize_files(generator, photos, out / "colorized", render_size=size, progress=False)
    skipped = ", ".join(Path(p).name for p, _ in result.failed)
    if not result.written:
        raise _refuse(f"none of the files could be read as a photo: {skipped}")
    if skipped:
        message = f"skipped {len(result.failed)} file(s) that are not readable photos: {skipped}"
        gr.Warning(html.escape(message, quote=False))
    archive = out / "colorized.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as z:  # PNGs are compressed already
        for png in result.written:
            z.write(png, png.name)
    return [(str(p), p.name) for p in result.written], str(archive)


# ------------------------------------------------------------------------------------------- Guide tab
# Every model guides: a hint model reads the hints, and for every model what its colours still miss at the
# hints is spread along lightness (`colorize_image`'s `propagation` and `reach`). The page keeps the hints
# in a gr.State (a list of hints-file entries, in the photo's pixels), the latest colorization's path in
# another, the colorization without hints ("plain", the model's own colours) in a third, and the palette
# of suggested colours at the last click in a fourth. Each step below returns the same five values:
# (hints, result PNG, result with the hints marked, hints for the JSON view, hints.json to download).

GuideStep = tuple[list[dict], str, str, list[dict], str]
HINT_SIZES = (1, 32, 5)  # hint size slider, px at the render size: min, max, default (Zhang et al. draw 1..9 at 256)
REACHES = (0.1, 5.0)  # reach slider: min, max (its default: `inference.REACH`)
GUIDE_NOTE = ("Upload a photo in the *Colorize* tab, then click on the result below to place a hint. Its colour "
              "starts as the result's colour there: pick another from the suggestions (the model's own colour "
              "there, the colours used so far, and every colour that exists at that point's lightness) or from "
              "the colour picker and *Apply colour*.")
READS_HINTS = "**{name}** reads your hints; what it still misses is spread along lightness."
SPREADS_HINTS = ("**{name}** was trained on lightness alone: your hints are spread along lightness over its "
                 "colours.")


def guide_note(models: Mapping[str, nn.Module], model: str | None) -> str:
    """The Guide tab's text for the chosen model: how to place hints, and how this model uses them."""
    name = model if model is not None else next(iter(models))
    how = READS_HINTS if _model(models, model).spec.takes_hints else SPREADS_HINTS
    return f"{GUIDE_NOTE}\n\n{how.format(name=name)}"


def _marked(result: Image.Image, hints: Sequence[dict]) -> Image.Image:
    """The result with a ring in each hint's colour around its point; the last hint's ring is thicker."""
    view = result.convert("RGB")
    draw = ImageDraw.Draw(view)
    r = max(4, round(max(view.size) / 80))  # ring radius, visible on a phone photo and a 12 MP one alike
    for i, h in enumerate(hints):
        box = [h["x"] - r, h["y"] - r, h["x"] + r, h["y"] + r]
        last = i == len(hints) - 1
        draw.ellipse(box, outline="white", width=max(2, r // (2 if last else 3)) + 2)
        draw.ellipse(box, outline=ImageColor.getrgb(h["color"])[:3], width=max(1, r // (2 if last else 3)))
    return view


def guided(models: Mapping[str, nn.Module], photo: str | None, hints: Sequence[dict], model: str | None = None,
           render_size: int = RENDER_SIZE, propagation: str = "fast", reach: float = REACH) -> GuideStep:
    """Colorize the photo with `hints` (hints-file entries in its pixels) -> the five values of a Guide step.

    Bad hints (outside the photo, a colour that doesn't parse, ...) and a propagation that cannot run at
    this render size raise `gr.Error` naming what to change.
    """
    generator, size = _model(models, model), _check_size(render_size)
    image = _load_photo(photo)
    hints = list(hints)
    try:
        check_hints(hints, image.size)
    except ValueError as e:
        raise _refuse(f"hints: {e}") from e
    out = _results_dir()
    stem = Path(photo).stem
    result, view, listing = out / f"{stem}-guided.png", out / f"{stem}-hints-marked.png", out / "hints.json"
    try:
        colorized = colorize_image(generator, image, render_size=size, hints=hints, propagation=propagation,
                                   reach=float(reach))
    except ValueError as e:  # e.g. the exact propagation above its size limit
        raise _refuse(str(e)) from e
    colorized.save(result, compress_level=PNG_COMPRESS_LEVEL)
    _marked(colorized, hints).save(view, compress_level=PNG_COMPRESS_LEVEL)
    listing.write_text(json.dumps(hints, indent=1) + "\n")
    log.info("guided %s (%dx%d) with %d hint(s), %s at %d px, %s propagation, reach %g", stem, *image.size,
             len(hints), model, size, propagation, reach)
    return hints, str(result), str(view), hints, str(listing)


def begin_guide(models: Mapping[str, nn.Module], photo: str | None, hints: list[dict] | None,
                model: str | None = None, render_size: int = RENDER_SIZE, propagation: str = "fast",
                reach: float = REACH) -> tuple[list[dict], str, str, list[dict], str, str]:
    """The Guide step of `hints` (none: a fresh start) and the model's own colorization (the "plain" result)."""
    plain = guided(models, photo, [], model, render_size, propagation, reach)
    step = guided(models, photo, hints, model, render_size, propagation, reach) if hints else plain
    return *step, plain[1]


def colour_at(result: str, x: int, y: int) -> str:
    """The colour ("#rrggbb") of the result PNG at pixel (x, y)."""
    with Image.open(result) as im:
        r, g, b = im.convert("RGB").getpixel((int(x), int(y)))
    return f"#{r:02x}{g:02x}{b:02x}"


def hint_side(photo_size: tuple[int, int], hint_size: float, render_size: int) -> int:
    """A hint's side in the photo's pixels for `hint_size` px at the render size (the photo's longer side)."""
    return max(1, round(float(hint_size) * max(photo_size) / int(render_size)))


def place_hint(models: Mapping[str, nn.Module], hints: list[dict] | None, result: str | None, plain: str | None,
               photo: str | None, x: int, y: int, hint_size: float = HINT_SIZES[2], model: str | None = None,
               render_size: int = RENDER_SIZE, propagation: str = "fast", reach: float = REACH
               ) -> tuple[list[dict], str, str, list[dict], str, str, Palette, str]:
    """A click at (x, y) (photo pixels): a hint there of `hint_size` px at the render size, in the current result's
    colour. Returns the Guide step, that colour, and the suggested colours there (a `Palette` and its PNG)."""
    if result is None:
        raise _refuse("upload a photo in the Colorize tab first")
    image = _load_photo(photo)
    colour = colour_at(result, x, y)
    side = hint_side(image.size, hint_size, _check_size(render_size))
    step = guided(models, photo, [*(hints or []), {"x": int(x), "y": int(y), "color": colour, "size": side}],
                  model, render_size, propagation, reach)
    palette = suggest(colour_at(plain or result, x, y), [h["color"] for h in step[0]],
                      lightness_at(image, int(x), int(y), radius=side // 2))
    return *step, colour, palette, _palette_png(palette)


def _palette_png(palette: Palette) -> str:
    path = _results_dir() / "suggested-colours.png"
    palette.picture().save(path)
    return str(path)


def pick_suggested(models: Mapping[str, nn.Module], palette: Palette | None, hints: list[dict] | None,
                   photo: str | None, x: int, y: int, model: str | None = None,
                   render_size: int = RENDER_SIZE, propagation: str = "fast",
                   reach: float = REACH) -> tuple[list[dict], str, str, list[dict], str, str]:
    """A click on the suggested colours at (x, y): that colour on the last hint; the Guide step and the colour.
    A click between the swatches changes nothing (`gr.skip`)."""
    colour = palette.colour_at(int(x), int(y)) if palette is not None else None
    if colour is None:
        return (gr.skip(),) * 6
    return *recolour_last(models, hints, colour, photo, model, render_size, propagation, reach), colour


def recolour_last(models: Mapping[str, nn.Module], hints: list[dict] | None, colour: str, photo: str | None,
                  model: str | None = None, render_size: int = RENDER_SIZE, propagation: str = "fast",
                  reach: float = REACH) -> GuideStep:
    """The picked colour on the last placed hint."""
    if not hints:
        raise _refuse("no hint to colour yet: click on the result to place one")
    return guided(models, photo, [*hints[:-1], {**hints[-1], "color": colour}], model, render_size, propagation,
                  reach)


def undo_hint(models: Mapping[str, nn.Module], hints: list[dict] | None, photo: str | None, model: str | None = None,
              render_size: int = RENDER_SIZE, propagation: str = "fast",
              reach: float = REACH) -> GuideStep:
    """Remove the last hint."""
    return guided(models, photo, (hints or [])[:-1], model, render_size, propagation, reach)


def load_hints(models: Mapping[str, nn.Module], path: str | None, photo: str | None, model: str | None = None,
               render_size: int = RENDER_SIZE, propagation: str = "fast",
               reach: float = REACH) -> GuideStep:
    """Hints from an uploaded hints file (as `colorize apply --hints` reads) replace the current ones."""
    if path is None:
        raise _refuse("upload a hints file (a JSON list such as [{\"x\": 410, \"y\": 220, \"color\": \"#b03020\"}])")
    try:
        entries = read_hints_file(path)
    except (ValueError, FileNotFoundError) as e:
        raise _refuse(str(e).replace(str(path), Path(path).name)) from e
    return guided(models, photo, entries, model, render_size, propagation, reach)


def guide(models: Mapping[str, nn.Module], photo: str | None, hints: str = "[]", model: str | None = None,
          render_size: int = RENDER_SIZE, propagation: str = "fast", reach: float = REACH) -> str:
    """API `/guide`: a photo and its hints as a JSON string (a hints file's text) -> the colorized PNG."""
    try:
        entries = json.loads(hints or "[]")
    except json.JSONDecodeError as e:
        raise _refuse(f"hints are not JSON ({e}); send a list such as [{{\"x\": 410, \"y\": 220, "
                      f"\"color\": \"#b03020\"}}]") from e
    if not isinstance(entries, list):
        raise _refuse(f"hints must be a JSON list of points, not a {type(entries).__name__}")
    return guided(models, photo, entries, model, render_size, propagation, reach)[1]


def reference_step(models: Mapping[str, nn.Module], photo: str | None, reference: str | None,
                   hints: list[dict] | None, model: str | None = None, render_size: int = RENDER_SIZE,
                   propagation: str = "fast", reach: float = REACH) -> tuple:
    """A reference photo's hints (`reference.reference_hints`) added to the Guide's, whose own win where they
    disagree -> the Guide step and the correspondence drawn (reference and photo side by side, matches joined)."""
    from .reference import BadReferenceError, draw_correspondence, load_reference, merge_hints, reference_hints

    if reference is None:
        raise _refuse("upload a colour photo of the same (or a similar) scene as the reference")
    image = _load_photo(photo)
    try:
        ref = load_reference(reference)
        found = reference_hints(image, ref, _model(models, model))
    except BadReferenceError as e:
        raise _refuse(str(e).replace(str(reference), Path(reference).name)) from e
    if not found.hints:
        gr.Info(f"no hints from this reference: {found.reason}; the colours stay the model's")
    drawn = _results_dir() / "correspondence.png"
    draw_correspondence(image, ref, found).save(drawn, compress_level=PNG_COMPRESS_LEVEL)
    step = guided(models, photo, merge_hints(found.hints, hints), model, render_size, propagation, reach)
    return *step, str(drawn)


def reference_panel(models: Mapping[str, nn.Module], photo, hints, step: list, settings: list, private: dict) -> None:
    """The Guide tab's reference input: its hints join the Guide's as ordinary points (recolour, undo, download,
    edit and load back), and the correspondence is drawn below."""
    reference = gr.Image(label="reference: a colour photo of the same scene (its colours become hints)",
                         type="filepath", sources=["upload"], elem_id="guide-reference")
    drawn = gr.Image(label="correspondence (reference | photo)", type="filepath", interactive=False,
                     elem_id="guide-correspondence")
    reference.upload(partial(reference_step, models), [photo, reference, hints, *settings], [*step, drawn], **private)


def build_app(models: Sequence[str | os.PathLike] | Mapping[str, nn.Module], device=None) -> gr.Blocks:
    """The app's page: upload, model and render size, a before/after slider, PNG and zip downloads.

    `models` is a list of checkpoints (local or `hf://`), or a dict {name: generator in eval mode}.
    Show it with `launch(app)` (inline in a notebook).
    """
    if not isinstance(models, Mapping):
        models = load_models(models, device=device)
    if not models:
        raise ValueError("build_app needs at least one generator checkpoint")
    models = dict(models)
    choices = list(models)
    exts = sorted(IMAGE_EXTS)

    with gr.Blocks(title="colorize", analytics_enabled=False, delete_cache=CACHE_CLEANUP) as app:
        gr.Markdown("## colorize\nDrop in a photo: it comes back in colour at its full size, with its own "
                    "lightness. Drag the slider to compare.")
        with gr.Row():
            model = gr.Dropdown(choices, value=choices[0], label="model", interactive=len(choices) > 1,
                                elem_id="model")
            render_size = gr.Slider(*RENDER_SIZES[:2], step=RENDER_SIZES[2], value=RENDER_SIZE,
                                    label="render size (px the model sees)")
        with gr.Tab("Colorize"):
            with gr.Row():
                with gr.Column(scale=1):
                    photo = gr.File(label="photo", file_types=exts, type="filepath", elem_id="photo")
                    run = gr.Button("Colorize", variant="primary")
                    result = gr.File(label="colorized PNG", interactive=False, elem_id="result")
                with gr.Column(scale=3):
                    slider = gr.ImageSlider(label="before / after", type="filepath", format="png",
                                            interactive=False, max_height=720, elem_id="slider")
            before = gr.State()
            # the API returns the PNG alone; the photo as read goes through a State to the slider
            gr.on([photo.upload, run.click], partial(colorize_upload, models), [photo, model, render_size],
                  [result, before], api_name="colorize", concurrency_id="model").success(
                lambda b, a: (b, a), [before, result], slider, api_visibility="private", queue=False)
        with gr.Tab("Several photos"):
            photos = gr.File(label="photos", file_types=exts, file_count="multiple", type="filepath")
            run_many = gr.Button("Colorize all", variant="primary")
            gallery = gr.Gallery(label="colorized", columns=4, format="png")
            archive = gr.File(label="all of them (zip)", interactive=False)
            run_many.click(partial(colorize_uploads, models), [photos, model, render_size], [gallery, archive],
                           api_name="colorize_many", concurrency_id="model")
        with gr.Tab("Guide", elem_id="guide-tab") as guide_tab:
            note = gr.Markdown(guide_note(models, choices[0]))
            with gr.Row():
                with gr.Column(scale=1):
                    suggestions = gr.Image(label="suggested colours: the model's there, those used, all at its "
                                           "lightness (click one)", type="filepath", format="png",
                                           interactive=False, elem_id="guide-palette")
                    colour = gr.ColorPicker(label="colour of the last hint", elem_id="guide-colour")
                    apply = gr.Button("Apply colour", variant="primary")
                    hint_size = gr.Slider(*HINT_SIZES[:2], step=1, value=HINT_SIZES[2], elem_id="guide-size",
                                          label="hint size (px at the render size)")
                    reach = gr.Slider(*REACHES, step=0.1, value=REACH, elem_id="guide-reach",
                                      label="reach (how far a hint's colour travels)")
                    propagation = gr.Radio(list(PROPAGATIONS), value="fast", label="propagation (fast; levin: exact, "
                                           "up to 256 px; off: the model alone)", elem_id="guide-propagation")
                    with gr.Row():
                        undo, clear = gr.Button("Undo"), gr.Button("Clear")
                    listing = gr.JSON(label="hints (photo pixels)", elem_id="guide-hints")
                    hints_file = gr.File(label="hints.json (for colorize apply --hints)", interactive=False)
                    hints_upload = gr.UploadButton("Load a hints file", file_types=[".json"], type="filepath")
                with gr.Column(scale=3):
                    view = gr.Image(label="click to place a hint", type="filepath", format="png", interactive=False,
                                    height=720, elem_id="guide-view")
            hints, guided_result, plain, palette = gr.State([]), gr.State(), gr.State(), gr.State()
            step = [hints, guided_result, view, listing, hints_file]
            settings = [model, render_size, propagation, reach]
            private = dict(api_visibility="private", concurrency_id="model")

            def on_click(hints, result, plain, photo, size, model, render_size, propagation, reach,
                         evt: gr.SelectData):
                return place_hint(models, hints, result, plain, photo, *evt.index, size, model, render_size,
                                  propagation, reach)

            def on_pick(palette, hints, photo, model, render_size, propagation, reach, evt: gr.SelectData):
                return pick_suggested(models, palette, hints, photo, *evt.index, model, render_size, propagation,
                                      reach)

            def on_enter(photo, hints, result, *settings):  # the photo of the Colorize tab, guided once
                if photo is None or result is not None:
                    return (gr.skip(),) * 6
                return begin_guide(models, photo, hints, *settings)

            def restart(photo, hints, *settings):  # another model or render size: its own colours, the same hints
                return (gr.skip(),) * 6 if photo is None else begin_guide(models, photo, hints, *settings)

            def respread(photo, hints, result, *settings):  # another propagation or reach: the same model output
                return (gr.skip(),) * 5 if result is None else guided(models, photo, hints, *settings)

            model.change(partial(guide_note, models), model, note, api_visibility="private", queue=False)
            photo.change(lambda: ([], None, None, None, [], None, None, None), None,
                         [*step, plain, palette, suggestions], api_visibility="private", queue=False)
            guide_tab.select(on_enter, [photo, hints, guided_result, *settings], [*step, plain], **private)
            gr.on([model.change, render_size.release], restart, [photo, hints, *settings], [*step, plain], **private)
            gr.on([propagation.change, reach.release], respread, [photo, hints, guided_result, *settings], step,
                  **private)
            view.select(on_click, [hints, guided_result, plain, photo, hint_size, *settings],
                        [*step, colour, palette, suggestions], **private)
            suggestions.select(on_pick, [palette, hints, photo, *settings], [*step, colour], **private)
            apply.click(partial(recolour_last, models), [hints, colour, photo, *settings], step, **private)
            undo.click(partial(undo_hint, models), [hints, photo, *settings], step, **private)
            clear.click(lambda *a: begin_guide(models, a[0], [], *a[1:]), [photo, *settings], [*step, plain],
                        **private)
            hints_upload.upload(partial(load_hints, models), [hints_upload, photo, *settings], step, **private)
            with gr.Row():
                reference_panel(models, photo, hints, step, settings, private)
            # the API's own input and output: the page keeps its hints in `hints` and shows `view`
            hints_text = gr.Textbox("[]", label="hints", visible=False)
            guide_png = gr.File(label="guided PNG", visible=False)
            gr.Button(visible=False).click(partial(guide, models), [photo, hints_text, *settings], guide_png,
                                           api_name="guide", concurrency_id="model")
        video_tab(models, model, render_size)
    app.queue(default_concurrency_limit=1)  # one photo at a time: a CPU has nothing to spare for a second
    return app


def colorize_video_upload(models: Mapping[str, nn.Module], clip: str | None, model: str | None = None,
                          render_size: int = RENDER_SIZE, temporal: float = DEFAULT_TEMPORAL,
                          progress=gr.Progress()) -> tuple[str, str]:
    """An uploaded clip -> its colorized MP4 (twice: for the player and the download), with progress in frames.

    A clip that is not a readable video, or lasts more than MAX_VIDEO_SECONDS, raises `gr.Error`; the
    message for a long one names the `colorize apply` command that does it.
    """
    if clip is None:
        raise _refuse("upload a video first")
    generator, size = _model(models, model), _check_size(render_size)
    name = Path(clip).name
    try:
        info = probe(clip)
    except BadVideoError as e:
        raise _refuse(str(e).replace(clip, name)) from e
    seconds = float(info.frames / info.fps)
    if seconds > MAX_VIDEO_SECONDS:
        raise _refuse(f"{name} lasts {seconds:.0f} s; this app takes clips up to {MAX_VIDEO_SECONDS} s. Colorize it "
                      f"from a terminal: colorize apply {name} --model CHECKPOINT --out colorized")
    out = _results_dir() / f"{Path(name).stem}-colorized.mp4"
    try:
        colorize_video(generator, clip, out, render_size=size, temporal=float(temporal), progress=False,
                       on_frame=lambda done, total: progress((done, total or None), desc="colorizing", unit="frames"))
    except (BadVideoError, ValueError) as e:
        raise _refuse(str(e).replace(clip, name)) from e
    log.info("colorized %s (%d frames, %dx%d) with %s at %d px", name, info.frames, info.width, info.height, model, size)
    return str(out), str(out)


def video_tab(models: Mapping[str, nn.Module], model: gr.Dropdown, render_size: gr.Slider) -> None:
    """The Video tab (inside `build_app`'s Blocks): upload a short clip, watch and download its colorized MP4."""
    with gr.Tab("Video", elem_id="video-tab"):
        gr.Markdown(f"A clip up to {MAX_VIDEO_SECONDS} s comes back as an MP4 with its sound; longer ones with "
                    "`colorize apply CLIP --model ... --out ...` from a terminal. Colour is carried along the "
                    "motion from frame to frame so it does not flicker; 0 colorizes every frame on its own.")
        with gr.Row():
            with gr.Column(scale=1):
                clip = gr.File(label="video", file_types=sorted(VIDEO_EXTS), type="filepath", elem_id="video")
                temporal = gr.Slider(0, 0.95, step=0.05, value=DEFAULT_TEMPORAL,
                                     label="steadiness (weight of the colour carried from the previous frame)")
                run = gr.Button("Colorize video", variant="primary")
                download = gr.File(label="colorized MP4", interactive=False, elem_id="video-result")
            with gr.Column(scale=3):
                player = gr.Video(label="colorized", format="mp4", interactive=False, elem_id="video-player")
        run.click(partial(colorize_video_upload, models), [clip, model, render_size, temporal], [player, download],
                  api_name="colorize_video", concurrency_id="model")


def launch(app: gr.Blocks, host: str = DEFAULT_HOST, port: int | None = DEFAULT_PORT, share: bool = False,
           **kwargs) -> tuple[str, str | None]:
    """Serve `app` offline (no analytics, no web fonts) without blocking; returns (local URL, share URL or None).

    In a notebook the page shows inline. `share` asks Gradio's relay for a public link (a warning says who
    can use it). Other keyword arguments go to `gr.Blocks.launch`. Stop it with `app.close()`.
    """
    if share:
        log.warning(SHARE_WARNING)
    _, local_url, share_url = app.launch(server_name=host, server_port=port, share=share, theme=offline_theme(),
                                         prevent_thread_lock=True, quiet=True, show_error=True, **kwargs)
    return local_url, share_url

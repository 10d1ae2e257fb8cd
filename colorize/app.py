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
    /colorize_video video file [, model name, render size, temporal, keyframes] -> a preview frame, the
                    colorized MP4 for the player and for the download (clips up to
                    MAX_VIDEO_PIXELS of frames x pixels; longer ones: `colorize apply`)

The Guide tab works with every model, on the photo uploaded in the Colorize tab: a click on the result
places a hint there (or, in the select-and-move mode, selects the hint clicked, and moves the selected one
where the click is); suggested colours (the model's own there, those used, every colour that exists at
that point's lightness) and a colour picker recolour the selected hint, and a button deletes it; a
hint-size, a reach and a propagation control shape how it spreads; the hints download as the file
`colorize apply --hints` reads, and such a file can be loaded. The page keeps one `guide.GuideSession`
in a `gr.State`; each handler below turns widget values into one of `guide`'s steps and the new session
back into what the page shows.
"""

from __future__ import annotations

import html
import json
import logging
import os
import queue
import threading
import time
import uuid
import zipfile
from functools import partial, wraps
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import gradio as gr
import numpy as np
from PIL import Image
from torch import nn

from . import guide as steps
from .apply import apply_paths
from .config import PROPAGATIONS
from .data import IMAGE_EXTS, BadImageError, load_rgb
from .device import inference_device
from .guide import GuideSession
from .hintmaps import read_hints_file
from .inference import PNG_COMPRESS_LEVEL, RENDER_SIZES, Rendering, colorize_image
from .models import load_generator, model_name
from .temporal import DEFAULT_TEMPORAL
from .video import VIDEO_EXTS, BadVideoError, VideoOptions, colorize_video, probe

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"  # this machine only; --host 0.0.0.0 opens it to the network
DEFAULT_PORT = 7860  # Gradio's usual port
CACHE_CLEANUP = (3600, 3600)  # Gradio's delete_cache: every hour, delete uploads and results over an hour old
SANS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace"]
MAX_VIDEO_PIXELS = 250 * 640 * 360  # frames x width x height: the work, not the seconds (about 3 minutes on a CPU)
MAX_VIDEO_EXAMPLE = "10 s of 640x360 at 25 fps"
PREVIEW_EVERY_S = 2.0  # the Video tab shows a colorized frame this often
SHARE_WARNING = ("--share: Gradio makes a public link to this app through its relay server; anyone with the link "
                 "can use the app, run your models and see what is uploaded until you stop it")
DEFAULTS = Rendering()  # what the page's controls start at


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


def _rendering(render_size=DEFAULTS.render_size, propagation: str = DEFAULTS.propagation,
               reach: float = DEFAULTS.reach) -> Rendering:
    """The page's controls as one `Rendering`, checked here (the door), or `gr.Error` naming what to change."""
    try:
        return Rendering(render_size, propagation=propagation, reach=float(reach))
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


# ---------------------------------------------------------------------------------------- Colorize tabs


def colorize_upload(models: Mapping[str, nn.Module], photo: str | None, model: str | None = None,
                    render_size: int = DEFAULTS.render_size) -> tuple[str, str]:
    """One uploaded photo -> (its colorized PNG, a PNG of the photo as read) for the download and the slider.

    Both are at the photo's full size, EXIF orientation applied and transparency kept. A file that is
    not a readable photo raises `gr.Error`, which the page shows as a message.
    """
    generator, rendering = _model(models, model), _rendering(render_size)
    image = _load_photo(photo)
    stem, out = Path(photo).stem, _results_dir()
    before, after = out / f"{stem}.png", out / f"{stem}-colorized.png"
    image.save(before, compress_level=PNG_COMPRESS_LEVEL)
    colorize_image(generator, image, rendering).save(after, compress_level=PNG_COMPRESS_LEVEL)
    log.info("colorized %s (%dx%d) with %s at %d px", Path(photo).name, *image.size, model, rendering.render_size)
    return str(after), str(before)


def colorize_uploads(models: Mapping[str, nn.Module], photos: list[str] | None, model: str | None = None,
                     render_size: int = DEFAULTS.render_size) -> tuple[list[tuple[str, str]], str]:
    """Several uploaded photos -> (gallery of (PNG, caption), one zip of the PNGs); unreadable ones are skipped.

    Skipped files are named in a warning on the page; `gr.Error` if none could be read.
    """
    if not photos:
        raise _refuse("upload one or more photos first")
    generator, rendering = _model(models, model), _rendering(render_size)
    out = _results_dir()
    result = apply_paths(generator, photos, out / "colorized", rendering, progress=False)
    skipped = ", ".join(Path(p).name for p, _ in result.failed)
    if not result.written:
        raise _refuse(f"none of the files could be read as a photo: {skipped}")
    if skipped:
        gr.Warning(html.escape(f"skipped {len(result.failed)} file(s) that are not readable photos: {skipped}",
                               quote=False))
    archive = out / "colorized.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as z:  # PNGs are compressed already
        for png in result.written:
            z.write(png, png.name)
    return [(str(p), p.name) for p in result.written], str(archive)


def colorize_tab(models: Mapping[str, nn.Module], model: gr.Dropdown, render_size: gr.Slider) -> gr.File:
    """The Colorize tab: one photo, a before/after slider, the PNG; returns the photo upload (the Guide's photo)."""
    with gr.Tab("Colorize"):
        with gr.Row():
            with gr.Column(scale=1):
                photo = gr.File(label="photo", file_types=sorted(IMAGE_EXTS), type="filepath", elem_id="photo")
                run = gr.Button("Colorize", variant="primary")
                result = gr.File(label="colorized PNG", interactive=False, elem_id="result")
            with gr.Column(scale=3):
                slider = gr.ImageSlider(label="before / after", type="filepath", format="png", interactive=False,
                                        max_height=720, elem_id="slider")
        before = gr.State()
        # the API returns the PNG alone; the photo as read goes through a State to the slider
        gr.on([photo.upload, run.click], partial(colorize_upload, models), [photo, model, render_size],
              [result, before], api_name="colorize", concurrency_id="model").success(
            lambda b, a: (b, a), [before, result], slider, api_visibility="private", queue=False)
    return photo


def several_tab(models: Mapping[str, nn.Module], model: gr.Dropdown, render_size: gr.Slider) -> None:
    """The Several photos tab: a gallery and one zip."""
    with gr.Tab("Several photos"):
        photos = gr.File(label="photos", file_types=sorted(IMAGE_EXTS), file_count="multiple", type="filepath")
        run = gr.Button("Colorize all", variant="primary")
        gallery = gr.Gallery(label="colorized", columns=4, format="png")
        archive = gr.File(label="all of them (zip)", interactive=False)
        run.click(partial(colorize_uploads, models), [photos, model, render_size], [gallery, archive],
                  api_name="colorize_many", concurrency_id="model")


# ------------------------------------------------------------------------------------------- Guide tab
# Every model guides: a hint model reads the hints, and for every model what its colours still miss at the
# hints is spread along lightness. The adapters below take widget values and a session, and return the new
# session (or gr.Error with what to change); `guide_tab` shows it.

HINT_SIZES = (1, 32, 5)  # hint size slider, px at the render size: min, max, default (Zhang et al. draw 1..9 at 256)
REACHES = (0.1, 5.0)  # reach slider: min, max (its default: `Rendering.reach`)
GUIDE_NOTE = ("Upload a photo in the *Colorize* tab, then click on the result below to place a hint. Its colour "
              "starts as the result's colour there: pick another from the suggestions (the model's own colour "
              "there, the colours used so far, and every colour that exists at that point's lightness) or from "
              "the colour picker and *Apply colour*. To change a hint (yours or a reference's), switch to *select "
              "and move*: click its ring to select it, click elsewhere to move it there, or *Delete selected*.")
READS_HINTS = "**{name}** reads your hints; what it still misses is spread along lightness."
SPREADS_HINTS = ("**{name}** was trained on lightness alone: your hints are spread along lightness over its "
                 "colours.")
PALETTE_NOTE = ("**Suggested colours** (click one): first row the model's own colour there, then those used; "
                "below, every colour at that point's lightness.")
EMPTY_CELL = "no colour there: click a swatch (first row: the model's own colour and those used)"
PLACE = "place a hint"
CLICK_MODES = (PLACE, "select and move")  # what a click on the photo does


def guide_note(models: Mapping[str, nn.Module], model: str | None) -> str:
    """The Guide tab's text for the chosen model: how to place hints, and how this model uses them."""
    name = model if model is not None else next(iter(models))
    how = READS_HINTS if _model(models, model).spec.takes_hints else SPREADS_HINTS
    return f"{GUIDE_NOTE}\n\n{how.format(name=name)}"


def _step(step: Callable, session: GuideSession | None, *args) -> GuideSession:
    """One of `guide`'s steps on the page's session; a bad input (ValueError) is `gr.Error` naming what to change."""
    if session is None:
        raise _refuse("upload a photo in the Colorize tab first")
    try:
        return step(session, *args)
    except ValueError as e:
        raise _refuse(str(e)) from e


def guide_start(models: Mapping[str, nn.Module], photo: str | None, model: str | None = None,
                render_size: int = DEFAULTS.render_size, propagation: str = DEFAULTS.propagation,
                reach: float = DEFAULTS.reach, hints: Sequence[dict] = ()) -> GuideSession:
    """A session on the uploaded photo with the chosen model and settings (and `hints`, e.g. from the API)."""
    generator, rendering, image = _model(models, model), _rendering(render_size, propagation, reach), _load_photo(photo)
    try:
        return steps.start(generator, image, rendering, hints)
    except ValueError as e:
        raise _refuse(f"hints: {e}") from e


def guide_settings(models: Mapping[str, nn.Module], session: GuideSession | None, model: str | None,
                   render_size: int, propagation: str, reach: float) -> GuideSession:
    """The session under the page's model and settings: the network runs again only for another model or size."""
    return _step(steps.rerender, session, _rendering(render_size, propagation, reach), _model(models, model))


def guide_click(session: GuideSession | None, x: int, y: int, hint_size: float) -> GuideSession:
    """A click at (x, y) (photo pixels): a hint there of `hint_size` px at the render size, in the result's colour."""
    if session is None:
        raise _refuse("upload a photo in the Colorize tab first")
    return _step(steps.place, session, x, y, steps.hint_side(session.size, hint_size, session.rendering.render_size))


def guide_touch(session: GuideSession | None, x: int, y: int) -> GuideSession:
    """A click at (x, y) in the select-and-move mode: the hint whose ring it is on selected, or else the selected
    hint moved there."""
    return _step(steps.touch, session, x, y)


def guide_pick(session: GuideSession | None, x: int, y: int) -> GuideSession | None:
    """A click on the suggested colours at (x, y): that colour on the selected hint; None (and a word on the page)
    for a click on an empty cell."""
    palette = session.palette() if session is not None else None
    colour = palette.colour_at(int(x), int(y)) if palette is not None else None
    if colour is None:
        gr.Warning(EMPTY_CELL)
        return None
    return _step(steps.recolour, session, colour)


def guide_load(session: GuideSession | None, path: str | None) -> GuideSession:
    """Hints from an uploaded hints file (as `colorize apply --hints` reads) replace the current ones."""
    if path is None:
        raise _refuse("upload a hints file (a JSON list such as [{\"x\": 410, \"y\": 220, \"color\": \"#b03020\"}])")
    try:
        entries = read_hints_file(path)
    except (ValueError, FileNotFoundError) as e:
        raise _refuse(str(e).replace(str(path), Path(path).name)) from e
    return _step(steps.load, session, entries)


def guide(models: Mapping[str, nn.Module], photo: str | None, hints: str = "[]", model: str | None = None,
          render_size: int = DEFAULTS.render_size, propagation: str = DEFAULTS.propagation,
          reach: float = DEFAULTS.reach) -> str:
    """API `/guide`: a photo and its hints as a JSON string (a hints file's text) -> the colorized PNG."""
    try:
        entries = json.loads(hints or "[]")
    except json.JSONDecodeError as e:
        raise _refuse(f"hints are not JSON ({e}); send a list such as [{{\"x\": 410, \"y\": 220, "
                      f"\"color\": \"#b03020\"}}]") from e
    if not isinstance(entries, list):
        raise _refuse(f"hints must be a JSON list of points, not a {type(entries).__name__}")
    session = guide_start(models, photo, model, render_size, propagation, reach, entries)
    path = _results_dir() / f"{Path(photo).stem}-guided.png"
    session.image().save(path, compress_level=PNG_COMPRESS_LEVEL)
    log.info("guided %s (%dx%d) with %d hint(s), %s at %d px, %s propagation, reach %g", Path(photo).name,
             *session.size, len(session.hints), model, session.rendering.render_size, propagation, reach)
    return str(path)


def hints_download(session: GuideSession) -> str:
    """The session's hints as the file `colorize apply --hints` reads (a few hundred bytes), for the download."""
    path = _results_dir() / "hints.json"
    path.write_text(json.dumps(list(session.hints), indent=1) + "\n")
    return str(path)


def guide_tab(models: Mapping[str, nn.Module], model: gr.Dropdown, render_size: gr.Slider, photo: gr.File) -> None:
    """The Guide tab: the page's one `GuideSession` in a `gr.State`, each control a step on it."""
    with gr.Tab("Guide", elem_id="guide-tab") as tab:
        note = gr.Markdown(guide_note(models, None))
        with gr.Row():
            with gr.Column(scale=1):
                gr.Markdown(PALETTE_NOTE)
                palette = gr.Image(show_label=False, type="numpy", image_mode="RGBA", format="png", buttons=[],
                                   interactive=False, elem_id="guide-palette")
                colour = gr.ColorPicker(label="colour of the selected hint", elem_id="guide-colour")
                apply = gr.Button("Apply colour", variant="primary")
                hint_size = gr.Slider(*HINT_SIZES[:2], step=1, value=HINT_SIZES[2], elem_id="guide-size",
                                      label="hint size (px at the render size)")
                reach = gr.Slider(*REACHES, step=0.1, value=DEFAULTS.reach, elem_id="guide-reach",
                                  label="reach (how far a hint's colour travels)")
                propagation = gr.Radio(list(PROPAGATIONS), value=DEFAULTS.propagation, elem_id="guide-propagation",
                                       label="propagation (fast; levin: exact, up to 256 px; off: the model alone)")
                mode = gr.Radio(list(CLICK_MODES), value=PLACE, label="a click on the photo", elem_id="guide-mode")
                with gr.Row():
                    undo, delete = gr.Button("Undo"), gr.Button("Delete selected", elem_id="guide-delete")
                    clear = gr.Button("Clear")
                listing = gr.JSON(label="hints (photo pixels)", elem_id="guide-hints")
                hints_file = gr.File(label="hints.json (for colorize apply --hints)", interactive=False)
                hints_upload = gr.UploadButton("Load a hints file", file_types=[".json"], type="filepath")
            with gr.Column(scale=3):
                view = gr.Image(label="click to place a hint", type="numpy", format="webp", interactive=False,
                                height=720, elem_id="guide-view")
        with gr.Row():
            reference = gr.Image(label="reference: a colour photo of the same scene (its colours become hints)",
                                 type="filepath", sources=["upload"], elem_id="guide-reference")
            drawn = gr.Image(label="correspondence (reference | photo)", type="filepath", interactive=False,
                             elem_id="guide-correspondence")
        state = gr.State()
        shown = [state, view, listing, hints_file, palette, colour]

        def show(session: GuideSession | None) -> dict:
            """What the page shows of a session: the result with its hints marked, the hints, the suggestions."""
            if session is None:  # nothing changed (an empty palette cell)
                return gr.skip()  # one skip: every output kept as it is
            last = session.palette()
            return {state: session, view: session.marked(), listing: list(session.hints),
                    hints_file: hints_download(session), palette: None if last is None else last.picture(),
                    colour: session.hints[session.selected]["color"] if session.hints else None}

        def on(triggers, adapter: Callable, inputs: list) -> None:
            @wraps(adapter)  # keeps its signature: Gradio passes gr.SelectData where it is asked for
            def handler(*values):
                return show(adapter(*values))

            gr.on(triggers, handler, inputs, shown, api_visibility="private", concurrency_id="model")

        settings = [model, render_size, propagation, reach]

        def enter(session, photo, *values):  # the photo of the Colorize tab, guided once
            return session if session is not None or photo is None else guide_start(models, photo, *values)

        def resettle(session, *values):  # another model or setting: the same hints
            return None if session is None else guide_settings(models, session, *values)

        def click(session, size, how, evt: gr.SelectData):
            return guide_click(session, *evt.index, size) if how == PLACE else guide_touch(session, *evt.index)

        def pick(session, evt: gr.SelectData):
            return guide_pick(session, *evt.index)

        model.change(partial(guide_note, models), model, note, api_visibility="private", queue=False)
        photo.change(lambda: {state: None, view: None, listing: [], hints_file: None, palette: None}, None, shown,
                     api_visibility="private", queue=False)
        on([tab.select], enter, [state, photo, *settings])
        on([model.change, render_size.release, propagation.change, reach.release], resettle, [state, *settings])
        on([view.select], click, [state, hint_size, mode])
        on([palette.select], pick, [state])
        on([apply.click], partial(_step, steps.recolour), [state, colour])
        on([undo.click], partial(_step, steps.undo), [state])
        on([delete.click], partial(_step, steps.delete), [state])
        on([clear.click], partial(_step, steps.clear), [state])
        on([hints_upload.upload], guide_load, [state, hints_upload])

        def match(session, path):  # a reference's hints join the session's; the matches drawn beside
            session, picture = guide_reference(session, path)
            return {**show(session), drawn: picture}

        reference.upload(match, [state, reference], [*shown, drawn], api_visibility="private", concurrency_id="model")
        # the API's own input and output: the page keeps its hints in the session and shows `view`
        hints_text = gr.Textbox("[]", label="hints", visible=False)
        guide_png = gr.File(label="guided PNG", visible=False)
        gr.Button(visible=False).click(partial(guide, models), [photo, hints_text, model, render_size, propagation,
                                                                 reach], guide_png, api_name="guide",
                                       concurrency_id="model")


def guide_reference(session: GuideSession | None, reference: str | None) -> tuple[GuideSession, str]:
    """A reference photo's hints (`reference.reference_hints`) joined to the session's, whose own win where they
    disagree -> the new session (its hints editable like any others) and the correspondence drawn (reference and
    photo side by side, matches joined)."""
    from .reference import BadReferenceError, draw_correspondence, load_reference, merge_hints, reference_hints

    if session is None:
        raise _refuse("upload a photo in the Colorize tab first")
    if reference is None:
        raise _refuse("upload a colour photo of the same (or a similar) scene as the reference")
    photo = Image.fromarray(session.pixels)
    try:
        ref = load_reference(reference)
        found = reference_hints(photo, ref, session.model)
    except BadReferenceError as e:
        raise _refuse(str(e).replace(str(reference), Path(reference).name)) from e
    if not found.hints:
        gr.Info(f"no hints from this reference: {found.reason}; the colours stay the model's")
    drawn = _results_dir() / "correspondence.png"
    draw_correspondence(photo, ref, found).save(drawn, compress_level=PNG_COMPRESS_LEVEL)
    return _step(steps.load, session, merge_hints(found.hints, list(session.hints))), str(drawn)


def build_app(models: Sequence[str | os.PathLike] | Mapping[str, nn.Module], device=None) -> gr.Blocks:
    """The app's page: upload, model and render size, a before/after slider, PNG and zip downloads, Guide, Video.

    `models` is a list of checkpoints (local or `hf://`), or a dict {name: generator in eval mode}.
    Show it with `launch(app)` (inline in a notebook).
    """
    if not isinstance(models, Mapping):
        models = load_models(models, device=device)
    if not models:
        raise ValueError("build_app needs at least one generator checkpoint")
    models = dict(models)
    choices = list(models)
    with gr.Blocks(title="colorize", analytics_enabled=False, delete_cache=CACHE_CLEANUP) as app:
        gr.Markdown("## colorize\nDrop in a photo: it comes back in colour at its full size, with its own "
                    "lightness. Drag the slider to compare.")
        with gr.Row():
            model = gr.Dropdown(choices, value=choices[0], label="model", interactive=len(choices) > 1,
                                elem_id="model")
            render_size = gr.Slider(*RENDER_SIZES[:2], step=RENDER_SIZES[2], value=DEFAULTS.render_size,
                                    label="render size (px the model sees)")
        photo = colorize_tab(models, model, render_size)
        several_tab(models, model, render_size)
        guide_tab(models, model, render_size, photo)
        video_tab(models, model, render_size)
    app.queue(default_concurrency_limit=1)  # one photo at a time: a CPU has nothing to spare for a second
    return app


# ------------------------------------------------------------------------------------------- Video tab


def colorize_video_upload(models: Mapping[str, nn.Module], clip: str | None, model: str | None = None,
                          render_size: int = DEFAULTS.render_size, temporal: float = DEFAULT_TEMPORAL,
                          keyframes: int = 1, progress=gr.Progress()) -> Iterator[tuple]:
    """An uploaded clip -> (a preview frame, the colorized MP4 for the player, and for the download), yielded as
    the work goes: the first colorized frame at once, then one every PREVIEW_EVERY_S, the MP4 at the end;
    `progress` counts frames (Gradio shows the rate and time left).

    The work runs in a thread; closing this generator (Gradio's cancel) stops it, leaving nothing. A clip that
    is not a readable video, is damaged (found by a scan before any frame is colorized), or is more work than
    MAX_VIDEO_PIXELS (frames x width x height) raises `gr.Error`; the message for a long one names the
    `colorize apply` command that does it.
    """
    if clip is None:
        raise _refuse("upload a video first")
    generator, rendering = _model(models, model), _rendering(render_size)
    name = Path(clip).name
    try:
        info = probe(clip)
        video = VideoOptions(float(temporal), int(keyframes))
    except (BadVideoError, ValueError) as e:
        raise _refuse(str(e).replace(clip, name)) from e
    work = info.frames * info.width * info.height
    if work > MAX_VIDEO_PIXELS:
        raise _refuse(f"{name} is {info.frames} frames of {info.width}x{info.height}, {work / 1e6:.0f} megapixels of "
                      f"film; this app takes up to {MAX_VIDEO_PIXELS / 1e6:.0f} (e.g. {MAX_VIDEO_EXAMPLE}). Colorize it "
                      f"from a terminal: colorize apply {name} --model CHECKPOINT --out colorized --keyframes 4")
    out = _results_dir() / f"{Path(name).stem}-colorized.mp4"
    events: queue.Queue = queue.Queue()
    stop = threading.Event()

    def on_frame(done: int, total: int, rgb: np.ndarray) -> None:
        if stop.is_set():
            raise VideoCancelled(f"{name}: cancelled at frame {done}")
        events.put(("frame", done, total, rgb))

    def work_thread() -> None:
        try:
            colorize_video(generator, clip, out, rendering, video, progress=False, on_frame=on_frame)
            events.put(("done",))
        except BaseException as e:  # handed to the page's thread, which raises it
            events.put(("error", e))

    worker = threading.Thread(target=work_thread, name=f"colorize {name}", daemon=True)
    worker.start()
    shown = 0.0
    try:
        while True:
            event = events.get()
            if event[0] == "frame":
                _, done, total, rgb = event
                progress((done, total or None), desc="colorizing", unit="frames")
                if done == 1 or time.monotonic() - shown >= PREVIEW_EVERY_S:
                    shown = time.monotonic()
                    yield Image.fromarray(rgb), None, None
            elif event[0] == "error":
                if isinstance(event[1], BadVideoError):
                    raise _refuse(str(event[1]).replace(clip, name)) from event[1]
                raise event[1]
            else:
                break
    finally:
        stop.set()  # a cancel (the generator closed) stops the work at its next frame
    log.info("colorized %s (%d frames, %dx%d) with %s at %d px", name, info.frames, info.width, info.height, model,
             rendering.render_size)
    yield gr.skip(), str(out), str(out)


class VideoCancelled(Exception):
    """The Video tab's work stopped by its Cancel button."""


def video_tab(models: Mapping[str, nn.Module], model: gr.Dropdown, render_size: gr.Slider) -> None:
    """The Video tab: upload a short clip, watch it colorized frame by frame, cancel, download its MP4."""
    with gr.Tab("Video", elem_id="video-tab"):
        gr.Markdown(f"A clip up to {MAX_VIDEO_PIXELS / 1e6:.0f} megapixels of film (frames x width x height, e.g. "
                    f"{MAX_VIDEO_EXAMPLE}) comes back as an MP4 with its sound; longer ones with "
                    "`colorize apply CLIP --model ... --out ...` from a terminal. Colour is carried along the "
                    "motion from frame to frame so it does not flicker; 0 colorizes every frame on its own. "
                    "Keyframes K runs the network on every K-th frame only: several times faster.")
        with gr.Row():
            with gr.Column(scale=1):
                clip = gr.File(label="video", file_types=sorted(VIDEO_EXTS), type="filepath", elem_id="video")
                temporal = gr.Slider(0, 0.95, step=0.05, value=DEFAULT_TEMPORAL,
                                     label="steadiness (weight of the colour carried from the previous frame)")
                keyframes = gr.Slider(1, 8, step=1, value=1, label="keyframes (the network on every K-th frame)")
                with gr.Row():
                    run = gr.Button("Colorize video", variant="primary")
                    cancel = gr.Button("Cancel", variant="stop", elem_id="video-cancel")
                download = gr.File(label="colorized MP4", interactive=False, elem_id="video-result")
            with gr.Column(scale=3):
                preview = gr.Image(label="first colorized frames", type="pil", format="jpeg", interactive=False,
                                   elem_id="video-preview")
                player = gr.Video(label="colorized", format="mp4", interactive=False, elem_id="video-player")
        job = run.click(partial(colorize_video_upload, models), [clip, model, render_size, temporal, keyframes],
                        [preview, player, download], api_name="colorize_video", concurrency_id="model")
        cancel.click(None, cancels=[job])


_relaunched: list[gr.Blocks] = []  # the app `relaunch` served last in this process, while it serves


def relaunch(app: gr.Blocks, **kwargs) -> tuple[str, str | None]:
    """`launch(app, **kwargs)` after closing the app the previous `relaunch` served: a notebook cell run again
    serves one app, not one more."""
    while _relaunched:
        _relaunched.pop().close()
    local_url, share_url = launch(app, **kwargs)
    _relaunched.append(app)
    return local_url, share_url


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

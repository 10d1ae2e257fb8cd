"""`colorize app`: a local Gradio page, and API, that colorizes uploaded photos with one or more generators.

Offline and private by default: `launch` binds to 127.0.0.1, makes no share link, sends no analytics,
and serves a theme in the system's fonts, so the page fetches nothing from the internet. Requests
queue one at a time. Uploads and results live in Gradio's temporary folder and are deleted an hour
after they are made, and when the server stops.

Endpoints (for `gradio_client.Client(url).predict(..., api_name=...)`):
    /colorize       photo file [, model name, render size] -> the colorized PNG at the photo's size
    /colorize_many  list of photo files [, model name, render size] -> gallery of PNGs, one zip of them
"""

from __future__ import annotations

import html
import logging
import os
import uuid
import zipfile
from functools import partial
from pathlib import Path
from typing import Mapping, Sequence

import gradio as gr
from fastai.torch_core import default_device
from torch import nn

from .data import IMAGE_EXTS, BadImageError, load_rgb
from .evaluate import model_name
from .inference import PNG_COMPRESS_LEVEL, colorize_files, colorize_image
from .models import load_generator

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"  # this machine only; --host 0.0.0.0 opens it to the network
DEFAULT_PORT = 7860  # Gradio's usual port
RENDER_SIZES = (32, 1024, 32)  # render size slider: min, max, step (the encoder needs multiples of 32)
DEFAULT_RENDER_SIZE = 256  # what the generators are trained at (and colorize_image's default)
CACHE_CLEANUP = (3600, 3600)  # Gradio's delete_cache: every hour, delete uploads and results over an hour old
SANS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace"]
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
    return {name: load_generator(c, device=device or default_device()) for name, c in zip(names, checkpoints)}


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
    size = int(render_size)
    lo, hi, step = RENDER_SIZES
    if not lo <= size <= hi or size % step:
        raise _refuse(f"render size {size}: choose a multiple of {step} from {lo} to {hi} ({DEFAULT_RENDER_SIZE} "
                       "is what the models are trained at)")
    return size


def colorize_upload(models: Mapping[str, nn.Module], photo: str | None, model: str | None = None,
                    render_size: int = DEFAULT_RENDER_SIZE) -> tuple[str, str]:
    """One uploaded photo -> (its colorized PNG, a PNG of the photo as read) for the download and the slider.

    Both are at the photo's full size, EXIF orientation applied and transparency kept. A file that is
    not a readable photo raises `gr.Error`, which the page shows as a message.
    """
    if photo is None:
        raise _refuse("upload a photo first")
    generator, size = _model(models, model), _check_size(render_size)
    name = Path(photo).name
    try:
        image = load_rgb(photo, keep_alpha=True)
    except BadImageError as e:
        reason = str(e.__cause__ or e).replace(photo, name)  # the name the user knows, not the upload folder's path
        raise _refuse(f"{name} is not a photo this app can read ({reason}); upload a "
                      f"{', '.join(sorted(x.lstrip('.').upper() for x in IMAGE_EXTS))} file") from e
    out = _results_dir()
    before, after = out / f"{Path(name).stem}.png", out / f"{Path(name).stem}-colorized.png"
    image.save(before, compress_level=PNG_COMPRESS_LEVEL)
    colorize_image(generator, image, render_size=size).save(after, compress_level=PNG_COMPRESS_LEVEL)
    log.info("colorized %s (%dx%d) with %s at %d px", name, *image.size, model, size)
    return str(after), str(before)


def colorize_uploads(models: Mapping[str, nn.Module], photos: list[str] | None, model: str | None = None,
                     render_size: int = DEFAULT_RENDER_SIZE) -> tuple[list[tuple[str, str]], str]:
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
            model = gr.Dropdown(choices, value=choices[0], label="model", interactive=len(choices) > 1)
            render_size = gr.Slider(*RENDER_SIZES[:2], step=RENDER_SIZES[2], value=DEFAULT_RENDER_SIZE,
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
    app.queue(default_concurrency_limit=1)  # one photo at a time: a CPU has nothing to spare for a second
    return app


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

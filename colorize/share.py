"""`colorize push`: a generator checkpoint on the Hugging Face Hub with a model card made from its metadata, its
run's recipe and history, and an evaluation report where there is one."""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .hub import HUB_FILENAME, import_huggingface_hub, resolve_checkpoint
from .models import read_checkpoint_metadata
from .run import CONFIG_NAME, HISTORY_NAME

log = logging.getLogger(__name__)

CARD_HISTORY_ROWS = 10  # the model card shows the last epochs; the whole history.csv is uploaded beside it


@dataclass(frozen=True)
class RunFiles:
    """What a model card is written from: the checkpoint and, where they exist, its run's and evaluation's files."""

    checkpoint: Path
    config: Path | None = None  # the run's recipe (config.json beside the checkpoint)
    history: Path | None = None  # one row per epoch (history.csv beside the checkpoint)
    results: Path | None = None  # an evaluation's results.md
    gallery: Path | None = None  # the gallery.png beside results.md

    @classmethod
    def find(cls, checkpoint: str | os.PathLike, evaluation: str | os.PathLike | None = None,
             config_name: str = "config.json", history_name: str = "history.csv") -> "RunFiles":
        """The checkpoint's run files (in its folder) and an evaluation report (results.md or its folder)."""
        checkpoint = Path(checkpoint)
        results = gallery = None
        if evaluation is not None:
            results = Path(evaluation) / "results.md" if Path(evaluation).is_dir() else Path(evaluation)
            if not results.is_file():
                raise FileNotFoundError(f"no evaluation report at {results}: pass the results.md written by "
                                        "`colorize evaluate`, or the folder that holds it")
            gallery = results.parent / "gallery.png"
        return cls(checkpoint, _if_file(checkpoint.parent / config_name), _if_file(checkpoint.parent / history_name),
                   results, _if_file(gallery))


def _if_file(path: Path | None) -> Path | None:
    return path if path is not None and path.is_file() else None


def model_card(meta: dict, repo_id: str, files: RunFiles) -> str:
    """The repository's README.md: Hub metadata, what the generator is, how to use it, and its run's record.

    `meta` is `models.read_checkpoint_metadata` of the checkpoint.
    """
    from huggingface_hub import ModelCardData

    extra = meta.get("extra", {})
    stage = extra.get("stage")
    tags = ["image-colorization", "fastai", "pytorch", "safetensors"] + (["gan", "pix2pix"] if stage == "gan" else [])
    header = ModelCardData(library_name="colorize", pipeline_tag="image-to-image", tags=tags)
    lines = [
        "---", header.to_yaml(), "---", "",
        f"# {repo_id}", "",
        f"A [colorize](https://github.com/colorize-project/colorize) generator{f' ({stage} stage)' if stage else ''}: "
        f"a fastai U-Net on a {meta['arch']} body that takes the lightness L of a photo"
        f"{' and a map of colour hints' if meta.get('in_channels', 1) > 1 else ''} and predicts its colour "
        f"(ab in CIE Lab), trained at {meta['size']}x{meta['size']} px. Photos of any size are colorized at full "
        "resolution: the model sees the photo resized to the render size, its colour is upsampled and joined "
        "with the photo's own L, so the output keeps the input's size and lightness.",
        "",
        "## Use it", "",
        "```bash",
        "pip install 'fastai-colorize[app]'",
        f"colorize apply old_photos/ --model hf://{repo_id} --out colorized/",
        f"colorize app --model hf://{repo_id}       # a local web page with a before/after slider",
        "```", "",
        "```python",
        "from PIL import Image",
        "from colorize.inference import colorize_image",
        "from colorize.models import load_generator",
        "",
        f'model = load_generator("hf://{repo_id}")',
        'colorize_image(model, Image.open("photo.jpg")).save("photo_color.png")',
        "```", "",
        f"The weights are in `{HUB_FILENAME}` (safetensors: loading runs no code). Its metadata rebuilds the network:",
        "",
        "| field | value |", "| --- | --- |",
        *(f"| {k} | {_cell(meta[k])} |" for k in ("arch", "size", "in_channels", "normalisation", "colorize_version")
          if k in meta),
        *(f"| {k} | {_cell(v)} |" for k, v in extra.items()),
    ]
    if files.config:
        config = json.loads(files.config.read_text())
        lines += ["", "## Training recipe", "", f"From the run's `{files.config.name}`:", "",
                  "| setting | value |", "| --- | --- |", *(f"| {k} | {_cell(v)} |" for k, v in config.items())]
    if files.history:
        with files.history.open(newline="") as f:
            rows = list(csv.reader(f))
        head, body = rows[0], rows[1:]
        shown = body[-CARD_HISTORY_ROWS:]
        lines += ["", "## Training history", "",
                  f"The last {len(shown)} of {len(body)} epochs (all of them in `{files.history.name}`):", "",
                  "| " + " | ".join(head) + " |", "|" + " --- |" * len(head),
                  *("| " + " | ".join(row) + " |" for row in shown)]
    if files.results:
        lines += ["", "## Evaluation", "", "From `colorize evaluate` (`results.md`):", "",
                  files.results.read_text().strip()]
        if files.gallery:
            lines += ["", f"![Evaluation gallery]({files.gallery.name})"]
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    """A value as one Markdown table cell."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("|", "\\|").replace("\n", " ")


def push_checkpoint(checkpoint: str | os.PathLike, repo_id: str, evaluation: str | os.PathLike | None = None,
                    private: bool = False) -> str:
    """Upload a generator checkpoint and its model card to the Hub model repository `repo_id`, in one commit.

    The checkpoint goes up as `generator.safetensors` (so `hf://repo_id` loads it), with README.md (the
    card), and the run's config.json and history.csv and the evaluation's gallery.png where present.
    The repository is created if needed (`private` then applies). Credentials are huggingface_hub's
    own (`hf auth login` or HF_TOKEN). Returns the URL of the commit.
    """
    hf = import_huggingface_hub()
    from huggingface_hub.errors import HfHubHTTPError

    local = Path(resolve_checkpoint(checkpoint))
    meta = read_checkpoint_metadata(local)  # refuses anything that is not a generator checkpoint
    files = RunFiles.find(local, evaluation, config_name=CONFIG_NAME, history_name=HISTORY_NAME)
    card = model_card(meta, repo_id, files)
    uploads = {HUB_FILENAME: local}
    uploads.update({p.name: p for p in (files.config, files.history, files.gallery) if p is not None})
    operations = [hf.CommitOperationAdd("README.md", card.encode())]
    operations += [hf.CommitOperationAdd(name, str(path)) for name, path in uploads.items()]

    api = hf.HfApi(library_name="colorize")
    try:
        repo = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.create_commit(repo.repo_id, operations, commit_message=f"colorize push: {local.name}",
                                   repo_type="model")
    except HfHubHTTPError as e:
        raise RuntimeError(f"the Hub refused the upload to {repo_id}: {e}; log in with a write token "
                           "(`hf auth login`, or set HF_TOKEN) and check that USER is you or your organisation") from e
    log.info("pushed %s to %s (%s)", local, repo.repo_id, ", ".join(["README.md", *uploads]))
    return commit.commit_url

"""Generators on the Hugging Face Hub: `hf://USER/NAME` checkpoint paths (`colorize.share` pushes one).

`hf://USER/NAME[@REVISION][/FILE.safetensors]` names a file in a model repository (default FILE:
`generator.safetensors`, the name `push_checkpoint` uploads under). `resolve_checkpoint` downloads it
once into huggingface_hub's cache (HF_HOME) and returns the local path, which then goes through the
same checkpoint validation as any local file; only safetensors files are accepted, so nothing is
unpickled. `hf:/USER/NAME` (what `pathlib.Path` makes of `hf://`) is accepted too.

huggingface_hub is an optional dependency (`pip install 'fastai-colorize[hub]'`); it is imported only when a
Hub path or a push is used.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

HF_PREFIXES = ("hf://", "hf:/")  # the second is what pathlib makes of the first
HUB_FILENAME = "generator.safetensors"  # the checkpoint's name in a repository pushed by `push_checkpoint`
INSTALL_HINT = "pip install 'fastai-colorize[hub]'"


@dataclass(frozen=True)
class HubFile:
    """A checkpoint in a Hub model repository, parsed from an `hf://` path."""

    repo_id: str  # USER/NAME
    filename: str = HUB_FILENAME
    revision: str | None = None  # branch, tag or commit; None: main

    @property
    def url(self) -> str:
        return f"hf://{self.repo_id}{'@' + self.revision if self.revision else ''}/{self.filename}"


def parse_hub_path(path: str | os.PathLike) -> HubFile | None:
    """The Hub file an `hf://USER/NAME[@REV][/FILE]` path names; None for any other path."""
    text = os.fspath(path)
    prefix = next((p for p in HF_PREFIXES if text.startswith(p)), None)
    if prefix is None:
        return None
    parts = text[len(prefix):].strip("/").split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise ValueError(f"{text}: a Hub checkpoint is hf://USER/NAME or hf://USER/NAME/FILE.safetensors")
    name, _, revision = parts[1].partition("@")
    filename = "/".join(parts[2:]) or HUB_FILENAME
    if not filename.endswith(".safetensors"):
        raise ValueError(f"{text}: only .safetensors checkpoints are loaded from the Hub (they hold no code); "
                         f"name one, e.g. hf://{parts[0]}/{name}/{HUB_FILENAME}")
    return HubFile(f"{parts[0]}/{name}", filename, revision or None)


def resolve_checkpoint(path: str | os.PathLike) -> str | os.PathLike:
    """A local path for a checkpoint: `hf://` paths are downloaded into the Hub cache, others returned as given."""
    hub = parse_hub_path(path)
    if hub is None:
        return path
    hf = import_huggingface_hub()
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    try:
        local = hf.hf_hub_download(hub.repo_id, hub.filename, revision=hub.revision, library_name="colorize")
    except RepositoryNotFoundError:
        raise FileNotFoundError(f"{hub.url}: no model repository {hub.repo_id} on the Hugging Face Hub, or it is "
                                "private or gated (log in with `hf auth login` to use a private one)") from None
    except RevisionNotFoundError:
        raise FileNotFoundError(f"{hub.url}: {hub.repo_id} has no branch, tag or commit {hub.revision!r}") from None
    except LocalEntryNotFoundError:  # before EntryNotFoundError: it is one
        raise FileNotFoundError(f"{hub.url} is not in the local Hugging Face cache and the Hub cannot be reached; "
                                "connect once to download it, or pass a local .safetensors file") from None
    except EntryNotFoundError:
        raise FileNotFoundError(f"{hub.url}: {hub.repo_id} has no file {hub.filename}; name the checkpoint file, "
                                f"e.g. hf://{hub.repo_id}/best.safetensors") from None
    log.debug("%s -> %s", hub.url, local)
    return Path(local)


def import_huggingface_hub():
    try:
        import huggingface_hub
    except ModuleNotFoundError:
        need = "hf:// checkpoints and `colorize push` need huggingface_hub"
        raise ModuleNotFoundError(f"{need}: {INSTALL_HINT}") from None
    return huggingface_hub

"""Hugging Face Hub: `hf://` checkpoint paths and `colorize push`, tested from where the bytes arrive.

Only huggingface_hub's network calls are replaced (`hf_hub_download`, `HfApi.create_repo`,
`HfApi.create_commit`); parsing, validation, loading and the model card run for real.
"""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

hf = pytest.importorskip("huggingface_hub", reason="pip install -e '.[dev]'")
from huggingface_hub.errors import (HfHubHTTPError, LocalEntryNotFoundError,  # noqa: E402
                                    RepositoryNotFoundError)

from colorize import cli  # noqa: E402
from colorize.hub import HUB_FILENAME, HubFile, parse_hub_path  # noqa: E402
from colorize.share import push_checkpoint  # noqa: E402
from colorize.models import load_generator, read_checkpoint_metadata  # noqa: E402



class FakeHub:
    """A Hub repository held in a dict {(repo, filename): local file}; `download` stands in for hf_hub_download."""

    def __init__(self, cache: Path):
        self.files, self.cache, self.downloads = {}, cache, []

    def download(self, repo_id, filename, *, revision=None, **kwargs):
        self.downloads.append((repo_id, filename, revision))
        if (repo_id, filename) not in self.files:
            raise LocalEntryNotFoundError("not cached and offline")
        dest = self.cache / repo_id / (revision or "main") / filename  # as the HF cache: a path of its own
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.files[repo_id, filename], dest)
        return str(dest)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    fake = FakeHub(tmp_path / "hf-cache")
    monkeypatch.setattr(hf, "hf_hub_download", fake.download)
    return fake


def _outputs(model):
    return model(torch.linspace(-1, 1, 32 * 32).reshape(1, 1, 32, 32))


def test_hub_paths_are_parsed_and_others_left_alone():
    assert parse_hub_path("hf://ann/colorizer") == HubFile("ann/colorizer", HUB_FILENAME, None)
    assert parse_hub_path(Path("hf://ann/colorizer")) == HubFile("ann/colorizer")  # pathlib makes it hf:/
    assert parse_hub_path("hf://ann/colorizer@v2/runs/best.safetensors") == HubFile(
        "ann/colorizer", "runs/best.safetensors", "v2")
    assert parse_hub_path("runs/places365-l1/best.safetensors") is None
    with pytest.raises(ValueError, match="a Hub checkpoint is hf://USER/NAME"):
        parse_hub_path("hf://ann")
    with pytest.raises(ValueError, match="only .safetensors checkpoints are loaded from the Hub"):
        parse_hub_path("hf://ann/colorizer/pytorch_model.bin")


def test_hf_path_loads_through_the_checkpoint_validation(tmp_path, hub, tiny_checkpoint):
    local = tiny_checkpoint(tmp_path / "run" / "best.safetensors", epoch=4)
    hub.files["ann/colorizer", HUB_FILENAME] = local
    hub.files["ann/colorizer", "best.safetensors"] = local
    from_hub = load_generator("hf://ann/colorizer")
    with torch.inference_mode():
        assert torch.equal(_outputs(from_hub), _outputs(load_generator(local)))
    assert read_checkpoint_metadata("hf://ann/colorizer@v1/best.safetensors")["extra"] == {"epoch": 4}
    assert hub.downloads == [("ann/colorizer", HUB_FILENAME, None), ("ann/colorizer", "best.safetensors", "v1")]

    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors")  # safetensors, but not a generator
    hub.files["ann/other", HUB_FILENAME] = tmp_path / "other.safetensors"
    with pytest.raises(ValueError, match="is a safetensors file but not a colorize generator checkpoint"):
        load_generator("hf://ann/other")


def test_cli_apply_takes_an_hf_path(tmp_path, hub, capsys, tiny_checkpoint):
    hub.files["ann/colorizer", HUB_FILENAME] = tiny_checkpoint(tmp_path / "run" / "best.safetensors")
    Image.new("L", (40, 30), 128).save(tmp_path / "gray.png")
    assert cli.main(["apply", str(tmp_path / "gray.png"), "--model", "hf://ann/colorizer", "--out",
                     str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert Image.open(tmp_path / "out" / "gray.png").size == (40, 30)


def test_hub_failures_say_what_to_do(hub, monkeypatch):
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache and the Hub cannot be reached"):
        load_generator("hf://ann/never-downloaded")

    def missing(*args, **kwargs):
        raise RepositoryNotFoundError("404", response=httpx.Response(404, request=httpx.Request("GET", "https://x")))

    monkeypatch.setattr(hf, "hf_hub_download", missing)
    with pytest.raises(FileNotFoundError, match="no model repository ann/typo on the Hugging Face Hub, or it is "
                                                "private or gated"):
        load_generator("hf://ann/typo")


@pytest.fixture
def run(tmp_path, tiny_checkpoint):
    """A run folder as training leaves it, and an evaluation report beside it."""
    run = tmp_path / "runs" / "demo-l1"
    ckpt = tiny_checkpoint(run / "best.safetensors", stage="pretrain", epoch=12, valid_loss=0.0712)
    (run / "config.json").write_text(json.dumps({"arch": "resnet18", "size": 32, "epochs": 12, "lr": 0.001}))
    (run / "history.csv").write_text("epoch,train_loss,valid_loss\n" +
                                     "".join(f"{e},{1 / (e + 1):.4f},{1 / (e + 2):.4f}\n" for e in range(12)))
    report = tmp_path / "report"
    report.mkdir()
    (report / "results.md").write_text("| model | PSNR ab (dB) ↑ |\n| --- | ---: |\n| demo-l1/best | 22.99 |\n")
    Image.new("RGB", (8, 8)).save(report / "gallery.png")
    return ckpt, report


class FakeApi:
    """Records what `push_checkpoint` asks of the Hub instead of sending it."""

    def __init__(self):
        self.repos, self.commits = [], []

    def create_repo(self, repo_id, *, repo_type, private, exist_ok):
        self.repos.append((repo_id, repo_type, private, exist_ok))
        return hf.RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_commit(self, repo_id, operations, *, commit_message, repo_type):
        files = {}
        for op in operations:
            src = op.path_or_fileobj
            files[op.path_in_repo] = src if isinstance(src, bytes) else Path(src).read_bytes()
        self.commits.append((repo_id, files, commit_message))
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0123abc")


@pytest.fixture
def api(monkeypatch):
    fake = FakeApi()
    monkeypatch.setattr(hf.HfApi, "create_repo", fake.create_repo)
    monkeypatch.setattr(hf.HfApi, "create_commit", fake.create_commit)
    return fake


def test_push_uploads_the_checkpoint_with_a_card_from_its_run(run, api, hub, capsys):
    ckpt, report = run
    assert cli.main(["push", "--model", str(ckpt), "--repo", "ann/colorizer", "--eval", str(report),
                     "--private"]) == 0
    assert f"pushed {ckpt} to https://huggingface.co/ann/colorizer/commit/0123abc" in capsys.readouterr().out
    assert api.repos == [("ann/colorizer", "model", True, True)]
    (repo, files, message), = api.commits
    assert sorted(files) == ["README.md", "config.json", "gallery.png", HUB_FILENAME, "history.csv"]
    assert files[HUB_FILENAME] == ckpt.read_bytes() and message == "colorize push: best.safetensors"

    card = files["README.md"].decode()
    assert card.startswith("---\n") and "library_name: colorize" in card and "pipeline_tag: image-to-image" in card
    assert "(pretrain stage): a fastai U-Net on a resnet18 body" in card and "trained at 32x32 px" in card
    assert "colorize apply old_photos/ --model hf://ann/colorizer" in card
    assert "| in_channels | 1 |" in card and "| epoch | 12 |" in card and "| valid_loss | 0.0712 |" in card
    assert "| lr | 0.001 |" in card  # the recipe
    assert "The last 10 of 12 epochs" in card and "| 11 | 0.0833 | 0.0769 |" in card and "| 1 | 0.5000" not in card
    assert "| demo-l1/best | 22.99 |" in card and "![Evaluation gallery](gallery.png)" in card

    # what was pushed loads back through hf:// as the same generator
    hub.files["ann/colorizer", HUB_FILENAME] = ckpt.parent / "pushed.safetensors"
    (ckpt.parent / "pushed.safetensors").write_bytes(files[HUB_FILENAME])
    with torch.inference_mode():
        assert torch.equal(_outputs(load_generator("hf://ann/colorizer")), _outputs(load_generator(ckpt)))


def test_push_of_a_lone_checkpoint_has_a_card_without_run_sections(tmp_path, api, tiny_checkpoint):
    ckpt = tiny_checkpoint(tmp_path / "model.safetensors")
    push_checkpoint(ckpt, "ann/bare")
    (_, files, _), = api.commits
    assert sorted(files) == ["README.md", HUB_FILENAME]
    card = files["README.md"].decode()
    assert "## Training recipe" not in card and "## Training history" not in card and "## Evaluation" not in card
    assert api.repos == [("ann/bare", "model", False, True)]


def test_push_refuses_before_any_upload(tmp_path, api, monkeypatch, tiny_checkpoint):
    np.save(tmp_path / "weights.npy", np.zeros(3))
    with pytest.raises(ValueError, match="is not a colorize generator checkpoint"):
        push_checkpoint(tmp_path / "weights.npy", "ann/x")
    with pytest.raises(FileNotFoundError, match="no evaluation report at .*results.md: pass the results.md"):
        push_checkpoint(tiny_checkpoint(tmp_path / "m.safetensors"), "ann/x", evaluation=tmp_path)
    assert api.repos == [] and api.commits == []

    def refused(*args, **kwargs):
        raise HfHubHTTPError("401 Unauthorized", response=httpx.Response(401, request=httpx.Request("POST", "https://x")))

    monkeypatch.setattr(hf.HfApi, "create_repo", refused)
    with pytest.raises(RuntimeError, match="the Hub refused the upload to ann/x: .*log in with a write token"):
        push_checkpoint(tmp_path / "m.safetensors", "ann/x")

"""The set-up a newcomer relies on: a working torch/torchvision pair, fastai, and files that agree."""

import re
import tomllib
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name -> conda-forge/pytorch channel name


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[;]", req.strip(), maxsplit=1)[0].lower()


def test_torch_and_torchvision_are_a_matching_pair():
    import torchvision

    # a CPU-only torch with a CUDA torchvision fails here ("operator torchvision::nms does not exist")
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
    keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]


def test_fastai_vision_imports_and_builds_the_generator():
    import fastai.vision.all  # noqa: F401

    from colorize.models import build_generator

    g = build_generator("resnet18", size=64, pretrained=False)
    assert g(torch.zeros(1, 1, 64, 64)).shape == (1, 2, 64, 64)


def test_environment_yml_lists_every_runtime_dependency():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda = {_name(d) for d in env if isinstance(d, str)}
    pip = {_name(d) for group in env if isinstance(group, dict) for d in group.get("pip", [])}
    missing = [d for d in map(_name, deps) if CONDA_NAMES.get(d, d) not in conda | pip]
    assert not missing, f"in pyproject.toml but not environment.yml: {missing}"
    assert {"conda-forge", "pytorch"} <= set(yaml.safe_load((ROOT / "environment.yml").read_text())["channels"])


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()

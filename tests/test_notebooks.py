"""Every notebook: committed clean and thin (fast), and executed end to end in smoke mode with papermill (slow)."""

import re
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest

from colorize.data import INDEX_NAME
from colorize.gan import GALLERY_NAME
from colorize.run import BEST_NAME, HISTORY_NAME, LAST_NAME

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# What each notebook's smoke run must leave under its folder (globs) and how many figures it must draw at least.
# A new notebook adds its line here (test_notebook_states_what_it_produces says so).
PRODUCES = {
    "01_data": ([f"**/{INDEX_NAME}"], 3),
    "02_pretrain_generator": ([f"**/{BEST_NAME}", f"**/{HISTORY_NAME}"], 4),
    "03_gan_finetune": ([f"**/{LAST_NAME}", f"**/{HISTORY_NAME}", f"**/{GALLERY_NAME.format(1)}"], 5),
    "04_evaluate_and_colorize": (["**/results.md", "**/gallery.png", "**/hardest.png", "**/*_colorized.png"], 5),
    "05_colour_hints": ([f"**/{BEST_NAME}", "**/hint_curve.png", "**/hints.json", f"**/{GALLERY_NAME.format(1)}"], 6),
}
CELL_TIMEOUT_S = 300  # generous for a busy 2-core machine; a smoke notebook takes well under a minute

notebooks = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def repository_url() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        urls = tomllib.load(f)["project"].get("urls", {})
    if "Repository" not in urls:
        pytest.fail('pyproject.toml needs [project.urls] Repository = "https://github.com/OWNER/NAME": '
                    "the notebooks' Colab install cell and badge must use that URL")
    return urls["Repository"]


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:4] == ["01_data.ipynb", "02_pretrain_generator.ipynb", "03_gan_finetune.ipynb",
                                               "04_evaluate_and_colorize.ipynb"]


@notebooks
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(code_cells(nb)) if c.outputs or c.execution_count is not None]
    assert not dirty, f"{path.name}: code cells {dirty} have outputs; clear all outputs before committing"


@notebooks
def test_notebook_has_one_parameters_cell_and_branches_on_smoke_only_next_to_it(path):
    cells = code_cells(nbformat.read(path, as_version=4))
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters', expected exactly one"
    i = tagged[0]
    assert re.search(r"^SMOKE = False\b", cells[i].source, re.M), "the parameters cell sets SMOKE = False"
    later = [j for j, c in enumerate(cells[i + 2:], start=i + 2) if re.search(r"\bSMOKE\b", c.source)]
    assert not later, f"{path.name}: code cells {later} use SMOKE; only the cell right after the parameters may"


@notebooks
def test_notebook_defines_nothing_outside_teaching_cells(path):
    for c in code_cells(nbformat.read(path, as_version=4)):
        if re.search(r"^\s*(async\s+def|def|class)\s", c.source, re.M):
            assert re.search(r"^\s*assert\b", c.source, re.M), (
                f"{path.name}: a def/class outside a teaching cell (one that asserts it matches the package):\n"
                f"{c.source}\nmove it into colorize/")


@notebooks
def test_notebook_installs_the_package_in_colab_from_the_project_url(path):
    nb = nbformat.read(path, as_version=4)
    url = repository_url()
    first = code_cells(nb)[0].source
    assert '"google.colab" in sys.modules' in first, "the first code cell installs only inside Colab"
    assert re.search(rf'^\s+%pip install -q "colorize @ git\+{re.escape(url)}"$', first, re.M), (
        f"{path.name}: the first code cell must `%pip install` colorize from {url} (pyproject's Repository)")
    repo = url.removeprefix("https://github.com/")
    text = "\n".join(c.source for c in nb.cells)
    links = re.findall(r"(?:github\.com|colab\.research\.google\.com/github)/([\w.-]+/[\w.-]+?)(?:\.git)?[/\")\s]", text)
    assert set(links) == {repo}, (
        f"{path.name}: every GitHub link must point at {repo} (pyproject's Repository)")


@notebooks
def test_notebook_states_what_it_produces(path):
    assert path.stem in PRODUCES, f"add {path.stem!r} to PRODUCES in {Path(__file__).name}: what its smoke run makes"


def test_kernel_python3_is_this_interpreter():
    """papermill's 'python3' must start the .venv's python, the one that has colorize installed."""
    from jupyter_client.manager import KernelManager

    assert KernelManager(kernel_name="python3").format_kernel_cmd()[0] == sys.executable


@pytest.mark.slow
@notebooks
def test_notebook_runs_end_to_end_in_smoke_mode(path, tmp_path):
    import papermill as pm

    folders = {name: str(tmp_path / name.lower()) for name in pm.inspect_notebook(path) if name.endswith("_DIR")}
    out = tmp_path / path.name
    pm.execute_notebook(path, out, parameters={"SMOKE": True, **folders}, kernel_name="python3", cwd=tmp_path,
                        progress_bar=False, execution_timeout=CELL_TIMEOUT_S)

    outputs = [o for c in code_cells(nbformat.read(out, as_version=4)) for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    globs, min_figures = PRODUCES[path.stem]
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    assert figures >= min_figures, f"{path.name} drew {figures} figure(s), expected at least {min_figures}"
    for pattern in globs:
        assert list(tmp_path.glob(pattern)), f"{path.name} in smoke mode wrote no {pattern} under {tmp_path}"

"""benchmarks/budget.py starts, counts every notebook's long cells, and the README quotes its table."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_budget():
    spec = importlib.util.spec_from_file_location("budget", ROOT / "benchmarks" / "budget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_cells(text: str, path: str) -> list[tuple[str, str]]:
    """(notebook, cell) of each row of one path's table in budget.py's output (or the README's copy of it)."""
    section = text.split(f"### {path}\n", 1)[1].strip("\n").split("\n\n", 1)[0]
    return [tuple(c.strip() for c in row.split("|")[1:3]) for row in section.splitlines()[2:] if row.strip()]


@pytest.mark.slow
def test_the_budget_counts_every_notebooks_long_cells_and_the_readme_quotes_it(capsys, tmp_path):
    load_budget().main(["--data", str(tmp_path / "no-index"), "--paths", "colab"])
    out = capsys.readouterr().out
    assert out.startswith("PROJECTED at 6 TFLOP/s")
    cells = table_cells(out, "colab")
    assert {n for n, _ in cells} == {"01", "02", "02, optional", "03", "04", "05", "06", ""}  # "": the totals
    for needed in [("02", "learning-rate finder"), ("04", "evaluation"), ("05", "hint curve: model passes"),
                   ("05", "hint curve: Levin et al. row (CPU)"), ("06", "video"),
                   ("02, optional", "training (finetune) on your 300 photos (its last section; CLI)")]:
        assert needed in cells, needed
    assert [n for n, c in cells if c.startswith("download")] == ["01"]  # once, kept on Drive
    assert [n for n, c in cells if c.startswith("unpack Places365 from Drive")] == ["02", "03", "04", "05"]  # fresh disks
    levin = next(row for row in out.splitlines() if "Levin et al. row" in row)
    assert re.search(r"8 counts x 50 photos x [\d.]+ s \| [\d.]+ (s|min|h) \|", levin), levin  # per count, per photo
    readme = (ROOT / "README.md").read_text()
    assert "### colab" in readme and table_cells(readme, "colab")[: len(cells) - 1] == cells[:-1], (
        "the README's budget table is not budget.py's: paste `python benchmarks/budget.py --paths colab`")


@pytest.mark.parametrize("notebook, parameter, name", [("02_pretrain_generator", "LR_FIND_STEPS", "LR_FIND_STEPS"),
                                                        ("05_colour_hints", "CURVE_PHOTOS", "CURVE_PHOTOS")])
def test_the_budget_counts_what_the_notebooks_parameters_say(notebook, parameter, name):
    import nbformat

    cells = nbformat.read(ROOT / "notebooks" / f"{notebook}.ipynb", as_version=4).cells
    params = next(c.source for c in cells if "parameters" in c.metadata.get("tags", []))
    value = re.search(rf"^{parameter} = (\d+)", params, re.M)
    assert value and int(value.group(1)) == getattr(load_budget(), name), (notebook, parameter)

"""Notebook 07 (colour from a reference) executed end to end in smoke mode: offline, tiny, on the CPU."""

import json
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "07_reference.ipynb"


@pytest.mark.slow
def test_the_reference_notebook_runs_in_smoke_mode_and_guides_the_same_scene(tmp_path):
    import papermill as pm

    folders = {p: str(tmp_path / p.lower()) for p in pm.inspect_notebook(NOTEBOOK) if p.endswith("_DIR")}
    pm.execute_notebook(NOTEBOOK, tmp_path / NOTEBOOK.name, parameters={"SMOKE": True, **folders},
                        kernel_name="python3", cwd=tmp_path, progress_bar=False, execution_timeout=300)
    nb = nbformat.read(tmp_path / NOTEBOOK.name, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4  # pair, correspondence, result, cases
    out = tmp_path / "runs_dir" / "smoke" / "reference"
    assert len(json.loads((out / "hints.json").read_text())) > 20
    rows = {line.split("|")[1].strip(): line.split("|") for line in (out / "reference.md").read_text().splitlines()[2:]}
    assert float(rows["same"][6]) > 1.0 and float(rows["mismatched"][6]) == 0.0  # gain in dB, guided - automatic

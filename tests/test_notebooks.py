"""Every notebook: committed clean and thin (fast), and executed end to end in smoke mode with papermill (slow)."""

import ast
import json
import os
import re
import sys
import time
import tomllib
import types
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from colorize.data import INDEX_NAME
from colorize.files import SMOKE_FOLDER, runs_dir
from colorize.run import BEST_NAME, GALLERY_NAME, HISTORY_NAME, LAST_NAME

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# What each notebook's smoke run must leave under its folder (globs) and how many figures it must draw at least.
# A new notebook adds its line here (test_notebook_states_what_it_produces says so).
PRODUCES = {
    "01_data": ([f"**/{INDEX_NAME}"], 3),
    "02_pretrain_generator": ([f"**/{BEST_NAME}", f"**/{HISTORY_NAME}", f"**/my-photos/{BEST_NAME}",
                               "**/my-photos/report/results.md"], 5),
    "03_gan_finetune": ([f"**/{LAST_NAME}", f"**/{HISTORY_NAME}", f"**/{GALLERY_NAME.format(1)}"], 5),
    "04_evaluate_and_colorize": (["**/results.md", "**/gallery.png", "**/hardest.png", "**/*_colorized.png"], 5),
    "05_colour_hints": ([f"**/{BEST_NAME}", "**/hint_curve.png", "**/hints.json", f"**/{GALLERY_NAME.format(1)}"], 6),
    "06_video": (["**/clip_colorized.mp4", "**/clip_per_frame.mp4", "**/flicker.md", "**/ab_over_time.png"], 3),
    "07_reference": (["**/hints.json", "**/reference.md"], 4),  # pair, correspondence, result, the three cases
}
# HTML a notebook's smoke run must show (a regular expression): the web app of notebooks 4 and 5, inline, on this machine only.
SHOWS = {"04_evaluate_and_colorize": r'<iframe src="http://127\.0\.0\.1:\d+/',
         "05_colour_hints": r'<iframe src="http://127\.0\.0\.1:\d+/'}
# The notebooks that train: they ask Colab for a GPU, keep runs on Drive when asked and guard the CPU.
TRAINS = {"02_pretrain_generator", "03_gan_finetune", "05_colour_hints"}
# The long cells besides training: what each prints before its long part, projected from its first photos or frames
# on this machine (the smoke run's CPU), and guarded (ALLOW_CPU passed).
PROJECTS = {
    "04_evaluate_and_colorize": r"evaluating .+ on \d+ photos: about .+ on this cpu \(projected from \d+ photos?\)",
    "05_colour_hints": r"evaluating .+ on \d+ photos, hint curves of .+: about .+ on this cpu "
                       r"\(projected from \d+ photos?\)",
    "06_video": r"colorizing along the flow: \d+ frames, about .+ left on this cpu \(projected from 3 frames\)",
}
CELL_TIMEOUT_S = 300  # generous for a busy 2-core machine; a smoke notebook takes well under a minute

notebooks = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def repository_url() -> str:
    urls = project().get("urls", {})
    if "Repository" not in urls:
        pytest.fail('pyproject.toml needs [project.urls] Repository = "https://github.com/OWNER/NAME": '
                    "the notebooks' Colab install cell and badge must use that URL")
    return urls["Repository"]


def test_the_distribution_is_not_named_after_an_unrelated_pypi_project():
    """`pip install colorize` fetches a 2019 tool that colours terminal output: ours has another name, the same
    import and command."""
    assert project()["name"] not in {"colorize", "colorise"}
    assert project()["scripts"] == {"colorize": "colorize.cli:main"}


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:4] == ["01_data.ipynb", "02_pretrain_generator.ipynb", "03_gan_finetune.ipynb",
                                               "04_evaluate_and_colorize.ipynb"]


@notebooks
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(code_cells(nb)) if c.outputs or c.execution_count is not None]
    assert not dirty, f"{path.name}: code cells {dirty} have outputs; clear all outputs before committing"


def parameters_cell(path, cells) -> int:
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters', expected exactly one"
    return tagged[0]


def python_of(cell) -> ast.Module:
    """A code cell's syntax tree, its IPython magics turned into the Python they run."""
    return ast.parse(TransformerManager().transform_cell(cell.source))


def _names(node) -> set[str]:
    """The variables an expression reads or a target binds; a comprehension's own loop variables left out."""
    own = {name for c in ast.walk(node) if isinstance(c, ast.comprehension) for name in _all_names(c.target)}
    return _all_names(node) - own


def _all_names(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _bindings(tree) -> list[tuple[ast.AST, ast.AST]]:
    """(target, value) of every assignment in a tree, loop variables with what they loop over."""
    pairs = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            pairs += [(t, node.value) for t in node.targets]
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.NamedExpr)) and node.value is not None:
            pairs.append((node.target, node.value))
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            pairs.append((node.target, node.iter))
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            pairs.append((node.optional_vars, node.context_expr))
    return pairs


def _tests(tree) -> list[ast.AST]:
    """What a tree branches on: conditions of if, ternary, while, comprehension filters and match subjects, and
    what a for statement loops over (a loop over a list that is empty unless... is an if)."""
    tests = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.If, ast.IfExp, ast.While)):
            tests.append(node.test)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            tests.append(node.iter)
        elif isinstance(node, ast.comprehension):
            tests += node.ifs
        elif isinstance(node, ast.Match):
            tests.append(node.subject)
    return tests


def smoke_branches(path, nb) -> list[str]:
    """Conditions below the cell after the parameters that depend on SMOKE, directly or through any assignment.

    A value derived from SMOKE (in that cell or later) may be passed on, e.g. as a package function's flag;
    a later cell may not decide anything on it.
    """
    cells = code_cells(nb)
    first = parameters_cell(path, cells) + 1
    trees = [python_of(c) for c in cells[first:]]
    derived, grew = {"SMOKE"}, True
    while grew:  # every name assigned from an expression that mentions a derived name, to a fixed point
        new = {name for tree in trees for target, value in _bindings(tree) if _names(value) & derived
               for name in _names(target)} - derived
        derived, grew = derived | new, bool(new)
    return [f"{path.name}: code cell {j} branches on {sorted(_names(test) & derived)} (from SMOKE) at line "
            f"{test.lineno}: {ast.unparse(test)}"
            for j, tree in enumerate(trees[1:], start=first + 1) for test in _tests(tree) if _names(test) & derived]


@notebooks
def test_notebook_has_one_parameters_cell_and_branches_on_smoke_only_next_to_it(path):
    nb = nbformat.read(path, as_version=4)
    cells = code_cells(nb)
    i = parameters_cell(path, cells)
    assert re.search(r"^SMOKE = False\b", cells[i].source, re.M), "the parameters cell sets SMOKE = False"
    later = [j for j, c in enumerate(cells[i + 2:], start=i + 2) if re.search(r"\bSMOKE\b", c.source)]
    assert not later, f"{path.name}: code cells {later} use SMOKE; only the cell right after the parameters may"
    assert not smoke_branches(path, nb), ("what a smoke run does differently belongs in a package function "
                                          "given a flag from the cell after the parameters:\n"
                                          + "\n".join(smoke_branches(path, nb)))


def made_up_notebook(later: str):
    """A notebook whose cell after the parameters derives values from SMOKE, then one more cell."""
    new = nbformat.v4
    return new.new_notebook(cells=[
        new.new_code_cell("SMOKE = False\nSTEPS = 100", metadata={"tags": ["parameters"]}),
        new.new_code_cell("tiny = SMOKE\nstand_in = 'smoke' if SMOKE else None\nsteps, name = (6, 'a') if tiny else (STEPS, 'b')\n"
                          "extra_runs = ['stand-in'] if SMOKE else []"),
        new.new_code_cell("%matplotlib inline\n" + later)])


BRANCHES_ON_SMOKE = {
    "if": "if stand_in is not None:\n    train(stand_in)",
    "ternary": "n = 3 if steps > 10 else 1",
    "while": "while not tiny:\n    break",
    "filter": "kept = [x for x in range(3) if name]",
    "derived later": "double = steps * 2\nfor k in range(2):\n    if double > k:\n        pass",
    "loop": "for run in extra_runs:\n    train(run)",
    "loop variable": "runs = [stand_in]\nfor r in range(2):\n    s = runs[r]\n    if s:\n        pass",
    "SMOKE itself": "if SMOKE:\n    pass",
}


@pytest.mark.parametrize("later", BRANCHES_ON_SMOKE.values(), ids=BRANCHES_ON_SMOKE)
def test_smoke_check_catches_a_later_branch_on_smoke_or_a_value_derived_from_it(later):
    found = smoke_branches(Path("made_up.ipynb"), made_up_notebook(later))
    assert len(found) == 1 and "code cell 2" in found[0], found


def test_smoke_check_lets_derived_values_be_passed_on_and_other_parameters_decide():
    later = "train(stand_in, steps=steps, tiny=tiny)\nif STEPS > 10:\n    pass\nm = 1 if STEPS else 2"
    assert smoke_branches(Path("made_up.ipynb"), made_up_notebook(later)) == []


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
    name = project()["name"]
    install = re.search(rf'^\s+%pip install -q "{re.escape(name)}(\[[\w,]+\])? @ git\+{re.escape(url)}"$', first, re.M)
    assert install, (f"{path.name}: the first code cell must `%pip install` {name} from {url} (pyproject's name and "
                     "Repository)")
    if any(re.search(r"^\s*(from colorize\.app import|import colorize\.app)", c.source, re.M) for c in code_cells(nb)):
        assert "app" in (install.group(1) or ""), (
            f'{path.name} imports colorize.app: install "{name}[app] @ ..." (Gradio) in its first cell')
    repo = url.removeprefix("https://github.com/")
    text = "\n".join(c.source for c in nb.cells)
    links = re.findall(r"(?:github\.com|colab\.research\.google\.com/github)/([\w.-]+/[\w.-]+?)(?:\.git)?[/\")\s]", text)
    assert set(links) == {repo}, (
        f"{path.name}: every GitHub link must point at {repo} (pyproject's Repository)")


@pytest.mark.parametrize("stem", sorted(TRAINS))
def test_a_training_notebook_asks_colab_for_a_gpu_keeps_runs_on_drive_and_guards_the_cpu(stem):
    nb = nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4)
    assert nb.metadata.get("accelerator") == "GPU" and nb.metadata.get("colab", {}).get("gpuType") == "T4", (
        f'{stem}: metadata needs "accelerator": "GPU" and colab.gpuType "T4", as Colab writes them')
    cells = code_cells(nb)
    params = cells[parameters_cell(Path(stem), cells)].source
    for line in ("USE_DRIVE = True", "ALLOW_CPU = False", 'PRESET = "colab"'):
        assert re.search(rf"^{re.escape(line)}(\s|$)", params, re.M), f"{stem}: the parameters cell needs {line}"
    later = "\n".join(c.source for c in cells[parameters_cell(Path(stem), cells) + 1:])
    assert "use_drive=USE_DRIVE" in later and "allow_cpu=ALLOW_CPU" in later, (
        f"{stem}: pass USE_DRIVE to colorize.files.runs_dir and ALLOW_CPU to the training call")
    assert "log_to_stdout()" in cells[1].source, f"{stem}: the import cell calls colorize.files.log_to_stdout()"


def test_each_tutorial_notebook_links_the_next_and_the_last_sums_up():
    tutorial = NOTEBOOKS[:5]
    for path, following in zip(tutorial, tutorial[1:]):
        text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
        assert f"]({following.name})" in text, f"{path.name} has no Next link to {following.name}"
    last = nbformat.read(tutorial[-1], as_version=4).cells[-1]
    assert last.cell_type == "markdown" and "Summary" in last.source, f"{tutorial[-1].name} ends with a summary"


def test_runs_dir_keeps_runs_on_drive_in_colab_and_smoke_apart(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert runs_dir("runs") == runs_dir("runs", use_drive=True) == Path("runs")  # outside Colab nothing changes
    assert runs_dir("runs", smoke=True) == Path("runs") / SMOKE_FOLDER
    mounted = []

    def mount(folder):
        mounted.append(folder)
        (Path(folder) / "MyDrive").mkdir(parents=True)

    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mount)
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    sys.modules["google"].colab = colab
    assert runs_dir("runs", use_drive=False) == Path("runs")
    assert runs_dir("runs", drive_mount=tmp_path) == tmp_path / "MyDrive/colorize/runs"
    assert runs_dir("runs", smoke=True, drive_mount=tmp_path) == tmp_path / "MyDrive/colorize/runs/smoke"
    assert mounted == [str(tmp_path)]  # asked once per runtime


@notebooks
def test_notebook_states_what_it_produces(path):
    assert path.stem in PRODUCES, f"add {path.stem!r} to PRODUCES in {Path(__file__).name}: what its smoke run makes"


def test_kernel_python3_is_this_interpreter():
    """papermill's 'python3' must start the .venv's python, the one that has colorize installed."""
    from jupyter_client.manager import KernelManager

    assert KernelManager(kernel_name="python3").format_kernel_cmd()[0] == sys.executable


# Notebooks 02 and 03 run one after the other as in Colab: each in a runtime of its own (its own working folder),
# with nothing but SMOKE changed, sharing only the Google Drive that a stand-in `google.colab` mounts.
COLAB_CHAIN = ("02_pretrain_generator", "03_gan_finetune")


def colab_stand_in(folder: Path) -> Path:
    """A folder for PYTHONPATH with a stand-in `google.colab`, imported when Python starts as in Colab's kernel (a
    sitecustomize), whose `drive.mount` makes the Drive folder (MyDrive) at the mount point."""
    colab = folder / "google" / "colab"  # `google` stays a namespace package (protobuf lives there too)
    colab.mkdir(parents=True)
    (colab / "__init__.py").write_text("from . import drive\n")
    (colab / "drive.py").write_text("from pathlib import Path\n\n\ndef mount(mountpoint):\n"
                                    "    (Path(mountpoint) / 'MyDrive').mkdir(parents=True, exist_ok=True)\n")
    (folder / "sitecustomize.py").write_text("import google.colab  # Colab's kernel starts with it imported\n")
    return folder


def kaggle_stand_in(folder: Path) -> Path:
    """A folder for PYTHONPATH with a stand-in `kagglehub` whose every call raises: a notebook calling Kaggle fails."""
    pkg = folder / "kagglehub"
    pkg.mkdir(parents=True)
    refuse = "def _refuse(*args, **kwargs):\n    raise AssertionError('Kaggle was called')\n\n\n"
    (pkg / "__init__.py").write_text(refuse + "dataset_download = _refuse\n")
    (pkg / "config.py").write_text(refuse + "get_kaggle_credentials = _refuse\n")
    (pkg / "kaggle_cache_resolver.py").write_text(
        refuse + "DEFAULT_KAGGLE_CACHE_MOUNT_FOLDER = '/kaggle/input'\n"
        "KAGGLE_CACHE_MOUNT_FOLDER_ENV_VAR_NAME = 'KAGGLE_CACHE_MOUNT_FOLDER'\n\n\n"
        "class DatasetKaggleCacheResolver:\n    is_supported = _refuse\n")
    return folder


def execute(path: Path, folder: Path, up_to_training: bool = False, colab: Path | None = None,
            parameters: dict | None = None, env: dict | None = None):
    """`path` run by papermill in smoke mode in `folder` (its *_DIR parameters pointed there); the executed notebook.

    `up_to_training`: only its cells up to the training cell, into a file of its own (a rerun of the training cell).
    `colab`: a Drive mount point: the notebook runs as in Colab with a stand-in `google.colab`, its parameters as
    committed but SMOKE (its install cell, which would reach the network, left out). `parameters`: instead of
    SMOKE and the folders; `env`: set for the kernel.
    """
    import papermill as pm

    folders = {p: str(folder / p.lower()) for p in pm.inspect_notebook(path) if p.endswith("_DIR")}
    nb = nbformat.read(path, as_version=4)
    name = path.stem
    if up_to_training:
        nb.cells = nb.cells[: nb.cells.index(training_cell(nb)) + 1]
        name += "_up_to_training"
    if colab is not None:
        install = code_cells(nb)[0]
        assert "%pip install" in install.source, install.source
        nb.cells.remove(install)
        folders, env = {}, {**(env or {}), "COLORIZE_DRIVE_MOUNT": str(colab),
                            "PYTHONPATH": os.pathsep.join([str(colab_stand_in(folder / "colab_stand_in")),
                                                           os.environ.get("PYTHONPATH", "")])}
    path, out = folder / f"{name}.ipynb", folder / f"{name}_run.ipynb"
    nbformat.write(nb, path)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in (env or {}).items():
            mp.setenv(key, value)
        pm.execute_notebook(path, out, parameters=parameters or {"SMOKE": True, **folders}, kernel_name="python3",
                            cwd=folder, progress_bar=False, execution_timeout=CELL_TIMEOUT_S)
    return nbformat.read(out, as_version=4)


@pytest.fixture(scope="session")
def drive(tmp_path_factory) -> Path:
    """The mount point of the Google Drive the Colab chain shares."""
    return tmp_path_factory.mktemp("drive")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, drive):
    """Each notebook executed once in smoke mode, when a test first asks: path -> (its folder, the executed notebook).

    The notebooks of COLAB_CHAIN run as in Colab, in order (03 after 02), each in its own folder; their folder here
    is what they wrote on the Drive (MyDrive/colorize)."""
    done = {}

    def run(path: Path):
        if path.stem in COLAB_CHAIN:
            for stem in COLAB_CHAIN[: COLAB_CHAIN.index(path.stem) + 1]:
                if stem not in done:
                    started = time.perf_counter()
                    nb = execute(ROOT / "notebooks" / f"{stem}.ipynb", tmp_path_factory.mktemp(stem), colab=drive)
                    done[stem] = drive / "MyDrive" / "colorize", nb
                    print(f"{stem}: smoke run as in Colab in {time.perf_counter() - started:.0f} s")
        elif path.stem not in done:
            folder, started = tmp_path_factory.mktemp(path.stem), time.perf_counter()
            done[path.stem] = folder, execute(path, folder)
            print(f"{path.stem}: smoke run in {time.perf_counter() - started:.0f} s")
        return done[path.stem]
    return run


def runs_of(folder: Path) -> Path:
    """The RUNS_DIR a smoke run wrote into: the test's runs_dir folder, or `runs` on the Drive of the Colab chain."""
    return folder / "runs_dir" if (folder / "runs_dir").exists() else folder / "runs"


def training_cell(nb):
    """The code cell that trains the notebook's own run (its `stages.train` call on DATA_DIR into its run folder)."""
    cells = [c for c in code_cells(nb) if re.search(r"^[\w, ]*=? ?train\(data_dir, run_dir,", c.source, re.M)]
    assert len(cells) == 1, f"expected one training cell, found {len(cells)}"
    return cells[0]


def stdout_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.mark.slow
@notebooks
def test_notebook_runs_end_to_end_in_smoke_mode(path, smoke_run):
    folder, nb = smoke_run(path)
    outputs = [o for c in code_cells(nb) for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    globs, min_figures = PRODUCES[path.stem]
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    assert figures >= min_figures, f"{path.name} drew {figures} figure(s), expected at least {min_figures}"
    for pattern in globs:
        assert list(folder.glob(pattern)), f"{path.name} in smoke mode wrote no {pattern} under {folder}"
    if path.stem in SHOWS:
        html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
        assert re.search(SHOWS[path.stem], html), f"{path.name} showed no {SHOWS[path.stem]!r}"
    runs = runs_of(folder)
    if runs.exists():  # what a smoke run writes under RUNS_DIR is in its smoke/ sub-folder, apart from real runs
        assert [p.name for p in runs.iterdir()] == [SMOKE_FOLDER], f"{path.name} wrote {list(runs.iterdir())}"
    assert not (folder / "data_dir").exists(), f"{path.name} in smoke mode wrote into DATA_DIR, the real photos' folder"


@pytest.mark.slow
@pytest.mark.parametrize("stem", sorted(TRAINS))
def test_a_training_cell_says_where_how_long_and_shows_its_gallery_inline(stem, smoke_run):
    folder, nb = smoke_run(ROOT / "notebooks" / f"{stem}.ipynb")
    cell = training_cell(nb)
    said = stdout_of(cell)
    assert re.search(r" on cpu \(fp32\): \d+ photos per epoch, \d+ epochs?", said), f"no start line in:\n{said}"
    assert re.search(r"about .+ for \d+ epochs? on this cpu", said), f"no projection in:\n{said}"
    assert re.search(r"\d+ epochs? trained in ", said), f"no closing line in:\n{said}"
    runs = list((runs_of(folder) / SMOKE_FOLDER).glob(f"*/{HISTORY_NAME}"))
    assert runs, f"no smoke run under RUNS_DIR/{SMOKE_FOLDER}/"
    closing = max(i for i, o in enumerate(cell.outputs) if re.search(r"\d+ epochs? trained in ", o.get("text", "")))
    shown = [o for o in cell.outputs[:closing] if o.output_type == "display_data" and "image/png" in o.data]
    assert len(shown) == 1, (f"the epoch gallery is shown inline while training, once, and updated in place (not "
                             f"one figure per epoch): {len(shown)} figures before the closing line")


@pytest.mark.slow
@pytest.mark.parametrize("stem", sorted(PROJECTS))
def test_a_long_cell_says_how_long_it_will_take_before_its_long_part_and_is_guarded(stem, smoke_run):
    _, nb = smoke_run(ROOT / "notebooks" / f"{stem}.ipynb")
    cells = [c for c in code_cells(nb) if re.search(PROJECTS[stem], stdout_of(c))]
    assert len(cells) == 1, f"{stem}: no cell (or several) printed a line matching {PROJECTS[stem]!r}"
    assert "allow_cpu=ALLOW_CPU" in cells[0].source, f"{stem}: the projected cell must pass ALLOW_CPU to its guard"


@pytest.mark.slow
def test_02_fine_tunes_its_generator_on_a_folder_and_shows_before_and_after_on_its_held_out_photos(smoke_run):
    folder, nb = smoke_run(ROOT / "notebooks" / "02_pretrain_generator.ipynb")
    (cell,) = [c for c in code_cells(nb) if "finetune_dir / BEST_NAME" in c.source]
    table = "".join(o.get("data", {}).get("text/html", "") for o in cell.outputs)
    for shown in ("before (this notebook)", "after (your photos)", "PSNR RGB (dB)", "colourfulness"):
        assert shown in table, f"the before/after table shows no {shown!r}:\n{table}"
    assert any("image/png" in o.get("data", {}) for o in cell.outputs), "no before/after gallery"
    report = json.loads((runs_of(folder) / SMOKE_FOLDER / "my-photos" / "report" / "results.json").read_text())
    assert report["split"] == "test" and report["n_images"] >= 1
    assert {"before (this notebook)", "after (your photos)"} <= set(report["models"])
    (trained,) = [c for c in code_cells(nb) if "generator=run_dir / BEST_NAME" in c.source]
    assert re.search(r"about .+ for \d+ epochs? on this cpu", stdout_of(trained)), "the fine-tuning is not projected"


@pytest.mark.slow
def test_the_reference_notebook_guides_the_same_scene_and_leaves_a_mismatch_automatic(smoke_run):
    folder, _ = smoke_run(ROOT / "notebooks" / "07_reference.ipynb")
    out = runs_of(folder) / SMOKE_FOLDER / "reference"
    assert len(json.loads((out / "hints.json").read_text())) > 20
    rows = {line.split("|")[1].strip(): line.split("|") for line in (out / "reference.md").read_text().splitlines()[2:]}
    assert float(rows["same"][6]) > 1.0 and float(rows["mismatched"][6]) == 0.0  # gain in dB, guided - automatic


@pytest.mark.slow
def test_rerunning_a_finished_run_says_it_is_complete(smoke_run, drive):
    path = ROOT / "notebooks" / "02_pretrain_generator.ipynb"
    folder, _ = smoke_run(path)
    again = execute(path, folder, up_to_training=True, colab=drive)  # the training cell again: the same RUN on Drive
    said = stdout_of(training_cell(again))
    assert re.search(r"is complete \((\d+)/\1 epochs?\): choose a new RUN to train again", said), said


@pytest.mark.slow
def test_in_colab_notebook_03_fine_tunes_the_generator_notebook_02_left_on_drive(smoke_run, drive):
    """Each notebook in its own runtime (folder), nothing changed but SMOKE: 03 finds 02's generator on Drive."""
    from colorize.models import checkpoint_identity

    _, first = smoke_run(ROOT / "notebooks" / "02_pretrain_generator.ipynb")
    best = drive / "MyDrive/colorize/runs" / SMOKE_FOLDER / "colab-l1" / BEST_NAME
    assert best.exists(), "notebook 02 left no generator on the Drive"
    made_by_02 = checkpoint_identity(best)
    _, nb = smoke_run(ROOT / "notebooks" / "03_gan_finetune.ipynb")
    gan = json.loads((best.parents[1] / "colab-gan" / "config.json").read_text())
    assert gan["generator"] == made_by_02 == checkpoint_identity(best)  # 02's, not a stand-in trained by 03
    assert "training" not in "".join(stdout_of(c) for c in code_cells(nb) if "ensure_trained(" in c.source)


@pytest.mark.slow
def test_02_on_a_folder_of_photos_without_a_gpu_stops_at_the_guard_without_kaggle_or_a_traceback(tmp_path,
                                                                                                write_photos):
    write_photos(tmp_path / "my_photos", 16, size=(96, 128))
    env = {"CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": os.pathsep.join([str(kaggle_stand_in(tmp_path / "stand_in")),
                                                                        os.environ.get("PYTHONPATH", "")])}
    # SMOKE off: the colab preset on the folder. Offline (no ImageNet weights), small crops so that the measured
    # steps take seconds, and epochs enough for the projection to be long: the guard must fire before the finder runs.
    parameters = {"SMOKE": False, "DATA_DIR": str(tmp_path / "my_photos"), "RUNS_DIR": str(tmp_path / "runs"),
                  "OVERRIDES": {"pretrained": False, "size": 64, "bs": 4, "epochs": 2000}}
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError) as stopped:
        execute(ROOT / "notebooks" / "02_pretrain_generator.ipynb", tmp_path, parameters=parameters, env=env)
    assert stopped.value.ename == "CpuGuardStop", (stopped.value.ename, stopped.value.evalue)
    nb = nbformat.read(tmp_path / "02_pretrain_generator_run.ipynb", as_version=4)
    finder = next(c for c in code_cells(nb) if "find_lr(" in c.source)
    error = next(o for o in finder.outputs if o.output_type == "error")
    assert error.traceback == [f"Stopped: {error.evalue}"], error.traceback  # the sentence, no frames
    assert "the learning-rate finder (100 steps) and the training after it (2000 epochs) on this CPU would take " \
           "about" in error.evalue and "Stopped the finder after 4 steps" in error.evalue, error.evalue
    assert re.search(r"the learning-rate finder: about .+ for 100 steps, then training about .+ for 2000 epochs on "
                     r"this cpu \(projected from 3 steps\)", stdout_of(finder)), stdout_of(finder)
    assert "your photos, used as they are (no download)" in "".join(stdout_of(c) for c in code_cells(nb))
    assert training_cell(nb).execution_count is None  # "Run all" stopped at the finder

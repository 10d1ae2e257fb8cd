"""The package's shape: every module on a floor, imports only pointing down (no cycle, also through imports inside
functions)."""

import ast
from pathlib import Path

import colorize

PACKAGE = Path(colorize.__file__).parent


def _imports(path: Path) -> set[str]:
    """The colorize modules a module imports, at module level or inside functions: `from .x import y`, `import colorize.x`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import x
                found.update(a.name for a in node.names)
            elif node.module and node.module.startswith("colorize."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("colorize."))
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    return {m for m in found if m in modules and m != path.stem}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (depth-first search with colours)."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    graph = {p.stem: _imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__main__"}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_the_cycle_finder_finds_one():
    """The check above can fail: a made-up graph with a cycle through three modules is caught."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


# The package's floors, from the ground up: a module imports only modules on floors below its own. A new module
# goes on the floor of what it needs (one above the highest floor it imports from); the test below names any
# module of the package missing here.
LAYERS = (
    ("__init__", "config", "hub", "lab", "losses", "temporal"),  # recipes, Lab and its scaling, losses, flow
    ("device", "files", "hintmaps", "keyframes", "metrics", "plots", "propagate", "swatches"),  # small helpers on those
    ("clock", "data", "models", "parallel", "readme"),  # photos and their index, the networks, processes, the clock
    ("download", "export", "inference", "loaders"),  # datasets, the engine, batches
    ("archive", "evaluate", "guide", "learner", "video"),  # many photos, scores, the Guide's session, the Learner every
    # stage trains, frames
    ("apply", "flicker", "gan", "hints", "pretrain", "reference", "run", "widgets"),  # routing, reference colour,
    # the stages' learners, the run folder, notebook widgets
    ("app", "share", "stages"),  # the app, training any stage, sharing a checkpoint
    ("demo",),
    ("cli",),
    ("__main__",),
)
FLOOR = {m: i for i, floor in enumerate(LAYERS) for m in floor}


def test_every_module_of_the_package_has_a_floor():
    missing = sorted({p.stem for p in PACKAGE.glob("*.py")} - set(FLOOR))
    assert not missing, (f"modules missing from the layer table (LAYERS in tests/test_layout.py): {', '.join(missing)}; "
                         "add each to the floor above the highest one it imports from")
    assert not set(FLOOR) - {p.stem for p in PACKAGE.glob("*.py")}, "the table names a module that is gone"


def test_the_data_flow_points_downstream_to_upstream():
    """Every import goes down to a lower floor: the lower layers never import the stages, the CLI or the app."""
    upward = [f"{m} (floor {FLOOR[m]}) imports {n} (floor {FLOOR[n]})" for m in FLOOR if (PACKAGE / f"{m}.py").exists()
              for n in sorted(_imports(PACKAGE / f"{m}.py")) if n in FLOOR and FLOOR[n] >= FLOOR[m]]
    assert not upward, "; ".join(upward)


def test_the_floor_check_finds_an_import_that_climbs(tmp_path, monkeypatch):
    """The check above can fail: lab (floor 0) importing the CLI is caught."""
    fake = tmp_path / "lab.py"
    fake.write_text("from .cli import main\n")
    assert "cli" in _imports(fake) and FLOOR["cli"] >= FLOOR["lab"]


def test_the_stage_recipes_share_parts_not_fields():
    """What both stages need is a nested part built once (data, machine, generator); no primitive field is repeated."""
    import dataclasses

    from colorize.config import GanConfig, PretrainConfig

    def primitive(recipe):
        return {f.name for f in dataclasses.fields(recipe) if not dataclasses.is_dataclass(f.default)}

    assert not primitive(PretrainConfig) & primitive(GanConfig)
    shared = {f.name for f in dataclasses.fields(PretrainConfig)} & {f.name for f in dataclasses.fields(GanConfig)}
    assert shared == {"data", "machine", "generator"}


def test_gan_takes_little_from_the_run_module():
    """The GAN stage is GAN code on top of the run machinery, not a second copy of it."""
    tree = ast.parse((PACKAGE / "gan.py").read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "run" for a in n.names]
    assert len(names) <= 3, names

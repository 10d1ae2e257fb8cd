"""The package's shape: imports point one way (no cycle, also through imports inside functions)."""

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


def test_the_data_flow_points_downstream_to_upstream():
    """The lower layers never import the stages, the CLI or the app."""
    top = {"cli", "app", "demo", "pretrain", "gan", "run", "evaluate", "share"}
    for low in ("lab", "files", "data", "loaders", "download", "models", "config", "device", "metrics", "losses"):
        assert not _imports(PACKAGE / f"{low}.py") & top, low


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

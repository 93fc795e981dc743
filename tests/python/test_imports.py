"""python/crossicl's modules form layers (ARCHITECTURE.md, "Python package layers"): every import between them,
including one inside a function, points down, so there is no cycle; no module imports another's private name."""
from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "python" / "crossicl"

# Bottom to top; a module may import only modules listed before it. `results` needs only the records, so it
# sits below the facade (Experiment.summary uses it).
LAYERS = ["_crossicl", "_build", "paper", "models", "records", "config", "planning", "executors", "ray_executor",
          "runner", "results", "experiment", "plots", "analysis", "report_scoring", "report", "cli", "__main__",
          "__init__"]


def _imports(path: pathlib.Path) -> list[tuple[str, list[str], int, bool]]:
    """(imported crossicl module, names taken from it, line, at module level) for every import of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        at_top = id(node) in top
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 or (node.level == 0 and (node.module or "").split(".")[0] == "crossicl"):
                module = node.module if node.level == 1 else ".".join((node.module or "").split(".")[1:])
                if module:  # from .x import a, b
                    out.append((module.split(".")[0], [a.name for a in node.names], node.lineno, at_top))
                else:  # from . import x, y
                    out += [(a.name, [], node.lineno, at_top) for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "crossicl" and len(parts) > 1:
                    out.append((parts[1], [], node.lineno, at_top))
    return out


def _graph() -> dict[str, list[tuple[str, list[str], int, bool]]]:
    return {p.stem: _imports(p) for p in sorted(PACKAGE.glob("*.py"))}


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_including_function_level_imports():
    graph = _graph()
    assert {"records", "config", "planning", "executors", "runner", "experiment", "results", "plots", "analysis",
            "report", "cli"} <= set(graph)
    edges = {m: {dep for dep, _, _, _ in deps} for m, deps in graph.items()}
    cycle = _cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_imports_only_lower_layers():
    graph = _graph()
    assert set(graph) <= set(LAYERS), f"add {sorted(set(graph) - set(LAYERS))} to LAYERS"
    rank = {m: i for i, m in enumerate(LAYERS)}
    upward = [f"{m}.py:{line} imports {dep}" for m, deps in graph.items() for dep, _, line, _ in deps
              if rank[dep] >= rank[m]]
    assert not upward, upward


def test_package_imports_are_top_level_and_public():
    graph = _graph()
    nested = [f"{m}.py:{line} ({dep})" for m, deps in graph.items() for dep, _, line, top in deps if not top]
    assert not nested, f"imports of crossicl modules inside functions: {nested}"
    private = [f"{m}.py:{line} {dep}.{name}" for m, deps in graph.items() for dep, names, line, _ in deps
               for name in names if name.startswith("_") and dep != "_crossicl" and dep != "_build"]
    assert not private, f"private names imported across modules: {private}"

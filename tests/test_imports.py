"""Imports go one way: each module imports only from its own floor or the floors below it.

The floors, bottom up, as docs/internals.md ("The floors") states them. Every import is
counted, function-level ones included: an import deferred into a function is still a
dependency, and circles of them are what made layers impossible to read alone.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

FLOORS = [
    ("errors", "registry", "io", "interrupt"),
    ("config",),
    ("data", "nn", "optim", "serialize", "keras_model"),
    ("train",),
    ("run", "resume", "preflight", "presets", "lr_finder", "fit"),
    ("uncertainty", "calibration", "predictions", "diagnostics", "transfer_study", "deploy"),
    ("experiments",),
    ("report", "workflows"),
    ("commands", "cli", "__main__"),
]


def floor(module: str) -> int:
    top = module.split(".")[1]
    return next(i for i, names in enumerate(FLOORS) if top in names)


def modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "deepfit").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(path: Path, known: dict) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in known and m != "deepfit"}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(p, known) - {m} for m, p in known.items() if m != "deepfit"}


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_in_src():
    assert circles(graph()) == []


def test_every_module_has_a_floor_and_imports_only_downward():
    upward = [f"{m} (floor {floor(m)}) imports {d} (floor {floor(d)})"
              for m, deps in sorted(graph().items()) for d in sorted(deps) if floor(d) > floor(m)]
    assert upward == []


def test_the_check_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

"""The package's shape as a spec: imports follow the pipeline, and no module imports itself
back through another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "midimix"

# The stages in data-flow order: a stage may import the ones before it, never one after.
STAGE_ORDER = (
    "collect",
    "prepare",
    "transcribe",
    "tokenize",
    "train",
    "generate",
    "render",
    "evaluate",
    "pipeline",
    "studio",
    "cli",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every midimix module `path` imports, at the top or inside a function."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    here = module_name(path).split(".")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("midimix"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = here if is_package else here[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("midimix"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: {m for m in imports_of(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def test_no_import_cycle() -> None:
    edges = graph()
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    for name in edges:
        edges[name] = {m for m in edges[name] if not m.startswith(name + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


@pytest.mark.parametrize("stage", STAGE_ORDER[:-1])
def test_stage_imports_no_later_stage(stage: str) -> None:
    later = {f"midimix.{s}" for s in STAGE_ORDER[STAGE_ORDER.index(stage) + 1 :]}
    imported = graph()[f"midimix.{stage}"]
    assert not imported & later, f"midimix.{stage} imports later stage(s) {imported & later}"

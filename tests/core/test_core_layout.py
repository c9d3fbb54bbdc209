"""core/ answers what one run computes: it imports no later stage and stays small."""

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "bpresearch" / "core"
LATER = ("bpresearch.spec", "bpresearch.run", "bpresearch.store", "bpresearch.verdicts", "bpresearch.cli", "analysis")
MODULES = sorted(CORE.glob("*.py"))


def imported(tree: ast.Module) -> set[str]:
    """Every module an ``import`` or ``from … import`` names, at any depth (lazy imports too)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_core_imports_no_later_stage(path):
    later = {n for n in imported(ast.parse(path.read_text())) if n.split(".")[0] == "analysis"
             or any(n == s or n.startswith(s + ".") for s in LATER)}
    assert not later, f"{path.name} imports {sorted(later)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_core_modules_and_functions_are_small(path):
    text = path.read_text()
    assert len(text.splitlines()) <= 500, f"{path.name}: {len(text.splitlines())} lines"
    long = [(f.name, f.end_lineno - f.lineno + 1) for f in ast.walk(ast.parse(text))
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.end_lineno - f.lineno + 1 > 80]
    assert not long, f"{path.name}: functions over 80 lines: {long}"

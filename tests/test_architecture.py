"""The layout's rules (docs/architecture.md), checked on the source: which stage imports which.

Data flows one way: keys ← core ← spec ← run → store, and analysis reads the store. A rule
broken here is a dependency that points backwards (the store needing the config layer, a
report importing JAX to spell a metric name), which is how a layout stops showing the pipeline.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bpresearch", "analysis")
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 500, 80


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(*roots: str) -> dict[str, Path]:
    return {module_name(p): p for r in roots for p in sorted((ROOT / r).rglob("*.py"))}


ALL = sources(*PACKAGES)   # module name -> file


def imports(name: str, path: Path, top_level_only: bool = False) -> set[str]:
    """The modules ``name`` imports (absolute names; ``from a import b`` yields ``a.b`` when that is a module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            named = {f"{base}.{a.name}" for a in node.names}
            # ``from pkg import module`` imports the module (and runs pkg's __init__, which only hands names on)
            out |= named if named & set(ALL) else named | {base}
    return out


INTERNAL = {n: {i for i in imports(n, p) if i in ALL} for n, p in ALL.items()}


def stage(module: str) -> str:
    """``bpresearch.core.train`` -> ``core``; ``bpresearch.keys`` -> ``keys``; ``analysis.build`` -> ``analysis``."""
    parts = module.split(".")
    if parts[0] == "analysis":
        return "analysis"
    return parts[1] if len(parts) > 1 else "bpresearch"


# What each stage may import from the project (besides itself).
ALLOWED = {
    "keys": set(),
    "verdicts": {"keys"},
    "core": {"keys"},
    "spec": {"keys", "core"},
    "store": {"keys"},
    "run": {"keys", "core", "spec", "store", "verdicts"},
    "analysis": {"keys", "verdicts", "store.reads"},
    "cli": {"keys", "core", "spec", "store", "run", "verdicts", "analysis"},
}


def reached(module: str, target: str) -> str:
    """The stage name a rule is written in: ``store.reads`` is its own door for analysis."""
    s = stage(target)
    if s == "store" and stage(module) == "analysis":
        return "store.reads" if target.startswith("bpresearch.store.reads") else "store"
    return s


@pytest.mark.parametrize("module", sorted(m for m in ALL if stage(m) in ALLOWED))
def test_each_stage_imports_only_the_stages_before_it(module):
    s = stage(module)
    bad = sorted(t for t in INTERNAL[module]
                 if stage(t) != s and t not in ("bpresearch", "analysis") and reached(module, t) not in ALLOWED[s])
    assert not bad, f"{module} ({s}/) imports {bad}; {s}/ may import only {sorted(ALLOWED[s]) or 'nothing'}"


def test_every_module_belongs_to_a_stage():
    assert {stage(m) for m in ALL} <= set(ALLOWED) | {"bpresearch"}


def test_no_import_cycles():
    """Module-level imports form no cycle (imports inside functions are for start-up time only)."""
    graph = {n: {i for i in imports(n, p, top_level_only=True) if i in ALL and i != n} for n, p in ALL.items()}
    state = {}

    def visit(n, path):
        state[n] = "open"
        for m in graph[n]:
            if state.get(m) == "open":
                raise AssertionError("import cycle: " + " → ".join(path[path.index(m):] + [m]))
            if m not in state:
                visit(m, path + [m])
        state[n] = "done"

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])


def loaded_after_import(*modules: str) -> set[str]:
    code = f"import sys; import {', '.join(modules)}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_a_report_loads_no_jax():
    """Writing a report needs names and stored numbers, never the compiled training code."""
    loaded = loaded_after_import("analysis.report")
    assert not {m for m in loaded if m.split(".")[0] in ("jax", "jaxlib", "optax")}


def test_the_store_loads_no_jax():
    store = [m for m in ALL if stage(m) == "store" and not m.endswith("__init__")]
    loaded = loaded_after_import(*store, "bpresearch.keys")
    assert not {m for m in loaded if m.split(".")[0] in ("jax", "jaxlib", "optax")}


def function_lengths(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


CODE = sources(*PACKAGES, "bench")


@pytest.mark.parametrize("module", sorted(CODE))
def test_modules_and_functions_fit_on_a_few_screens(module):
    path = CODE[module]
    lines = path.read_text().count("\n")
    assert lines <= MAX_MODULE_LINES, f"{module}: {lines} lines (at most {MAX_MODULE_LINES})"
    long = [(f, n) for f, n in function_lengths(path) if n > MAX_FUNCTION_LINES]
    assert not long, f"{module}: functions over {MAX_FUNCTION_LINES} lines: {long}"

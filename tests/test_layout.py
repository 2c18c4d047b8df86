"""The package layout: bench_lib's packages import only downwards, and no module imports itself back.

Layers, lowest first. A module may import its own package and any package below it, never one above:
``harness`` measures and keeps cases, ``suites`` say what is measured, ``planner`` predicts from presets,
``gate`` and ``report`` read run files, and the top-level entry points (``cli``, ``__main__``) may use all.
Imports inside functions and ``importlib.import_module("bench_lib....")`` strings count too.
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "bench_lib"
LAYERS = ("", "harness", "suites", "planner", "gate", "report", "<entry>")  # "" is bench_lib/__init__
ENTRY_POINTS = {"bench_lib.cli", "bench_lib.__main__"}
MAX_TOP_LEVEL_MODULES = 10


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every bench_lib module ``path`` imports, at any depth of the file, as dotted names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from bench_lib.harness import timing` imports the module bench_lib.harness.timing
            found |= {f"{base}.{a.name}" if (ROOT.parent / f"{base}.{a.name}".replace(".", "/")).with_suffix(".py").exists()
                      or (ROOT.parent / f"{base}.{a.name}".replace(".", "/")).is_dir() else base for a in node.names}
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("bench_lib."):
            found.add(node.value)  # module names held as data (the CLI's subcommand table)
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant) \
                and str(node.values[0].value).startswith("bench_lib."):
            found.add(node.values[0].value.rstrip("."))  # f"bench_lib.suites.{name}"
    return {m for m in found if m == "bench_lib" or m.startswith("bench_lib.")}


def layer(module: str) -> int:
    if module in ENTRY_POINTS:
        return LAYERS.index("<entry>")
    parts = module.split(".")
    if len(parts) == 1 or (len(parts) == 2 and (ROOT / f"{parts[1]}.py").exists()):
        return 0  # bench_lib itself (its version constants)
    return LAYERS.index(parts[1])


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(ROOT.rglob("*.py"))}


def test_top_level_holds_entry_points_and_at_most_ten_modules():
    top = sorted(p.stem for p in ROOT.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    assert {f"bench_lib.{m}" for m in top} - {"bench_lib.__init__"} <= ENTRY_POINTS, top
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages == set(LAYERS) - {"", "<entry>"}, "every package has a layer, every layer a package"


def test_no_package_imports_one_above_it():
    upward = [f"{mod} (layer {LAYERS[layer(mod)] or 'bench_lib'}) imports {dep} (layer {LAYERS[layer(dep)]})"
              for mod, deps in graph().items() for dep in deps if layer(dep) > layer(mod)]
    assert not upward, "\n".join(upward)


def test_gate_and_report_do_not_import_each_other():
    # they sit side by side over the planner; neither needs the other
    def package(module):
        return module.split(".")[1] if module.count(".") >= 2 else None

    crossing = [f"{m} -> {d}" for m, deps in graph().items() for d in deps if {package(m), package(d)} == {"gate", "report"}]
    assert not crossing, crossing


def test_no_import_cycle_between_modules():
    full = graph()
    g = {m: {d for d in deps if d in full} for m, deps in full.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in g[v]:
                cycles.append(sorted(component))

    for v in g:
        if v not in index:
            visit(v)
    assert not cycles, cycles


@pytest.mark.parametrize("planted, expected", [
    ("from bench_lib.report import cli\n", "bench_lib.harness.x (layer harness) imports bench_lib.report.cli"),
    ("import importlib\nimportlib.import_module('bench_lib.suites.attention')\n", "imports bench_lib.suites.attention"),
])
def test_the_walker_sees_an_upward_import(tmp_path, monkeypatch, planted, expected):
    fake = tmp_path / "bench_lib"
    for pkg in ("harness", "suites", "report"):
        (fake / pkg).mkdir(parents=True)
        (fake / pkg / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "report" / "cli.py").write_text("")
    (fake / "suites" / "attention.py").write_text("")
    (fake / "harness" / "x.py").write_text(planted)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake)
    with pytest.raises(AssertionError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        test_no_package_imports_one_above_it()

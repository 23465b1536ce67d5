"""The layering of the code, read from the import statements of every module: the library
imports none of the layers above it, benchmarks and tests share code only through their helper
modules, and nothing edits sys.path to find a module."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"train", "sweep", "report"}


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (a lazy import inside a function too), as
    dotted names (``from a import b`` gives ``a`` and ``a.b``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def offending(folder: str, allowed) -> dict[str, list[str]]:
    """``{module: imports}`` of the modules under ``folder`` that import what ``allowed``
    refuses."""
    found = {}
    for path in modules(folder):
        bad = sorted(name for name in imported(path) if not allowed(path, name))
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


def top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize(
    ("folder", "above"),
    [
        ("plasticity", {"agents", "envs", "experiments", "benchmarks", *SCRIPTS}),
        ("agents", {"experiments", "benchmarks", *SCRIPTS}),
        ("envs", {"agents", "experiments", "benchmarks", *SCRIPTS}),
        ("experiments", {"benchmarks", *SCRIPTS}),
    ],
)
def test_a_layer_imports_nothing_above_it(folder, above):
    assert offending(folder, lambda _, name: top(name) not in above) == {}


def test_a_benchmark_imports_only_the_benchmarks_helpers():
    def allowed(path: Path, name: str) -> bool:
        if top(name) in SCRIPTS:
            return False
        parts = name.split(".")
        return parts[0] != "benchmarks" or len(parts) == 1 or parts[1].startswith("_")

    assert offending("benchmarks", allowed) == {}


def test_no_test_module_imports_another():
    def allowed(path: Path, name: str) -> bool:
        return not top(name).startswith("test_")

    assert offending("tests", allowed) == {}


def test_nothing_edits_sys_path():
    edits = [
        str(path.relative_to(ROOT))
        for folder in ("plasticity", "agents", "envs", "experiments", "benchmarks", "tests")
        for path in modules(folder)
        if "sys.path.insert" in path.read_text() and path != Path(__file__)
    ]
    assert edits == []


def test_the_check_sees_a_lazy_import_inside_a_function(tmp_path):
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from agents.probes import main\n    import report\n")
    assert imported(module) == {"agents.probes", "agents.probes.main", "report"}

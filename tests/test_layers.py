"""The layers of rtseg/ stay layers (docs/architecture.md): read every module's imports from its source.

base modules < bundle (the format) < cuda < kernels < models < runtime < export, serve, video, triton, eval, bench
< demo < cli. Only export and demo may import rtseg.export; the package graph has no cycle; the lower layers import
only what is below them; no module grows past 400 lines.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "rtseg"
BASE = {"access", "errors", "files", "machine", "sizes", "interrupts", "scenes", "__init__", "__main__"}
#: package -> the packages (besides the base modules) it may import
LOWER = {
    "bundle": set(),
    "cuda": set(),
    "kernels": {"cuda"},
    "models": {"bundle"},
    "runtime": {"bundle", "cuda", "kernels", "models"},
}
MAX_LINES = 400


def _unit(module: str) -> str:
    """rtseg.runtime.select -> runtime; rtseg.files -> files; rtseg -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _submodule_or_package(package: str, name: str) -> str:
    """``from package import name``: the module package.name where it is one, else package itself."""
    where = ROOT.parent.joinpath(*package.split("."), name)
    return f"{package}.{name}" if where.with_suffix(".py").is_file() or where.is_dir() else package


def _imports(path: Path) -> set[str]:
    """The rtseg modules ``path`` imports (absolute or relative, at any depth in the file)."""
    rel = path.relative_to(ROOT.parent).with_suffix("")
    package = list(rel.parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [_submodule_or_package(target, a.name) for a in node.names]
            else:
                names = [node.module or ""]
            found.update(n for n in names if n == "rtseg" or n.startswith("rtseg."))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("rtseg"))
    return found


def _graph() -> dict[str, dict[str, set[str]]]:
    """unit -> {imported unit -> the files of the unit that import it}"""
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in sorted(ROOT.rglob("*.py")):
        unit = _unit(".".join(path.relative_to(ROOT.parent).with_suffix("").parts))
        for target in _imports(path):
            other = _unit(target)
            if other != unit:
                graph[unit][other].add(str(path.relative_to(ROOT.parent)))
    return graph


def test_the_import_reader_sees_relative_and_absolute_imports(tmp_path):
    graph = _graph()
    assert "bundle" in graph["runtime"] and "kernels" in graph["runtime"]  # both spellings are in use there
    assert "export" in graph["demo"]


def test_only_export_and_demo_import_export():
    offenders = {unit: sorted(files) for unit, targets in _graph().items() for t, files in targets.items()
                 if t == "export" and unit not in ("export", "demo", "cli")}
    assert not offenders, f"rtseg.export is a writer: read bundles through rtseg.bundle instead ({offenders})"


def test_no_two_packages_import_each_other():
    graph = _graph()
    seen: dict[str, int] = {}
    cycle: list[str] = []

    def visit(unit: str, path: list[str]) -> bool:
        seen[unit] = 1
        for other in graph.get(unit, {}):
            if seen.get(other) == 1:
                cycle.extend(path[path.index(other):] + [unit, other] if other in path else [unit, other])
                return True
            if other not in seen and visit(other, path + [unit]):
                return True
        seen[unit] = 2
        return False

    for unit in list(graph):
        if unit not in seen and visit(unit, []):
            break
    assert not cycle, "import cycle between packages: " + " -> ".join(cycle) + "; " + "; ".join(
        f"{a} imports {b} in {sorted(graph[a][b])}" for a, b in zip(cycle, cycle[1:]) if b in graph.get(a, {}))


@pytest.mark.parametrize("unit", sorted(LOWER) + sorted(BASE - {"__init__", "__main__"}))
def test_lower_layers_import_only_what_is_below(unit):
    allowed = BASE | LOWER.get(unit, set())
    if unit in BASE:
        allowed = BASE  # base modules: each other only (no cycle, checked above)
    wrong = {t: sorted(files) for t, files in _graph().get(unit, {}).items() if t not in allowed}
    assert not wrong, f"{unit} may import only {sorted(allowed)}, not: {wrong}"


def test_modules_stay_small():
    big = {str(p.relative_to(ROOT.parent)): n for p in ROOT.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"split these modules (at most {MAX_LINES} lines each): {big}"

"""The package's import graph has no cycle, imports inside functions included.

Built from the source with an AST walk (no module is imported): an edge A -> B for every
``import`` / ``from ... import`` in A, at any depth, that names B or something inside B.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import napari_samcam

ROOT = Path(napari_samcam.__file__).resolve().parent
PACKAGE = "napari_samcam"


def _modules(root: Path, package: str) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([package, *parts])] = path
    return out


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of a (possibly relative) import in ``module``."""
    if level == 0:
        return name or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports (anywhere in its body)."""
    modules = _modules(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node.level, node.module)
                targets = [base]
                # ``from pkg import sub``: the submodule, where it is one
                targets += [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                # the longest known module the target names
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    # every corner of the package is walked: core, its packages, the napari and Qt layers
    for module in (
        "napari_samcam.metrics.definitions",
        "napari_samcam.sam._fast.accel",
        "napari_samcam.evaluation.manifests",
        "napari_samcam._napari._reader",
        "napari_samcam._qt._widget",
    ):
        assert graph.get(module), module
    assert cycles(graph) == []


def test_the_fast_variant_is_imported_only_by_the_backend_factory():
    graph = import_graph()
    users = {
        m
        for m, targets in graph.items()
        if any(t.startswith("napari_samcam.sam._fast") for t in targets)
        and not m.startswith("napari_samcam.sam._fast")
    }
    assert users == {"napari_samcam.sam"}


@pytest.mark.parametrize("inside_function", [False, True])
def test_a_cycle_is_found_at_any_depth(tmp_path, inside_function):
    """The checker itself: two modules importing each other, once inside a function."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    body = "def f():\n    from .a import thing\n" if inside_function else "from .a import thing\n"
    (pkg / "b.py").write_text(body)
    (pkg / "c.py").write_text("from .b import f\n")
    assert cycles(import_graph(pkg, "pkg")) == [["pkg.a", "pkg.b"]]


def test_a_cycle_through_a_subpackage_is_found(tmp_path):
    """``from ..x import y`` inside a subpackage, three modules round."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    for init in (pkg / "__init__.py", pkg / "sub" / "__init__.py"):
        init.write_text("")
    (pkg / "low.py").write_text("def g():\n    import pkg.top\n")
    (pkg / "sub" / "mid.py").write_text("from ..low import g\n")
    (pkg / "top.py").write_text("from .sub import mid\n")
    assert cycles(import_graph(pkg, "pkg")) == [["pkg.low", "pkg.sub.mid", "pkg.top"]]
    (pkg / "low.py").write_text("def g():\n    pass\n")
    assert cycles(import_graph(pkg, "pkg")) == []

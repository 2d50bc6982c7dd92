"""The package's module-level imports form no circle.

Imports run one way (CONVENTIONS.md): the tower and small helpers at the bottom, training and
decisions above them, CLI and server on top. A module-level circle makes what imports first
depend on who imported whom, so the test walks every module of ``siamtext/`` with :mod:`ast`,
collects its module-level imports of other modules of the package (those that run when the
module is imported: not inside functions, not under ``if TYPE_CHECKING:``) and asserts the
graph has no cycle. The walker is checked on a small package with a circle put in on purpose,
so the test cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
import importlib.util
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path

Graph = dict[str, set[str]]


def _module_names(package_dir: Path) -> dict[str, tuple[Path, bool]]:
    """Every module under ``package_dir``: dotted name -> (file, whether it is a package)."""
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [package_dir.name, *path.relative_to(package_dir).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        names[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return names


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(nodes: Iterable[ast.AST]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements among ``nodes`` that run when the module is imported.

    Descends into ``if``/``try``/``with`` blocks and class bodies (they run at import time),
    but not into functions, nor into the body of ``if TYPE_CHECKING:`` (its ``else`` runs).
    """
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _module_level_imports(node.orelse)
        else:
            yield from _module_level_imports(ast.iter_child_nodes(node))


def import_graph(package_dir: Path) -> Graph:
    """The module-level import graph of the package in ``package_dir``.

    Args:
        package_dir: The package's folder (its name is the top-level package name).

    Returns:
        Dotted module name -> the set of the package's modules it imports at module level.
        ``from pkg.x import name`` points at ``pkg.x.name`` when that is a module, else at
        ``pkg.x``; relative imports are resolved against the importing module.
    """
    modules = _module_names(package_dir)
    top = package_dir.name
    graph: Graph = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _module_level_imports(tree.body):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules
                           else source for alias in node.names]
            for target in targets:
                if target in modules and (target == top or target.startswith(top + ".")) \
                        and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: Graph) -> list[str] | None:
    """One import circle in ``graph`` as ``[a, b, ..., a]``, or ``None`` if it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_siamtext_has_no_import_cycle() -> None:
    spec = importlib.util.find_spec("siamtext")  # finds the folder without importing it
    assert spec is not None and spec.origin is not None
    graph = import_graph(Path(spec.origin).parent)
    # A walker that found nothing would pass vacuously: the package has over a hundred
    # modules and several hundred module-level imports among them.
    assert len(graph) >= 100, sorted(graph)
    assert sum(map(len, graph.values())) >= 200
    # Known edges, one of each kind the walker resolves.
    assert "siamtext.model" in graph["siamtext"]  # from siamtext.model import SiamText
    assert "siamtext.classify.attach" in graph["siamtext.classify.intent"]  # a submodule
    assert "siamtext.classify" in graph["siamtext"]  # a name of a package's __init__
    # Not counted: imports under TYPE_CHECKING and inside functions.
    assert "siamtext.model" not in graph["siamtext.classify.intent"]
    assert "siamtext.demo" not in graph["siamtext.cli.demo"]
    cycle = find_cycle(graph)
    assert cycle is None, "module-level import circle: " + " -> ".join(cycle)


def _write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return package


_ONE_WAY = {
    "__init__.py": "from pkg.a import A\n",
    "a.py": """
        from typing import TYPE_CHECKING

        from pkg import b

        if TYPE_CHECKING:
            from pkg.sub.c import C  # only for type checkers: no edge
        else:
            C = None


        class A:
            from pkg.sub import d  # a class body runs at import time: an edge
    """,
    "b.py": """
        import os


        def late():
            from pkg import a  # inside a function: no edge
    """,
    "sub/__init__.py": "",
    "sub/c.py": "from ..b import late\nfrom . import d\n",
    "sub/d.py": "try:\n    import pkg.b\nexcept ImportError:\n    pass\n",
}


def test_walker_resolves_imports(tmp_path: Path) -> None:
    graph = import_graph(_write_package(tmp_path, _ONE_WAY))
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b", "pkg.sub.d"}, "pkg.b": set(),
                     "pkg.sub": set(), "pkg.sub.c": {"pkg.b", "pkg.sub.d"},
                     "pkg.sub.d": {"pkg.b"}}
    assert find_cycle(graph) is None


def test_walker_finds_a_deliberate_circle(tmp_path: Path) -> None:
    files = dict(_ONE_WAY)
    files["b.py"] = "import os\n\nfrom pkg.a import A\n"  # a imports b, b imports a
    cycle = find_cycle(import_graph(_write_package(tmp_path, files)))
    assert cycle is not None and cycle[0] == cycle[-1]
    assert set(cycle) == {"pkg.a", "pkg.b"}


def test_walker_finds_a_circle_through_a_relative_import(tmp_path: Path) -> None:
    files = dict(_ONE_WAY)
    files["sub/d.py"] = "from .c import x\n"  # c imports d, d imports c
    cycle = find_cycle(import_graph(_write_package(tmp_path, files)))
    assert cycle is not None and set(cycle) == {"pkg.sub.c", "pkg.sub.d"}

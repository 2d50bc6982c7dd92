"""siamtext.classify imports run one way: storage, then decisions, then cascades on top."""

from __future__ import annotations

import ast
from pathlib import Path

import siamtext.classify

PACKAGE = Path(siamtext.classify.__file__).parent


def runtime_imports(path: Path) -> set[str]:
    """The siamtext.classify modules a module imports at run time (``TYPE_CHECKING`` blocks
    left out), wherever the import statement is (a function body included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", None) == "TYPE_CHECKING"
                   for n in ast.walk(node)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and \
                node.module.startswith("siamtext.classify"):
            if node.module == "siamtext.classify":
                out.update(alias.name for alias in node.names)
            else:
                out.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[2] for a in node.names
                       if a.name.startswith("siamtext.classify."))
    return out


def graph() -> dict[str, set[str]]:
    return {p.stem: runtime_imports(p) - {p.stem} for p in PACKAGE.glob("*.py")
            if p.stem != "__init__"}


def test_the_module_graph_has_no_cycle():
    g, done, path = graph(), set(), []

    def visit(m: str) -> None:
        assert m not in path, f"import cycle: {' -> '.join(path + [m])}"
        if m in done:
            return
        path.append(m)
        for dep in g.get(m, ()):
            visit(dep)
        path.pop()
        done.add(m)

    for module in g:
        visit(module)


def test_cascades_sit_on_top_and_the_store_at_the_bottom():
    g = graph()
    assert not [m for m, deps in g.items() if "cascade" in deps]
    assert not [m for m, deps in g.items() if m != "cascade" and deps & {"intent", "dedup"}]
    assert g["examples"] == set()  # the stored classes depend on nothing above
    for floor in ("examples", "first_pass", "candidates", "intent_folder", "intent_index",
                  "dedup_index", "attach", "scoring", "rejection", "search"):
        assert not g[floor] & {"intent", "intent_answers", "dedup", "cascade"}, floor

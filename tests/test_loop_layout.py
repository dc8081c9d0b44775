# python -m pytest tests/test_loop_layout.py -q
"""The package's shape (issue 11): no import cycles, nobody reaches into another object's private members, and
the Loop class stays small enough to read."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "autoresearch_nb"
# The dashboard is being split by its own branch (issue 11); its modules join the private-member check there.
NOT_YET = ("dashboard",)


def modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = f.relative_to(PKG.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports, at module level or inside functions (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    skip = {id(m) for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)
            for m in ast.walk(n)}
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    deps = set()
    for n in ast.walk(tree):
        if id(n) in skip:
            continue
        if isinstance(n, ast.ImportFrom):
            base = package[:len(package) - n.level + 1] if n.level else []
            target = ".".join(base + ([n.module] if n.module else []))
            deps |= {f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in n.names}
        elif isinstance(n, ast.Import):
            deps |= {a.name for a in n.names}
    return {d for d in deps if d in known and d != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycles() -> None:
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    # The control: a check that cannot fail proves nothing.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def private_uses(source: str) -> list[str]:
    """Every ``x._name`` where ``x`` is not ``self`` or ``cls`` (protocol hooks like ``_repr_html_`` aside)."""
    out = []
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.endswith("_"):
            if not (isinstance(n.value, ast.Name) and n.value.id in ("self", "cls")):
                out.append(f"{n.lineno}: {ast.unparse(n)}")
    return out


def test_no_module_touches_another_objects_private_members() -> None:
    found = {str(f.relative_to(PKG)): private_uses(f.read_text()) for f in PKG.rglob("*.py")
             if f.relative_to(PKG).parts[0] not in NOT_YET}
    assert {k: v for k, v in found.items() if v} == {}
    assert sorted(private_uses("loop._stop.set()\nself._x = other._y\n")) == ["1: loop._stop", "2: other._y"]


def test_the_loop_class_is_at_most_400_lines() -> None:
    tree = ast.parse((PKG / "loop.py").read_text())
    loop = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Loop")
    assert loop.end_lineno - loop.lineno + 1 <= 400


def test_the_core_never_imports_the_dashboard_at_module_level() -> None:
    for f in PKG.glob("*.py"):
        tree = ast.parse(f.read_text())
        top = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
        assert not any((n.module or "").startswith("dashboard") and n.level for n in top), f

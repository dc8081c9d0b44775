# python -m pytest tests/test_architecture.py -q
"""The package's structure, read from its source with ``ast``: no import cycles, no reaching into another
object's private members."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "autoresearch_nb"
# Underscore names that are documented public API of the standard library (os._exit, NamedTuple._replace).
STDLIB_PUBLIC = {"_exit", "_getframe", "_replace", "_asdict", "_fields", "_field_defaults", "_make"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every import node, at any depth (inside functions too), except under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports_of(child)
            continue
        yield from _imports_of(node)


def _imports_of(node: ast.AST):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    yield from _imports(node)


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules that module ``name`` imports (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # `from .pkg import mod` imports the submodule; `from .mod import name` imports mod.
            targets = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in known else stem for alias in node.names]
        found.update(t for t in targets if t in known and t != name)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imported_modules(name, path, known) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per strongly connected component with more than one
    module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, set(c), c[0]) for c in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str], start: str) -> list[str]:
    """A shortest path start -> ... -> start inside one component (breadth first)."""
    previous: dict[str, str] = {}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & component):
            if w == start:
                return _unwind(previous, v, start)
            if w not in previous:
                previous[w] = v
                queue.append(w)
    return [start]


def _unwind(previous: dict[str, str], last: str, start: str) -> list[str]:
    path = [last]
    while path[-1] != start:
        path.append(previous[path[-1]])
    return list(reversed(path)) + [start]


def private_accesses(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """``file:line  expr._name`` for each access to an underscore member of anything but ``self``/``cls``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.endswith("_") or node.attr in STDLIB_PUBLIC:  # dunder and protocol (_repr_html_) names
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
            continue
        out.append((node.lineno, f"{path.relative_to(root)}:{node.lineno}  {ast.unparse(node)}"))
    return [line for _, line in sorted(out)]


# -- the checker on small known cases, so that a pass below means something ------------------------------------

def test_the_walk_sees_function_level_and_relative_imports_but_not_type_checking_ones(tmp_path: Path) -> None:
    src = ("from __future__ import annotations\nfrom typing import TYPE_CHECKING\nfrom . import b\n"
           "from .sub import c\nif TYPE_CHECKING:\n    from . import d\nelse:\n    import pkg.e\n"
           "def f():\n    from .sub.c import thing\n    import pkg.g\n")
    path = tmp_path / "pkg" / "a.py"
    path.parent.mkdir()
    path.write_text(src)
    known = {"pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c", "pkg.d", "pkg.e", "pkg.g"}
    assert imported_modules("pkg.a", path, known) == {"pkg.b", "pkg.sub.c", "pkg.e", "pkg.g"}


def test_cycles_are_found_and_printed_as_a_path() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_private_access_finder(tmp_path: Path) -> None:
    path = tmp_path / "probe.py"
    path.write_text("class A:\n    def f(self, other):\n        self._a; other._b; super()._c; x.__dict__\n"
                    "        os._exit(0); self.store._rows; w._repr_html_()\n")
    found = private_accesses(path, tmp_path)
    assert found[0].startswith("probe.py:3") and [f.split("  ")[1] for f in found] == ["other._b", "self.store._rows"]


# -- the package -------------------------------------------------------------------------------------------------

def test_the_package_has_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 30 and "autoresearch_nb.pipeline" in graph["autoresearch_nb.executors"]
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_module_touches_another_objects_private_members() -> None:
    found = [line for path in modules().values() for line in private_accesses(path)]
    assert not found, f"{len(found)} accesses to another object's _private members:\n" + "\n".join(found)


@pytest.mark.parametrize("name", ["autoresearch_nb.protocol", "autoresearch_nb.errors", "autoresearch_nb.records"])
def test_leaf_modules_import_nothing_from_the_package(name: str) -> None:
    assert import_graph()[name] == set()


def test_the_loop_class_is_at_most_400_lines() -> None:
    tree = ast.parse((PACKAGE / "loop.py").read_text())
    loop = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Loop")
    assert loop.end_lineno - loop.lineno + 1 <= 400


def test_the_core_never_imports_the_dashboard_at_module_level() -> None:
    for f in PACKAGE.glob("*.py"):
        tree = ast.parse(f.read_text())
        top = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
        assert not any((n.module or "").startswith("dashboard") and n.level for n in top), f


# -- the code map (ARCHITECTURE.md), checked -----------------------------------------------------------------------

def third_party(path: Path) -> set[str]:
    """Top-level names of the non-stdlib, non-package modules ``path`` imports (any depth)."""
    import sys
    found = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            ([] if node.level else [node.module or ""])
        found.update(n.split(".")[0] for n in names)
    return {n for n in found if n and n not in sys.stdlib_module_names and n not in ("__future__", "autoresearch_nb")}


P = "autoresearch_nb."
HARNESS_THIRD_PARTY = {"torch", "numpy", "tokenizers", "pyarrow", "tqdm", "psutil"}  # what a bare GPU box has
# module (or package prefix ending in ".") -> (third-party modules it may import, package modules it may import:
# exact names, or prefixes ending in ".")
CODE_MAP = {
    P + "protocol": (set(), set()),
    P + "safetext": (set(), set()),
    P + "errors": (set(), set()),
    P + "records": (set(), set()),
    P + "landlock": (set(), {P + "errors"}),  # the errors import falls back when run by path
    P + "provenance": (set(), {P + "errors", P + "environ"}),
    P + "environ": (set(), set()),
    P + "effective": (set(), {P + "pysource"}),
    P + "pysource": (set(), set()),
    P + "clock": ({"psutil"}, set()),   # the budget clock: the loop's measure of a run, from outside
    P + "prune": (set(), {P + "records"}),  # early stopping: curves in, a reason out
    P + "noise": (set(), set()),  # the statistics of decisions: pure, stdlib only
    P + "waiting": (set(), set()),  # what a main-thread wait does meanwhile; the dashboard installs the pump
    P + "paired": (set(), {P + "noise"}),  # the paired sequential rule: numbers in, a step or a decision out
    P + "merge": (set(), set()),  # the 3-way merge of one file
    P + "combine": (set(), {P + "merge", P + "records"}),  # near-miss combinations: history in, a file out
    P + "layout": (set(), {P + "environ"}),
    P + "rundir": (set(), {P + "errors", P + "layout", P + "environ"}),
    P + "sandbox": (set(), {P + "errors", P + "provenance", P + "landlock", P + "layout", P + "environ"}),
    P + "causal": ({"torch"}, set()),
    P + "harness.safefs": (set(), set()),
    # the package root only for __version__ (its other names resolve lazily)
    P + "harness.": (HARNESS_THIRD_PARTY, {"autoresearch_nb", P + "harness", P + "harness.", P + "provenance",
                                           P + "protocol", P + "errors"}),
}


def contract_for(name: str) -> tuple[set[str], set[str]] | None:
    if name in CODE_MAP:
        return CODE_MAP[name]
    prefixes = [k for k in CODE_MAP if k.endswith(".") and (name + ".").startswith(k)]
    return CODE_MAP[max(prefixes, key=len)] if prefixes else None


def test_the_code_map_is_checked_against_every_module_it_names() -> None:
    graph, mods, broken = import_graph(), modules(), []
    assert all(k in mods or k.endswith(".") for k in CODE_MAP), "CODE_MAP names a module that does not exist"
    for name, path in mods.items():
        contract = contract_for(name)
        if contract is None:
            continue
        outside, inside = contract
        extra = third_party(path) - outside
        reach = {m for m in graph[name] if not any(m == a or (a.endswith(".") and m.startswith(a)) for a in inside)}
        if extra or reach:
            broken.append(f"{name}: imports {sorted(extra | reach)}, outside its place in the code map")
    assert not broken, "\n".join(broken)


def test_the_code_map_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("import os\nfrom pandas import DataFrame\ndef f():\n    import torch.nn\n")
    assert third_party(path) == {"pandas", "torch"}
    assert contract_for(P + "harness.evaluate") == CODE_MAP[P + "harness."]
    assert contract_for(P + "harness.safefs") == (set(), set())


# -- one pipeline (ARCHITECTURE.md: "One way a run happens") -------------------------------------------------------

def calls_of(path: Path, name: str, methods: bool = True) -> list[int]:
    """Lines where ``path`` calls a function named ``name`` (``name(...)``, or with ``methods`` ``x.name(...)``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Name) and f.id == name) or \
                    (methods and isinstance(f, ast.Attribute) and f.attr == name):
                out.append(node.lineno)
    return out


def test_every_driver_runs_through_the_one_pipeline() -> None:
    """A run starts in exactly one place (pipeline.run_job calls execute); every driver reaches it: the run
    plan (serial loop, lookahead, repeats, setup), the local workers and the Ray task."""
    mods = modules()
    starts = {name: calls_of(path, "execute", methods=False) for name, path in mods.items()}  # not sqlite's
    assert {name for name, lines in starts.items() if lines} == {P + "pipeline"}, starts
    runners = {name for name, path in mods.items() if calls_of(path, "run_job")}
    assert runners == {P + "trial", P + "executors", P + "ray_executor"}, runners
    run_here = {name for name, path in mods.items() if calls_of(path, "run_here")}
    assert {P + "loop", P + "repeats", P + "trial"} <= run_here, run_here
    settles = {name for name, path in mods.items() if calls_of(path, "settle")}
    assert settles == {P + "loop", P + "parallel"}, settles  # the keep step: one function, both drivers


def test_only_the_layout_module_names_the_state_folders() -> None:
    """Paths under .autoresearch/ and the cache are built in layout.py alone (RunPaths): no other module spells
    the folder names."""
    names = {".autoresearch", "store.db", "locks", "results.tsv", "optuna"}
    found = []
    for name, path in modules().items():
        if name == P + "layout":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                found.append(f"{path.name}:{node.lineno} {node.value!r}")
    assert not found, "paths spelled outside layout.py:\n" + "\n".join(found)


# Where the environment is read: the loop's one module, the harness's one module, and the separate programs that
# set up their own process (the sandbox's wrapper, the verifier, the dashboard's demo target).
ENV_READERS = {P + "environ", P + "harness.runtime", P + "landlock", P + "verifier", P + "dashboard.demo"}


def environment_reads(path: Path) -> list[int]:
    """Lines of ``path`` that touch ``os.environ`` or call ``os.getenv``/``os.putenv``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os" and \
                node.attr in ("environ", "environb", "getenv", "putenv", "unsetenv"):
            out.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and node.module == "os" and \
                any(a.name in ("environ", "getenv") for a in node.names):
            out.append(node.lineno)
    return out


def test_environment_variables_are_read_in_one_module_per_side() -> None:
    found = [f"{name}:{line}" for name, path in modules().items() if name not in ENV_READERS
             for line in environment_reads(path)]
    assert not found, "os.environ read outside environ.py / harness/runtime.py:\n" + "\n".join(found)


def test_the_environment_check_sees_every_spelling(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("import os\nfrom os import environ\na = os.environ['X']\nb = os.getenv('Y')\nc = {}.get('os')\n")
    assert environment_reads(path) == [2, 3, 4]

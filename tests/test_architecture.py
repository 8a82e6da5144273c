"""The house's plan, enforced: stages import one way, the host stays stdlib-only, nothing grows too big.

The stages are folders of ``conc_lab/`` (config → plan → run → store → analysis → present, with
machine/ and host/ beside them and cli/ on top). Each may import only the stages listed for it in
``MAY_IMPORT``; the test fails naming the module and the import that breaks the direction.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.inprocess

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "conc_lab"

# "top" is conc_lab/__init__.py, schema.py and events.py: the vocabulary every stage may use.
MAY_IMPORT = {
    "top": set(),
    "host": set(),
    "machine": {"host"},
    "config": {"host", "machine"},
    "plan": {"config", "store", "host"},
    "run": {"config", "plan", "store", "machine", "host"},
    "store": set(),
    "analysis": {"store", "host"},  # host: only host.units, the one duration formatter
    "present": {"analysis", "store", "machine", "host"},
    "advice": {"config", "plan", "run", "store", "analysis", "machine", "host"},
    "cli": {"config", "plan", "run", "store", "analysis", "present", "machine", "host", "advice"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """conc_lab modules ``path`` imports anywhere (in functions too), resolved to module names."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + [base]
                ).strip(".")
            # ``from pkg import mod`` imports the module pkg.mod where there is one
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:  # a.b.c -> the deepest conc_lab module it names
                name = name.rpartition(".")[0]
            if name and name != me:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    graph = {m: _imports(p, known) for m, p in files.items()}
    # A package's __init__ runs before its modules: importing a.b imports a too. Parents are not
    # edges here, since conc_lab/__init__ imports its API lazily (PEP 562) and must stay that way.
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in ``graph`` as a list of modules, or None.

    >>> find_cycle({"a": {"b"}, "b": {"a"}})
    ['a', 'b', 'a']
    """
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n) :] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        state[m] = 2
        path.pop()
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def stage(module: str) -> str:
    """The stage folder a module lives in.

    >>> stage("conc_lab.run.executor"), stage("conc_lab.schema"), stage("conc_lab")
    ('run', 'top', 'top')
    """
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else "top"


def wrong_way(graph: dict[str, set[str]]) -> list[str]:
    """Every import that goes against ``MAY_IMPORT``, as ``"a -> b"``."""
    bad = []
    for module, imported in sorted(graph.items()):
        mine = stage(module)
        for other in sorted(imported):
            theirs = stage(other)
            if theirs != mine and theirs != "top" and theirs not in MAY_IMPORT[mine]:
                bad.append(f"{module} -> {other}")
            if mine == "host" and theirs != "host" and other != "conc_lab":
                bad.append(f"{module} -> {other}")
    return bad


def test_every_module_is_in_a_stage_the_plan_knows():
    assert {stage(m) for m in import_graph()} <= set(MAY_IMPORT)


def test_stages_import_one_way():
    assert wrong_way(import_graph()) == []


def test_the_check_sees_an_import_against_the_direction():
    graph = import_graph()
    graph["conc_lab.store.merge"] = graph["conc_lab.store.merge"] | {"conc_lab.run.runner"}
    graph["conc_lab.analysis.summary"] = graph["conc_lab.analysis.summary"] | {"conc_lab.present.tables"}
    assert wrong_way(graph) == [
        "conc_lab.analysis.summary -> conc_lab.present.tables",
        "conc_lab.store.merge -> conc_lab.run.runner",
    ]


def test_no_import_cycles_inside_conc_lab_lazy_imports_included():
    graph = import_graph()
    assert "conc_lab.run.executor" in graph["conc_lab.run.cluster"]  # the walk sees what it should
    assert "conc_lab.run.cluster" in graph["conc_lab.run.runner"]  # ... lazy imports in functions too
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_walk_finds_a_cycle_made_by_a_lazy_import(tmp_path):
    graph = import_graph()
    graph["conc_lab.run.executor"] = graph["conc_lab.run.executor"] | {
        "conc_lab.run.runner"
    }  # as cluster once did
    assert find_cycle(graph) is not None


def test_the_host_side_imports_nothing_of_the_parent_side():
    graph = import_graph()
    for module, imported in graph.items():
        if module.startswith("conc_lab.host"):
            assert all(m.startswith("conc_lab.host") or m == "conc_lab" for m in imported), (module, imported)


def test_every_test_file_names_its_tier():
    """A file without a ``pytestmark`` would slip into the developer loop whatever it starts."""
    unmarked = [
        p.name
        for p in sorted((REPO / "tests").glob("test_*.py"))
        if not any(
            isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets)
            for node in ast.parse(p.read_text()).body
        )
    ]
    assert unmarked == []

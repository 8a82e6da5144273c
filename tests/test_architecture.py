"""The house's plan, enforced: stages import one way, the host stays stdlib-only, nothing grows too big.

The stages are folders of ``conc_lab/`` (config → plan → run → store → analysis → present, with
machine/ and host/ beside them and cli/ on top). Each may import only the stages listed for it in
``MAY_IMPORT``; the test fails naming the module and the import that breaks the direction.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
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
    # run -> analysis: the rounds a precision goal adds are decided by the estimator the summary prints
    "run": {"config", "plan", "store", "analysis", "machine", "host"},
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


@functools.cache
def _walked_graph() -> dict[str, frozenset[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    return {m: frozenset(_imports(p, known)) for m, p in files.items()}


def import_graph() -> dict[str, set[str]]:
    """Each conc_lab module and the conc_lab modules it imports: the tree is walked once a session
    (parsing it takes seconds), and each caller gets a copy of its own to change."""
    # A package's __init__ runs before its modules: importing a.b imports a too. Parents are not
    # edges here, since conc_lab/__init__ imports its API lazily (PEP 562) and must stay that way.
    return {m: set(imported) for m, imported in _walked_graph().items()}


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


# -- names in one home ---------------------------------------------------------------------------
#: Where backend names may be spelled as literals: their one home.
BACKEND_NAMES_HOME = PACKAGE / "host" / "protocol.py"
#: A literal that names something else spelled like a backend (the ray package, the YAML section
#: ``ray:``) says so on its line.
NOT_A_BACKEND = "not the backend"


def _docstrings(tree: ast.AST) -> set[int]:
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def retyped_names(path: Path, names: set[str], root: Path = REPO) -> list[str]:
    """String literals in ``path`` equal to one of ``names``, as ``"file:line 'name'"``: docstrings
    (their examples) and lines that say they mean something else (``NOT_A_BACKEND``) aside."""
    text = path.read_text()
    lines = text.splitlines()
    tree = ast.parse(text)
    skip = _docstrings(tree)
    return [
        f"{path.relative_to(root)}:{node.lineno} {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in names
        and id(node) not in skip
        and NOT_A_BACKEND not in lines[node.lineno - 1]
    ]


def test_backend_names_are_spelled_only_in_their_home():
    from conc_lab.host import protocol

    names = set(protocol.BACKENDS)
    found = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != BACKEND_NAMES_HOME
        for hit in retyped_names(path, names)
    ]
    assert found == [], "use the names of conc_lab/host/protocol.py: " + ", ".join(found)


def test_the_name_check_sees_a_retyped_backend_name(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        '"""Docstring: threading is fine here."""\n'
        'if backend == "threading":\n'
        '    import_module("ray")  # package, not the backend\n'
        'x = f"{backend}/threading"\n'
    )
    assert retyped_names(module, {"threading", "ray"}, root=tmp_path) == ["m.py:2 'threading'"]


def test_the_registry_and_the_config_know_the_same_backends():
    from conc_lab.config import validate
    from conc_lab.host import backends, protocol

    assert backends.names() == sorted(protocol.BACKENDS)
    assert validate.BACKENDS is protocol.BACKENDS


def outcome_literals(path: Path, root: Path = REPO) -> list[str]:
    """Outcome fields spelled as string literals where an outcome is built or read (subscripts,
    dict keys, ``.get``/``.pop``) in ``path``; ``cores`` is also a trial parameter (``trial["cores"]``)."""
    from conc_lab.host import protocol

    fields = set(protocol.OUTCOME_FIELDS) - {protocol.CORES}
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        keys = []
        if isinstance(node, ast.Subscript):
            keys = [node.slice]
        elif isinstance(node, ast.Dict):
            keys = [k for k in node.keys if k is not None]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("get", "pop"):
            keys = node.args[:1]
        found += [
            f"{path.relative_to(root)}:{k.lineno} {k.value!r}"
            for k in keys
            if isinstance(k, ast.Constant) and isinstance(k.value, str) and k.value in fields
        ]
    return found


#: Every module that builds, patches or reads an outcome: the host side, and the runner's side that
#: turns one into a row (there the row's columns named like outcome fields go through protocol too).
OUTCOME_MODULES = [
    *(p for p in (PACKAGE / "host").rglob("*.py") if p != BACKEND_NAMES_HOME),
    *(PACKAGE / "run" / name for name in ("executor.py", "hosts.py", "trial_host.py", "calibration.py")),
]


def test_outcome_fields_are_spelled_only_in_the_protocol():
    assert [hit for path in OUTCOME_MODULES for hit in outcome_literals(path)] == []


def test_the_outcome_check_sees_a_retyped_field(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('out = {"status": "ok"}\nout.get("run_s")\nout[protocol.RUN_S]\ntrial["cores"]\n')
    assert outcome_literals(module, root=tmp_path) == ["m.py:1 'status'", "m.py:2 'run_s'"]


# -- sizes: what fits a screen, a reading, a head -------------------------------------------------
MAX_MODULE_LINES, MAX_CLASS_LINES, MAX_FUNCTION_LINES = 500, 150, 60


def too_big(paths, root: Path = REPO) -> list[str]:
    """Modules, classes and functions over their limits, as ``"file[:name] N lines"``."""
    found = []
    for path in paths:
        text = path.read_text()
        where = str(path.relative_to(root))
        if text.count("\n") > MAX_MODULE_LINES:
            found.append(f"{where} {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                limit = MAX_CLASS_LINES
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                limit = MAX_FUNCTION_LINES
            else:
                continue
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                found.append(f"{where}:{node.name} {lines} lines")
    return found


def test_nothing_in_the_package_is_over_its_size_limit():
    assert too_big(sorted(PACKAGE.rglob("*.py"))) == []


def test_the_size_check_sees_a_long_function(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("class C:\n    async def f(self):\n" + "        x = 1\n" * MAX_FUNCTION_LINES)
    assert too_big([module], root=tmp_path) == ["m.py:f 61 lines"]


# -- the README's module table is the tree's ------------------------------------------------------
def readme_module_table() -> dict[str, tuple[str, str]]:
    """The rows of the README's module table ("How a trial runs"): folder -> (what it holds, may import)."""
    text = (REPO / "README.md").read_text()
    start = text.index("| folder | what it holds | may import |")
    rows = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        folder, holds, may = (cell.strip() for cell in line.strip().strip("|").split("|"))
        rows[folder.strip("`").split("`")[0].rstrip("/").removesuffix(".py")] = (holds, may)
    return rows


def _stage_words(may: str) -> set[str]:
    """``"store, host (`units`)"`` -> {"store", "host"}; "everything" -> every other stage."""
    if may == "everything":  # cli/: every stage but itself and the top, which all may use
        return set(MAY_IMPORT) - {"top", "cli"}
    words = set()
    depth = 0
    for part in re.split(r"([(),])", may):
        depth += part == "("
        depth -= part == ")"
        if depth == 0 and part.strip() in MAY_IMPORT:
            words.add(part.strip())
    return words


def test_the_readmes_module_table_names_every_stage_module_and_direction():
    rows = readme_module_table()
    rows["top"] = rows.pop("schema")  # the first row holds schema.py and events.py
    stages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert set(rows) == stages | {"top"}
    for stage_name, (holds, may) in rows.items():
        assert _stage_words(may) == MAY_IMPORT[stage_name], (stage_name, may)
        if stage_name == "top":
            continue
        named = set(re.findall(r"\w+", " ".join(re.findall(r"`([^`]+)`", holds))))
        folder = PACKAGE / stage_name
        modules = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
        modules |= {p.name for p in folder.iterdir() if (p / "__init__.py").exists()}  # host/backends/
        assert modules <= named, f"{stage_name}/ modules the README's table does not name: {modules - named}"


def test_collecting_the_suite_imported_no_workload_that_misbehaves_on_import():
    """tests/workloads_hostile_import.py starts a spinning thread when imported; only trial hosts
    may import it. Collected by --doctest-modules it spun beside every later test (conftest.py)."""
    import threading

    assert "workloads_hostile_import" not in sys.modules
    assert "spins-from-import" not in {t.name for t in threading.enumerate()}

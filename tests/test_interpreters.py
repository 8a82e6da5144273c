"""The interpreter axis: real trial hosts under several pyenv interpreters, and what each row records.

Interpreters are the machine's own (pyenv 3.8 ... 3.13 here); a test that needs one the
machine lacks is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conc_lab.analysis import summary as analysis
from conc_lab.cli import app
from conc_lab.config.document import load_config
from conc_lab.config.errors import ConfigError
from conc_lab.machine import doctor, interpreters
from conc_lab.run.runner import sweep
from conc_lab.run.trial_host import TrialHost
from conc_lab.store.load import load

pytestmark = pytest.mark.host

#: Versions the matrix test picks its three (or more) interpreters from, oldest first.
WANTED = ["3.8", "3.10", "3.12", "3.9", "3.11", "3.13"]


def _available(version: str) -> interpreters.Interpreter | None:
    try:
        return interpreters.check(version)
    except interpreters.InterpreterError:
        return None


def _need(version: str) -> interpreters.Interpreter:
    info = _available(version)
    if info is None:
        pytest.skip(f"no Python {version} on this machine (PATH or pyenv)")
    return info


@pytest.fixture(scope="module")
def three_pythons() -> list[str]:
    found = [v for v in WANTED if _available(v)][:3]
    if len(found) < 3:
        pytest.skip(f"needs 3 interpreters >= 3.8 from {WANTED}; this machine has {found}")
    return sorted(found, key=lambda v: tuple(map(int, v.split("."))))


def _config(tmp_path: Path, matrix: dict, **top) -> Path:
    path = tmp_path / "interp.yaml"
    doc = {"name": "interp", "repeats": 2, "warmup": 0, "timeout_s": 60, "matrix": matrix, **top}
    path.write_text(yaml.safe_dump(doc))
    return path


# --- resolving and probing ---------------------------------------------------------------------


def test_version_names_resolve_to_that_pyenv_interpreter():
    info = _need("3.12")
    assert info.version.startswith("3.12.") and info.version_info[:2] == (3, 12)
    assert info.implementation == "CPython" and info.can_host
    # "python3.12" and the exact version name land on the same build as "3.12"
    assert interpreters.probe(interpreters.resolve("python3.12")).version == info.version
    assert interpreters.check(info.version).version == info.version
    # a path is taken as it is
    assert interpreters.check(info.path).version == info.version


def test_the_default_build_is_not_the_free_threaded_one():
    root = interpreters.pyenv_root()
    if root is None or not any(p.name.endswith("t") for p in (root / "versions").iterdir()):
        pytest.skip("no free-threaded pyenv build here to confuse with the default one")
    threaded = next(p.name for p in (root / "versions").iterdir() if p.name.endswith("t"))
    minor = ".".join(threaded[:-1].split(".")[:2])
    assert interpreters.check(minor + "t").free_threaded
    if _available(minor):
        assert not interpreters.check(minor).free_threaded


def test_missing_and_unusable_interpreters_say_why(tmp_path):
    with pytest.raises(interpreters.InterpreterError, match="no interpreter 'python9.99' on PATH"):
        interpreters.check("python9.99")
    with pytest.raises(interpreters.InterpreterError, match="no such file"):
        interpreters.check(str(tmp_path / "nope" / "python"))
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\necho not a python >&2\nexit 3\n")
    with pytest.raises(interpreters.InterpreterError, match="not an executable file"):
        interpreters.check(str(script))
    script.chmod(0o755)
    with pytest.raises(interpreters.InterpreterError, match="not a working Python interpreter .not a python"):
        interpreters.check(str(script))


def test_an_interpreter_below_the_minimum_is_refused():
    old = next((v for v in ("3.7", "3.6", "2.7") if _resolves(v)), None)
    if old is None:
        pytest.skip("no Python older than 3.8 on this machine to refuse")
    with pytest.raises(interpreters.InterpreterError, match=r"too old \(the trial host needs Python 3\.8"):
        interpreters.check(old)


def _resolves(version: str) -> bool:
    try:
        interpreters.resolve(version)
        return True
    except interpreters.InterpreterError:
        return False


@pytest.mark.slow
def test_find_interpreters_lists_pyenv_versions_and_which_can_host():
    root = interpreters.pyenv_root()
    if root is None:
        pytest.skip("no pyenv root on this machine")
    # By real path: in a virtual environment (CI's) the running interpreter is listed under the
    # venv's path, though it is one of pyenv's versions.
    found = {
        Path(os.path.realpath(i.path)).parent.parent.name: i
        for i in interpreters.find_interpreters()
        if root.resolve().as_posix() in os.path.realpath(i.path)
    }
    pyenv_versions = [p.name for p in (root / "versions").iterdir() if (p / "bin" / "python").exists()]
    assert pyenv_versions and set(pyenv_versions) <= set(found)
    for name, info in found.items():
        assert info.can_host == (info.version_info[:2] >= interpreters.MIN_VERSION), (name, info.problem)
    assert any(
        i.path == sys.executable or i.executable == sys.executable for i in interpreters.find_interpreters()
    )


@pytest.mark.slow
def test_doctor_lists_interpreters_with_what_they_can_do():
    findings = doctor.interpreters()
    assert findings and {f.status for f in findings} <= set(doctor.STATUSES)
    hosts = [f for f in findings if f.status == "ok"]
    assert hosts and all("can host trials" in f.detail for f in hosts)
    assert any(sys.executable in f.detail for f in findings)
    res = CliRunner().invoke(app, ["doctor", "--json"])
    assert res.exit_code == 0, res.output
    listed = {f["name"] for f in json.loads(res.output)}
    assert {f.name for f in findings} <= listed


# --- config validation --------------------------------------------------------------------------


def test_config_names_the_bad_python_entry(tmp_path):
    _need("3.12")
    path = _config(
        tmp_path,
        {
            "workload": "experiments.seed:calc_square",
            "backend": ["sequential"],
            "python": ["3.12", "python9.99"],
        },
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: matrix.python[1]: no interpreter 'python9.99'")
    assert "\n" not in str(err.value)


def test_config_checks_the_python_of_an_include_entry(tmp_path):
    path = _config(
        tmp_path,
        {"workload": "experiments.seed:calc_square", "backend": ["sequential"]},
        include=[
            {"workload": "experiments.seed:calc_square", "backend": "threading", "python": "python9.99"}
        ],
    )
    with pytest.raises(ConfigError, match=r"include\[0\]\.python: no interpreter 'python9.99'"):
        load_config(path)


def test_config_refuses_a_too_old_python(tmp_path):
    old = next((v for v in ("3.7", "2.7") if _resolves(v)), None)
    if old is None:
        pytest.skip("no Python older than 3.8 here")
    path = _config(
        tmp_path, {"workload": "experiments.seed:calc_square", "backend": "sequential", "python": old}
    )
    with pytest.raises(ConfigError, match=r"matrix\.python: '.*' is .*: CPython .* is too old"):
        load_config(path)


def test_cli_reports_a_missing_interpreter_in_one_line_with_exit_code_2(tmp_path):
    path = _config(
        tmp_path,
        {"workload": "experiments.seed:calc_square", "backend": ["sequential"], "python": ["python9.99"]},
    )
    proc = subprocess.run(
        [sys.executable, "-m", "conc_lab.cli", "sweep", str(path), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "matrix.python[0]: no interpreter 'python9.99'" in lines[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "r").exists()


# --- real trials under several interpreters -----------------------------------------------------

_TOMLLIB_WORKLOAD = """
import tomllib  # standard library from 3.11 on: an older interpreter lacks it


def parse(task, size):
    return tomllib.loads("a = %d" % (task * size))["a"]
"""

_LAZY_WORKLOAD = """
def dump(task, size):
    import yaml  # imported lazily, so the module says what it needs below

    return yaml.safe_dump({"task": task, "size": size})


dump.requires = ("yaml",)
"""


@pytest.mark.slow
def test_one_matrix_across_three_interpreters(tmp_path, three_pythons, monkeypatch):
    """Each row ran under the interpreter asked for; a workload an interpreter cannot import is skipped there."""
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)  # experiments.* import from the project
    (tmp_path / "needs_tomllib_e2e.py").write_text(_TOMLLIB_WORKLOAD)
    path = _config(
        tmp_path,
        {
            "workload": ["experiments.seed:calc_square", "needs_tomllib_e2e:parse"],
            "backend": ["sequential", "threading", "multiprocessing"],
            "workers": [2],
            "tasks": [2],
            "size": [3000],
            "python": three_pythons,
        },
        backend_options={"multiprocessing": {"start_method": ["fork"]}},
    )
    result = sweep(path, out=tmp_path / "results")
    df = load(result.sweep_dir)
    assert result.failed == 0 and result.wrong == 0 and len(df) == result.planned == 3 * 2 * 3 * 2

    for python in three_pythons:
        rows = df[df["python"] == python]
        assert len(rows) == 12
        assert rows["python_version"].map(lambda v, p=python: v.startswith(p + ".")).all(), rows[
            "python_version"
        ]
        assert (rows["python_impl"] == "CPython").all()
        assert not rows["free_threaded"].any() and rows["gil_enabled"].all()
        seed = rows[rows["workload"] == "experiments.seed:calc_square"]
        assert (seed["status"] == "ok").all() and seed["correct"].all()
        toml = rows[rows["workload"] == "needs_tomllib_e2e:parse"]
        if tuple(map(int, python.split("."))) >= (3, 11):
            assert (toml["status"] == "ok").all() and toml["correct"].all()
        else:
            assert (toml["status"] == "skipped").all()
            version = rows["python_version"].iloc[0]
            assert toml["error"].str.fullmatch(rf"needs tomllib, which CPython {version} \(.*\) lacks").all()
    assert result.skipped == sum(12 // 2 for p in three_pythons if tuple(map(int, p.split("."))) < (3, 11))

    # the sequential answer of one interpreter is the answer of every other
    ok = df[(df["status"] == "ok") & (df["workload"] == "experiments.seed:calc_square")]
    assert ok["checksum"].nunique() == 1

    # side by side: one speedup column per interpreter, oldest first
    wide = analysis.by_interpreter(df)
    labels = list(analysis.interpreter_labels(df).values())
    assert [c for c in wide.columns if c in labels] == labels
    assert [lab.split(".")[:2] for lab in labels] == [p.split(".") for p in three_pythons]
    seed_rows = wide[wide["workload"] == "experiments.seed:calc_square"]
    assert set(seed_rows["backend"]) == {"threading", "multiprocessing"}
    assert seed_rows[labels].notna().all().all() and (seed_rows[labels] > 0).all().all()

    # the report draws threading speedup per Python version
    from conc_lab.present.report import write_report

    page = write_report(df, tmp_path / "report")
    assert (tmp_path / "report" / "python_speedup.png").stat().st_size > 1000
    html = page.read_text()
    assert "python_speedup.png" in html and '<table id="interpreters"' in html
    assert all(f"<th>{lab}</th>" in html for lab in labels)

    # conclab summarize prints the same side by side after its main table
    res = CliRunner().invoke(app, ["summarize", str(result.sweep_dir), "--format", "markdown"])
    assert res.exit_code == 0, res.output
    side = res.output.split("side by side")[1]
    assert side.splitlines()[2].startswith("| workload | backend |") and all(lab in side for lab in labels)


def test_a_lazily_imported_package_is_declared_and_skipped_where_missing(tmp_path, monkeypatch):
    """``fn.requires`` names what a workload imports inside its body; the host checks it before running."""
    _need("3.8")
    probe = subprocess.run(
        [interpreters.resolve("3.8"), "-E", "-s", "-c", "import yaml"], capture_output=True
    )
    if probe.returncode == 0:
        pytest.skip("the 3.8 interpreter here has PyYAML installed: nothing would be missing")
    (tmp_path / "needs_yaml_lazy.py").write_text(_LAZY_WORKLOAD)
    monkeypatch.chdir(tmp_path)
    path = _config(
        tmp_path,
        {
            "workload": "needs_yaml_lazy:dump",
            "backend": ["sequential", "threading"],
            "workers": [2],
            "tasks": [2],
            "size": [1],
            "python": ["3.8", None],
        },
    )
    result = sweep(path, out=tmp_path / "results")
    df = load(result.sweep_dir)
    old, here = df[df["python"] == "3.8"], df[df["python"].isna()]
    assert (old["status"] == "skipped").all() and old["error"].str.startswith(
        "needs yaml, which CPython 3.8"
    ).all()
    assert (here["status"] == "ok").all() and here["correct"].all()
    assert result.failed == 0 and result.skipped == len(old) == 4


def test_a_missing_module_of_the_workloads_own_package_still_fails(tmp_path, monkeypatch):
    """Only what the interpreter lacks is skipped: a broken import inside the user's own code is a failure."""
    info = _need("3.8")
    pkg = tmp_path / "mypkg_broken"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "work.py").write_text("def run(task, size):\n    return task\n")
    with TrialHost(info.path, [str(tmp_path)]) as host:
        trial = {
            "workload": "mypkg_broken.gone:run",
            "backend": "sequential",
            "workers": 1,
            "tasks": 1,
            "size": 1,
            "cores": None,
        }
        reply = host.request({"op": "run", "trial": trial}, timeout=30)
        assert reply["ok"] is False and "ModuleNotFoundError" in reply["error"]
        trial["workload"] = "mypkg_broken.work:run"
        reply = host.request({"op": "run", "trial": trial}, timeout=30)
        assert reply["ok"] and reply["outcome"]["status"] == "ok" and reply["outcome"]["gil_enabled"] is True


def test_free_threaded_build_runs_without_the_gil(tmp_path):
    """Where a free-threaded build exists, its rows say so, and the GIL was off during the run."""
    found = [i for i in interpreters.find_interpreters() if i.free_threaded and i.can_host]
    if not found:
        pytest.skip("no free-threaded (PEP 703) interpreter on this machine")
    info = found[0]
    if os.environ.get("PYTHON_GIL") == "1":
        pytest.skip("PYTHON_GIL=1 is set: the free-threaded build runs with the GIL on")
    with TrialHost(info.path, [str(Path(__file__).resolve().parent.parent)]) as host:
        assert host.info["free_threaded"] is True
        trial = {
            "workload": "experiments.seed:calc_square",
            "backend": "threading",
            "workers": 2,
            "tasks": 2,
            "size": 1000,
            "cores": None,
        }
        reply = host.request({"op": "run", "trial": trial}, timeout=30)
        assert reply["ok"] and reply["outcome"]["status"] == "ok"
        assert reply["outcome"]["gil_enabled"] is False


def test_probe_is_cached_until_the_executable_changes(tmp_path):
    info = _need("3.10")
    assert interpreters.probe(info.path) is interpreters.probe(info.path)
    link = tmp_path / "python"
    link.symlink_to(info.path)
    first = interpreters.probe(str(link))
    assert first.version == info.version and interpreters.probe(str(link)) is first
    link.unlink()
    link.symlink_to(_need("3.12").path)  # a new target file: a new stamp, so probed again
    assert interpreters.probe(str(link)).version.startswith("3.12.")


def test_host_code_keeps_to_python_38_syntax():
    """Every module the host imports parses under the oldest supported interpreter (ast of 3.8)."""
    info = _need("3.8")
    root = Path(interpreters.__file__).resolve().parent.parent  # conc_lab/, from conc_lab/machine/
    files = [str(p) for p in sorted((root / "host").rglob("*.py"))] + [str(root / "__init__.py")]
    code = textwrap.dedent(
        """
        import ast, sys
        for f in sys.argv[1:]:
            ast.parse(open(f).read(), f)
        """
    )
    proc = subprocess.run([info.path, "-c", code, *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_shipped_workloads_import_under_the_oldest_python():
    """configs/interpreters.yaml runs experiments/* under 3.8: a 3.9+ annotation there would fail at import."""
    info = _need("3.8")
    root = Path(interpreters.__file__).resolve().parents[2]  # the repository, from conc_lab/machine/
    modules = [
        f"experiments.{p.stem}" for p in sorted((root / "experiments").glob("*.py")) if p.stem != "__init__"
    ]
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    proc = subprocess.run([info.path, "-c", code, *modules], capture_output=True, text=True, cwd=root)
    assert modules and proc.returncode == 0, proc.stderr

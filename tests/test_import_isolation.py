"""A workload module's import-time code never runs in the runner (issue #25 item 9).

The config check imports workloads in a child process (``conc_lab.host.inspect``): before,
it imported them in the runner itself, so a ``sys.exit(0)`` at import made ``conclab sweep``
exit 0 having run nothing, a ``chdir`` moved the results, and ``expand`` ran the module's code
(its prints in the middle of ``expand -f json``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import conc_lab
from conc_lab.config import checks
from conc_lab.config.document import load_config
from conc_lab.config.errors import ConfigError

pytestmark = pytest.mark.host

CLI = [sys.executable, "-m", "conc_lab.cli"]
CONC_LAB_ROOT = str(Path(conc_lab.__file__).resolve().parent.parent)


def project(tmp_path: Path, module: str) -> Path:
    """A user's project: ``sneaky.py`` (import-time code, then ``work``) and configs/x.yaml naming it."""
    root = tmp_path / "project"
    (root / "configs").mkdir(parents=True)
    (root / "sneaky.py").write_text(textwrap.dedent(module) + "\n\ndef work(task, size):\n    return task\n")
    (root / "configs" / "x.yaml").write_text(
        "name: x\nrepeats: 1\nwarmup: 0\nmatrix:\n  workload: [sneaky:work]\n  backend: [sequential]\n"
    )
    return root


def conclab(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([CONC_LAB_ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=root, env=env, timeout=300)


def test_a_sys_exit_at_import_is_a_bad_config_not_a_silent_exit_0(tmp_path):
    root = project(tmp_path, "import sys\nsys.exit(0)")
    proc = conclab(root, "sweep", "configs/x.yaml", "-o", "results")
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line == "error: configs/x.yaml: matrix.workload[0]: importing 'sneaky' raised SystemExit: 0"
    assert not (root / "results").exists()


@pytest.mark.slow
def test_a_chdir_at_import_does_not_move_the_results(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = project(tmp_path, f"import os\nos.chdir({str(elsewhere)!r})")
    proc = conclab(root, "sweep", "configs/x.yaml", "-o", "results", "-q")
    assert proc.returncode == 0, proc.stderr
    assert list(elsewhere.iterdir()) == []
    assert len(conc_lab.load(root / "results" / "x")) == 1


def test_expand_does_not_run_the_module_in_its_own_process(tmp_path):
    marker = tmp_path / "imported_by"
    root = project(
        tmp_path, f"import os\nprint('hello from import')\nopen({str(marker)!r}, 'w').write(str(os.getpid()))"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([CONC_LAB_ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.Popen(
        [*CLI, "expand", "configs/x.yaml", "-f", "json"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert [t["workload"] for t in json.loads(out)] == ["sneaky:work"]  # the print is not in it
    assert int(marker.read_text()) != proc.pid  # imported, but by a child of expand


def test_a_process_killed_by_the_import_is_named_in_one_line(tmp_path):
    root = project(tmp_path, "import os\nos._exit(3)")
    proc = conclab(root, "expand", "configs/x.yaml", "--count")
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "matrix.workload[0]: importing 'sneaky' ended the process importing it (exit code 3)" in line


def test_the_python_api_imports_no_workload_here(tmp_path, monkeypatch):
    root = project(tmp_path, "import os\nos.chdir('/')")
    monkeypatch.chdir(root)
    cfg = load_config("configs/x.yaml")
    assert cfg.axes["workload"] == ("sneaky:work",)
    assert "sneaky" not in sys.modules and Path.cwd() == root


def test_an_import_that_hangs_is_refused_after_the_timeout(tmp_path, monkeypatch):
    root = project(tmp_path, "import time\ntime.sleep(60)")
    monkeypatch.chdir(root)
    monkeypatch.setattr(checks, "INSPECT_TIMEOUT_S", 2.0)
    with pytest.raises(ConfigError, match=r"matrix.workload\[0\]: importing 'sneaky' took more than 2 s"):
        load_config("configs/x.yaml")


def test_advise_learns_what_the_function_is_without_importing_it_here(tmp_path, monkeypatch):
    from conc_lab.advice.target import AdviseError, resolve

    root = project(tmp_path, "import os\nos.chdir('/')\nasync def awork(task, size):\n    return task")
    monkeypatch.chdir(root)
    assert resolve("sneaky:work").is_async is False and resolve("sneaky:awork").is_async is True
    assert "sneaky" not in sys.modules and Path.cwd() == root
    (root / "sneaky.py").write_text("import sys\nsys.exit(0)\n")
    with pytest.raises(AdviseError, match="sneaky:work: importing 'sneaky' raised SystemExit: 0"):
        resolve("sneaky:work")


def test_python_m_conc_lab_cli_does_not_import_the_working_directorys_modules(tmp_path):
    # python -m puts the working directory first on sys.path: a user's yaml.py there was
    # imported by the runner in place of PyYAML (the console script never had the folder on it).
    root = project(tmp_path, "")
    (root / "yaml.py").write_text("raise SystemExit('the working directory shadowed PyYAML')\n")
    proc = conclab(root, "expand", "configs/x.yaml", "--count")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"

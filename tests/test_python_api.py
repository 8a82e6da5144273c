"""The Python API as a notebook user meets it (#26 item 8): tab completion and a config from a dict."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent


def test_dir_lists_the_api_so_tab_completion_shows_it():
    # was: a lazy __getattr__ without __dir__, so dir(conc_lab) listed nothing of the API
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import conc_lab, sys; print(' '.join(dir(conc_lab))); print(sorted(sys.modules))",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout.splitlines()
    names = set(out[0].split())
    assert {"sweep", "load", "summarize", "compare", "write_report", "parse_config", "load_config"} <= names
    assert "pandas" not in out[1]  # listing the API imports none of it: the host stays light


def test_parse_config_is_exported_and_documented():
    import conc_lab

    assert "parse_config" in conc_lab.__all__ and "parse_config" in conc_lab.__doc__
    config = conc_lab.parse_config(
        {
            "name": "from-a-dict",
            "matrix": {
                "workload": ["experiments.cpu:sum_squares"],
                "backend": ["sequential", "threading"],
                "workers": [1, 2],
                "tasks": [2],
                "size": [1000],
            },
        }
    )
    assert config.name == "from-a-dict" and len(list(conc_lab.expand(config))) == 3


TINY = """\
name: tiny
repeats: 2
warmup: 0
matrix:
  workload: [experiments.io:sleep]
  backend: [sequential, threading]
  workers: [1, 2]
  tasks: [2]
  size: [1]
"""


@pytest.mark.slow
def test_sweep_from_python_prints_progress_where_no_terminal_is(tmp_path):
    # was: conc_lab.sweep("configs/smoke.yaml") ran almost 2 minutes printing nothing (#26 item 4)
    (tmp_path / "tiny.yaml").write_text(TINY)
    script = (
        "import conc_lab\nfrom conc_lab import events\n"
        "r = conc_lab.sweep('tiny.yaml', out='results')\n"
        "print('recorded', r.recorded)\n"
        "conc_lab.sweep('tiny.yaml', out='quiet', on_event=events.ignore)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,  # a pipe, as a notebook's or a log file's: no terminal
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "recorded 6"
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("sweep: 3 trials, 6 measured runs → results/tiny/")
    assert lines[-1].startswith("6/6 runs, ") and "elapsed" in lines[-1]
    assert len([line for line in lines if line.startswith("sweep:")]) == 1  # events.ignore: silent


def test_a_module_found_only_through_sys_path_insert_gets_one_line_saying_what_to_do(tmp_path):
    # was: the config check passed, then every run failed with ModuleNotFoundError (#26 item 8)
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "mywork.py").write_text("def work(task, size):\n    return size\n")
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(tmp_path / 'mods')!r})\n"
        "import conc_lab\n"
        "try:\n"
        "    conc_lab.parse_config({'name': 'p', 'matrix': {'workload': ['mywork:work'],\n"
        "        'backend': ['sequential'], 'workers': [1], 'tasks': [1], 'size': [1]}})\n"
        "except conc_lab.ConfigError as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and len(lines) == 1, proc.stdout + proc.stderr
    assert "matrix.workload[0]" in lines[0] and "sys.path" in lines[0]
    assert f"PYTHONPATH={tmp_path / 'mods'}" in lines[0]

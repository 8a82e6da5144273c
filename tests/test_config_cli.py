"""Config mistakes and hostile configs met through the real `conclab`, as a person meets them.

Each ends in one line on stderr naming file, key and problem; exit 2; no traceback; nothing
written under --out. Issues #11, #12 (items 6, 12) and #14 (items 3, 5, 6, 11, 14).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "conc_lab.cli"]

GOOD = """\
name: demo
repeats: 2
matrix:
  workload: [experiments.cpu:sum_squares]
  backend: [sequential, threading]
  workers: [1, 2]
  tasks: [4]
  size: [100]
"""


def conclab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "COLUMNS": "300",
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout)


def refused(tmp_path: Path, text: str, *, commands=("sweep", "expand"), timeout: float = 120) -> str:
    """Run each command on a config holding ``text``: one line, exit 2, nothing written. The line."""
    config = tmp_path / "bad.yaml"
    config.write_text(textwrap.dedent(text))
    out = tmp_path / "results"
    lines = []
    for command in commands:
        args = [command, str(config)] + (["--out", str(out)] if command == "sweep" else [])
        proc = conclab(*args, timeout=timeout)
        assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr and proc.stdout == "", proc.stderr[-2000:]
        got = proc.stderr.strip().splitlines()
        assert len(got) == 1 and got[0].startswith(f"error: {config}: "), proc.stderr[-2000:]
        lines.append(got[0])
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]
    return lines[0]


# --- #12 item 12: a misspelled function gets a suggestion, as a misspelled backend does ---


def test_a_misspelled_function_gets_a_did_you_mean(tmp_path):
    line = refused(tmp_path, GOOD.replace("sum_squares", "sum_square"))
    assert "matrix.workload[0]" in line and "has no 'sum_square'" in line
    assert "did you mean 'experiments.cpu:sum_squares'?" in line


# --- #14 item 14: a long axis is checked for duplicates in linear time -------------------


def test_three_axes_of_100_000_values_load_without_a_quadratic_check():
    """On main the duplicate check compared each value with every earlier one: 207 s here."""
    code = textwrap.dedent(
        """
        from conc_lab.config import parse_config
        from conc_lab.matrix import count
        n = 10**5
        cfg = parse_config({"name": "big", "matrix": {"workload": "experiments.io:sleep",
            "backend": "threading", "tasks": list(range(1, n + 1)), "size": list(range(n)),
            "python": [f"p{i}" for i in range(n)]}}, check_imports=False)
        print(len(cfg.axes["tasks"]) + len(cfg.axes["size"]) + len(cfg.axes["python"]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "300000", proc.stderr
    dup = (
        textwrap.dedent(code)
        .replace("list(range(n))", "list(range(n)) + [7]")
        .replace("print(len", "raise SystemExit(0)\nprint(len")
    )
    proc = subprocess.run([sys.executable, "-c", dup], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "matrix.size[100000]: 7 is listed twice" in proc.stderr


@pytest.fixture(autouse=True)
def _no_stray_results():
    yield
    assert not (REPO / "results" / "bad").exists()

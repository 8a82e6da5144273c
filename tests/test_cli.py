"""The real `conclab` command on real configs, as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

import conc_lab
from conc_lab.plan import matrix

pytestmark = pytest.mark.host

CLI = [sys.executable, "-m", "conc_lab.cli"]


def conclab(*args, cwd=None):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_smoke_sweep_end_to_end(tmp_path):
    proc = conclab("sweep", "configs/smoke.yaml", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    df = conc_lab.load(tmp_path / "smoke")
    cfg = conc_lab.load_config("configs/smoke.yaml")
    assert len(df) == matrix.count(cfg) * cfg.repeats
    assert set(df["backend"]) == set(cfg.axes["backend"])
    assert (df["status"] == "ok").all() and df["correct"].all()
    assert "runs recorded" in proc.stderr and "speedup" in proc.stdout.lower()


def test_expand_lists_and_counts_without_writing(tmp_path):
    proc = conclab("expand", "configs/cpu.yaml", "--count", cwd=None)
    assert proc.returncode == 0
    cfg = conc_lab.load_config("configs/cpu.yaml")
    assert int(proc.stdout.strip()) == matrix.count(cfg) == sum(1 for _ in conc_lab.expand(cfg))
    table = conclab("expand", "configs/cpu.yaml")
    assert table.returncode == 0 and "sum_squares" in table.stdout


def test_a_bad_config_is_one_line_exit_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nmatrix:\n  workload: [experiments.cpu:sum_squares]\n  backend: [thread]\n")
    out = tmp_path / "results"
    proc = conclab("sweep", str(bad), "--out", str(out))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(bad) in lines[0] and "matrix.backend[0]" in lines[0]
    assert not out.exists()

"""The real `conclab` command on real configs, as a user runs it."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

import conc_lab
from conc_lab.plan import matrix

pytestmark = pytest.mark.host

CLI = [sys.executable, "-m", "conc_lab.cli"]
#: a duration as ``host.units.duration`` prints it, and what each unit is in seconds
_DURATION = r"[\d.]+ (?:µs|ms|s)"
_UNITS = {"µs": 1e-6, "ms": 1e-3, "s": 1.0}


def _seconds(text: str) -> float:
    """``"5.28 ms"`` as seconds."""
    number, unit = text.split()
    return float(number) * _UNITS[unit]


def conclab(*args, cwd=None):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_smoke_sweep_end_to_end(tmp_path):
    proc = conclab("sweep", "configs/smoke.yaml", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    df = conc_lab.load(tmp_path / "smoke")
    cfg = conc_lab.load_config("configs/smoke.yaml")
    assert len(df) == matrix.count(cfg) * cfg.repeats
    assert set(df["backend"]) == set(cfg.axes["backend"])
    assert (df["status"] == "ok").all() and df["correct"].all()
    assert "runs recorded" in proc.stderr and "speedup" in proc.stdout.lower()


@pytest.mark.slow
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


@pytest.mark.slow
def test_the_overhead_per_run_is_what_the_command_paid_beyond_the_runs_and_v_says_where(tmp_path):
    # It once left out the trial host's work around each run (its fresh process, the guards) and the
    # start-up, and printed 1/9 of what a user paid. Now: the command's time less the runs' own
    # windows, per run, so the figure times the runs plus their windows covers the sweep's whole
    # printed wall time and never exceeds the command's as timed from outside.
    config = tmp_path / "noop.yaml"
    config.write_text(
        "name: noop\nrepeats: 1\nwarmup: 0\n"
        "matrix: {workload: [experiments.overhead:noop], backend: [sequential], tasks: [1], size: [0, 1, 2, 3, 4, 5]}\n"
    )
    began = time.perf_counter()
    proc = conclab("sweep", "-q", "-v", str(config), "--out", str(tmp_path / "results"))
    outside = time.perf_counter() - began
    assert proc.returncode == 0, proc.stderr
    split_line, final = proc.stderr.strip().splitlines()[-2:]
    parts = {
        name: _seconds(text)
        for name, text in re.findall(rf"(start-up|runner|trial host) ({_DURATION})", split_line)
    }
    said = re.match(rf"conc_lab's own overhead ({_DURATION}) a run \(", split_line).group(1)
    total = _seconds(said) * 1e3
    assert set(parts) == {"start-up", "runner", "trial host"}
    # the parts add up, each printed to 3 significant figures
    assert sum(parts.values()) * 1e3 == pytest.approx(total, rel=0.01)
    assert f"; conc_lab's own overhead {said} a run → " in final  # the last line says the same
    rows = conc_lab.load(tmp_path / "results" / "noop")
    windows = float((rows["setup_s"] + rows["run_s"] + rows["teardown_s"]).sum())
    paid = total / 1e3 * len(rows) + windows
    # "in 0.3 s (1.2 s with start-up)": the sweep's wall time, then the command's, which is what
    # the overhead per run shares out
    wall, whole = re.search(r"\) in ([\d.]+) s \(([\d.]+) s with start-up\);", final).groups()
    # 0.05: the times are printed to 0.1 s; 0.5%: the per-run figure, to 3 significant figures
    assert float(wall) - 0.05 <= paid <= outside * 1.005
    assert paid == pytest.approx(float(whole), abs=0.051)


def test_summarize_without_a_plain_loop_says_so_in_a_note_not_a_python_warning(tmp_path):
    config = tmp_path / "nobase.yaml"
    config.write_text(
        "name: nobase\nrepeats: 1\nwarmup: 0\n"
        "matrix: {workload: [experiments.overhead:noop], backend: [threading], tasks: [1], size: [1]}\n"
    )
    assert conclab("sweep", str(config), "--out", str(tmp_path / "r"), "-q").returncode == 0
    proc = conclab("summarize", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    said = proc.stdout + proc.stderr
    assert "note: no sequential runs in these results, so no speedups" in said.replace("\n", " "), said
    assert "UserWarning" not in said and "warnings.warn" not in said, said

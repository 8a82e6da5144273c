"""size: auto calibration: grows until one task takes the target, with a fake clock and for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conc_lab.host import calibrate as cal

ROOT = Path(__file__).resolve().parent.parent


class FakeWork:
    """A workload whose one call 'takes' size * per_unit seconds on a fake clock."""

    def __init__(self, per_unit: float, first_call_extra: float = 0.0):
        self.now = 0.0
        self.per_unit = per_unit
        self.extra = first_call_extra
        self.sizes: list[int] = []

    def clock(self) -> float:
        return self.now

    def __call__(self, task: int, size: int) -> int:
        self.sizes.append(size)
        self.now += size * self.per_unit + self.extra
        self.extra = 0.0
        return task


def test_grows_fast_then_doubles_and_stops_at_first_size_over_target():
    work = FakeWork(per_unit=1e-6)  # target 50 ms needs 50_000 units
    size, seconds = cal.calibrate(work, 0.05, clock=work.clock)
    assert size == 65536 and seconds == pytest.approx(0.065536)
    assert size / 2 * 1e-6 < 0.05 <= seconds, "the smallest power of two over the target"
    # x8 while far below the target, then x2 near it: few calls, little time spent.
    assert work.sizes[:5] == [1, 1, 8, 64, 512]
    assert len(work.sizes) < 15


def test_one_slow_call_cannot_stop_it_early():
    work = FakeWork(per_unit=1e-6)
    calls = {"n": 0}

    def jittery(task: int, size: int) -> int:
        calls["n"] += 1
        if calls["n"] == 6:  # one call suffers a 60 ms hiccup (say, a GC pause)
            work.now += 0.06
        return work(task, size)

    size, _ = cal.calibrate(jittery, 0.05, clock=work.clock)
    assert size == 65536


def test_workload_ignoring_size_is_refused_with_a_reason():
    work = FakeWork(per_unit=0.0)
    with pytest.raises(cal.CalibrationError, match="does not take longer with size"):
        cal.calibrate(work, 0.05, clock=work.clock)


def test_bad_target():
    with pytest.raises(cal.CalibrationError):
        cal.calibrate(FakeWork(1e-6), 0)


def _run_module(*args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), CONCLAB_PATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-m", "conc_lab.host.calibrate", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_module_calibrates_a_real_workload_in_a_fresh_process():
    got = _run_module("experiments.cpu:sum_squares", "0.02")
    assert got["seconds"] >= 0.02, "the reported time of the chosen size reaches the target"
    assert got["size"] > 1 and got["size"] & (got["size"] - 1) == 0, "sizes grow by powers of two from 1"


def test_module_reports_errors_as_data():
    assert "no attribute" in _run_module("experiments.cpu:nope")["error"]
    assert "does not take longer" in _run_module("experiments.overhead:noop", "0.001")["error"]

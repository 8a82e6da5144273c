"""size: auto calibration: grows until one task takes the target, with a fake clock and for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conc_lab.events import Calibrated
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


# --- size: auto through a sweep ------------------------------------------------------


def test_sweep_resolves_auto_once_per_workload_and_resume_reuses_it(tmp_path, write_config):
    import conc_lab
    from conc_lab import store

    path = write_config(
        """
        name: auto
        repeats: 2
        warmup: 0
        matrix:
          workload: [experiments.seed:calc_square]
          backend: [sequential, threading]
          workers: [1, 2]
          tasks: [2]
          size: [auto, 3]
        """
    )
    events = []
    first = conc_lab.sweep(path, out=tmp_path / "r", on_event=events.append)
    assert first.ok
    manifest = store.read_manifest(first.sweep_dir)
    size = manifest["calibrated_sizes"]["experiments.seed:calc_square"]
    assert size > 3
    calibrated = [e for e in events if isinstance(e, Calibrated)]
    assert [(e.workload, e.size) for e in calibrated] == [("experiments.seed:calc_square", size)]
    assert calibrated[0].task_s >= 0.05
    df = conc_lab.load(first.sweep_dir)
    assert sorted(df["size"].unique()) == [3, size], "every backend of the workload got the same size"
    assert (df.groupby("size")["trial_id"].nunique() == 3).all()  # sequential, threading w=1, w=2

    # Resume after losing the last run: the stored size is reused (no calibration), ids stay.
    events.clear()
    again = conc_lab.sweep(path, out=tmp_path / "r", resume=True, on_event=events.append)
    assert again.sweep_id == first.sweep_id and again.recorded == 0
    assert not [e for e in events if isinstance(e, Calibrated)]


def test_auto_on_a_workload_that_ignores_size_is_a_config_error(tmp_path, write_config):
    import conc_lab
    from conc_lab.config import ConfigError

    path = write_config(
        """
        name: noauto
        matrix: {workload: [experiments.overhead:noop], backend: [sequential], size: auto}
        """
    )
    with pytest.raises(
        ConfigError, match=r"matrix.size: size auto: cannot calibrate experiments.overhead:noop"
    ):
        conc_lab.sweep(path, out=tmp_path / "r")
    assert not (tmp_path / "r" / "noauto").exists() or not any((tmp_path / "r" / "noauto").iterdir())


def test_config_accepts_auto_and_rejects_other_words(write_config):
    from conc_lab.config import ConfigError, load_config

    ok = write_config(
        "matrix: {workload: [experiments.cpu:sum_squares], backend: [sequential], size: [auto, 10]}"
    )
    assert load_config(ok).axes["size"] == ("auto", 10)
    bad = write_config(
        "matrix: {workload: [experiments.cpu:sum_squares], backend: [sequential], size: [big]}"
    )
    with pytest.raises(ConfigError, match=r"matrix.size\[0\]: must be an integer >= 0 or 'auto'"):
        load_config(bad)

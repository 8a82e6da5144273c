"""size: auto calibration: grows until one task takes the target, with a fake clock and for real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conc_lab.events import Calibrated
from conc_lab.host import calibrate as cal

pytestmark = pytest.mark.host

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


def test_doubles_and_stops_at_first_size_over_target():
    work = FakeWork(per_unit=1e-6)  # target 50 ms needs 50_000 units
    size, seconds, stopped = cal.calibrate(work, 0.05, clock=work.clock)
    assert size == 65536 and seconds == pytest.approx(0.065536) and stopped is None
    assert size / 2 * 1e-6 < 0.05 <= seconds, "the smallest power of two over the target"
    # doubling: the steps below the target cost less than the target itself
    assert work.sizes[:5] == [1, 1, 2, 4, 8]
    assert work.now < 3 * seconds + 0.05


class CubicWork(FakeWork):
    """One call 'takes' per_unit * size**3 seconds: doubling the size costs 8 times more."""

    def __call__(self, task: int, size: int) -> int:
        self.sizes.append(size)
        self.now += self.per_unit * size**3
        return task


def test_growth_stops_before_a_step_forecast_past_the_budget():
    work = CubicWork(per_unit=1e-6)  # size 128: 2.1 s; size 256: 16.8 s; target 30 s, budget 10 s
    steps = []
    size, seconds, stopped = cal.calibrate(
        work, 30.0, clock=work.clock, budget_s=10, on_step=lambda *a: steps.append(a)
    )
    assert size == 128 and seconds == pytest.approx(1e-6 * 128**3)
    assert max(work.sizes) == 128, "size 256 was never called"
    assert stopped.startswith("size 256 is forecast to take 16.8 s a task") and "10 s budget" in stopped
    assert [s for s, _, _ in steps] == [2**i for i in range(8)], "every timed step is reported"
    assert work.now < 10


def test_a_linear_workload_is_not_stopped_by_the_forecast():
    work = FakeWork(per_unit=1e-3)  # target 10 s: size 16384; each step is twice the last
    size, seconds, stopped = cal.calibrate(work, 10.0, clock=work.clock, budget_s=60)
    assert (size, stopped) == (16384, None) and seconds >= 10.0


def test_one_slow_call_cannot_stop_it_early():
    work = FakeWork(per_unit=1e-6)
    calls = {"n": 0}

    def jittery(task: int, size: int) -> int:
        calls["n"] += 1
        if calls["n"] == 6:  # one call suffers a 60 ms hiccup (say, a GC pause)
            work.now += 0.06
        return work(task, size)

    size, _, _ = cal.calibrate(jittery, 0.05, clock=work.clock)
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
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_module_calibrates_a_real_workload_in_a_fresh_process():
    lines = _run_module("experiments.cpu:sum_squares", "0.02")
    got = lines[-1]
    steps = [line["step"] for line in lines[:-1]]
    assert steps[:3] == [1, 2, 4] and steps[-1] == got["size"], "a line per step, then the answer"
    assert got["seconds"] >= 0.02, "the reported time of the chosen size reaches the target"
    assert got["size"] > 1 and got["size"] & (got["size"] - 1) == 0, "sizes grow by powers of two from 1"


def test_an_async_workload_is_awaited_so_its_size_calibrates():
    # async_sleep sleeps `size` ms: 20 ms is reached at size 32 (doubling from 1). Before, each step
    # timed the creation of a coroutine never awaited: "does not take longer with size".
    got = _run_module("experiments.io:async_sleep", "0.02", "30")[-1]
    assert "error" not in got, got
    assert got["size"] in (16, 32) and got["seconds"] >= 0.02, got


def test_module_reports_errors_as_data():
    assert "no attribute" in _run_module("experiments.cpu:nope")[-1]["error"]
    assert "does not take longer" in _run_module("experiments.overhead:noop", "0.001")[-1]["error"]


# --- size: auto through a sweep ------------------------------------------------------


@pytest.mark.slow
def test_sweep_resolves_auto_once_per_workload_and_resume_reuses_it(tmp_path, write_config):
    import conc_lab
    from conc_lab.store.manifest import read_manifest

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
    manifest = read_manifest(first.sweep_dir)
    size = manifest.calibrated_sizes["experiments.seed:calc_square"]
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
    from conc_lab.config.errors import ConfigError

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
    from conc_lab.config.document import load_config
    from conc_lab.config.errors import ConfigError

    ok = write_config(
        "matrix: {workload: [experiments.cpu:sum_squares], backend: [sequential], size: [auto, 10]}"
    )
    assert load_config(ok).axes["size"] == ("auto", 10)
    bad = write_config(
        "matrix: {workload: [experiments.cpu:sum_squares], backend: [sequential], size: [big]}"
    )
    with pytest.raises(ConfigError, match=r"matrix.size\[0\]: must be an integer >= 0 or 'auto'"):
        load_config(bad)


def test_config_calibration_key(write_config):
    from conc_lab.config.document import load_config
    from conc_lab.config.errors import ConfigError

    head = "matrix: {workload: [experiments.cpu:sum_squares], backend: [sequential], size: auto}\n"
    cfg = load_config(write_config(head + "calibration: {budget_s: 5, target_s: 0.01}"))
    assert (cfg.calibration.budget_s, cfg.calibration.target_s) == (5.0, 0.01)
    assert load_config(write_config(head)).calibration.budget_s == 60.0, "60 s unless said"
    with pytest.raises(ConfigError, match=r"calibration.budget_s: must be a positive number of seconds"):
        load_config(write_config(head + "calibration: {budget_s: -1}"))
    with pytest.raises(ConfigError, match=r"calibration.budget: unknown key"):
        load_config(write_config(head + "calibration: {budget: 5}"))


# --- size: auto as a person meets it: the real CLI, lines as they arrive ---------------------------

GROWING = '''
import time


def cubic(task, size):
    """Takes size**3 µs: size 128 takes 2.1 s, size 256 would take 16.8 s."""
    time.sleep(size**3 / 1e6)
    return task


def hangs_at_16(task, size):
    """Takes size ms up to size 8; size 16 never returns (a step far past any forecast)."""
    time.sleep(3600 if size >= 16 else size / 1000)
    return task
'''


def _sweep_lines(tmp_path, workload: str, extra: str = "") -> tuple[int, list[tuple[float, str]]]:
    """Run ``conclab sweep`` on a one-trial ``size: auto`` matrix; (exit code, [(seconds, line)])."""
    (tmp_path / "growing.py").write_text(GROWING)
    config = tmp_path / "auto.yaml"
    config.write_text(
        f"name: auto\nrepeats: 1\nwarmup: 0\n{extra}"
        f"matrix: {{workload: [growing:{workload}], backend: [sequential], size: auto}}\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="120")
    proc = subprocess.Popen(
        [sys.executable, "-m", "conc_lab.cli", "sweep", str(config), "--out", str(tmp_path / "r")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    t0, lines = time.monotonic(), []
    for line in proc.stdout:
        lines.append((time.monotonic() - t0, line.rstrip()))
    return proc.wait(timeout=120), lines


@pytest.mark.slow
def test_size_auto_shows_its_steps_and_stops_growing_before_the_budget(tmp_path):
    code, lines = _sweep_lines(tmp_path, "cubic", "calibration: {target_s: 30, budget_s: 10}\n")
    text = "\n".join(line for _, line in lines)
    assert code == 0, text
    assert "size auto: calibrating growing:cubic" in text
    assert re.search(r"^  size 128: 2\.\d+ s$", text, re.M), "the last step is shown with its time"
    warning = next(line for _, line in lines if "under the 30 s target" in line)
    assert "growing:cubic got size 128" in warning and "size 256 is forecast to take" in warning
    assert "raise calibration.budget_s" in warning
    assert "1 run recorded (0 failed" in text
    # the sweep really ran at the size chosen
    import conc_lab

    assert conc_lab.load(tmp_path / "r")["size"].tolist() == [128]


@pytest.mark.slow
def test_a_step_that_hangs_is_killed_at_the_budget_and_the_steps_came_first(tmp_path):
    code, lines = _sweep_lines(tmp_path, "hangs_at_16", "calibration: {budget_s: 3}\n")
    text = "\n".join(line for _, line in lines)
    assert code == 0, text
    step8 = next(t for t, line in lines if line.startswith("  size 8:"))
    warned, warning = next((t, line) for t, line in lines if "under the 50 ms target" in line)
    assert "size 16 was still running when the 3 s budget ran out" in warning
    assert warned - step8 > 2, "the steps are printed as they happen, not at the end"
    assert not [line for _, line in lines if "Traceback" in line]
    import conc_lab

    assert conc_lab.load(tmp_path / "r")["size"].tolist() == [8]


SHARED = """
name: shared
repeats: 1
warmup: 0
matrix:
  workload: [experiments.seed:calc_square]
  backend: [sequential, threading]
  workers: [1, 2]
  tasks: [2]
  size: [auto]
"""


@pytest.mark.slow
def test_calibrate_once_and_every_shard_measures_that_size(tmp_path, write_config):
    """A SLURM array's shards calibrating on their own may choose different sizes (#23): calibrated once,
    every shard reads the same sizes, and merge takes them in."""
    import conc_lab
    from conc_lab.store.manifest import read_manifest

    path, out = write_config(SHARED), tmp_path / "results"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    cli = [sys.executable, "-m", "conc_lab.cli"]
    made = subprocess.run(
        [*cli, "calibrate", str(path), "--out", str(out)], capture_output=True, text=True, env=env
    )
    assert made.returncode == 0, made.stderr
    sizes = json.loads((out / "shared" / "_sizes.json").read_text())["sizes"]
    size = sizes["experiments.seed:calc_square"]
    assert f"wrote {out / 'shared' / '_sizes.json'}" in " ".join(made.stderr.split())
    for k in (1, 2):
        events = []
        shard = conc_lab.sweep(path, out=out, shard=f"{k}/2", on_event=events.append)
        assert shard.ok and not [e for e in events if isinstance(e, Calibrated)]  # read, not measured again
        assert dict(read_manifest(shard.sweep_dir).calibrated_sizes) == sizes
    merged = subprocess.run([*cli, "merge", str(out / "shared")], capture_output=True, text=True, env=env)
    assert merged.returncode == 0, merged.stderr
    assert set(conc_lab.load(out / "shared")["size"]) == {size}

    # The config changed since: calibrated where it runs, and said so.
    path.write_text(SHARED.replace("repeats: 1", "repeats: 2"))
    events = []
    assert conc_lab.sweep(path, out=out, on_event=events.append).ok
    assert [e.workload for e in events if isinstance(e, Calibrated)] == ["experiments.seed:calc_square"]
    assert any("calibrated for another version of this config" in getattr(e, "text", "") for e in events)


def test_calibrate_on_a_config_without_auto_writes_nothing(tmp_path, write_config):
    path = write_config(SHARED.replace("size: [auto]", "size: [3]"))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    done = subprocess.run(
        [sys.executable, "-m", "conc_lab.cli", "calibrate", str(path), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0 and "nothing to calibrate" in done.stderr, done.stderr
    assert not (tmp_path / "r").exists()

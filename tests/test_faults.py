"""Trials that raise, exit, segfault or hang, on every local backend, in real trial hosts.

Each one must be recorded (status and error text), must not take the sweep with it, and
must leave nothing behind that could disturb the next trial's timing: no live process of a
killed host's group, no extra thread or worker in a host that survived. The misbehaving
workloads are in tests/workloads_faulty.py. How long recovery takes is measured, not
asserted, by benchmarks/bench_recovery.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conc_lab.config.document import parse_config
from conc_lab.events import RunFinished
from conc_lab.host.measure import checksum
from conc_lab.plan.matrix import Trial
from conc_lab.run import runner
from conc_lab.run.executor import ExecutorSettings, TrialExecutor
from conc_lab.store.layout import StoreError
from conc_lab.store.load import load
from conc_lab.store.manifest import read_manifest

pytestmark = pytest.mark.host

TESTS = str(Path(__file__).resolve().parent)
REPO = Path(TESTS).parent
TIMEOUT_S = 2.0  # small, yet above a spawned pool's start-up on a busy 2-core machine

# (backend, start_method, workers)
BACKENDS = [
    ("sequential", None, 1),
    ("threading", None, 2),
    ("multiprocessing", "fork", 2),
    ("multiprocessing", "spawn", 2),
    ("multiprocessing", "forkserver", 2),
]
BACKEND_IDS = ["sequential", "threading", "fork", "spawn", "forkserver"]


def live_group(pgid: int) -> set[int]:
    """Pids of the process group that are still running (zombies left for init do not count)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.add(int(entry))
    return pids


def gone(pgid: int, within_s: float = 5.0) -> bool:
    """True once no process of the group runs; SIGKILLed processes take a moment to exit."""
    deadline = time.monotonic() + within_s
    while live_group(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def settles(measure, expected, within_s: float = 5.0) -> bool:
    """True once ``measure()`` equals ``expected``."""
    deadline = time.monotonic() + within_s
    while measure() != expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def steady_group(pgid: int) -> set[int]:
    """``live_group`` once it holds still: the host forks the next run's process as the runner
    records a reply, and that process is in the host's group until it takes its own (a moment
    after the fork; under load the test read it then, 1 run in 6)."""
    seen = live_group(pgid)
    while True:
        time.sleep(0.05)
        now = live_group(pgid)
        if now == seen:
            return now
        seen = now


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


@pytest.fixture
def executor():
    with TrialExecutor(
        ExecutorSettings("faults", "t", "compact", timeout_s=TIMEOUT_S, search_path=[TESTS])
    ) as ex:
        yield ex


def _trial(fn: str, backend: str, start_method: str | None, workers: int) -> Trial:
    return Trial(f"workloads_faulty:{fn}", backend, workers, tasks=4, size=2000, start_method=start_method)


def _expected(fault: str, backend: str) -> tuple[str, str, bool]:
    """(status, words in the error, whether the host must have been replaced).

    Each run has a process of its own, forked by the host: a run that exits or crashes takes
    only that process with it, and the host stays. Only a run that will not answer (a hang, a
    spin) costs the host, which is killed from outside and replaced.
    """
    in_run = backend != "multiprocessing"  # sequential and threading run tasks in the run's process
    if fault == "raises":
        return "failed", "ValueError: task 1 is broken on purpose", False
    if fault == "exits":
        return "failed", ("the run's process exited with code 3" if in_run else "(exit code 3)"), False
    if fault == "segfaults":
        return "failed", ("SIGSEGV" if in_run else "died (killed by SIGSEGV)"), False
    if fault in ("hangs", "spins"):
        first = f" (plus {TIMEOUT_S:g} s for its untimed first call)"  # the executor's runs are primed
        return "timeout", f"no answer within {TIMEOUT_S:g} s{first}; trial host killed and replaced", True
    raise AssertionError(fault)


# A hang or a spin waits out the timeout: those are slow, the developer loop keeps the others.
CASES = [
    pytest.param(fault, *backend, id=f"{fault}-{bid}", marks=pytest.mark.slow if fault == "hangs" else ())
    for fault in ("raises", "exits", "segfaults", "hangs")
    for backend, bid in zip(BACKENDS, BACKEND_IDS)
] + [
    # Spinning holds the GIL, so the host cannot even answer: it must be killed from outside.
    pytest.param("spins", *BACKENDS[0], id="spins-sequential", marks=pytest.mark.slow),
    pytest.param("spins", *BACKENDS[1], id="spins-threading", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("fault, backend, start_method, workers", CASES)
def test_a_faulty_trial_is_recorded_and_leaves_nothing_behind(
    executor, fault, backend, start_method, workers
):
    good = _trial("good", backend, start_method, workers)
    first = executor.execute(good, 0).row
    assert (first["status"], first["correct"]) == ("ok", True), first["error"]
    host = executor.hosts.hosts[executor.hosts.host_key(good)]
    group_before, threads_before = steady_group(host.proc.pid), thread_count(host.proc.pid)

    row = executor.execute(_trial(fault, backend, start_method, workers), 0).row

    status, words, replaced = _expected(fault, backend)
    assert row["status"] == status
    assert words in row["error"]
    assert row["run_s"] is None and row["checksum"] is None and row["correct"] is None
    assert row["python_version"] and row["hostname"]  # facts kept even when the host died
    if replaced:
        assert executor.hosts.hosts.get(executor.hosts.host_key(good)) is not host
        assert gone(host.proc.pid)  # the hung thread or worker died with its host
    else:
        # The pool is gone (workers killed or joined), the host is the one it was.
        assert executor.hosts.hosts[executor.hosts.host_key(good)] is host and host.proc.poll() is None
        assert settles(lambda: live_group(host.proc.pid), group_before)
        # A joined thread has finished its Python work a moment before the OS thread is gone.
        assert settles(lambda: thread_count(host.proc.pid), threads_before)

    after = executor.execute(good, 1).row
    assert (after["status"], after["correct"]) == ("ok", True), after["error"]
    assert after["checksum"] == first["checksum"]
    assert len(after["task_records"]) == 4


def test_a_worker_exiting_zero_mid_trial_still_fails_it(executor):
    row = executor.execute(_trial("exits_zero", "multiprocessing", "fork", 2), 0).row
    assert row["status"] == "failed"
    assert "every worker exited with" in row["error"] and "of 4 tasks done" in row["error"]


def test_a_workload_reading_stdin_cannot_eat_the_hosts_requests(executor):
    row = executor.execute(_trial("reads_stdin", "threading", None, 2), 0).row
    assert row["status"] == "ok"  # it read /dev/null, not the runner's pipe


@pytest.mark.slow
def test_a_sweep_of_faulty_trials_goes_on_records_all_and_skips_after_a_timeout(tmp_path):
    cfg = parse_config(
        {
            "name": "faulty",
            "repeats": 2,
            "warmup": 1,
            "timeout_s": TIMEOUT_S,
            "matrix": {
                "workload": [
                    f"workloads_faulty:{f}" for f in ("raises", "exits", "segfaults", "hangs", "good")
                ],
                "backend": ["threading", "multiprocessing"],
                "workers": [2],
                "tasks": [4],
                "size": [2000],
            },
            "backend_options": {"multiprocessing": {"start_method": ["fork"]}},
        },
        path=str(Path(TESTS) / "faulty.yaml"),  # so the host finds workloads_faulty beside it
    )
    failures = []
    result = runner.sweep(
        cfg,
        tmp_path,
        on_event=lambda e: (
            failures.append(e.row["workload"])
            if isinstance(e, RunFinished) and e.row["status"] in ("failed", "timeout")
            else None
        ),
    )
    assert (result.planned, result.recorded, result.interrupted) == (20, 20, False)
    assert not result.ok and result.failed == 14  # 3 failing workloads x 2 backends x 2 repeats, 2 timeouts
    df = load(result.sweep_dir)
    assert len(df) == 20 and not df.duplicated(["trial_id", "repeat"]).any()
    by = df.groupby(["workload", "status"], observed=True).size().to_dict()
    assert by[("workloads_faulty:good", "ok")] == 4 and df[df.status == "ok"]["correct"].all()
    assert by[("workloads_faulty:hangs", "timeout")] == 2  # its warm-up hung: repeat 0 says so
    assert by[("workloads_faulty:hangs", "skipped")] == 2  # repeat 1 not tried again
    assert by[("workloads_faulty:raises", "failed")] == by[("workloads_faulty:segfaults", "failed")] == 4
    assert df[df.status != "ok"]["error"].str.len().min() > 0
    assert read_manifest(result.sweep_dir).state == "complete"
    assert "workloads_faulty:segfaults" in failures  # told as they happened, not only at the end


# --- the machine's faults: a full disk, a read-only or impossible results directory ------


@pytest.fixture
def small_disk(tmp_path):
    """A real 70 MiB filesystem (tmpfs) to fill up; needs root with CAP_SYS_ADMIN, else skipped."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=70m", "tmpfs", str(mnt)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path: Path) -> None:
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass


SMALL = {
    "name": "disk",
    "repeats": 3,
    "warmup": 0,
    "matrix": {
        "workload": ["experiments.cpu:sum_squares"],
        "backend": ["sequential", "threading"],
        "workers": [1, 2],
        "tasks": [4],
        "size": [500],
    },
}


def test_a_disk_that_fills_mid_sweep_stops_it_clearly_keeps_what_ran_and_resumes(small_disk):
    cfg = parse_config(SMALL, path=str(REPO / "configs" / "disk.yaml"))
    filler = small_disk / "filler"
    runs = []

    def fill_after_two(event):
        if isinstance(event, RunFinished):
            runs.append(event.row)
            if len(runs) == 2:
                _fill(filler)

    with pytest.raises(StoreError) as err:
        runner.sweep(cfg, small_disk / "results", on_event=fill_after_two)
    message = str(err.value)
    assert "No space left on device" in message and "--resume" in message and "\n" not in message
    (sweep_dir,) = (small_disk / "results" / "disk").iterdir()
    assert not list(sweep_dir.glob(".*.tmp"))  # no half-written part left to take space
    kept = load(sweep_dir)
    assert 2 <= len(kept) < 9 and not kept.duplicated(["trial_id", "repeat"]).any()
    filler.unlink()  # room again
    result = runner.sweep(cfg, small_disk / "results", resume=True)
    assert result.ok and result.sweep_dir == sweep_dir
    df = load(sweep_dir)
    assert len(df) == 9 and not df.duplicated(["trial_id", "repeat"]).any() and df["correct"].all()


@pytest.mark.parametrize(
    "fill_mib, words",
    [
        (None, "results directory is not writable (No space left on device)"),
        (60, "MiB free; need at least 64"),
    ],
)
def test_a_full_or_nearly_full_disk_is_refused_before_the_sweep_starts(small_disk, fill_mib, words):
    if fill_mib is None:
        _fill(small_disk / "filler")
    else:
        (small_disk / "filler").write_bytes(b"\0" * (fill_mib << 20))
    with pytest.raises(StoreError) as err:
        runner.sweep(parse_config(SMALL, path=str(REPO / "configs" / "disk.yaml")), small_disk / "results")
    assert words in str(err.value)
    assert not (small_disk / "results" / "disk").exists()  # nothing started


@pytest.mark.slow
def test_a_read_only_results_dir_is_refused_before_anything_runs(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True)
    if made.returncode != 0:
        if os.geteuid() == 0:
            pytest.skip("root ignores permission bits and cannot mount a read-only filesystem here")
        ro.chmod(0o555)
    try:
        config = tmp_path / "disk.yaml"
        config.write_text(yaml.safe_dump(SMALL))
        proc = subprocess.run(
            [sys.executable, "-m", "conc_lab.cli", "sweep", str(config), "--out", str(ro / "results")],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "COLUMNS": "300"},
        )
    finally:
        if made.returncode == 0:
            subprocess.run(["umount", "-l", str(ro)], check=False)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert (
        "results directory is not writable" in line and "Read-only file system" in line or "ermission" in line
    )
    assert "trials" not in proc.stderr  # refused before planning or running anything


def test_a_file_where_the_results_dir_should_be_is_refused(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file, not a folder")
    with pytest.raises(StoreError, match="results directory is not writable"):
        runner.sweep(parse_config(SMALL, path=str(REPO / "configs" / "disk.yaml")), blocker / "sub")


def test_each_run_starts_from_the_clean_host_and_a_crash_does_not_replace_it(executor):
    """Each run is a process of its own, forked from the clean host: no run sees another's module
    state (``counts_calls`` counts in a module global), and a run that kills its process fails
    alone, leaving the host (and so the warmth the warm-up round gave it) as it was. Each run's
    process makes one untimed call first (``host.trial.prime``), so its tasks count from 2."""
    counter = _trial("counts_calls", "sequential", None, 1)
    for repeat in range(2):
        assert executor.execute(counter, repeat).row["checksum"] == checksum([2, 3, 4, 5])
    host = executor.hosts.hosts[executor.hosts.host_key(counter)]
    crash = executor.execute(_trial("exits", "sequential", None, 1), 0).row
    assert crash["status"] == "failed" and "exited with code" in crash["error"]
    assert executor.execute(counter, 2).row["checksum"] == checksum([2, 3, 4, 5])
    assert executor.hosts.hosts[executor.hosts.host_key(counter)] is host


def test_no_untimed_run_when_the_sweep_asks_for_no_warm_up():
    with TrialExecutor(
        ExecutorSettings("faults", "t", timeout_s=TIMEOUT_S, search_path=[TESTS], rewarm=False, prime=False)
    ) as ex:
        counter = _trial("counts_calls", "sequential", None, 1)
        ex.execute(counter, 0)
        ex.execute(_trial("exits", "sequential", None, 1), 0)
        assert ex.execute(counter, 1).row["checksum"] == __import__(
            "conc_lab.host.measure"
        ).host.measure.checksum([1, 2, 3, 4])


def test_a_host_interpreter_that_prints_at_start_up_still_serves_trials(tmp_path, monkeypatch):
    """A sitecustomize (or a distribution's start-up hook) printing before the host owns stdout."""
    (tmp_path / "sitecustomize.py").write_text("print('hello from site, not JSON')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with TrialExecutor(ExecutorSettings("faults", "t", timeout_s=TIMEOUT_S, search_path=[TESTS])) as ex:
        row = ex.execute(_trial("good", "threading", None, 2), 0).row
    assert (row["status"], row["correct"]) == ("ok", True), row["error"]


def test_a_reference_call_that_failed_is_taken_from_the_plain_loops_own_run(tmp_path, monkeypatch):
    # Was: the check's reference call failed once (a flaky workload) and every later run of the
    # workload, the plain loop's own ok runs included, stayed unchecked (correct None) for the sweep.
    monkeypatch.setenv("CONCLAB_TEST_CALLS_FILE", str(tmp_path / "calls"))
    settings = ExecutorSettings(
        "faults", "t", "compact", timeout_s=TIMEOUT_S, search_path=[TESTS], prime=False
    )
    fn = "workloads_faulty:fails_one_call"
    threads = Trial(fn, "threading", 2, tasks=2, size=2000)
    plain = Trial(fn, "sequential", 1, tasks=2, size=2000)
    with TrialExecutor(settings) as ex:
        first = ex.execute(threads, 0).row  # calls 1, 2; then the reference's, call 3, raises
        seq = ex.execute(plain, 0).row
        later = ex.execute(threads, 1).row
    assert (first["status"], seq["status"], later["status"]) == ("ok", "ok", "ok")
    assert first["correct"] is None  # nothing to check it against yet: said, not guessed
    assert later["correct"] is True, later

"""Hostile workloads, round 3: a run that reaches the trial host or the runner through their pids.

A run's process is forked for it alone, so what it does to *its* process ends with it. But the
host that forked it and the runner above it are processes of the same user: with ``os.getppid()``
a workload changes what every later run's process inherits (a timer slack, a scheduling policy,
a resource limit), or kills the host and leaves its own children running beside later trials,
or changes conc_lab's own clock in its process. Each test runs the guilty workload, then an
innocent one, in real sweeps (tests/workloads_hostile3.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_hostile_host import observed
from test_hostile_host import sweep as hostile_sweep

from conc_lab import schema

try:
    import resource
except ImportError:  # pragma: no cover - not on Linux
    resource = None

pytestmark = [
    pytest.mark.host,
    pytest.mark.skipif(not Path("/proc/self/timerslack_ns").exists(), reason="needs Linux /proc"),
]

TESTS = str(Path(__file__).resolve().parent)


def sweep(tmp_path, workloads, **extra):
    """test_hostile_host's sweep (in order, one repeat, one host) of workloads_hostile3's workloads."""
    return hostile_sweep(tmp_path, [f"workloads_hostile3:{w}" for w in workloads], **extra)


def _slack() -> int:
    return int(Path("/proc/self/timerslack_ns").read_text())


def test_settings_a_run_gives_the_host_through_its_pid_do_not_reach_later_runs(tmp_path):
    slack, idle, limit, probe = sweep(
        tmp_path, ["slacks_host", "idles_host", "limits_host", "probe_settings"]
    )
    assert all(r["status"] == schema.OK for r in (slack, idle, limit, probe)), [
        r["error"] for r in (slack, idle, limit, probe)
    ]
    seen = observed(probe)
    # Before: the probe's process inherited a 200 ms timer slack (a 50 ms sleep took 230-440 ms),
    # SCHED_IDLE, and an open-file limit of 12, and only the limit was noted (on the innocent row).
    assert seen["slack"] == _slack()
    assert seen["policy"] == os.sched_getscheduler(0)
    assert seen["nofile"] == list(resource.getrlimit(resource.RLIMIT_NOFILE))
    assert "the host's timer slack" in slack["left_behind"], slack["left_behind"]
    assert "the host's scheduling policy" in idle["left_behind"], idle["left_behind"]
    assert "the host's RLIMIT_NOFILE" in limit["left_behind"], limit["left_behind"]
    assert "RLIMIT_OFILE" not in limit["left_behind"]  # the same limit, said once
    assert probe["left_behind"] is None


def test_a_run_that_pins_the_runner_and_kills_its_host_does_not_pin_the_next_host(tmp_path):
    affinity, nice = os.sched_getaffinity(0), os.getpriority(os.PRIO_PROCESS, 0)
    if len(affinity) < 2:
        pytest.skip("needs two CPUs to tell a pinned host from an unpinned one")
    try:
        guilty, probe = sweep(tmp_path, ["pins_runner_then_kills_host", "probe_settings"])
        now = os.sched_getaffinity(0), os.getpriority(os.PRIO_PROCESS, 0)
    finally:
        os.sched_setaffinity(0, affinity)
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except OSError:
            pass
    assert guilty["status"] == schema.FAILED and "SIGKILL" in guilty["error"]
    assert "the runner's CPU affinity (restored)" in guilty["left_behind"], guilty["left_behind"]
    # Before: the fresh host inherited CPU {0} and nice +5 from the runner and took them for its
    # clean state, so every later run was pinned to CPU 0 and reniced, with no word of it.
    assert observed(probe)["affinity"] == sorted(affinity) and observed(probe)["nice"] == nice
    assert now == (affinity, nice)  # the runner's own, put back before it started the next host


def _marked(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes() and ") Z" not in stat:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


@pytest.mark.parametrize("workload", ["kills_host_leaving_child", "kills_host_leaving_session"])
def test_children_of_a_run_that_kills_its_host_do_not_outlive_it(tmp_path, monkeypatch, workload):
    marker = f"conclab-test-{os.getpid()}-{workload}-{time.monotonic_ns()}"
    monkeypatch.setenv("CONCLAB_TEST_MARKER", marker)
    try:
        guilty, probe = sweep(tmp_path, [workload, "probe_settings"])
        # Before: the host's death re-parented them to init, out of every clean-up's reach, and
        # they spun for 30 s beside every later run (a 21 ms loop read 69 ms, flagged noisy).
        deadline = time.monotonic() + 5
        while _marked(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _marked(marker) == []
    finally:
        for pid in _marked(marker):  # only what this test started
            os.kill(pid, signal.SIGKILL)
    assert guilty["status"] == schema.FAILED and "SIGKILL" in guilty["error"]
    assert probe["status"] == schema.OK


def test_a_run_that_replaces_conc_labs_clock_fails_and_no_other(tmp_path):
    slowed, probe = sweep(tmp_path, ["slows_its_clock", "probe_settings"])
    # Before: two 0.3 s sleeps were stored as an ok run of 0.006 s (its clock ran at 1% speed),
    # with nothing on its row: any duration shorter than the host's outside time passed.
    assert slowed["status"] == schema.FAILED and slowed["run_s"] is None
    assert "conc_lab's clock" in slowed["error"], slowed["error"]
    assert probe["status"] == schema.OK


def test_a_run_finds_no_copy_of_the_hosts_secret_to_sign_a_forged_reply_with(tmp_path):
    forger, probe = sweep(tmp_path, ["forges_with_the_hosts_secret", "probe_settings"])
    # Before: the run's process found the secret in its own memory (the host's output buffer and
    # freed strings, copied at the fork) and its forged line was stored as an ok run of 1 ms (two
    # 0.3 s sleeps), while the innocent run after it failed for the host the forger had killed.
    assert not (forger["status"] == schema.OK and forger["run_s"] == 0.001), forger
    # Now it finds no secret to sign with (and no pipe of the host's to write into): its run fails.
    assert forger["status"] == schema.FAILED and forger["run_s"] is None, forger["error"]
    assert probe["status"] == schema.OK, probe["error"]


def test_a_process_a_run_leaves_cannot_rewrite_the_hosts_reply_on_its_way(tmp_path):
    thief, probe = sweep(tmp_path, ["steals_the_hosts_reply", "probe_settings"])
    # Before: it opened the host's reply pipe through /proc/<host>/fd, read the true reply as the
    # host sent it, and put back one that said 1 ms: stored as an ok run of two 0.3 s sleeps.
    assert not (thief["status"] == schema.OK and thief["run_s"] < 0.6), (thief["status"], thief["run_s"])
    assert probe["status"] == schema.OK, probe["error"]


def test_a_process_a_run_leaves_cannot_reach_the_next_runs_process(tmp_path):
    started = time.monotonic()
    guilty, probe = sweep(tmp_path, ["stops_the_next_run", "probe_settings"], timeout_s=8)
    # Before: the next run's process was forked before the last run's leftovers were killed, and
    # one stopped it with SIGSTOP: the innocent run timed out (and its later repeats were skipped).
    assert probe["status"] == schema.OK, probe["error"]
    assert guilty["status"] == schema.OK and "killed" in guilty["left_behind"]
    assert time.monotonic() - started < 8


def test_children_of_a_run_that_kills_the_runner_do_not_outlive_the_sweep(tmp_path):
    marker = f"conclab-test-{os.getpid()}-runner-{time.monotonic_ns()}"
    config = tmp_path / "killer.yaml"
    config.write_text(
        "name: killer\nrepeats: 1\nwarmup: 0\ntimeout_s: 30\naffinity: none\nmatrix:\n"
        "  workload: [workloads_hostile3:kills_runner_leaving_session]\n"
        "  backend: [sequential]\n  workers: [1]\n  tasks: [1]\n  size: [10]\n"
    )
    env = dict(os.environ, CONCLAB_TEST_MARKER=marker, PYTHONPATH=str(Path(TESTS).parent))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "conc_lab.cli", "sweep", str(config), "--out", str(tmp_path), "-q"],
            cwd=TESTS, env=env, capture_output=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == -signal.SIGKILL, done.stderr
        # Before: the host's lifeline killed the run and the host's process group, and the child in
        # a session of its own spun on (30 s here), beside the --resume that would follow.
        deadline = time.monotonic() + 5
        while _marked(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _marked(marker) == []
    finally:
        for pid in _marked(marker):  # only what this test started
            os.kill(pid, signal.SIGKILL)


def test_a_process_forked_by_a_run_and_never_ended_does_not_reply_in_its_place(tmp_path):
    careless, probe = sweep(tmp_path, ["forks_without_exit", "probe_settings"])
    # Before: the child, a copy of the run's process, ran on through the run's code and replied
    # first: its CPU times were below zero, the row was refused, and the sweep died of a traceback.
    assert careless["status"] == schema.OK and careless["run_s"] >= 0.2, careless["error"]
    assert careless["cpu_sys_s"] >= 0 and careless["cpu_user_s"] >= 0
    assert probe["status"] == schema.OK


def test_an_outcome_the_store_refuses_fails_its_run_not_the_sweep(tmp_path):
    rewound, probe = sweep(tmp_path, ["rewinds_cpu_time", "probe_settings"])
    # Before: "row refused: column cpu_user_s: ... is not a duration" ended the sweep with a traceback.
    assert rewound["status"] == schema.FAILED and "cannot be stored" in rewound["error"], rewound["error"]
    assert rewound["run_s"] is None and rewound["cpu_user_s"] is None
    assert probe["status"] == schema.OK


def test_a_run_cannot_hand_the_next_run_a_forged_canary_reading(tmp_path):
    poisoner, probe = sweep(tmp_path, ["poisons_the_canary", "sleeps_60ms"], tasks=1)
    # Before: the innocent run's before-reading was the forged 0.1 µs, and its row was flagged noisy
    # ("speed canary moved +43000%"); a slow forged reading would hide a real slowdown instead. Now
    # the host keeps only the readings a run's process sent before the workload's code ran.
    assert poisoner["status"] == probe["status"] == schema.OK
    assert probe["canary_before_s"] is None or probe["canary_before_s"] > 100 * 1e-7

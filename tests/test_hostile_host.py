"""Hostile workloads against the trial host (issue #14 items 4, 7, 8, 9, 12, 13, 14; #25 items 1, 2, 7, 8).

Each test runs real sweeps of the workloads in tests/workloads_hostile.py: a guilty trial
that changes or abuses the host, then an innocent one (``probe``) in the same host. The
innocent trial must see the host as it was, the guilty one's row must say what it left
behind, and nothing may turn into a traceback, a timeout or a wrong answer.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from conc_lab import events, schema
from conc_lab.config.document import parse_config
from conc_lab.host import measure
from conc_lab.plan.matrix import Trial
from conc_lab.run import runner
from conc_lab.run.trial_host import TrialHost
from conc_lab.store.load import load

pytestmark = pytest.mark.host

TESTS = str(Path(__file__).resolve().parent)


def sweep(tmp_path, workloads, backend="sequential", workers=1, affinity="none", **extra):
    """Run the workloads in order (one repeat, no warm-up) in one host; return their rows in order."""
    doc = {
        "name": "hostile",
        "repeats": 1,
        "warmup": 0,
        "shuffle": False,  # the order is the test: a guilty run, then an innocent one
        "timeout_s": extra.pop("timeout_s", 30),
        "affinity": affinity,
        "matrix": {
            "workload": [w if ":" in w else f"workloads_hostile:{w}" for w in workloads],
            "backend": [backend] if isinstance(backend, str) else backend,
            "workers": [workers],
            "tasks": [extra.pop("tasks", 2)],
            "size": [2000],
        },
        **extra,
    }
    cfg = parse_config(doc, path=str(Path(TESTS) / "hostile.yaml"))
    rows = []
    runner.sweep(
        cfg, tmp_path, on_event=lambda e: rows.append(e.row) if isinstance(e, events.RunFinished) else None
    )
    return rows


def observed(row) -> dict:
    return json.loads(row["observed"])


def test_state_a_workload_changes_is_restored_and_recorded_on_its_row(tmp_path):
    with_guard = sweep(tmp_path, ["probe", "sets_affinity", "changes_state", "probe_again"])
    clean, affinity_row, state_row, probe = with_guard
    assert all(r["status"] == "ok" and r["correct"] for r in with_guard), [r["error"] for r in with_guard]
    # affinity: none, and a workload pinned the host to CPU 0: the later probe is unpinned for real
    assert probe["pinned"] is False
    assert observed(probe)["affinity"] == observed(clean)["affinity"] == sorted(os.sched_getaffinity(0))
    assert (
        "CPU affinity {0}" in affinity_row["left_behind"] and "ended with it" in affinity_row["left_behind"]
    )
    after = observed(probe)
    assert after["nice"] == observed(clean)["nice"]
    assert after["cwd"] == observed(clean)["cwd"]
    assert after["leaked_env"] is None
    assert after["perf_counter_is_builtin"]
    for words in ("nice 5", "working directory /", "CONCLAB_TEST_LEAK", "time.perf_counter replaced"):
        assert words in state_row["left_behind"], state_row["left_behind"]
    assert clean["left_behind"] is None and probe["left_behind"] is None
    assert after["pid"] != observed(clean)["pid"]  # each run in a process of its own


def test_a_leftover_spinning_thread_ends_with_its_run(tmp_path):
    clean, guilty, probe = sweep(tmp_path, ["probe", "leaves_spinning_thread", "probe_again"])
    assert guilty["status"] == "ok"
    assert "'hostile-spinner' (daemon)" in guilty["left_behind"] and "ended with it" in guilty["left_behind"]
    assert "hostile-spinner" not in observed(probe)["threads"]
    assert observed(probe)["tasks"] == 1  # no thread of any kind beside the probe


def test_closing_stdio_does_not_break_later_spawn_trials(tmp_path):
    rows = sweep(
        tmp_path,
        ["closes_stdio", "probe"],
        backend=["sequential", "multiprocessing"],
        workers=2,
        backend_options={"multiprocessing": {"start_method": ["spawn"]}},
    )
    by = {(r["workload"].split(":")[1], r["backend"]): r for r in rows}
    spawn_probe = by[("probe", "multiprocessing")]
    assert spawn_probe["status"] == "ok", spawn_probe["error"]
    assert "fd 0 closed" in by[("closes_stdio", "sequential")]["left_behind"]


def test_a_forked_child_holding_the_reply_pipe_does_not_turn_a_crash_into_a_timeout(tmp_path):
    started = time.monotonic()
    rows = sweep(tmp_path, ["forks_sleeper", "forks_then_exits", "probe"], timeout_s=60)
    took = time.monotonic() - started
    forks, crash, probe = rows
    assert forks["status"] == "ok" and "child process" in forks["left_behind"]
    assert crash["status"] == "failed" and "exited with code 3" in crash["error"]
    assert probe["status"] == "ok"
    assert took < 45  # not the 60 s timeout (a generous bound: the machine may be busy)


def _marked(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


@pytest.mark.parametrize("backend", ["sequential", "multiprocessing"])
def test_children_that_leave_the_session_are_killed_and_recorded(tmp_path, monkeypatch, backend):
    marker = f"conclab-test-{os.getpid()}-{backend}-{time.monotonic_ns()}"
    monkeypatch.setenv("CONCLAB_TEST_MARKER", marker)
    rows = sweep(
        tmp_path, ["leaves_session", "probe"], backend=backend, workers=2 if backend != "sequential" else 1
    )
    deadline = time.monotonic() + 5
    while _marked(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _marked(marker) == []
    guilty = rows[0]
    assert (
        guilty["status"] == "ok"
        and "still running" in guilty["left_behind"]
        and "killed" in guilty["left_behind"]
    )


def test_a_non_daemon_thread_in_a_worker_does_not_turn_a_finished_trial_into_a_timeout(tmp_path):
    started = time.monotonic()
    (row,) = sweep(tmp_path, ["leaves_nondaemon_thread"], backend="multiprocessing", workers=2, timeout_s=40)
    assert row["status"] == "ok", row["error"]
    assert row["correct"] is True
    assert "'hostile-waiter'" in row["left_behind"]
    assert time.monotonic() - started < 30


def test_stderr_is_kept_as_a_bounded_tail_on_failed_runs_only(tmp_path):
    rows = sweep(tmp_path, ["noisy_stderr", "probe"], tasks=4)
    failed, probe = rows
    assert failed["status"] == "failed"
    tail = failed["stderr_tail"]
    assert tail.endswith("LAST LINE OF TASK 0")  # the first task fails: the sequential loop stops there
    assert len(tail.encode()) <= 64 * 1024
    assert probe["stderr_tail"] is None
    stored = load(tmp_path / "hostile", columns=["workload", "stderr_tail"])
    assert stored["stderr_tail"].notna().sum() == 1


def test_a_noisy_hosts_stderr_does_not_pile_up_in_a_hidden_file():
    trial = Trial("workloads_hostile:noisy_stderr", "sequential", 1, tasks=1, size=10)
    with TrialHost(search_path=[TESTS]) as host:
        for _ in range(3):
            reply = host.request({"op": "run", "trial": {**trial.params(), "cores": None}}, 30)
            assert reply["outcome"]["status"] == "failed"
            assert len(host.stderr.tail) <= 64 * 1024
        where = os.readlink(f"/proc/{host.proc.pid}/fd/2")
        assert where.startswith("pipe:"), where  # not a deleted temp file that only grows


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend, method", [("threading", None), ("multiprocessing", "spawn")], ids=["threading", "spawn"]
)
def test_answers_that_are_not_plain_json_are_compared_canonically_or_refused(tmp_path, backend, method):
    rows = sweep(
        tmp_path,
        ["returns_string_set", "returns_mixed_keys", "returns_lambda", "returns_generator"],
        backend=[backend],
        workers=2,
        tasks=4,
        repeats=3,
        **({"backend_options": {"multiprocessing": {"start_method": [method]}}} if method else {}),
    )
    by = {r["workload"].split(":")[1]: r for r in rows}
    assert by["returns_string_set"]["correct"] is True
    assert by["returns_mixed_keys"]["correct"] is True
    for name, kind in (("returns_lambda", "function"), ("returns_generator", "generator")):
        assert by[name]["status"] == schema.FAILED
        assert f"result is not JSON-able: {kind}" in by[name]["error"]


# -- issue #25: isolation by construction, an unforgeable protocol, time from outside ---------------


def _work(task: int, size: int) -> int:
    return sum(i * i for i in range(task * size, (task + 1) * size))


def test_a_forged_reply_line_fails_its_run_and_later_runs_keep_their_own_results(tmp_path):
    forger, slow, quick = sweep(tmp_path, ["forges_reply", "sleepy", "good"])
    assert forger["status"] == schema.FAILED and forger["checksum"] is None
    assert "forged" in forger["error"], forger["error"]
    # Before: every later reply shifted by one (good carried sleepy's 0.6 s and checksum).
    assert (
        slow["status"] == schema.OK and slow["run_s"] >= 0.6 and slow["checksum"] == measure.checksum([0, 1])
    )
    assert quick["status"] == schema.OK and quick["run_s"] < 0.3
    assert quick["checksum"] == measure.checksum([_work(0, 2000), _work(1, 2000)])


def test_a_clock_rewired_in_c_fails_its_own_run_and_no_other(tmp_path):
    rewired, slow = sweep(tmp_path, ["rewires_clock", "sleepy"])
    # Before: the rewired row was stored with run_s -3806, and the next 2 x 300 ms sleep at 0.0005 s.
    assert rewired["status"] == schema.FAILED and rewired["run_s"] is None
    assert "its clock was rewired" in rewired["error"], rewired["error"]
    assert slow["status"] == schema.OK and slow["run_s"] >= 0.6


def test_a_clock_rewired_in_c_to_run_slow_before_the_run_fails_its_run_and_no_other(tmp_path):
    # Rewired at import, before any window: every duration is small, positive and fits in the
    # outside time; before, the 2 x 300 ms sleep was stored ok at ~0.1 ms. The run's process times
    # itself from its first frame to its reply, and the host times the same span.
    slowed, slow = sweep(tmp_path, ["workloads_slow_clock:sleeps", "sleepy"])
    assert slowed["status"] == schema.FAILED and slowed["run_s"] is None, slowed
    assert "its clock was rewired" in slowed["error"] and "the host timed" in slowed["error"], slowed["error"]
    assert slow["status"] == schema.OK and slow["run_s"] >= 0.6


def test_the_store_refuses_negative_or_endless_durations():
    row = schema.empty_row() | dict(
        sweep_id="s", sweep_name="n", trial_id="t", workload="m:f", backend="sequential", workers=1,
        tasks=1, size=1, affinity="none", repeat=0, status="ok",
    )  # fmt: skip
    for bad in (-3806.0, float("inf"), float("nan")):
        with pytest.raises(schema.RowError, match="run_s"):
            schema.check_row(row | {"run_s": bad})


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_threads_and_processes_a_run_hides_end_with_it_and_are_reported(tmp_path):
    hidden, faker, imported, probe = sweep(
        tmp_path, ["starts_hidden_threads", "fakes_forkserver", "workloads_hostile_import:work", "probe"]
    )
    assert all(r["status"] == schema.OK for r in (hidden, faker, imported, probe))
    # Before: a reused host adopted the Ray-looking thread and the import's, and never saw _thread's.
    assert observed(probe)["tasks"] == 1 and observed(probe)["threads"] == ["MainThread"]
    assert "thread(s) still running" in hidden["left_behind"] and "without threading" in hidden["left_behind"]
    assert "spins-from-import" in imported["left_behind"]
    assert "child process" in faker["left_behind"]
    spinner = observed(faker)["spinner"]
    deadline = time.monotonic() + 5
    while _alive(spinner) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(spinner)


def test_process_state_a_run_leaves_ends_with_it_and_is_reported(tmp_path):
    guilty, probe = sweep(tmp_path, ["leaves_process_state", "probe_state"])
    # Before: the probe died of SIGALRM, or of "Too many open files", or of a recursion limit of 40.
    assert guilty["status"] == schema.OK and probe["status"] == schema.OK, (guilty["error"], probe["error"])
    seen = observed(probe)
    assert seen["itimer"] == [0.0, 0.0] and seen["gc"] is True and seen["recursion_limit"] >= 1000
    assert seen["nofile"] > 12 and seen["excepthook_is_default"] is True
    assert "Handlers.SIG_DFL" in seen["sigchld"] and "Handlers.SIG_DFL" in seen["sigterm"]
    for words in (
        "ITIMER_REAL",
        "SIGCHLD ignored",
        "SIGTERM ignored",
        "RLIMIT_NOFILE 12",
        "recursion limit 40",
        "gc disabled",
        "umask 077",
        "sys.stdout replaced",
        "sys.excepthook replaced",
    ):
        assert words in guilty["left_behind"], (words, guilty["left_behind"])


def test_a_workload_module_edited_between_runs_is_run_as_it_now_is(tmp_path):
    # The host compiles workload modules once (host/codecache.py) and runs' processes execute
    # that code: an edit of the file must still reach the next run, as an import would see it.
    (tmp_path / "edited_workload.py").write_text("def f(task, size):\n    return 1\n")
    trial = Trial("edited_workload:f", "sequential", 1, tasks=1, size=1)
    with TrialHost(search_path=[str(tmp_path)]) as host:
        first = host.request({"op": "run", "trial": {**trial.params(), "cores": None}}, 30)["outcome"]
        (tmp_path / "edited_workload.py").write_text("def f(task, size):\n    return 2  # edited\n")
        second = host.request({"op": "run", "trial": {**trial.params(), "cores": None}}, 30)["outcome"]
    assert first["checksum"] == measure.checksum([1]) and second["checksum"] == measure.checksum([2])


def test_a_request_the_host_cannot_prepare_fails_its_own_run_and_the_host_serves_the_next(tmp_path):
    # The host prepares the last run's backend and workload code before forking the next run's
    # process; neither an unknown backend nor a module that vanished may take the host down (an
    # unknown backend once did: the next run then failed for it).
    (tmp_path / "vanishing.py").write_text("def f(task, size):\n    return 1\n")
    good = {**Trial("vanishing:f", "sequential", 1, tasks=1, size=1).params(), "cores": None}
    with TrialHost(search_path=[str(tmp_path)]) as host:
        bogus = host.request({"op": "run", "trial": {**good, "backend": "bogus"}}, 30)
        first = host.request({"op": "run", "trial": good}, 30)["outcome"]
        (tmp_path / "vanishing.py").unlink()
        gone = host.request({"op": "run", "trial": good}, 30)
        (tmp_path / "vanishing.py").write_text("def f(task, size):\n    return 2  # back\n")
        back = host.request({"op": "run", "trial": good}, 30)["outcome"]
        assert host.proc.poll() is None  # one host served them all
    assert bogus["ok"] is False and "unknown backend 'bogus'" in bogus["error"]
    assert first["checksum"] == measure.checksum([1])
    assert gone["ok"] is False and "No module named 'vanishing'" in gone["error"]
    assert back["checksum"] == measure.checksum([2])

"""The backends, run for real inside a real trial host process."""

from __future__ import annotations

import os
import threading

import pytest

from conc_lab.host import affinity
from conc_lab.run.trial_host import TrialHost

pytestmark = pytest.mark.host

CORES = affinity.available_cores()
TWO = len(CORES) >= 2


@pytest.fixture(scope="module")
def host():
    with TrialHost(search_path=[os.getcwd()]) as h:
        yield h


def run(host, backend, workers=2, tasks=6, size=30000, workload="experiments.cpu:sum_squares", **extra):
    cores = affinity.plan("compact", workers)
    trial = {"workload": workload, "backend": backend, "workers": workers, "tasks": tasks, "size": size}
    reply = host.request({"op": "run", "trial": {**trial, "cores": cores, **extra}}, timeout=60)
    assert reply["ok"], reply
    return reply["outcome"], cores


VARIANTS = [
    ("sequential", {}),
    ("threading", {}),
    ("multiprocessing", {"start_method": "fork"}),
    ("multiprocessing", {"start_method": "spawn"}),
    ("multiprocessing", {"start_method": "forkserver"}),
    # asyncio: coroutines on one loop pinned to the first core (worker 0), or plain calls offloaded
    # to a pool of pinned threads (worker = the pool thread).
    ("asyncio", {"workload": "experiments.cpu:async_sum_squares"}),
    ("asyncio", {"options": '{"offload": "thread"}'}),
]


def _variant_id(v):
    return v if isinstance(v, str) else v.get("start_method") or v.get("options") or v.get("workload", "")


@pytest.mark.parametrize("backend, extra", VARIANTS, ids=_variant_id)
def test_every_backend_gives_the_sequential_answer_and_records_each_task(host, backend, extra):
    workers = 1 if backend == "sequential" else (2 if TWO else 1)
    reference, _ = run(
        host, "sequential", workers=1, workload=extra.get("workload", "experiments.cpu:sum_squares")
    )
    outcome, cores = run(host, backend, workers=workers, **extra)
    assert outcome["status"] == "ok", outcome["error"]
    assert outcome["checksum"] == reference["checksum"]
    records = outcome["task_records"]
    assert sorted(r[0] for r in records) == list(range(6))  # every task exactly once
    assert {r[1] for r in records} <= set(range(workers))
    for _task, worker, core, cpu, _pid, _node, start, end in records:
        assert core == cores[worker]  # the worker ran pinned to the core it was given
        assert cpu == core  # and the kernel agrees: the task was seen on that core
        assert 0 <= start <= end <= outcome["run_s"] + 1e-3
    pids = {r[4] for r in records}
    if backend == "multiprocessing":
        assert os.getpid() not in pids and host.proc.pid not in pids
    else:  # in the run's own process, forked from the host for it alone
        assert len(pids) == 1 and pids != {host.proc.pid}
    assert outcome["run_s"] > 0 and outcome["setup_s"] >= 0
    assert outcome["cpu_user_s"] + outcome["cpu_sys_s"] > 0
    assert outcome["peak_rss_bytes"] > 1_000_000


def test_sequential_restores_the_hosts_affinity(host):
    # A later multiprocessing trial forks from the host: it must not inherit a one-core mask.
    run(host, "sequential", workers=1)
    outcome, _ = run(
        host, "multiprocessing", workers=1, start_method="fork", workload="experiments.overhead:noop"
    )
    assert outcome["status"] == "ok"
    info = host.request(
        {
            "op": "run",
            "trial": {
                "workload": "experiments.overhead:noop",
                "backend": "threading",
                "workers": 1,
                "tasks": 1,
                "size": 0,
                "cores": None,
            },
        },
        30,
    )
    rec = info["outcome"]["task_records"][0]
    assert rec[2] == -1  # unpinned when cores is None


def test_unpinned_trials_record_no_core(host):
    trial = {
        "workload": "experiments.cpu:sum_squares",
        "backend": "threading",
        "workers": 2,
        "tasks": 4,
        "size": 100,
    }
    reply = host.request({"op": "run", "trial": {**trial, "cores": None}}, 30)
    assert {r[2] for r in reply["outcome"]["task_records"]} == {-1}


def test_workload_output_cannot_corrupt_the_protocol(host):
    # print() inside a workload goes to /dev/null, not into the JSON-lines channel.
    trial = {
        "workload": "builtins:print",
        "backend": "threading",
        "workers": 1,
        "tasks": 3,
        "size": 7,
        "cores": None,
    }
    reply = host.request({"op": "run", "trial": trial}, 30)
    assert reply["ok"] and reply["outcome"]["status"] == "ok"


def test_a_raising_task_fails_the_trial_with_its_traceback(host):
    trial = {
        "workload": "operator:truediv",
        "backend": "multiprocessing",
        "start_method": "fork",
        "workers": 1,
        "tasks": 2,
        "size": 0,
        "cores": None,
    }
    reply = host.request({"op": "run", "trial": trial}, 30)
    outcome = reply["outcome"]
    assert outcome["status"] == "failed"
    assert "ZeroDivisionError" in outcome["error"] and "Traceback" in outcome["error"]


def test_affinity_plans():
    assert affinity.plan("none", 4) is None
    assert affinity.plan([3, 5], 3) == [3, 5, 3]
    assert affinity.plan("compact", 2, cores=[4, 5, 6]) == [4, 5]
    with pytest.raises(ValueError):
        affinity.plan("scattered", 2)


@pytest.mark.parametrize("backend", ["threading", "subinterpreters"])
def test_a_worker_that_cannot_pin_fails_the_trial_at_once(backend):
    # Core 4095 exists on no machine this runs on: sched_setaffinity refuses it. Before, a
    # threading worker died silently and its pool waited for a "ready" that never came.
    from conc_lab.host import backends
    from experiments.cpu import sum_squares

    trial = {"workload": "experiments.cpu:sum_squares", "backend": backend, "workers": 1, "tasks": 2}
    got = []
    runner = threading.Thread(
        target=lambda: got.append(
            backends.get(backend).run(sum_squares, {**trial, "size": 10, "cores": [4095]})
        ),
        daemon=True,
    )
    runner.start()
    runner.join(15)
    assert got, "the pool is still waiting for its worker"
    if got[0]["status"] != "skipped":  # no subinterpreters in this interpreter
        assert got[0]["status"] == "failed" and "worker 0" in got[0]["error"], got[0]


@pytest.mark.parametrize("tasks", [4, 20000])
def test_a_process_pool_hands_out_any_number_of_tasks(host, tasks):
    """Few tasks go straight into the task pipe (no feeder thread to start inside ``run_s``); many
    come from a thread, so a full task pipe never blocks the reader of the workers' result pipes."""
    from conc_lab.host.backends.processes import DIRECT_FEED_MAX

    assert (tasks <= DIRECT_FEED_MAX) == (tasks == 4)  # one case on each side of the limit
    reference, _ = run(host, "sequential", workers=1, tasks=tasks, size=3)
    outcome, _ = run(
        host, "multiprocessing", workers=2 if TWO else 1, tasks=tasks, size=3, start_method="fork"
    )
    assert outcome["status"] == "ok", outcome["error"]
    assert outcome["checksum"] == reference["checksum"]
    assert sorted(r[0] for r in outcome["task_records"]) == list(range(tasks))

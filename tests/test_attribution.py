"""Why a backend is not faster: each run's worker-time split by cause, on hand-built runs whose
split is known and on real sweeps of workloads whose cause is known by construction (#15 item 4)."""

from __future__ import annotations

import hashlib
import textwrap
import threading
import time

import pandas as pd
import pytest

import conc_lab
from conc_lab.analysis.attribution import PARTS, attribute
from conc_lab.analysis.summary import summarize
from conc_lab.host import noise

pytestmark = pytest.mark.measures


def run(workers, run_s, lanes, *, cpu, setup=0.0, backend="threading", **extra) -> dict:
    """One run; ``lanes`` is, per worker, its tasks as (start, end) pairs."""
    recs = [
        {"task": i, "worker": w, "start_s": s, "end_s": e}
        for w, tasks in enumerate(lanes)
        for i, (s, e) in enumerate(tasks)
    ]
    return {
        "workload": "w",
        "tasks": len(recs),
        "size": 1,
        "backend": backend,
        "workers": workers,
        "status": "ok",
        "run_s": run_s,
        "setup_s": setup,
        "cpu_user_s": cpu,
        "cpu_sys_s": 0.0,
        "task_records": recs,
        **extra,
    }


def attributed(*rows) -> pd.DataFrame:
    return attribute(pd.DataFrame(list(rows)))


def test_parts_add_up_to_the_worker_time_of_the_run():
    a = attributed(run(2, 1.0, [[(0.01, 0.5), (0.52, 0.9)], [(0.02, 0.6)]], cpu=1.2, setup=0.1)).loc[0]
    assert a[PARTS].sum() == pytest.approx(a.capacity_s) and a.capacity_s == pytest.approx(2 * 1.1)
    assert a.startup_s == pytest.approx(0.2)
    assert a.imbalance_s == pytest.approx(0.9 - 0.6)  # worker 1 idle from 0.6 until 0.9
    assert a.dispatch_s == pytest.approx(0.01 + 0.02 + 0.02 + 2 * 0.1)  # first starts, a gap, collecting


def test_asyncio_tasks_in_flight_are_not_idle_workers():
    """8 sleeps awaited together on asyncio's one loop: not 7 workers idle (it once said "imbalance:
    worker 0 idle 0%" for every async workload)."""
    lane = [(0.001 * i, 0.1 + 0.001 * i) for i in range(8)]
    a = attributed(run(8, 0.11, [lane], cpu=0.002, backend="asyncio")).loc[0]
    assert a.workers_used == 1 and a.imbalance_s == pytest.approx(0.0)
    assert a.cause == "waiting" and not a.why.startswith("imbalance")


def test_a_worker_that_got_no_task_is_the_one_named_idle():
    """Worker 1 ran all 4 tasks, worker 0 got none (a real 3 ms threading run did this): the
    imbalance is worker 0's whole run, and the phrase named worker 1 "idle 0%"."""
    lanes = [[], [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]]
    a = attributed(run(2, 1.0, lanes, cpu=1.0, backend="multiprocessing")).loc[0]
    assert a.imbalance_s == pytest.approx(1.0) and a.cause == "imbalance"
    assert a.why == "imbalance: worker 0 got no task"
    # one of three workers idle: still the worker with no task, not the busiest's 0%
    lanes = [[(0.0, 0.5)], [], [(0.0, 0.5), (0.5, 1.0)]]
    b = attributed(run(3, 1.0, lanes, cpu=1.5, backend="multiprocessing")).loc[0]
    assert b.why == "imbalance: worker 1 got no task"


def test_threads_busy_together_on_one_cpu_are_serialised_and_sleepers_are_not():
    gil = attributed(run(2, 1.0, [[(0, 1.0)], [(0, 1.0)]], cpu=1.02)).loc[0]
    assert gil.cause == "serialisation" and gil.why == "GIL-bound: 2 workers, CPU 1.02× wall"
    assert gil.serialisation_s == pytest.approx(2.0 - 1.02)
    sleep = attributed(run(2, 1.0, [[(0, 1.0)], [(0, 1.0)]], cpu=0.001)).loc[0]
    assert sleep.cause == "waiting" and sleep.serialisation_s == 0
    free = attributed(run(2, 1.0, [[(0, 1.0)], [(0, 0.97)]], cpu=1.96)).loc[0]  # GIL released (sha256)
    assert free.cause == "none" and free.why.startswith("none dominant")


def test_other_processes_are_named_but_never_the_cause():
    # others took 41.5% of the cores as measured, 40% beyond what ticks resolve (3 ticks on 2
    # cores over 1 s: the figure the noisy flag is decided on): the threads got 0.6 of a CPU
    # together, the GIL's share of what was left
    two = {"cores": [0, 1]}
    gil = attributed(run(2, 1.0, [[(0, 1.0)], [(0, 1.0)]], cpu=0.6, foreign_cpu=0.415, **two)).loc[0]
    assert gil.cause == "serialisation" and gil.why.endswith("(others used 40% of its cores)")
    free = attributed(run(2, 1.0, [[(0, 1.0)], [(0, 1.0)]], cpu=1.2, foreign_cpu=0.415, **two)).loc[0]
    assert free.cause == "none" and free.others_s == pytest.approx(0.8)
    # others had nearly all of it: nothing is vouched for
    busy = attributed(run(2, 1.0, [[(0, 1.0)], [(0, 1.0)]], cpu=0.15, foreign_cpu=0.935, **two)).loc[0]
    assert busy.cause == "noisy" and busy.why == "not attributable: others used 92% of its cores"
    # a start-up that took most of the wall time is named all the same
    spawn = attributed(
        run(2, 0.05, [[(0, 0.01)], [(0, 0.01)]], cpu=0.002, setup=1.9, foreign_cpu=0.92, **two)
    ).loc[0]
    assert (
        spawn.cause == "start-up" and spawn.why == "start-up: 1.9 s of 1.95 s (others used 91% of its cores)"
    )


def test_a_tick_of_others_cpu_that_left_a_run_clean_is_not_called_others_share():
    # One tick (10 ms) of someone's CPU in a 60 ms run on one core reads 17%: the noisy flag
    # counts it as nothing (noise.foreign_beyond_resolution), and so does why: it once said
    # "(others used 17% of its cores)" of a run the same table called clean.
    row = run(1, 0.06, [[(0, 0.06)]], cpu=0.03, foreign_cpu=0.17, cores=[0], backend="threading")
    a = attributed(row).loc[0]
    assert noise.foreign_beyond_resolution(row) == 0.0
    assert "others used" not in a.why and a.others_s == 0.0


def test_summarize_names_the_cause_of_each_trials_median_run():
    rows = [
        run(2, t, [[(0, t)], [(0, t * 0.6)]], cpu=1.6 * t, backend="multiprocessing") for t in (1.0, 1.1, 1.2)
    ]
    s = summarize(pd.DataFrame(rows))
    assert s.loc[0, "why"] == "imbalance: worker 1 idle 40%"


CAUSES = """
name: causes
repeats: 3
warmup: 1
timeout_s: 120
matrix:
  workload: [experiments.cpu:sum_squares]    # pure Python on threads: the GIL
  backend: [threading]
  workers: [2]
  tasks: [2]
  size: [1000000]
include:
  # two unequal tasks: x**4 costs more than x**2
  - {workload: experiments.seed:square_and_quad, backend: multiprocessing, start_method: fork, workers: 2, tasks: 2, size: 1000000}
  # ... and its plain loop, which shows the work is CPU-bound: time its workers spent off the CPU
  # was then taken from them (preempted on a busy machine), not waited for (in CI 21-27% of their
  # time was; without the baseline it read as "waiting off-CPU" and out-weighed the imbalance)
  - {workload: experiments.seed:square_and_quad, backend: sequential, workers: 1, tasks: 2, size: 1000000}
  # a task of about 1 ms on spawned processes
  - {workload: experiments.cpu:sum_squares, backend: multiprocessing, start_method: spawn, workers: 2, tasks: 2, size: 20000}
  # hashlib releases the GIL: threads run side by side (256 MiB: runs of ~100+ ms, as *why* names
  # no cause for runs under 50 ms, whose CPU times move a tick at a time; 64 MiB took 35 ms in CI)
  - {workload: experiments.cpu:sha256_blocks, backend: threading, workers: 2, tasks: 2, size: 256}
affinity: compact
"""


def cores_two_hashing_threads_get(seconds: float = 0.3) -> float:
    """Cores' worth of CPU two GIL-releasing hashing threads get side by side, now (2.0 at best).

    In one CI run two such threads got 0.9-1.0 of a core for a minute: a thread spinning in the
    test process itself (a hostile workload imported while collecting doctests, see conftest.py)
    had the other core, and an in-process sweep counts its caller's CPU as its own. No attribution
    can show a parallelism the machine did not give, so the test asks the machine first.
    """
    block, cpu = bytes(1 << 20), []

    def spin() -> None:
        begun, digest = time.thread_time(), hashlib.sha256()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            digest.update(block)
        cpu.append(time.thread_time() - begun)

    threads = [threading.Thread(target=spin) for _ in range(2)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(cpu) / (time.perf_counter() - began)


@pytest.mark.flaky(reruns=2)  # a real sweep: other processes can blur one trial
def test_real_sweeps_of_known_cause_workloads_are_named_correctly(tmp_path):
    config = tmp_path / "causes.yaml"
    config.write_text(textwrap.dedent(CAUSES))
    before = cores_two_hashing_threads_get()
    result = conc_lab.sweep(config, out=tmp_path / "out")
    side_by_side = min(before, cores_two_hashing_threads_get())
    assert result.ok
    s = summarize(conc_lab.load(result.sweep_dir)).set_index(["workload", "backend", "size"])
    why = s["why"].to_dict()
    print(why)  # the phrases, for the log of a failure
    expected = {
        ("experiments.cpu:sum_squares", "threading", 1000000): "GIL-bound: 2 workers, CPU ",
        ("experiments.seed:square_and_quad", "multiprocessing", 1000000): "imbalance: worker ",
        ("experiments.cpu:sum_squares", "multiprocessing", 20000): "start-up: ",
        ("experiments.cpu:sha256_blocks", "threading", 256): "none dominant",
    }
    # Where other processes had most of the trial's cores conc_lab names no cause (it cannot know
    # what the run could have had) and says so: that is checked, and the test reports it skipped.
    busy = {key: why[key] for key in expected if why[key].startswith("not attributable: others used ")}
    if side_by_side < 1.5:  # the machine ran two hashing threads one at a time: see the probe's doc
        print(f"two hashing threads got {side_by_side:.2f} cores here: sha256 not checked")
        busy.setdefault(("experiments.cpu:sha256_blocks", "threading", 256), f"{side_by_side:.2f} cores")
    for key, phrase in expected.items():
        if key not in busy:
            assert why[key].startswith(phrase), (key, why[key])
    # A test that checked no cause has not passed: it is tried again (flaky), then fails.
    assert len(busy) < len(expected), f"machine too busy to attribute any trial: {sorted(busy.values())}"

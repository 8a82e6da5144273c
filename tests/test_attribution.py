"""Why a backend is not faster: each run's worker-time split by cause, on hand-built runs whose
split is known and on real sweeps of workloads whose cause is known by construction (#15 item 4)."""

from __future__ import annotations

import pandas as pd
import pytest

from conc_lab.attribution import PARTS, attribute
from conc_lab.summary import summarize


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


def test_threads_busy_together_on_one_cpu_are_serialised_and_sleepers_are_not():
    gil = attributed(run(2, 1.0, [[(0, 1.0)], [(0, 1.0)]], cpu=1.02)).loc[0]
    assert gil.cause == "serialisation" and gil.why == "GIL-bound: 2 workers, CPU 1.02× wall"
    assert gil.serialisation_s == pytest.approx(2.0 - 1.02)
    sleep = attributed(run(2, 1.0, [[(0, 1.0)], [(0, 1.0)]], cpu=0.001)).loc[0]
    assert sleep.cause == "waiting" and sleep.serialisation_s == 0
    free = attributed(run(2, 1.0, [[(0, 1.0)], [(0, 0.97)]], cpu=1.96)).loc[0]  # GIL released (sha256)
    assert free.cause == "none" and free.why.startswith("none dominant")


def test_other_processes_are_named_but_never_the_cause():
    # others took 40% of the cores: the threads got 0.6 of a CPU together, the GIL's share of what was left
    gil = attributed(run(2, 1.0, [[(0, 1.0)], [(0, 1.0)]], cpu=0.6, foreign_cpu=0.4)).loc[0]
    assert gil.cause == "serialisation" and gil.why.endswith("(others used 40% of its cores)")
    free = attributed(run(2, 1.0, [[(0, 1.0)], [(0, 1.0)]], cpu=1.2, foreign_cpu=0.4)).loc[0]
    assert free.cause == "none" and free.others_s == pytest.approx(0.8)
    # others had nearly all of it: nothing is vouched for
    busy = attributed(run(2, 1.0, [[(0, 1.0)], [(0, 1.0)]], cpu=0.15, foreign_cpu=0.92)).loc[0]
    assert busy.cause == "noisy" and busy.why == "not attributable: others used 92% of its cores"


def test_summarize_names_the_cause_of_each_trials_median_run():
    rows = [
        run(2, t, [[(0, t)], [(0, t * 0.6)]], cpu=1.6 * t, backend="multiprocessing") for t in (1.0, 1.1, 1.2)
    ]
    s = summarize(pd.DataFrame(rows))
    assert s.loc[0, "why"] == "imbalance: worker 1 idle 40%"

"""Each run is measured in a warm process (#20, #25): its fresh process calls the workload once first.

A fresh process per run (host.fork) keeps runs apart, but left alone it would make every run
pay what only a program's first call pays (a table built on first use, a lazy import): the
sha256 workload's 1 MiB block cost 7 ms of a 28 ms threaded run, and its speedup read 1.75x
where plain threads get 1.96x. What is checked here is the count of calls each run's process
made, read by the workload itself, not a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import conc_lab
from conc_lab.config.document import parse_config
from conc_lab.host.measure import checksum

TESTS = str(Path(__file__).resolve().parent)

pytestmark = pytest.mark.host


def _observed(tmp_path, warmup: int, backend: str, **options) -> list[int]:
    doc = {
        "name": "warm",
        "repeats": 2,
        "warmup": warmup,
        "matrix": {
            "workload": ["workloads_warm:counted"],
            "backend": [backend],
            "workers": [2 if backend != "sequential" else 1],
            "tasks": [3],
            "size": [5],
        },
        **options,
    }
    cfg = parse_config(doc, path=str(Path(TESTS) / "warm.yaml"))  # workloads_warm is found beside it
    result = conc_lab.sweep(cfg, tmp_path)
    df = conc_lab.load(result.sweep_dir)
    measured = df[df.status == "ok"]
    assert len(measured) == 2 and measured.correct.all()
    return sorted(json.loads(v) for v in measured.observed)


@pytest.mark.parametrize(
    ("backend", "options", "warm", "cold"),
    [
        ("sequential", {}, 4, 3),  # the first call, then the run's 3 tasks, all in the run's process
        ("threading", {}, 4, 3),
        # forked workers call the workload in their own processes: the run's process made the first call alone
        ("multiprocessing", {"backend_options": {"multiprocessing": {"start_method": ["fork"]}}}, 1, 0),
    ],
)
def test_a_run_is_measured_after_one_untimed_call_in_its_process_unless_warmup_is_0(
    tmp_path, backend, options, warm, cold
):
    assert _observed(tmp_path / "warm", 1, backend, **options) == [warm, warm]
    assert _observed(tmp_path / "cold", 0, backend, **options) == [cold, cold]


def test_a_spawned_worker_does_not_import_the_trial_host(tmp_path):
    """A spawned worker imports what a program's would (its workload and the worker loop), not the
    host's package (17 ms): multiprocessing skips a ``__main__`` named ``*.__main__``, as the host's
    is, so this guards that the host keeps such a name and the worker loop imports no more."""
    doc = {
        "name": "lean",
        "repeats": 1,
        "warmup": 0,
        "matrix": {
            "workload": ["workloads_warm:holds_the_host"],
            "backend": ["multiprocessing"],
            "workers": [2],
            "tasks": [2],
            "size": [1],
        },
        "backend_options": {"multiprocessing": {"start_method": ["spawn", "fork"]}},
    }
    cfg = parse_config(doc, path=str(Path(TESTS) / "lean.yaml"))
    df = conc_lab.load(conc_lab.sweep(cfg, tmp_path).sweep_dir)
    by_method = dict(zip(df.start_method, df.checksum))
    assert by_method == {"spawn": checksum([False, False]), "fork": checksum([True, True])}


def test_the_untimed_first_call_does_not_cut_a_long_single_task_run_short(tmp_path):
    """One task of 0.9 s against a 1.5 s timeout: the first call and the run are 1.8 s together,
    and the run must not time out for the call it was not timed on."""
    doc = {
        "name": "long",
        "repeats": 1,
        "warmup": 1,
        "timeout_s": 1.5,
        "matrix": {
            "workload": ["experiments.io:sleep"],
            "backend": ["sequential"],
            "tasks": [1],
            "size": [900],
        },
    }
    cfg = parse_config(doc, path=str(Path(TESTS).parent / "configs" / "long.yaml"))
    df = conc_lab.load(conc_lab.sweep(cfg, tmp_path).sweep_dir)
    assert df.status.tolist() == ["ok"], df.error.tolist()


def test_spawned_runs_share_the_hosts_resource_tracker_as_a_programs_pools_do(tmp_path):
    """A program starts one resource tracker (a whole interpreter) with its first spawned workers and
    keeps it; a run's fresh process starting its own booted it beside its workers: 27 ms more per
    spawned worker than plain multiprocessing (bench_harness.py). Each run now uses the host's one."""
    doc = {
        "name": "tracker",
        "repeats": 3,
        "warmup": 1,
        "matrix": {
            "workload": ["workloads_warm:spawned"],
            "backend": ["multiprocessing"],
            "workers": [2],
            "tasks": [2],
            "size": [1],
        },
        "backend_options": {"multiprocessing": {"start_method": ["spawn"]}},
    }
    cfg = parse_config(doc, path=str(Path(TESTS) / "tracker.yaml"))
    df = conc_lab.load(conc_lab.sweep(cfg, tmp_path).sweep_dir)
    assert (df.status == "ok").all(), df.error.tolist()
    seen = [json.loads(v) for v in df.observed]
    assert len({pid for pid, _ in seen}) == 1 and all(alive for _, alive in seen), seen

"""Whole sweeps through the real runner, real trial hosts and a real store."""

from __future__ import annotations

import pytest

import conc_lab
from conc_lab.events import Planned, RunFinished
from conc_lab.run import runner
from conc_lab.store.manifest import read_manifest

pytestmark = pytest.mark.host

SMALL = """
name: small
repeats: 2
warmup: 1
timeout_s: 30
matrix:
  workload: [experiments.cpu:sum_squares]
  backend: [sequential, threading, multiprocessing]
  workers: [1, 2]
  tasks: [4]
  size: [3000]
affinity: {affinity}
"""


def test_a_sweep_records_every_run_with_correct_answers(tmp_path, write_config):
    events = []
    result = runner.sweep(
        write_config(SMALL.format(affinity="compact")),
        tmp_path / "out",
        on_event=events.append,
    )
    assert result.ok and result.planned == result.recorded == 5 * 2
    df = conc_lab.load(tmp_path / "out" / "small")
    assert len(df) == 10 and set(df["status"]) == {"ok"}
    assert df["correct"].all()  # every backend matched the sequential answer
    assert set(df["repeat"]) == {0, 1}  # the warm-up round is not recorded
    assert df.loc[df.workers == 2, "cores"].map(list).map(sorted).tolist() == [[0, 1]] * 4
    assert df["pinned"].all()
    assert df["hostname"].notna().all() and df["python_version"].notna().all()
    assert df["cpu_model"].notna().all()
    # The host's own clock around each run (fork to reply) is stored, and what the run says it took fits in it.
    inside = df["setup_s"].fillna(0) + df["run_s"] + df["teardown_s"].fillna(0)
    assert (df["outside_s"] >= inside).all(), df[["outside_s", "setup_s", "run_s", "teardown_s"]]
    # Interleaved: every trial's repeat 0 starts before any trial's repeat 1.
    assert df.loc[df.repeat == 0, "started_at"].max() < df.loc[df.repeat == 1, "started_at"].min()
    kinds = [type(e) for e in events]
    assert kinds[0] is Planned and kinds.count(RunFinished) == 5 * 3  # warm-ups are reported too
    assert read_manifest(result.sweep_dir).state == "complete"


def test_unpinned_sweep_records_pinned_false(tmp_path, write_config):
    result = runner.sweep(write_config(SMALL.format(affinity="none")), tmp_path)
    df = conc_lab.load(result.sweep_dir)
    assert not df["pinned"].any() and df["cores"].map(len).eq(0).all()


@pytest.mark.slow
def test_a_hung_trial_times_out_and_the_sweep_goes_on(tmp_path, write_config):
    cfg = write_config(
        """
        name: hang
        repeats: 2
        warmup: 0
        timeout_s: 1.5
        matrix:
          workload: [experiments.io:sleep]
          backend: [threading, sequential]
          workers: [1]
          tasks: [1]
          size: [5000]
        include:
          - {workload: experiments.io:sleep, backend: threading, size: 1, tasks: 2}
        affinity: none
        """
    )
    result = runner.sweep(cfg, tmp_path)
    df = conc_lab.load(result.sweep_dir).sort_values("started_at")
    assert not result.ok and result.failed == 2 and result.skipped == 2
    by_backend = df.groupby(["backend", "size"], observed=True)["status"].apply(list).to_dict()
    assert by_backend[("threading", 5000)] == [
        "timeout",
        "skipped",
    ]  # the repeat after a timeout is not retried
    assert by_backend[("sequential", 5000)] == ["timeout", "skipped"]
    assert by_backend[("threading", 1)] == ["ok", "ok"]  # a fresh host ran the next trial
    assert df.loc[df.status == "timeout", "error"].str.contains("killed and replaced").all()


def test_fail_fast_stops_at_the_first_failure(tmp_path, write_config):
    cfg = write_config(
        """
        name: ff
        repeats: 3
        warmup: 0
        matrix:
          workload: [operator:truediv]
          backend: [sequential]
          size: [0]
        """
    )
    result = runner.sweep(cfg, tmp_path, fail_fast=True)
    assert result.recorded == 1 and result.failed == 1
    assert read_manifest(result.sweep_dir).state == "stopped"
    df = conc_lab.load(result.sweep_dir)
    assert "ZeroDivisionError" in df["error"][0]


def test_resume_runs_only_what_is_missing(tmp_path, write_config):
    path = write_config(SMALL.format(affinity="none"))
    first = runner.sweep(path, tmp_path, fail_fast=False)
    again = runner.sweep(path, tmp_path, resume=True)
    assert again.sweep_id == first.sweep_id and again.recorded == 0
    df = conc_lab.load(tmp_path / "small")
    assert len(df) == 10 and not df.duplicated(["trial_id", "repeat"]).any()

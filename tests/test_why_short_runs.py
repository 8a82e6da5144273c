"""`why` names no cause for runs too short for CPU-time accounting (a real sweep of runs of a few ms)."""

from __future__ import annotations

import re
import textwrap

import pandas as pd
import pytest

import conc_lab
from conc_lab.analysis.attribution import attribute

pytestmark = pytest.mark.host

# pure Python on two threads, about 1 ms a task: runs of a few ms, a fraction of one CPU-time tick
SHORT = """
name: short-why
repeats: 3
warmup: 1
timeout_s: 60
matrix:
  workload: [experiments.cpu:sum_squares]
  backend: [sequential, threading]
  workers: [2]
  tasks: [4]
  size: [20000]
affinity: compact
"""
TOO_SHORT = re.compile(
    r"^runs of \S+ \S+ are too short for CPU-time accounting \(resolution ~10 ms\): no cause named$"
)
#: What a named cause begins with (attribution's phrases).
CAUSE_WORDS = ("GIL-bound", "waiting", "imbalance", "dispatch", "none dominant", "not attributable")
SURE = ("start-up: ", "teardown: ")


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("results")
    config = root / "short.yaml"
    config.write_text(textwrap.dedent(SHORT))
    result = conc_lab.sweep(config, out=root / "out")
    assert result.ok
    return conc_lab.load(result.sweep_dir)


def test_summarize_names_no_cause_for_runs_of_a_few_ms(short_runs):
    # seen: a threading trial of ~5 ms runs read "waiting off-CPU (sleep, I/O, locks): 38% of worker
    # time" or "GIL-bound: 2 workers, CPU 0.81× wall", from CPU times that advance a tick at a time
    assert short_runs["run_s"].max() < 0.05  # the premise: every run is shorter than 5 ticks of 10 ms
    s = conc_lab.summarize(short_runs)
    threads = s[s.backend == "threading"]
    assert len(threads) == 1
    why = threads["why"].iloc[0]
    # its median run's start-up (or teardown) may have taken most of the wall time: that is still
    # named, the wall clock measures it (see the next test); nothing that rests on CPU time is
    assert TOO_SHORT.match(why) or why.startswith(SURE), why
    assert not why.startswith(CAUSE_WORDS) and "others used" not in why, why


def test_every_short_run_is_attributed_without_a_cause(short_runs):
    att = attribute(short_runs)
    att = att[att["why"].notna()]
    fixed = (att["startup_s"] + att["teardown_s"]) / att["capacity_s"]
    # a start-up or teardown that took most of the wall time is measured by the wall clock: kept
    sure = att["cause"].isin(["start-up", "teardown"]) & (fixed >= 0.5)
    assert (~sure).sum() >= 3, att[["cause", "why"]]  # most runs: starting them is not most of it
    for cause, why in zip(att.loc[~sure, "cause"], att.loc[~sure, "why"], strict=True):
        assert cause == "too short" and TOO_SHORT.match(why), (cause, why)
    assert not att["why"].str.contains("others used").any()  # nor other processes' share, whole ticks too

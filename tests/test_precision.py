"""Precision (#20): paired speedups, the recorded run order, the A/A self-test, derived claims.

The estimator tests build runs the way a sweep records them (a row per run, with its round and
start time) and check the figures a user reads from ``summarize``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conc_lab.analysis.pairing import pair_runs
from conc_lab.analysis.summary import summarize

pytestmark = pytest.mark.inprocess


def _rounds(n_rounds: int, slow_rounds: set[int], lost: set[int], seed: int = 1) -> pd.DataFrame:
    """A sequential loop (1 s) and threading (0.5 s: speedup 2) in ``n_rounds`` interleaved rounds, in
    a random order per round; in ``slow_rounds`` the machine runs 1.2x slower; the threading runs
    of the rounds in ``lost`` failed."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n_rounds):
        slow = 1.2 if r in slow_rounds else 1.0
        order = rng.permutation(["sequential", "threading"])
        for slot, backend in enumerate(order):
            base = 1.0 if backend == "sequential" else 0.5
            failed = backend == "threading" and r in lost
            rows.append(
                {
                    "workload": "w",
                    "tasks": 2,
                    "size": 10,
                    "backend": backend,
                    "workers": 1 if backend == "sequential" else 2,
                    "repeat": r,
                    "status": "failed" if failed else "ok",
                    "run_s": np.nan if failed else base * slow * rng.uniform(0.995, 1.005),
                    "started_at": pd.Timestamp("2026-01-01", tz="UTC")
                    + pd.Timedelta(seconds=10 * r + 3 * slot),
                }
            )
    return pd.DataFrame(rows)


def _threading(summary: pd.DataFrame) -> pd.Series:
    return summary[summary["backend"] == "threading"].iloc[0]


def test_a_slow_state_over_half_the_rounds_moves_the_paired_speedup_under_2_percent():
    steady = _threading(summarize(_rounds(21, set(), set())))
    drift = _rounds(21, slow_rounds=set(range(11)), lost={2, 7})  # two threading runs failed while slow
    paired = _threading(summarize(drift))
    unpaired = _threading(summarize(drift.drop(columns="started_at")))  # no times: cannot be paired
    assert steady.speedup_method == paired.speedup_method == "paired"
    assert unpaired.speedup_method == "unpaired"
    assert abs(paired.speedup / steady.speedup - 1) < 0.02
    assert unpaired.speedup / steady.speedup - 1 > 0.15  # the unpaired estimate moves by ~20%
    assert paired.speedup_ci_low <= 2.0 <= paired.speedup_ci_high
    assert paired.speedup_ci_high - paired.speedup_ci_low < 0.05 * paired.speedup


def test_each_run_pairs_with_the_nearest_baseline_run_of_its_own_round():
    df = _rounds(3, set(), set())
    pairs = pair_runs(df)
    for i, j in enumerate(pairs):
        if df.loc[i, "backend"] == "sequential":
            assert j == -1
        else:
            assert df.loc[j, "backend"] == "sequential" and df.loc[j, "repeat"] == df.loc[i, "repeat"]


def test_runs_of_different_sweeps_never_pair_and_the_summary_says_it_used_the_unpaired_estimate():
    df = _rounds(5, set(), set())
    seq = df["backend"] == "sequential"
    # merged shards: the baseline ran in one sweep, the backend in another, at other times
    df = df.assign(sweep_id=np.where(seq, "shard-1", "shard-2"))
    row = _threading(summarize(df))
    assert (pair_runs(df) == -1).all()
    assert row.speedup_method == "unpaired"
    assert 1.9 < row.speedup < 2.1


def test_a_speedup_inherits_its_baselines_doubts():
    df = _rounds(7, set(), set())
    seq = (df["backend"] == "sequential").to_numpy()
    run = df["run_s"].to_numpy().copy()
    run[np.flatnonzero(seq)[::2]] *= 1.6  # the baseline swings; the threading runs do not
    noisy = np.zeros(len(df), bool)
    noisy[np.flatnonzero(seq)[1]] = True
    s = summarize(df.assign(run_s=run, noisy=noisy))
    base, row = s[s.backend == "sequential"].iloc[0], _threading(s)
    assert base.unstable and row.unstable
    assert "baseline unstable" in row.notes and "baseline noisy" in row.notes


def test_a_pair_with_a_noisy_run_widens_the_interval_to_cover_it():
    df = _rounds(11, set(), set())
    thr = np.flatnonzero((df["backend"] == "threading").to_numpy())
    run = df["run_s"].to_numpy().copy()
    run[thr[3]] *= 2.0  # measured while the machine was busy: the pair's ratio is ~1.0
    noisy = np.zeros(len(df), bool)
    noisy[thr[3]] = True
    quiet = _threading(summarize(df.assign(run_s=run)))
    flagged = _threading(summarize(df.assign(run_s=run, noisy=noisy)))
    assert quiet.speedup_ci_low > 1.9  # one stray pair does not move an exact median interval ...
    assert flagged.speedup_ci_low < 1.05  # ... but one the machine vouches against is covered
    assert flagged.speedup == quiet.speedup

"""Paired speedups: each backend run against the baseline run nearest to it in time, in its round.

Two medians measured a round apart (minutes, in a large sweep) differ by whatever the machine
did in between, and an unpaired ratio counts that as part of the speedup. Measuring the two
things close together and comparing them pair by pair cancels the interference they share
(duet benchmarking, Bulej et al. 2020; randomized interleaved rounds, Abedi & Brecht 2017):

* a backend run is paired with the ok sequential run of the same sweep, round and baseline
  key (workload, tasks, size, python, node; the same affinity where one exists) that ended last
  before it started (with ``pairing: adjacent``, the one run right before it), else the first
  one after it;
* the speedup is the median of the per-pair ratios ``baseline / run``, and its interval the
  exact bootstrap interval of that median (``stats.SortedGroups.median_ci``: distribution
  free, no Monte-Carlo noise);
* a pair with a noisy run on either side widens the interval to cover its ratio: an interval
  never claims more certainty than the runs behind it.

Data that cannot be paired (shards run at different times, a baseline from another node, rows
without start times) keeps the unpaired estimate; ``speedup_method`` says which was used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from conc_lab.analysis.frames import BASELINE_KEYS, SEQUENTIAL, key_columns
from conc_lab.analysis.stats import MIN_RUNS_FOR_INTERVAL, SortedGroups, ok_runs, too_few_runs

#: ``speedup_method`` values: the estimate a summary row's speedup comes from.
PAIRED = "paired"
UNPAIRED = "unpaired"


def _round(df: pd.DataFrame) -> pd.Series:
    """The interleaved round each run belonged to: ``round`` where recorded, else its ``repeat``."""
    repeat = df["repeat"] if "repeat" in df.columns else pd.Series(0, index=df.index)
    if "round" not in df.columns:
        return repeat.astype(object)
    return df["round"].astype(object).where(df["round"].notna(), repeat.astype(object))


def run_window_us(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per run, the start and end of its measured window in µs since the epoch (NaN without
    ``started_at``). ``started_at`` is taken before the workers start: the run begins ``setup_s`` later.

    Example::

        >>> at = pd.to_datetime([0, 0], unit="s", utc=True)
        >>> start, end = run_window_us(pd.DataFrame({"started_at": at, "setup_s": [1.0, 0.0], "run_s": [2.0, 2.0]}))
        >>> start.tolist(), end.tolist()
        ([1000000.0, 0.0], [3000000.0, 2000000.0])
    """
    if "started_at" not in df.columns:
        return np.full(len(df), np.nan), np.full(len(df), np.nan)
    at = pd.to_datetime(df["started_at"], utc=True)
    us = (at - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(microseconds=1)
    setup = df["setup_s"].to_numpy(dtype=np.float64, na_value=np.nan) if "setup_s" in df.columns else 0.0
    start = us.to_numpy(dtype=np.float64, na_value=np.nan) + 1e6 * np.nan_to_num(setup)
    run = df["run_s"].to_numpy(dtype=np.float64, na_value=np.nan)
    return start, start + 1e6 * np.nan_to_num(run)


def _nearest(left: pd.DataFrame, right: pd.DataFrame, direction: str) -> np.ndarray:
    """For each row of ``left`` (columns ``_pk``, ``_t``, ``_i``), the ``_i`` of the ``right`` row with
    the same ``_pk`` nearest in ``_t`` in ``direction`` (as ``merge_asof``); -1 where none."""
    found = np.full(len(left), -1, dtype=np.int64)
    if len(left) == 0 or len(right) == 0:
        return found
    merged = pd.merge_asof(
        left.assign(_k=np.arange(len(left))).sort_values("_t"),
        right.sort_values("_t").rename(columns={"_i": "_j"}),
        on="_t",
        by="_pk",
        direction=direction,
    )
    has = merged["_j"].notna().to_numpy()
    found[merged["_k"].to_numpy()[has]] = merged["_j"].to_numpy()[has].astype(np.int64)
    return found


def pair_runs(df: pd.DataFrame) -> np.ndarray:
    """For each row of ``df``, the position of its baseline run (see the module doc), -1 where it has none.

    Only ok non-sequential runs get one; the baseline is an ok sequential run. The same affinity
    is preferred; without one there, any affinity on the same node.

    Example::

        >>> at = pd.to_datetime([0, 1, 2, 10, 11, 12], unit="s", utc=True)
        >>> df = pd.DataFrame({"workload": "w", "tasks": 1, "size": 1, "repeat": [0, 0, 0, 1, 1, 1],
        ...     "backend": ["sequential", "threading", "threading", "threading", "sequential", "threading"],
        ...     "run_s": 0.1, "started_at": at})
        >>> pair_runs(df).tolist()
        [-1, 0, 0, 4, -1, 4]
    """
    found = np.full(len(df), -1, dtype=np.int64)
    start, end = run_window_us(df)
    ok = ok_runs(df) & np.isfinite(start)
    if not ok.any():
        return found
    keyed = key_columns(df, BASELINE_KEYS + ["affinity", "sweep_id"]).assign(_round=_round(df))
    seq = (df["backend"].astype(object) == SEQUENTIAL).to_numpy()
    # a backend run's start against a baseline run's end: the baseline run that ended last before
    # it started (pairing: adjacent runs it right there), else the first after it in the round
    at = np.where(seq, end, start)
    for keys in (BASELINE_KEYS + ["affinity"], BASELINE_KEYS):
        cols = keyed[keys + ["sweep_id", "_round"]].astype(object)  # categoricals: no unused groups
        pk = cols.groupby(list(cols.columns), dropna=False, sort=False).ngroup().to_numpy()
        frame = pd.DataFrame({"_pk": pk, "_t": at, "_i": np.arange(len(df))})
        for direction in ("backward", "forward"):
            want = ok & ~seq & (found < 0)
            found[np.flatnonzero(want)] = _nearest(frame[want], frame[ok & seq], direction)
    return found


def paired_speedup(
    codes: np.ndarray,
    ngroups: int,
    pairs: np.ndarray,
    base_values: np.ndarray,
    values: np.ndarray,
    noisy: np.ndarray,
    level: float = 0.95,
) -> dict[str, np.ndarray]:
    """Per group: ``n_pairs``, the median of the per-pair ratios ``base_values[pair] / values`` and
    its interval (widened to cover every pair with a noisy run, ``noisy`` per row).

    Also what the noise did, for the flags (``noise_moves``): ``low0``/``high0``, the interval
    before the widening, and per side (``own``: the backend run noisy; ``base``: its baseline run
    noisy) ``n_own``/``n_base`` (noisy pairs) and ``own_low``/``own_high``, ``base_low``/``base_high``
    (the interval widened by that side's noisy pairs alone).

    Example::

        >>> pairs = np.array([-1, 0, -1, 2, -1, 4])
        >>> v = np.array([1.0, 0.5, 2.0, 1.0, 1.0, 0.5])
        >>> st = paired_speedup(np.zeros(6, np.int64), 1, pairs, v, v, np.zeros(6, bool))
        >>> st["n_pairs"].tolist(), st["speedup"].tolist(), st["low"].tolist(), st["high"].tolist()
        ([3], [2.0], [2.0], [2.0])
    """
    has = pairs >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = base_values[np.clip(pairs, 0, None)] / values
    has &= np.isfinite(ratio) & (ratio > 0)
    srt = SortedGroups(codes[has], ratio[has], ngroups)
    low0, high0 = srt.median_ci(level)
    found = {"n_pairs": srt.n, "speedup": srt.quantile(0.5), "low0": low0, "high0": high0}
    own, base = has & noisy, has & noisy[np.clip(pairs, 0, None)]
    for side, doubt in (("own", own), ("base", base), ("", own | base)):
        low, high = _cover(
            codes, ratio, doubt & ~too_few_runs(srt.n[codes]), low0, high0
        )  # one pair: no interval
        found[f"{side}_low" if side else "low"], found[f"{side}_high" if side else "high"] = low, high
        if side:
            found[f"n_{side}"] = np.bincount(codes[doubt], minlength=ngroups)
    return found


def _cover(
    codes: np.ndarray, ratio: np.ndarray, doubt: np.ndarray, low: np.ndarray, high: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``low``/``high`` per group widened to every ``ratio`` at ``doubt``."""
    if not doubt.any():
        return low, high
    lows = np.full(len(low), np.inf)
    highs = np.full(len(high), -np.inf)
    np.minimum.at(lows, codes[doubt], ratio[doubt])
    np.maximum.at(highs, codes[doubt], ratio[doubt])
    return np.where(np.isnan(low), np.nan, np.fmin(low, lows)), np.where(
        np.isnan(high), np.nan, np.fmax(high, highs)
    )


def noise_moves(
    speedup: np.ndarray,
    low0: np.ndarray,
    high0: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    n_noisy: np.ndarray,
    n: np.ndarray,
    tolerance: float,
) -> np.ndarray:
    """Whether noisy runs decide a speedup: they widened its interval (``low0``-``high0`` to
    ``low``-``high``) by more than ``tolerance`` of the speedup at either end, or they are at least
    half of its runs, so the quiet ones cannot outvote them (a steady competitor slows the two
    sides of every pair unequally: the pairs then agree on a wrong answer).

    A flag then means the number cannot be vouched for, not that some run saw a foreign tick: a
    noisy pair inside what the quiet pairs say already changes nothing.

    Example::

        >>> one = np.array([1.0, 1.0, 1.0])
        >>> noise_moves(one, 0.98 * one, 1.02 * one, np.array([0.97, 0.80, 0.98]), 1.02 * one,
        ...             np.array([1, 1, 3]), np.array([5, 5, 5]), 0.05).tolist()
        [False, True, True]
    """
    speed = np.nan_to_num(speedup, nan=0.0)
    with np.errstate(invalid="ignore"):
        moved = (np.nan_to_num(low0 - low) > tolerance * speed) | (
            np.nan_to_num(high - high0) > tolerance * speed
        )
    return (moved | (2 * n_noisy >= np.maximum(n, 1))) & (n_noisy > 0)


def noisy_runs(df: pd.DataFrame) -> np.ndarray:
    """Per row, whether the run was marked noisy (False where the column is missing or null)."""
    if "noisy" not in df.columns:
        return np.zeros(len(df), dtype=bool)
    return df["noisy"].astype("boolean").fillna(False).to_numpy(dtype=bool)


def use_paired(n_pairs: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Whether a group's paired estimate stands: pairs for at least half its ok runs (and one).

    Fewer, and the pairs would speak for runs they do not cover (a merged shard whose baseline
    ran at another time): the unpaired estimate is used instead. So it is where one pair stands
    for two runs or more: one pair gives no interval, while the runs unpaired can.

    Example::

        >>> use_paired(np.array([0, 2, 3, 5, 1, 1]), np.array([5, 5, 5, 5, 2, 1])).tolist()
        [False, False, True, True, False, True]
    """
    enough = (n_pairs >= MIN_RUNS_FOR_INTERVAL) | (n < MIN_RUNS_FOR_INTERVAL)
    return (n_pairs >= 1) & (2 * n_pairs >= n) & enough


def cover_noisy(
    codes: np.ndarray, values: np.ndarray, rows: np.ndarray, low: np.ndarray, high: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per group, ``low``/``high`` widened to cover ``values`` at the ``rows`` (the noisy ok runs):
    a median's interval that the unpaired ratio combines then covers what the machine did.

    Example::

        >>> cover_noisy(np.array([0, 0, 1]), np.array([1.0, 3.0, 2.0]), np.array([False, True, False]),
        ...             np.array([0.9, 1.9]), np.array([1.1, 2.1]))
        (array([0.9, 1.9]), array([3. , 2.1]))
    """
    low, high = low.astype(np.float64).copy(), high.astype(np.float64).copy()
    rows = rows & np.isfinite(values)
    rows &= np.isfinite(low[codes]) & np.isfinite(high[codes])  # no interval (one run) stays none
    np.fmin.at(low, codes[rows], values[rows])
    np.fmax.at(high, codes[rows], values[rows])
    return low, high

"""Which speedups are not yet as precise as a sweep's ``precision:`` asks: the stopping rule of
the rounds added after ``repeats`` (``plan.runs.run_order``'s ``more``).

The rule reads the runs recorded so far and computes their speedup intervals exactly as
``summarize`` does (``summary.speedup_intervals``, its first steps), so a sweep stops adding
rounds when the intervals it will print are narrow enough, not when a cheaper estimate of them is: a speedup is precise enough when its 95% interval lies within
``±target`` of it (``(high - low) / 2 <= target * speedup``). A speedup with no interval yet is
not; one with no runs that ran (every run failed) never will be, and asks for nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from conc_lab.analysis.frames import GROUP_KEYS, SEQUENTIAL, key_columns
from conc_lab.analysis.summary import speedup_intervals


def half_widths(summary: pd.DataFrame) -> np.ndarray:
    """Per summary row, half its speedup interval's width as a share of the speedup (inf without one).

    Example::

        >>> s = pd.DataFrame({"speedup": [2.0, 1.0, np.nan], "speedup_ci_low": [1.9, np.nan, np.nan],
        ...                   "speedup_ci_high": [2.1, np.nan, np.nan]})
        >>> half_widths(s).round(3).tolist()
        [0.05, inf, inf]
    """
    col = lambda c: summary[c].to_numpy(dtype=np.float64, na_value=np.nan)  # noqa: E731
    with np.errstate(divide="ignore", invalid="ignore"):
        half = (col("speedup_ci_high") - col("speedup_ci_low")) / 2 / col("speedup")
    return np.where(np.isfinite(half), half, np.inf)


def _key(frame: pd.DataFrame) -> list[tuple]:
    """The group key of each row, with every missing value alike (None, NaN and pd.NA all match)."""
    return [tuple("" if pd.isna(x) else str(x) for x in row) for row in frame.itertuples(index=False)]


def wide_speedups(runs: pd.DataFrame, target: float) -> dict[str, float]:
    """trial_id -> its speedup's half-width (a share), for each trial of ``runs`` whose speedup
    is wider than ``±target``; trials whose runs all failed, and baselines, are left out.

    Example::

        >>> rows = pd.DataFrame({"trial_id": ["s"] * 3 + ["t"] * 3, "workload": "w", "tasks": 4,
        ...     "size": 10, "status": "ok", "backend": ["sequential"] * 3 + ["threading"] * 3,
        ...     "workers": [1, 1, 1, 2, 2, 2], "run_s": [2.0, 2.1, 1.9, 1.0, 1.5, 0.7]})
        >>> {t: round(h, 2) for t, h in wide_speedups(rows, 0.05).items()}
        {'t': 0.38}
        >>> wide_speedups(rows, 0.9)
        {}
    """
    if runs.empty:
        return {}
    summary = speedup_intervals(runs)
    half = half_widths(summary)
    ran = summary["n"].to_numpy() > summary["failures"].to_numpy() + summary["skipped"].to_numpy()
    wide = (summary["backend"].astype(str) != SEQUENTIAL).to_numpy() & ran & (half > target)
    if not wide.any():
        return {}
    by_key = dict(zip(_key(summary[GROUP_KEYS][wide]), half[wide]))
    trials = key_columns(runs, GROUP_KEYS).assign(trial_id=runs["trial_id"].to_numpy()).drop_duplicates()
    found = zip(_key(trials[GROUP_KEYS]), trials["trial_id"])
    return {tid: float(by_key[k]) for k, tid in found if k in by_key}

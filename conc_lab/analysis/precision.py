"""Which speedups are not yet as precise as a sweep's ``precision:`` asks: the stopping rule of
the rounds added after ``repeats`` (``plan.runs.run_order``'s ``more``).

The rule reads the runs recorded so far and computes their speedup intervals exactly as
``summarize`` does (``summary.speedup_intervals``, its first steps), so a sweep stops adding
rounds when the intervals it will print are narrow enough, not when a cheaper estimate of them is: a speedup is precise enough when its 95% interval lies within
``±target`` of it (``(high - low) / 2 <= target * speedup``) and rests on ``MIN_PAIRS`` runs or
more on each side. A speedup with no interval yet is not; one with no runs that ran (every run
failed) never will be, and asks for nothing.

Why a floor on the pairs: a sweep that looks after every round stops at the first interval that
happens to be narrow, and few pairs are narrow by chance. The interval of a median over n values
is their whole range for n <= 5, and the range of n values holds the median with probability
1 - 2 ** (1 - n) whatever their spread: 50% at 2, 94% at 5. With ``repeats: 2`` a trial whose
pairs scatter by a factor of 10 came out "within ±25%" in 3 of 24 sweeps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from conc_lab.analysis.frames import GROUP_KEYS, SEQUENTIAL, key_columns
from conc_lab.analysis.summary import speedup_intervals

#: Fewer runs than this on either side, and a speedup is not yet precise however narrow its
#: interval: at 5 the interval is the values' range, a 94% interval of their median (module doc).
MIN_PAIRS = 5


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


def wide_speedups(runs: pd.DataFrame, target: float, min_pairs: int = MIN_PAIRS) -> dict[str, float]:
    """trial_id -> its speedup's half-width (a share), for each trial of ``runs`` whose speedup
    is wider than ``±target``, or rests on fewer than ``min_pairs`` runs on a side (its half-width
    may then be within the target); trials whose runs all failed, and baselines, are left out.

    Example::

        >>> rows = pd.DataFrame({"trial_id": ["s"] * 3 + ["t"] * 3, "workload": "w", "tasks": 4,
        ...     "size": 10, "status": "ok", "backend": ["sequential"] * 3 + ["threading"] * 3,
        ...     "workers": [1, 1, 1, 2, 2, 2], "run_s": [2.0, 2.1, 1.9, 1.0, 1.5, 0.7]})
        >>> {t: round(h, 2) for t, h in wide_speedups(rows, 0.05, min_pairs=3).items()}
        {'t': 0.38}
        >>> wide_speedups(rows, 0.9, min_pairs=3)
        {}
        >>> {t: round(h, 2) for t, h in wide_speedups(rows, 0.9).items()}  # 3 runs a side: too few
        {'t': 0.38}
    """
    if runs.empty:
        return {}
    summary = speedup_intervals(runs)
    half = half_widths(summary)
    ok = summary["n"].to_numpy()  # the ok runs
    ran = ok > summary["failures"].to_numpy() + summary["skipped"].to_numpy()
    few = np.minimum(ok, summary["_b_n"].to_numpy(dtype=np.float64, na_value=0.0)) < min_pairs
    wide = (summary["backend"].astype(str) != SEQUENTIAL).to_numpy() & ran & ((half > target) | few)
    if not wide.any():
        return {}
    by_key = dict(zip(_key(summary[GROUP_KEYS][wide]), half[wide]))
    trials = key_columns(runs, GROUP_KEYS).assign(trial_id=runs["trial_id"].to_numpy()).drop_duplicates()
    found = zip(_key(trials[GROUP_KEYS]), trials["trial_id"])
    return {tid: float(by_key[k]) for k, tid in found if k in by_key}

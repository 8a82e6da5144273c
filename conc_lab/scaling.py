"""Scaling laws fitted to a summary's speedups over worker counts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from conc_lab.stats import group_codes, sum_by
from conc_lab.summary import GROUP_KEYS, SEQUENTIAL


def fit_amdahl(summary: pd.DataFrame) -> pd.DataFrame:
    """Fit Amdahl's law ``S(p) = 1 / (f + (1 - f) / p)`` per (workload, parameters, backend).

    ``f`` (``serial_fraction``) is the least-squares fit in the time domain: ``1/S - 1/p =
    f (1 - 1/p)`` is linear in ``f``, so the fit is closed-form and exact for data that obey
    the law. Rows: the summary's keys except ``workers``, ``points`` (worker counts used),
    ``max_workers``, ``serial_fraction``, ``max_speedup`` (``1/f``, the law's ceiling) and
    ``rmse`` of the fitted speedups. A negative ``f`` means better than linear scaling.

    Example::

        >>> s = pd.DataFrame({"workload": "w", "backend": "threading", "workers": [1, 2, 4],
        ...                   "speedup": [1.0, 1 / (0.2 + 0.8 / 2), 1 / (0.2 + 0.8 / 4)]})
        >>> print(round(fit_amdahl(s).serial_fraction[0], 6))
        0.2
    """
    keys = [k for k in GROUP_KEYS if k != "workers" and k in summary.columns]
    cols = keys + ["points", "max_workers", "serial_fraction", "max_speedup", "rmse"]
    s = summary[(summary["backend"].astype(object) != SEQUENTIAL) & np.isfinite(summary["speedup"])]
    s = s[s["speedup"] > 0]
    if len(s) == 0:
        return pd.DataFrame(columns=cols)
    codes, groups = group_codes(s[keys].astype(object), keys)
    g = len(groups)
    p = s["workers"].to_numpy(dtype=np.float64)
    speed = s["speedup"].to_numpy(dtype=np.float64)
    a = 1.0 - 1.0 / p
    y = 1.0 / speed - 1.0 / p
    with np.errstate(divide="ignore", invalid="ignore"):
        f = sum_by(codes, a * y, g) / sum_by(codes, a * a, g)
        fitted = 1.0 / (f[codes] + (1.0 - f[codes]) / p)
        rmse = np.sqrt(sum_by(codes, (fitted - speed) ** 2, g) / np.bincount(codes, minlength=g))
        groups["points"] = np.bincount(codes, minlength=g)
        groups["max_workers"] = pd.Series(p).groupby(codes).max().to_numpy()
        groups["serial_fraction"] = f
        groups["max_speedup"] = np.where(f > 0, 1.0 / f, np.inf)
        groups["rmse"] = rmse
    return groups[cols]


def amdahl_speedup(serial_fraction: float, workers: np.ndarray) -> np.ndarray:
    """Amdahl's law: the speedup on ``workers`` when ``serial_fraction`` of the work cannot be split.

    Example::

        >>> amdahl_speedup(0.5, np.array([1, 2])).tolist()
        [1.0, 1.3333333333333333]
    """
    workers = np.asarray(workers, dtype=np.float64)
    return 1.0 / (serial_fraction + (1.0 - serial_fraction) / workers)

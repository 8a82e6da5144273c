"""Summaries with confidence, scaling laws and before/after comparisons of trial runs.

Everything here takes the DataFrame that ``conc_lab.load`` returns (one row per trial run,
columns from ``conc_lab.schema``) and is vectorised over groups with numpy, so a million
runs summarise in a few seconds.

Statistics, and why these:

* Centre and spread are the median and the IQR of ``run_s``: timings are skewed (a run can
  only be slowed down), and one stray run must not move the figure.
* The 95% confidence interval of the median is the *exact* bootstrap percentile interval:
  the bootstrap distribution of a sample median is known in closed form (Efron 1982,
  ch. 10): with sorted runs ``x(1) <= .. <= x(n)`` the resampled median is ``<= x(k)``
  exactly when at least ``m`` of the ``n`` draws are, so
  ``P(median* <= x(k)) = P(Binom(n, k/n) >= m)``. That is what an infinite number of
  resamples would give, with no Monte-Carlo noise and at O(n) cost instead of
  O(n * resamples). For an even ``n`` the median is the mean of two order statistics;
  the interval then runs from the lower end for the lower one to the upper end for the
  upper one, which is slightly conservative (never narrower than the Monte-Carlo one).
* The speedup's interval combines the two medians' intervals on the log scale (their
  asymmetric half-widths added in quadrature): baseline and backend runs are independent.
* A group is *unstable* (as pyperf warns) when its coefficient of variation or the
  relative width of its interval is over a threshold; it is flagged, never dropped.
  Failed and timed-out runs are counted, never silently removed.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from os import PathLike

import numpy as np
import pandas as pd

#: Trial parameters that define one summary row; the last ones are optional (filled with
#: null when a hand-built frame lacks them). ``node`` is ``node_id``, else ``hostname``.
GROUP_KEYS = [
    "workload",
    "tasks",
    "size",
    "backend",
    "workers",
    "start_method",
    "python",
    "node",
    "affinity",
    "options",
]
#: Keys on which a backend row finds its sequential baseline (first with affinity, then without).
BASELINE_KEYS = ["workload", "tasks", "size", "python", "node"]
#: Last resort, for cluster sweeps whose sequential trial ran on another node: pooled over nodes
#: and flagged "baseline from other nodes" (nodes of one cluster are usually, not surely, alike).
CROSS_NODE_KEYS = [k for k in BASELINE_KEYS if k != "node"]
#: Keys two result sets are matched on by ``compare``: the trial's parameters, not where it ran.
COMPARE_KEYS = ["workload", "tasks", "size", "backend", "workers", "start_method", "affinity", "options"]
SEQUENTIAL = "sequential"

#: String columns worth storing as categoricals: few distinct values, many rows.
CATEGORICAL_COLUMNS = [
    "sweep_id",
    "sweep_name",
    "workload",
    "backend",
    "start_method",
    "python",
    "affinity",
    "options",
    "status",
    "hostname",
    "node_id",
    "python_version",
    "python_impl",
]


def tidy_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with low-cardinality string columns as categoricals (copy; input untouched).

    Example::

        >>> list(tidy_dtypes(pd.DataFrame({"backend": ["threading", "sequential"]})).backend.cat.categories)
        ['sequential', 'threading']
    """
    out = df.copy()
    for col in CATEGORICAL_COLUMNS:
        if col in out.columns and not isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype("category")
    return out


def _as_frame(data: pd.DataFrame | str | PathLike | Sequence) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    from conc_lab.store import load  # lazily: analysis works on hand-built frames without the store

    return load(data)


def _keyed(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The key columns of ``df`` (missing optional ones as null), ``node`` derived."""
    cols = {}
    for key in keys:
        if key == "node" and "node" not in df.columns:
            node = df["node_id"] if "node_id" in df.columns else None
            host = df["hostname"] if "hostname" in df.columns else None
            if node is None and host is None:
                cols[key] = pd.Series([None] * len(df), index=df.index, dtype=object)
            elif node is None:
                cols[key] = host
            elif host is None:
                cols[key] = node
            else:
                cols[key] = node.astype(object).where(node.notna(), host.astype(object))
        elif key in df.columns:
            cols[key] = df[key]
        else:
            cols[key] = pd.Series([None] * len(df), index=df.index, dtype=object)
    return pd.DataFrame(cols, index=df.index)


def _group_codes(frame: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Group number per row (0..G-1, in sorted key order) and the G distinct key rows."""
    grouped = frame.groupby(keys, dropna=False, observed=True, sort=True)
    codes = grouped.ngroup().to_numpy(dtype=np.int64)
    first = np.full(codes.max() + 1 if len(codes) else 0, -1, dtype=np.int64)
    # the first row of each group carries its key values
    rev = np.arange(len(codes) - 1, -1, -1)
    first[codes[rev]] = rev
    key_rows = frame.iloc[first][keys].reset_index(drop=True)
    for key in keys:  # categoricals would keep unused categories around in the output
        if isinstance(key_rows[key].dtype, pd.CategoricalDtype):
            key_rows[key] = key_rows[key].astype(key_rows[key].cat.categories.dtype)
    return codes, key_rows


class _Sorted:
    """Values sorted within their group: what medians, quantiles and the bootstrap need."""

    def __init__(self, codes: np.ndarray, values: np.ndarray, ngroups: int):
        order = np.lexsort((values, codes))
        self.x = values[order]
        self.c = codes[order]
        self.n = np.bincount(self.c, minlength=ngroups)
        self.start = np.concatenate(([0], np.cumsum(self.n)[:-1])).astype(np.int64)

    def quantile(self, q: float) -> np.ndarray:
        """Per-group quantile with linear interpolation (numpy's default method)."""
        n = self.n
        out = np.full(len(n), np.nan)
        has = n > 0
        pos = q * (n[has] - 1)
        lo = np.floor(pos).astype(np.int64)
        frac = pos - lo
        i = self.start[has] + lo
        j = np.minimum(i + 1, self.start[has] + n[has] - 1)
        out[has] = self.x[i] + frac * (self.x[j] - self.x[i])
        return out

    def median_ci(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Exact bootstrap percentile interval of each group's median (see the module doc)."""
        from scipy.special import betainc

        n, start, c = self.n, self.start, self.c
        lo = np.full(len(n), np.nan)
        hi = np.full(len(n), np.nan)
        if len(self.x) == 0:
            return lo, hi
        alpha = 1.0 - level
        nn = n[c].astype(np.float64)
        p = (np.arange(len(self.x)) - start[c] + 1) / nn  # k/n, k = 1..n within the group
        m_lo = np.floor((nn + 1) / 2)  # the median's rank (odd n) or the lower middle one
        m_hi = np.floor(nn / 2) + 1  # the median's rank (odd n) or the upper middle one
        cdf_lo = betainc(m_lo, nn - m_lo + 1, p)  # P(Binom(n, k/n) >= m) = I_{k/n}(m, n-m+1)
        cdf_hi = np.where(m_hi == m_lo, cdf_lo, betainc(m_hi, nn - m_hi + 1, p))
        # the CDF rises within a group, so the first k with CDF >= q sits after the count below q
        below_lo = np.bincount(c, weights=cdf_lo < alpha / 2, minlength=len(n)).astype(np.int64)
        below_hi = np.bincount(c, weights=cdf_hi < 1 - alpha / 2, minlength=len(n)).astype(np.int64)
        has = n > 0
        lo[has] = self.x[start[has] + below_lo[has]]
        hi[has] = self.x[start[has] + np.minimum(below_hi[has], n[has] - 1)]
        return lo, hi


def _sum_by(codes: np.ndarray, weights: np.ndarray, ngroups: int) -> np.ndarray:
    return np.bincount(codes, weights=weights, minlength=ngroups)


def _ratio_ci(
    num: np.ndarray,
    num_lo: np.ndarray,
    num_hi: np.ndarray,
    den: np.ndarray,
    den_lo: np.ndarray,
    den_hi: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``num/den`` and its interval from the two independent intervals, combined on the log scale."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = num / den
        down = np.sqrt(np.log(num / num_lo) ** 2 + np.log(den_hi / den) ** 2)
        up = np.sqrt(np.log(num_hi / num) ** 2 + np.log(den / den_lo) ** 2)
        return ratio, ratio * np.exp(-down), ratio * np.exp(up)


def _stats(codes: np.ndarray, df: pd.DataFrame, ngroups: int, level: float) -> dict[str, np.ndarray]:
    """Per-group timing statistics over the ``ok`` runs with a measured ``run_s``."""
    status = df["status"].to_numpy(dtype=object) if "status" in df.columns else np.full(len(df), "ok")
    run = df["run_s"].to_numpy(dtype=np.float64, na_value=np.nan)
    ok = (status == "ok") & np.isfinite(run)
    failed = (status == "failed") | (status == "timeout")
    skipped = status == "skipped"
    srt = _Sorted(codes[ok], run[ok], ngroups)
    n = srt.n
    out: dict[str, np.ndarray] = {
        "n": n,
        "failures": np.bincount(codes[failed], minlength=ngroups),
        "skipped": np.bincount(codes[skipped], minlength=ngroups),
    }
    med = srt.quantile(0.5)
    q1, q3 = srt.quantile(0.25), srt.quantile(0.75)
    ci_lo, ci_hi = srt.median_ci(level)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = _sum_by(srt.c, srt.x, ngroups) / n
        var = _sum_by(srt.c, (srt.x - mean[srt.c]) ** 2, ngroups) / (n - 1)
        cv = np.where(n > 1, np.sqrt(var) / mean, np.nan)
    out.update(median_s=med, q1_s=q1, q3_s=q3, iqr_s=q3 - q1, ci_low_s=ci_lo, ci_high_s=ci_hi, cv=cv)

    if "setup_s" in df.columns:
        setup = df["setup_s"].to_numpy(dtype=np.float64, na_value=np.nan)
        has = ok & np.isfinite(setup)
        out["setup_s"] = _Sorted(codes[has], setup[has], ngroups).quantile(0.5)
    else:
        out["setup_s"] = np.full(ngroups, np.nan)
    if "correct" in df.columns:
        correct = df["correct"]
        checked = ok & correct.notna().to_numpy()
        good = checked & (correct.to_numpy(dtype=object) == True)  # noqa: E712 (object array, nulls)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["correct_share"] = np.bincount(codes[good], minlength=ngroups) / np.bincount(
                codes[checked], minlength=ngroups
            )
    else:
        out["correct_share"] = np.full(ngroups, np.nan)
    return out


def summarize(
    df: pd.DataFrame | str | PathLike,
    *,
    level: float = 0.95,
    cv_threshold: float = 0.10,
    ci_threshold: float = 0.20,
) -> pd.DataFrame:
    """One row per (workload, tasks, size, backend, workers, start_method, python, node, affinity, options).

    Columns: the keys; ``n`` (ok runs), ``failures`` (failed + timeout), ``skipped``;
    ``median_s``, ``q1_s``, ``q3_s``, ``iqr_s``, ``ci_low_s``/``ci_high_s`` (exact bootstrap
    interval of the median at ``level``), ``cv``; ``setup_s`` (median); ``correct_share``
    (over runs whose answer could be checked); ``baseline_s`` (median of the sequential runs
    with the same workload, tasks, size, python and node; same affinity where one exists; on
    other nodes, flagged, where this node ran none);
    ``speedup`` with ``speedup_ci_low``/``speedup_ci_high``; ``efficiency`` (speedup/workers);
    ``karp_flatt`` (experimentally determined serial fraction, workers > 1); and the flags
    ``unstable`` (cv > ``cv_threshold`` or CI width > ``ci_threshold`` x median),
    ``superlinear`` (workers > 1 and the speedup's whole interval above ``workers``) and
    ``notes`` (every flag as text, with ``failures``, ``incorrect``, ``no runs``, ``no baseline``).

    ``df`` may also be a path to a store, read with ``conc_lab.load``.

    Example::

        >>> df = pd.DataFrame({"workload": "w", "tasks": 4, "size": 10, "status": "ok",
        ...                    "backend": ["sequential"] * 3 + ["threading"] * 3,
        ...                    "workers": [1, 1, 1, 2, 2, 2], "run_s": [2.0, 2.1, 1.9, 1.0, 1.1, 0.9]})
        >>> row = summarize(df).loc[1]
        >>> print(row.backend, row.median_s, row.speedup)
        threading 1.0 2.0
    """
    df = _as_frame(df)
    keyed = _keyed(df, GROUP_KEYS)
    if len(df) == 0:
        return pd.DataFrame(columns=GROUP_KEYS + SUMMARY_COLUMNS)
    codes, groups = _group_codes(keyed, GROUP_KEYS)
    ngroups = len(groups)
    stats = _stats(codes, df, ngroups, level)
    out = pd.concat([groups, pd.DataFrame(stats)], axis=1)

    # Baseline: the sequential runs of the same parameters, pooled over workers (sequential ignores them).
    backend = keyed["backend"].astype(object).to_numpy()
    seq = backend == SEQUENTIAL
    base = _baseline(df[seq], keyed[seq], level)
    # Within a cluster sweep (nodes named by Ray node id) a node that ran no sequential trial
    # borrows the other nodes' baseline, flagged; machines told apart by hostname never do.
    ray_nodes = df["node_id"].dropna().astype(object).unique() if "node_id" in df.columns else []
    out = _attach_baseline(out, base, cross_node_ok=out["node"].astype(object).isin(ray_nodes).to_numpy())

    speed, s_lo, s_hi = _ratio_ci(
        out["baseline_s"].to_numpy(),
        out["_b_lo"].to_numpy(),
        out["_b_hi"].to_numpy(),
        out["median_s"].to_numpy(),
        out["ci_low_s"].to_numpy(),
        out["ci_high_s"].to_numpy(),
    )
    # A sequential group that *is* its whole baseline has speedup 1 by definition, not a noisy ratio.
    is_base = (
        (out["backend"].astype(object) == SEQUENTIAL).to_numpy()
        & (out["n"].to_numpy() == out["_b_n"].to_numpy())
        & (out["median_s"].to_numpy() == out["baseline_s"].to_numpy())
    )
    s_lo = np.where(is_base, 1.0, s_lo)
    s_hi = np.where(is_base, 1.0, s_hi)
    workers = out["workers"].to_numpy(dtype=np.float64)
    out["speedup"] = speed
    out["speedup_ci_low"] = s_lo
    out["speedup_ci_high"] = s_hi
    out["efficiency"] = speed / workers
    with np.errstate(divide="ignore", invalid="ignore"):
        kf = (1.0 / speed - 1.0 / workers) / (1.0 - 1.0 / workers)
    out["karp_flatt"] = np.where(workers > 1, kf, np.nan)

    med = out["median_s"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ci_rel = (out["ci_high_s"].to_numpy() - out["ci_low_s"].to_numpy()) / med
    unstable = (np.nan_to_num(out["cv"].to_numpy()) > cv_threshold) | (np.nan_to_num(ci_rel) > ci_threshold)
    # Only beyond one worker: at workers=1 a "superlinear" threading run is noise against sequential.
    superlinear = (workers > 1) & (np.nan_to_num(s_lo) > workers)
    out["unstable"] = unstable
    out["superlinear"] = superlinear
    out["notes"] = _flags(
        {
            "no runs": out["n"].to_numpy() == 0,
            "failures": out["failures"].to_numpy() > 0,
            "incorrect": np.nan_to_num(out["correct_share"].to_numpy(), nan=1.0) < 1.0,
            "unstable": unstable,
            "superlinear": superlinear,
            "no baseline": ~np.isfinite(out["baseline_s"].to_numpy()) & (out["n"].to_numpy() > 0),
            "baseline from other nodes": out["_b_other_nodes"].to_numpy() & (out["n"].to_numpy() > 0),
        }
    )
    return _ordered(out[GROUP_KEYS + SUMMARY_COLUMNS])


#: Backends in the order a reader expects them: the baseline first, then by weight.
BACKEND_ORDER = {SEQUENTIAL: 0, "threading": 1, "multiprocessing": 2, "ray": 3}


def _ordered(frame: pd.DataFrame, keys: Sequence[str] = GROUP_KEYS) -> pd.DataFrame:
    """Rows sorted by the keys, with the backends in ``BACKEND_ORDER``."""
    arrays = []  # np.lexsort: the last array is the primary key
    for key in reversed(keys):
        codes, _ = pd.factorize(frame[key].astype(object).fillna(""), sort=True)
        arrays.append(codes)
        if key == "backend":
            rank = frame[key].astype(object).map(BACKEND_ORDER).fillna(len(BACKEND_ORDER))
            arrays.append(rank.to_numpy())
    return frame.iloc[np.lexsort(arrays)].reset_index(drop=True)


SUMMARY_COLUMNS = [
    "n",
    "failures",
    "skipped",
    "median_s",
    "q1_s",
    "q3_s",
    "iqr_s",
    "ci_low_s",
    "ci_high_s",
    "cv",
    "setup_s",
    "correct_share",
    "baseline_s",
    "speedup",
    "speedup_ci_low",
    "speedup_ci_high",
    "efficiency",
    "karp_flatt",
    "unstable",
    "superlinear",
    "notes",
]


def _baseline(seq_df: pd.DataFrame, seq_keyed: pd.DataFrame, level: float) -> dict[str, pd.DataFrame]:
    """Median and CI of the pooled sequential runs, keyed with and without affinity."""
    found = {}
    for name, keys in (
        ("exact", BASELINE_KEYS + ["affinity"]),
        ("any", BASELINE_KEYS),
        ("nodes", CROSS_NODE_KEYS),
    ):
        if len(seq_df) == 0:
            found[name] = None
            continue
        codes, groups = _group_codes(seq_keyed, keys)
        st = _stats(codes, seq_df, len(groups), level)
        groups["_b_med"] = st["median_s"]
        groups["_b_lo"] = st["ci_low_s"]
        groups["_b_hi"] = st["ci_high_s"]
        groups["_b_n"] = st["n"]
        found[name] = groups
    return found


def _join_key(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    # nulls and categoricals both become plain strings, so that keys compare reliably
    parts = [frame[k].astype(object).where(frame[k].notna(), "\x00").astype(str) for k in keys]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + "\x1f" + part
    return joined


def _match(left: pd.DataFrame, right: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """For each row of ``left``, the row of ``right`` (unique keys) with equal ``keys``, else -1; nulls match nulls."""
    both = pd.concat([left[keys].astype(object), right[keys].astype(object)], ignore_index=True)
    codes = both.groupby(keys, dropna=False, sort=False).ngroup().to_numpy()
    lookup = np.full(codes.max() + 1 if len(codes) else 0, -1, dtype=np.int64)
    lookup[codes[len(left) :]] = np.arange(len(right))
    return lookup[codes[: len(left)]]


def _attach_baseline(
    out: pd.DataFrame, base: dict[str, pd.DataFrame | None], cross_node_ok: np.ndarray
) -> pd.DataFrame:
    cols = ["_b_med", "_b_lo", "_b_hi", "_b_n"]
    vals = {c: np.full(len(out), np.nan) for c in cols}
    other_nodes = np.zeros(len(out), dtype=bool)
    # Each level overrides the one before where it has a match: the closest baseline wins.
    for name, keys in (
        ("nodes", CROSS_NODE_KEYS),
        ("any", BASELINE_KEYS),
        ("exact", BASELINE_KEYS + ["affinity"]),
    ):
        groups = base[name]
        if groups is None:
            continue
        idx = _match(out, groups, keys)
        hit = (idx >= 0) & (cross_node_ok if name == "nodes" else True)
        other_nodes = np.where(hit, name == "nodes", other_nodes)
        for c in cols:
            vals[c][hit] = groups[c].to_numpy(dtype=np.float64)[idx[hit]]
    out = out.assign(**vals, _b_other_nodes=other_nodes)
    return out.rename(columns={"_b_med": "baseline_s"})


def _flags(conds: dict[str, np.ndarray]) -> np.ndarray:
    n = len(next(iter(conds.values())))
    text = np.full(n, "", dtype=object)
    for label, cond in conds.items():
        sep = np.where(text == "", "", ", ")
        text = np.where(cond, text + sep + label, text)
    return text


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
    codes, groups = _group_codes(s[keys].astype(object), keys)
    g = len(groups)
    p = s["workers"].to_numpy(dtype=np.float64)
    speed = s["speedup"].to_numpy(dtype=np.float64)
    a = 1.0 - 1.0 / p
    y = 1.0 / speed - 1.0 / p
    with np.errstate(divide="ignore", invalid="ignore"):
        f = _sum_by(codes, a * y, g) / _sum_by(codes, a * a, g)
        fitted = 1.0 / (f[codes] + (1.0 - f[codes]) / p)
        rmse = np.sqrt(_sum_by(codes, (fitted - speed) ** 2, g) / np.bincount(codes, minlength=g))
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


def compare(
    a: pd.DataFrame | str | PathLike,
    b: pd.DataFrame | str | PathLike,
    *,
    keys: Sequence[str] = COMPARE_KEYS,
    alpha: float = 0.05,
    level: float = 0.95,
) -> pd.DataFrame:
    """Match two result sets trial by trial and say what really changed from ``a`` to ``b``.

    One row per trial parameter set (``keys``) in either set: ``n_a``/``n_b``,
    ``median_a``/``median_b``, ``ratio`` (``median_b / median_a``: below 1 means ``b`` is
    faster) with ``ratio_ci_low``/``ratio_ci_high``, the two-sided Mann–Whitney U
    ``p_value`` (exact for small samples without ties), ``q_value`` (Benjamini–Hochberg, since
    many trials are compared at once), ``significant`` (``q_value < alpha``) and ``change``:
    ``faster``, ``slower``, ``same``, ``only in a`` or ``only in b``. Failures and the correct
    share of each side are carried along. With 3 runs a side no difference can reach
    p < 0.05 (the smallest exact p is 0.1): more repeats buy power.

    ``a`` and ``b`` are DataFrames or paths to stores.

    Example::

        >>> a = pd.DataFrame({"workload": "w", "backend": "threading", "workers": 2, "tasks": 4,
        ...                   "size": 1, "status": "ok", "run_s": [1.0, 1.1, 0.9, 1.05, 0.95]})
        >>> b = a.assign(run_s=a.run_s / 2)
        >>> row = compare(a, b).loc[0]
        >>> print(row.ratio, row.change)
        0.5 faster
    """
    keys = list(keys)
    sides = {}
    for name, data in (("a", _as_frame(a)), ("b", _as_frame(b))):
        if len(data) == 0:
            raise ValueError(f"compare needs runs on both sides: {name} is empty")
        codes, groups = _group_codes(_keyed(data, keys), keys)
        st = _stats(codes, data, len(groups), level)
        for col in ("n", "failures", "correct_share"):
            groups[f"{col}_{name}"] = st[col]
        groups[f"median_{name}"] = st["median_s"]
        groups[f"_lo_{name}"] = st["ci_low_s"]
        groups[f"_hi_{name}"] = st["ci_high_s"]
        groups["_key"] = _join_key(groups, keys)
        status = (
            data["status"].to_numpy(dtype=object) if "status" in data.columns else np.full(len(data), "ok")
        )
        run = data["run_s"].to_numpy(dtype=np.float64, na_value=np.nan)
        ok = (status == "ok") & np.isfinite(run)
        sides[name] = (groups, codes[ok], run[ok])
    ga, gb = sides["a"][0], sides["b"][0]
    merged = ga.set_index("_key").join(gb.drop(columns=keys).set_index("_key"), how="outer")
    only_b = pd.Index(ga["_key"]).get_indexer(merged.index) < 0  # (Index.isin on strings is slow)
    if only_b.any():  # their keys live on b's side of the join
        merged.loc[only_b, keys] = gb.set_index("_key").loc[merged.index[only_b], keys].to_numpy()
    position = pd.Index(merged.index)
    merged = merged.reset_index(drop=True)

    ratio, r_lo, r_hi = _ratio_ci(
        merged["median_b"].to_numpy(dtype=np.float64),
        merged["_lo_b"].to_numpy(dtype=np.float64),
        merged["_hi_b"].to_numpy(dtype=np.float64),
        merged["median_a"].to_numpy(dtype=np.float64),
        merged["_lo_a"].to_numpy(dtype=np.float64),
        merged["_hi_a"].to_numpy(dtype=np.float64),
    )
    # every ok run, numbered by its row in the merged table, for one vectorised rank test
    row_a = position.get_indexer(ga["_key"])[sides["a"][1]]
    row_b = position.get_indexer(gb["_key"])[sides["b"][1]]
    pvals = mann_whitney_p(
        np.concatenate([row_a, row_b]),
        np.concatenate([sides["a"][2], sides["b"][2]]),
        np.concatenate([np.zeros(len(row_a), bool), np.ones(len(row_b), bool)]),
        len(merged),
    )
    qvals = _benjamini_hochberg(pvals)
    significant = np.nan_to_num(qvals, nan=1.0) < alpha
    in_a = merged["median_a"].notna() | merged["n_a"].notna()
    in_b = merged["median_b"].notna() | merged["n_b"].notna()
    change = np.where(significant, np.where(ratio < 1, "faster", "slower"), "same").astype(object)
    change = np.where(~in_b.to_numpy(), "only in a", change)
    change = np.where(~in_a.to_numpy(), "only in b", change)
    merged["ratio"] = ratio
    merged["ratio_ci_low"] = r_lo
    merged["ratio_ci_high"] = r_hi
    merged["p_value"] = pvals
    merged["q_value"] = qvals
    merged["significant"] = significant
    merged["change"] = change
    for col in ("n_a", "n_b", "failures_a", "failures_b"):
        merged[col] = merged[col].fillna(0).astype(np.int64)
    cols = keys + [
        "n_a",
        "n_b",
        "failures_a",
        "failures_b",
        "median_a",
        "median_b",
        "ratio",
        "ratio_ci_low",
        "ratio_ci_high",
        "p_value",
        "q_value",
        "significant",
        "change",
        "correct_share_a",
        "correct_share_b",
    ]
    return _ordered(merged[cols], keys)


def compare_verdict(result: pd.DataFrame, alpha: float = 0.05) -> str:
    """One line that says what changed in a ``compare`` result.

    Example::

        >>> compare_verdict(pd.DataFrame({"change": ["faster", "same"], "ratio": [0.5, 1.0]}))
        '1 faster, 1 same; geometric mean of b/a over 2 matched trials: 0.707'
    """
    counts = result["change"].value_counts()
    order = ["faster", "slower", "same", "only in a", "only in b"]
    parts = [f"{int(counts[c])} {c}" for c in order if c in counts.index]
    ratio = result["ratio"].to_numpy(dtype=np.float64)
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
    line = ", ".join(parts) or "nothing to compare"
    if len(ratio):
        line += (
            f"; geometric mean of b/a over {len(ratio)} matched trials: {np.exp(np.log(ratio).mean()):.3g}"
        )
    if "n_a" in result.columns and "n_b" in result.columns:
        from scipy.special import comb

        n_a, n_b = result["n_a"].to_numpy(dtype=float), result["n_b"].to_numpy(dtype=float)
        matched = (n_a > 0) & (n_b > 0)
        # the smallest two-sided p the rank test can give is 2 / C(n_a + n_b, n_a)
        powerless = matched & (2 / comb(n_a + n_b, n_a) >= alpha)
        if powerless.any():
            line += (
                f"; {int(powerless.sum())} trial(s) have too few runs for any change to reach p < {alpha:g}"
                " (more repeats help)"
            )
    return line


def _exact_u_sf(n1: int, n2: int) -> np.ndarray:
    """``P(U >= u)`` for u = 0..n1*n2 under H0, no ties: counts of rank arrangements by U."""
    # counts[m][n] as polynomials in u: f(m, n) = f(m-1, n) shifted by n + f(m, n-1)
    table = [[np.ones(1)] * (n2 + 1)]
    for m in range(1, n1 + 1):
        row = [np.ones(1)]
        for n in range(1, n2 + 1):
            f = np.zeros(m * n + 1)
            left = table[m - 1][n]
            f[n : n + len(left)] += left
            up = row[n - 1]
            f[: len(up)] += up
            row.append(f)
        table.append(row)
    counts = table[n1][n2]
    return np.cumsum(counts[::-1])[::-1] / counts.sum()


_EXACT_MAX = 8  # as scipy's method="auto": exact when a side is this small and there are no ties
_EXACT_CAP = 1000  # ... and (our limit, for the cost of the exact table) the other side at most this


def mann_whitney_p(group: np.ndarray, values: np.ndarray, is_b: np.ndarray, ngroups: int) -> np.ndarray:
    """Two-sided Mann–Whitney U p-value per group, vectorised over groups.

    Matches ``scipy.stats.mannwhitneyu(a, b, method="auto")``: the exact distribution when
    a sample has at most 8 values (the other at most 1000) and there are no ties, else the
    normal approximation with tie and continuity corrections. NaN where a side has no values; 1 where all values are equal.

    Example::

        >>> mann_whitney_p(np.zeros(6, int), np.arange(6.0), np.array([0, 0, 0, 1, 1, 1], bool), 1)
        array([0.1])
    """
    from scipy.special import ndtr

    order = np.lexsort((values, group))
    g, x, b = group[order], values[order], is_b[order]
    n = np.bincount(g, minlength=ngroups).astype(np.float64)
    n2 = np.bincount(g[b], minlength=ngroups).astype(np.float64)
    n1 = n - n2
    start = np.concatenate(([0], np.cumsum(n)[:-1])).astype(np.int64)
    # tie blocks: runs of equal (group, value); each gets the average of its ranks
    new_block = np.ones(len(x), bool)
    new_block[1:] = (g[1:] != g[:-1]) | (x[1:] != x[:-1])
    block = np.cumsum(new_block) - 1
    block_start = np.flatnonzero(new_block)
    t = np.diff(np.append(block_start, len(x))).astype(np.float64)
    first_rank = block_start - start[g[block_start]] + 1
    avg_rank = (first_rank + (t - 1) / 2)[block]
    r2 = np.bincount(g[b], weights=avg_rank[b], minlength=ngroups)
    u2 = r2 - n2 * (n2 + 1) / 2
    u1 = n1 * n2 - u2
    big_u = np.maximum(u1, u2)
    ties = np.bincount(g[block_start], weights=t**3 - t, minlength=ngroups)
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = np.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
        p = 2 * ndtr(-(big_u - n1 * n2 / 2 - 0.5) / sd)
    small, large = np.minimum(n1, n2), np.maximum(n1, n2)
    exact = (small <= _EXACT_MAX) & (large <= _EXACT_CAP) & (ties == 0) & (small > 0)
    cache: dict[tuple[int, int], np.ndarray] = {}
    for i in np.flatnonzero(exact):
        pair = (int(small[i]), int(large[i]))  # U's null distribution is symmetric in (n1, n2)
        if pair not in cache:
            cache[pair] = _exact_u_sf(*pair)
        p[i] = 2 * cache[pair][int(round(big_u[i]))]
    p = np.where(sd == 0, 1.0, p)  # every value equal: no evidence of any change
    p = np.where((n1 == 0) | (n2 == 0), np.nan, p)
    return np.clip(p, 0.0, 1.0)


def _benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values); NaN stays NaN and is not counted."""
    q = np.full(len(p), np.nan)
    has = np.isfinite(p)
    m = int(has.sum())
    if m == 0:
        return q
    ps = p[has]
    order = np.argsort(ps)
    ranked = ps[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    adj = np.empty(m)
    adj[order] = np.minimum(ranked, 1.0)
    q[has] = adj
    return q


# --- interpreters side by side --------------------------------------------------------------------


def interpreter_labels(df: pd.DataFrame) -> dict:
    """Each ``python`` value of ``df`` -> what ran it: ``3.12.1``, ``3.13.5t`` (free-threaded),
    ``3.13.5t+GIL`` (free-threaded build that ran with the GIL on), from the rows' own facts.

    Example::

        >>> interpreter_labels(pd.DataFrame({"python": ["3.12", None], "python_version": ["3.12.1", "3.11.7"],
        ...                                  "free_threaded": [False, False], "gil_enabled": [True, True]}))
        {None: '3.11.7', '3.12': '3.12.1'}
    """
    if "python_version" not in df.columns or len(df) == 0:
        return {}
    facts = _keyed(df, ["python"]).astype(object)
    facts = facts.where(facts.notna(), None)
    for col in ("python_version", "free_threaded", "gil_enabled"):
        facts[col] = df[col].astype(object).to_numpy() if col in df.columns else None
    facts = facts[facts["python_version"].notna()]
    labels: dict = {}
    for python, rows in facts.groupby("python", dropna=False, sort=False):
        python = None if python is None or python != python else python
        row = rows.iloc[0]
        label = str(row["python_version"])
        if row["free_threaded"] is True:
            label += "t" + ("+GIL" if rows["gil_enabled"].eq(True).any() else "")
        labels[python] = label
    clash = pd.Series(labels).duplicated(keep=False)
    for python in clash[clash].index:  # e.g. "python3.11" and the default both ran 3.11.7
        labels[python] += f" ({python or 'default'})"
    return dict(sorted(labels.items(), key=lambda kv: _version_order(kv[1])))


def _version_order(label: str) -> tuple:
    nums = label.split(" ")[0].rstrip("t+GIL").split(".")
    return (tuple(int(n) if n.isdigit() else 0 for n in nums), label)


def by_interpreter(
    df: pd.DataFrame, summary: pd.DataFrame | None = None, value: str = "speedup"
) -> pd.DataFrame:
    """``value`` (a ``summarize`` column) per parameter set, one column per interpreter, oldest first.

    Rows are the non-sequential backends; key columns that do not vary are left out.

    Example::

        >>> df = pd.DataFrame({"workload": "w", "tasks": 2, "size": 9, "status": "ok", "workers": [1, 2, 1, 2],
        ...     "backend": ["sequential", "threading"] * 2, "run_s": [2.0, 1.0, 2.0, 2.0],
        ...     "python": ["3.13t", "3.13t", "3.12", "3.12"], "python_version": ["3.13.5"] * 2 + ["3.12.1"] * 2,
        ...     "free_threaded": [True, True, False, False], "gil_enabled": [False, False, True, True]})
        >>> by_interpreter(df)[["3.12.1", "3.13.5t"]].to_numpy().tolist()
        [[1.0, 2.0]]
    """
    summary = summarize(df) if summary is None else summary
    labels = interpreter_labels(df)
    part = summary[summary["backend"].astype(object) != SEQUENTIAL]
    python = part["python"].astype(object)
    part = part.assign(_interp=python.where(python.notna(), None).map(lambda p: labels.get(p, str(p))))
    keys = [k for k in GROUP_KEYS if k != "python"]
    keys = [
        k for k in keys if k in ("workload", "backend", "workers") or part[k].astype(object).nunique() > 1
    ]
    if len(part) == 0:
        return pd.DataFrame(columns=keys + list(labels.values()))
    # null keys (start_method of threading) as "-": a pivot would drop their rows
    part = part.assign(**{k: part[k].astype(object).where(part[k].notna(), "-") for k in keys})
    wide = part.pivot_table(
        index=keys, columns="_interp", values=value, aggfunc="first", dropna=False, observed=True
    )
    order = [lab for lab in labels.values() if lab in wide.columns]
    wide = wide.reindex(columns=order).dropna(how="all").reset_index()
    wide.columns.name = None
    rank = wide["backend"].astype(object).map(BACKEND_ORDER).fillna(len(BACKEND_ORDER))
    return (
        wide.assign(_rank=rank)
        .sort_values(["_rank" if k == "backend" else k for k in keys])  # sizes first, then backends
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


# --- rendering -----------------------------------------------------------------------------------

#: Columns shown in the human table, in order; optional keys appear only where they vary.
_OPTIONAL_KEYS = ["start_method", "python", "node", "affinity", "options"]


def _fmt_time(x: float) -> str:
    if not np.isfinite(x):
        return "-"
    if x == 0:
        return "0"
    if x >= 1:
        return f"{x:.3g} s"
    if x >= 1e-3:
        return f"{x * 1e3:.3g} ms"
    return f"{x * 1e6:.3g} µs"


def _fmt_num(x: float, spec: str = ".2f") -> str:
    return "-" if x is None or not np.isfinite(x) else format(x, spec)


def _display(summary: pd.DataFrame) -> pd.DataFrame:
    """A compact, human-formatted copy of a summary (or compare) table."""
    if "ratio" in summary.columns:
        return _display_compare(summary)
    keys = [k for k in GROUP_KEYS if k not in _OPTIONAL_KEYS]
    keys += [
        k
        for k in _OPTIONAL_KEYS
        if k in summary.columns and summary[k].astype(object).nunique(dropna=False) > 1
    ]
    out = summary[keys].astype(object).where(summary[keys].notna(), "-").copy()
    out["n"] = summary["n"]
    out["fail"] = summary["failures"]
    out["median"] = [_fmt_time(x) for x in summary["median_s"]]
    out["95% CI"] = [
        f"{_fmt_time(lo)} – {_fmt_time(hi)}"
        for lo, hi in zip(summary["ci_low_s"], summary["ci_high_s"], strict=True)
    ]
    out["IQR"] = [_fmt_time(x) for x in summary["iqr_s"]]
    out["speedup"] = [
        f"{_fmt_num(s)} ({_fmt_num(lo)}–{_fmt_num(hi)})"
        for s, lo, hi in zip(
            summary["speedup"], summary["speedup_ci_low"], summary["speedup_ci_high"], strict=True
        )
    ]
    out["eff"] = [_fmt_num(x) for x in summary["efficiency"]]
    out["setup"] = [_fmt_time(x) for x in summary["setup_s"]]
    out["correct"] = [
        _fmt_num(x * 100, ".0f") + ("%" if np.isfinite(x) else "") for x in summary["correct_share"]
    ]
    out["notes"] = summary["notes"]
    return out.reset_index(drop=True)


def _display_compare(cmp: pd.DataFrame) -> pd.DataFrame:
    keys = [k for k in COMPARE_KEYS if k in cmp.columns]
    keys = [k for k in keys if k not in _OPTIONAL_KEYS or cmp[k].astype(object).nunique(dropna=False) > 1]
    out = cmp[keys].astype(object).where(cmp[keys].notna(), "-").copy()
    out["n a/b"] = [f"{a}/{b}" for a, b in zip(cmp["n_a"], cmp["n_b"], strict=True)]
    out["median a"] = [_fmt_time(x) for x in cmp["median_a"]]
    out["median b"] = [_fmt_time(x) for x in cmp["median_b"]]
    out["b/a"] = [
        f"{_fmt_num(r, '.3f')} ({_fmt_num(lo, '.3f')}–{_fmt_num(hi, '.3f')})"
        for r, lo, hi in zip(cmp["ratio"], cmp["ratio_ci_low"], cmp["ratio_ci_high"], strict=True)
    ]
    out["p"] = [_fmt_num(x, ".3g") for x in cmp["p_value"]]
    out["q"] = [_fmt_num(x, ".3g") for x in cmp["q_value"]]
    out["change"] = cmp["change"]
    return out.reset_index(drop=True)


def _jsonable(frame: pd.DataFrame) -> list[dict]:
    records = []
    for row in frame.astype(object).to_dict(orient="records"):
        clean = {}
        for k, v in row.items():
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            elif v is pd.NA or v is pd.NaT:
                v = None
            elif isinstance(v, np.generic):
                v = v.item()
            clean[k] = v
        records.append(clean)
    return records


FORMATS = ("table", "csv", "markdown", "json")


def render(frame: pd.DataFrame, fmt: str = "table", *, color: bool = False, width: int | None = None) -> str:
    """Render a ``summarize`` or ``compare`` result as text: ``table``, ``csv``, ``markdown`` or ``json``.

    ``table`` is a rich table for people (optional keys shown only where they vary, times
    with units); ``csv`` and ``json`` carry every column, unformatted, for scripts;
    ``markdown`` is the people's table as a GitHub-flavoured Markdown table.

    Example::

        >>> print(render(pd.DataFrame({"a": [1]}), "csv"), end="")
        a
        1
    """
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        return json.dumps(_jsonable(frame), indent=1, default=str) + "\n"
    is_result = "ratio" in frame.columns or "median_s" in frame.columns
    shown = _display(frame) if is_result else frame.astype(object).where(frame.notna(), "-")
    if fmt == "markdown":
        cols = [str(c) for c in shown.columns]

        def cell(v: object) -> str:
            return str(v).replace("|", "\\|").replace("\n", " ")

        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
        return "\n".join(lines) + "\n"
    if fmt == "table":
        from rich.console import Console
        from rich.table import Table

        table = Table(show_lines=False, header_style="bold")
        numeric = {
            "n",
            "fail",
            "median",
            "95% CI",
            "IQR",
            "speedup",
            "eff",
            "setup",
            "correct",
            "tasks",
            "size",
        }
        for col in shown.columns:
            table.add_column(str(col), justify="right" if col in numeric or col == "workers" else "left")
        for row in shown.itertuples(index=False):
            table.add_row(*(str(v) for v in row))
        buf = io.StringIO()
        Console(
            file=buf, width=width or 200, force_terminal=color, color_system="auto" if color else None
        ).print(table)
        text = buf.getvalue()
        return text if text.endswith("\n") else text + "\n"
    raise ValueError(f"unknown format {fmt!r}: use table, csv, markdown or json")

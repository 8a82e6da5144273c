"""Order statistics, confidence intervals and rank tests, vectorised over groups of runs.

Nothing here knows about trials or prints anything: it takes group numbers and values
(numpy arrays) and returns per-group figures, so a million runs take a few seconds.

Why these statistics:

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
* A ratio's interval (speedup, before/after) combines the two medians' intervals on the log
  scale (their asymmetric half-widths added in quadrature): the two samples are independent.
* Two samples are compared with the two-sided Mann–Whitney U test (no normality assumed),
  and many comparisons at once are corrected with Benjamini–Hochberg.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from conc_lab import schema


def group_codes(frame: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Group number per row (0..G-1, in sorted key order) and the G distinct key rows.

    Example::

        >>> codes, groups = group_codes(pd.DataFrame({"k": ["b", "a", "b"]}), ["k"])
        >>> codes.tolist(), groups.k.tolist()
        ([1, 0, 1], ['a', 'b'])
    """
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


def distinct_per_group(codes: np.ndarray, values: np.ndarray, ngroups: int) -> np.ndarray:
    """How many distinct ``values`` each group has.

    Example::

        >>> distinct_per_group(np.array([0, 0, 0, 1]), np.array([2.0, 2.0, 3.0, 2.0]), 2).tolist()
        [2, 1]
    """
    vcodes, uniques = pd.factorize(values)
    pairs = np.unique(codes.astype(np.int64) * max(len(uniques), 1) + vcodes)
    return np.bincount(pairs // max(len(uniques), 1), minlength=ngroups)


def sum_by(codes: np.ndarray, weights: np.ndarray, ngroups: int) -> np.ndarray:
    """Sum of ``weights`` per group.

    Example::

        >>> sum_by(np.array([0, 1, 1]), np.array([1.0, 2.0, 3.0]), 3).tolist()
        [1.0, 5.0, 0.0]
    """
    return np.bincount(codes, weights=weights, minlength=ngroups)


#: Fewer runs than this (on either side of a ratio, or pairs behind a paired one) give no interval:
#: one run's "interval" is that run twice, a precision no run gave.
MIN_RUNS_FOR_INTERVAL = 2


def too_few_runs(*counts: np.ndarray) -> np.ndarray:
    """Where any of ``counts`` (runs per group, one array per side) is some runs but fewer than an
    interval needs; none (0) or unknown (NaN) is not "too few" (it is "no runs", "no baseline").

    Example::

        >>> too_few_runs(np.array([1, 3, 3, 0]), np.array([3.0, 1.0, 3.0, np.nan])).tolist()
        [True, True, False, False]
    """
    found = np.zeros(np.broadcast(*counts).shape, dtype=bool)
    for count in counts:
        count = np.asarray(count, dtype=np.float64)
        found |= (count >= 1) & (count < MIN_RUNS_FOR_INTERVAL)
    return found


def too_few_for_interval(runs: int) -> str:
    """Why a number resting on ``runs`` runs has no interval, in the words every command uses.

    >>> too_few_for_interval(1)
    '1 run: too few for an interval'
    """
    return f"{runs} run{'s' * (runs != 1)}: too few for an interval"


class SortedGroups:
    """Values sorted within their group: what medians, quantiles and the bootstrap need.

    Example::

        >>> s = SortedGroups(np.array([0, 0, 0, 1]), np.array([3.0, 1.0, 2.0, 5.0]), 2)
        >>> s.quantile(0.5).tolist(), s.n.tolist()
        ([2.0, 5.0], [3, 1])
    """

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
        """Exact bootstrap percentile interval of each group's median (see the module doc); NaN for a
        group of one value, which says nothing of its spread (its bootstrap is that value alone).

        Example::

            >>> SortedGroups(np.array([0, 1, 1]), np.array([1.0, 2.0, 3.0]), 2).median_ci()
            (array([nan,  2.]), array([nan,  3.]))
        """
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
        cdf_lo = binomial_tail(m_lo, nn, p)
        cdf_hi = np.where(m_hi == m_lo, cdf_lo, binomial_tail(m_hi, nn, p))
        # the CDF rises within a group, so the first k with CDF >= q sits after the count below q
        below_lo = np.bincount(c, weights=cdf_lo < alpha / 2, minlength=len(n)).astype(np.int64)
        below_hi = np.bincount(c, weights=cdf_hi < 1 - alpha / 2, minlength=len(n)).astype(np.int64)
        has = n >= MIN_RUNS_FOR_INTERVAL
        lo[has] = self.x[start[has] + below_lo[has]]
        hi[has] = self.x[start[has] + np.minimum(below_hi[has], n[has] - 1)]
        return lo, hi


#: Groups of up to this many runs get their binomial tails summed here, in numpy: scipy.special,
#: which has them too, costs 0.36 s to import, more than the rest of a small sweep's summary.
_TABLE_MAX_N = 400


def binomial_tail(m: np.ndarray, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """P(Binom(n, p) >= m), elementwise (= the regularized incomplete beta I_p(m, n-m+1)).

    Example::

        >>> binomial_tail(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 3.0]), np.array([0.5, 0.5, 1.0])).tolist()
        [0.75, 0.25, 1.0]
    """
    out = np.empty(len(p))
    for size in np.unique(n):
        at = n == size
        if size > _TABLE_MAX_N:  # a table of size**2 would cost more than the import
            from scipy.special import betainc

            out[at] = betainc(m[at], size - m[at] + 1, p[at])
            continue
        k = int(size)
        j = np.arange(k + 1, dtype=np.float64)
        log_fact = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, k + 1)))))
        log_choose = log_fact[k] - log_fact[: k + 1] - log_fact[k::-1]
        q = p[at][:, None]
        with np.errstate(divide="ignore", invalid="ignore"):  # p of 0 or 1: a term of 0 * log 0 is 0
            log_p = np.where(j == 0, 0.0, j * np.log(q))
            log_q = np.where(j == k, 0.0, (k - j) * np.log1p(-q))
        pmf = np.exp(log_choose + log_p + log_q)
        out[at] = np.where(j >= m[at][:, None], pmf, 0.0).sum(axis=1).clip(0.0, 1.0)
    return out


def ratio_ci(
    num: np.ndarray,
    num_lo: np.ndarray,
    num_hi: np.ndarray,
    den: np.ndarray,
    den_lo: np.ndarray,
    den_hi: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``num/den`` and its interval from the two independent intervals, combined on the log scale.

    Example::

        >>> one = np.array([1.0])
        >>> [x.tolist() for x in ratio_ci(2 * one, 2 * one, 2 * one, one, one, one)]
        [[2.0], [2.0], [2.0]]
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = num / den
        down = np.sqrt(np.log(num / num_lo) ** 2 + np.log(den_hi / den) ** 2)
        up = np.sqrt(np.log(num_hi / num) ** 2 + np.log(den / den_lo) ** 2)
        return ratio, ratio * np.exp(-down), ratio * np.exp(up)


def ok_runs(df: pd.DataFrame) -> np.ndarray:
    """Rows that are ``ok`` runs with a measured ``run_s`` (a frame without ``status`` is all ok)."""
    status = df["status"].to_numpy(dtype=object) if "status" in df.columns else np.full(len(df), schema.OK)
    run = df["run_s"].to_numpy(dtype=np.float64, na_value=np.nan)
    return (status == schema.OK) & np.isfinite(run)


def run_stats(codes: np.ndarray, df: pd.DataFrame, ngroups: int, level: float) -> dict[str, np.ndarray]:
    """Per-group timing statistics over the ``ok`` runs with a measured ``run_s``.

    Keys: ``n``, ``failures`` (failed + timeout), ``skipped``, ``median_s``, ``q1_s``, ``q3_s``,
    ``iqr_s``, ``ci_low_s``, ``ci_high_s``, ``cv``, ``setup_s`` (median), ``correct_share``.

    Example::

        >>> df = pd.DataFrame({"run_s": [1.0, 2.0, 3.0, 9.0], "status": ["ok", "ok", "ok", "failed"]})
        >>> st = run_stats(np.zeros(4, np.int64), df, 1, 0.95)
        >>> st["n"].tolist(), st["failures"].tolist(), st["median_s"].tolist()
        ([3], [1], [2.0])
        >>> run_stats(np.zeros(1, np.int64), df.head(1), 1, 0.95)["iqr_s"].tolist()  # one run: no spread
        [nan]
    """
    status = df["status"].to_numpy(dtype=object) if "status" in df.columns else np.full(len(df), schema.OK)
    run = df["run_s"].to_numpy(dtype=np.float64, na_value=np.nan)
    ok = ok_runs(df)
    srt = SortedGroups(codes[ok], run[ok], ngroups)
    n = srt.n
    q1, q3 = srt.quantile(0.25), srt.quantile(0.75)
    ci_lo, ci_hi = srt.median_ci(level)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = sum_by(srt.c, srt.x, ngroups) / n
        var = sum_by(srt.c, (srt.x - mean[srt.c]) ** 2, ngroups) / (n - 1)
        cv = np.where(n > 1, np.sqrt(var) / mean, np.nan)
    return {
        "n": n,
        "failures": np.bincount(codes[np.isin(status, schema.FAILURES)], minlength=ngroups),
        "skipped": np.bincount(codes[status == schema.SKIPPED], minlength=ngroups),
        "median_s": srt.quantile(0.5),
        "q1_s": q1,
        "q3_s": q3,
        "iqr_s": np.where(n > 1, q3 - q1, np.nan),  # one run has no spread to tell (was "0 s")
        "ci_low_s": ci_lo,
        "ci_high_s": ci_hi,
        "cv": cv,
        "setup_s": median_of(df, "setup_s", codes, ok, ngroups),
        "correct_share": _correct_share(df, codes, ok, ngroups),
    }


def median_of(df: pd.DataFrame, column: str, codes: np.ndarray, rows: np.ndarray, ngroups: int) -> np.ndarray:
    """Per-group median of ``column`` over ``rows`` where it is finite; NaN without the column.

    Example::

        >>> median_of(pd.DataFrame({"x": [1.0, 3.0]}), "x", np.zeros(2, np.int64), np.ones(2, bool), 1)
        array([2.])
    """
    if column not in df.columns:
        return np.full(ngroups, np.nan)
    values = df[column].to_numpy(dtype=np.float64, na_value=np.nan)
    has = rows & np.isfinite(values)
    return SortedGroups(codes[has], values[has], ngroups).quantile(0.5)


def _correct_share(df: pd.DataFrame, codes: np.ndarray, ok: np.ndarray, ngroups: int) -> np.ndarray:
    if "correct" not in df.columns:
        return np.full(ngroups, np.nan)
    correct = df["correct"]
    checked = ok & correct.notna().to_numpy()
    # bool, object with None, or pandas' nullable boolean (what load gives): null counts as not good
    good = checked & correct.astype("boolean").fillna(False).to_numpy(dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.bincount(codes[good], minlength=ngroups) / np.bincount(codes[checked], minlength=ngroups)


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


def _rank_sums(
    group: np.ndarray, values: np.ndarray, is_b: np.ndarray, ngroups: int
) -> dict[str, np.ndarray]:
    """Per group: sizes, b's U statistic and the tie correction term (ties get average ranks)."""
    order = np.lexsort((values, group))
    g, x, b = group[order], values[order], is_b[order]
    n = np.bincount(g, minlength=ngroups).astype(np.float64)
    n2 = np.bincount(g[b], minlength=ngroups).astype(np.float64)
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
    ties = np.bincount(g[block_start], weights=t**3 - t, minlength=ngroups)
    return {"n": n, "n1": n - n2, "n2": n2, "u2": r2 - n2 * (n2 + 1) / 2, "ties": ties}


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

    r = _rank_sums(group, values, is_b, ngroups)
    n, n1, n2, ties = r["n"], r["n1"], r["n2"], r["ties"]
    big_u = np.maximum(n1 * n2 - r["u2"], r["u2"])
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


def min_p_value(n_a: np.ndarray, n_b: np.ndarray) -> np.ndarray:
    """The smallest two-sided p the rank test can give with ``n_a`` and ``n_b`` runs: ``2 / C(n_a+n_b, n_a)``.

    Example::

        >>> min_p_value(np.array([3, 5]), np.array([3, 5])).round(4).tolist()
        [0.1, 0.0079]
    """
    from scipy.special import comb

    n_a, n_b = np.asarray(n_a, dtype=float), np.asarray(n_b, dtype=float)
    return np.minimum(2 / comb(n_a + n_b, n_a), 1.0)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values); NaN stays NaN and is not counted.

    Example::

        >>> benjamini_hochberg(np.array([0.01, 0.04, np.nan, 0.03])).round(3).tolist()
        [0.03, 0.04, nan, 0.04]
    """
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

"""Before/after: match two result sets trial by trial and say what really changed.

The per-trial test is the two-sided Mann–Whitney U test (``stats.mann_whitney_p``), corrected
for many trials at once with Benjamini–Hochberg. A change the test could not have detected
(too few runs for any p below ``alpha``) is ``inconclusive``, not ``same``.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike

import numpy as np
import pandas as pd

from conc_lab.analysis.frames import as_frame, join_key, key_columns, ordered
from conc_lab.analysis.selftest import floor_of
from conc_lab.analysis.stats import (
    benjamini_hochberg,
    group_codes,
    mann_whitney_p,
    min_p_value,
    ok_runs,
    ratio_ci,
    run_stats,
)

#: Keys two result sets are matched on by ``compare``: the trial's parameters, not where it ran.
COMPARE_KEYS = ["workload", "tasks", "size", "backend", "workers", "start_method", "affinity", "options"]
#: Every value of ``compare``'s ``change`` column, in the order ``compare_verdict`` counts them.
CHANGES = ("faster", "slower", "same", "inconclusive", "only in a", "only in b")
COMPARE_COLUMNS = [
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


def _side(name: str, data: pd.DataFrame, keys: list[str], level: float) -> tuple:
    """One side's per-trial statistics, and the group number and time of each of its ok runs."""
    if len(data) == 0:
        raise ValueError(f"compare needs runs on both sides: {name} is empty")
    codes, groups = group_codes(key_columns(data, keys), keys)
    st = run_stats(codes, data, len(groups), level)
    for col in ("n", "failures", "correct_share"):
        groups[f"{col}_{name}"] = st[col]
    groups[f"median_{name}"] = st["median_s"]
    groups[f"_lo_{name}"] = st["ci_low_s"]
    groups[f"_hi_{name}"] = st["ci_high_s"]
    groups["_key"] = join_key(groups, keys)
    ok = ok_runs(data)
    return groups, codes[ok], data["run_s"].to_numpy(dtype=np.float64, na_value=np.nan)[ok]


def _outer_join(ga: pd.DataFrame, gb: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    merged = ga.set_index("_key").join(gb.drop(columns=keys).set_index("_key"), how="outer")
    only_b = pd.Index(ga["_key"]).get_indexer(merged.index) < 0  # (Index.isin on strings is slow)
    if only_b.any():  # their keys live on b's side of the join
        merged.loc[only_b, keys] = gb.set_index("_key").loc[merged.index[only_b], keys].to_numpy()
    return merged


def _p_values(merged: pd.DataFrame, sides: dict) -> np.ndarray:
    """Every ok run, numbered by its row in the merged table, for one vectorised rank test."""
    position = pd.Index(merged.index)
    rows = {name: position.get_indexer(groups["_key"])[codes] for name, (groups, codes, _) in sides.items()}
    return mann_whitney_p(
        np.concatenate([rows["a"], rows["b"]]),
        np.concatenate([sides["a"][2], sides["b"][2]]),
        np.concatenate([np.zeros(len(rows["a"]), bool), np.ones(len(rows["b"]), bool)]),
        len(merged),
    )


def effect_size(ratio: np.ndarray) -> np.ndarray:
    """How far a ratio is from no change, the same either way: 0.8 and 1.25 are both 0.25.

    Example::

        >>> effect_size(np.array([0.8, 1.25, np.nan])).tolist()
        [0.25, 0.25, 0.0]
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(np.maximum(ratio, 1 / ratio) - 1)


def change_labels(
    ratio: np.ndarray, significant: np.ndarray, powerless: np.ndarray, in_a: np.ndarray, in_b: np.ndarray
) -> np.ndarray:
    """``faster``/``slower`` where significant, ``inconclusive`` where the test lacked power, else ``same``.

    Example::

        >>> t, f = np.array([True]), np.array([False])
        >>> change_labels(np.array([0.45]), f, t, t, t).tolist(), change_labels(np.array([0.45]), t, f, t, t).tolist()
        (['inconclusive'], ['faster'])
    """
    change = np.where(significant, np.where(ratio < 1, "faster", "slower"), "same").astype(object)
    change = np.where(~significant & powerless, "inconclusive", change)
    change = np.where(~in_b, "only in a", change)
    return np.where(~in_a, "only in b", change)


def compare(
    a: pd.DataFrame | str | PathLike,
    b: pd.DataFrame | str | PathLike,
    *,
    keys: Sequence[str] = COMPARE_KEYS,
    alpha: float = 0.05,
    level: float = 0.95,
    min_effect: float | None = None,
) -> pd.DataFrame:
    """Match two result sets trial by trial and say what really changed from ``a`` to ``b``.

    One row per trial parameter set (``keys``) in either set: ``n_a``/``n_b``,
    ``median_a``/``median_b``, ``ratio`` (``median_b / median_a``: below 1 means ``b`` is
    faster) with ``ratio_ci_low``/``ratio_ci_high``, the two-sided Mann–Whitney U
    ``p_value`` (exact for small samples without ties), ``q_value`` (Benjamini–Hochberg, since
    many trials are compared at once), ``significant`` (``q_value < alpha``) and ``change``:
    ``faster``, ``slower``, ``same``, ``inconclusive`` (not significant, and either with so few
    runs that no change could have been: with 3 runs a side the smallest exact p is 0.1, so more
    repeats buy power; or with the medians' interval clear of 1 while the rank test does not
    confirm it), ``only in a`` or ``only in b``. One run has no interval (NaN). Failures and the
    correct share of each side are carried along.

    No change smaller than ``min_effect`` (the A/A floor of ``conclab selftest``; None: the largest
    recorded at or above the paths ``a`` and ``b``) is called. ``a``, ``b``: frames or store paths.

    Example::

        >>> a = pd.DataFrame({"workload": "w", "backend": "threading", "workers": 2, "tasks": 4,
        ...                   "size": 1, "status": "ok", "run_s": [1.0, 1.1, 0.9, 1.05, 0.95]})
        >>> b = a.assign(run_s=a.run_s / 2)
        >>> row = compare(a, b).loc[0]
        >>> print(row.ratio, row.change)
        0.5 faster
    """
    keys = list(keys)
    min_effect = max(floor_of(a), floor_of(b)) if min_effect is None else min_effect
    sides = {name: _side(name, as_frame(data), keys, level) for name, data in (("a", a), ("b", b))}
    merged = _outer_join(sides["a"][0], sides["b"][0], keys)
    pvals = _p_values(merged, sides)
    merged = merged.reset_index(drop=True)
    ratio, r_lo, r_hi = _ratio_of_medians(merged)
    qvals = benjamini_hochberg(pvals)
    significant = (np.nan_to_num(qvals, nan=1.0) < alpha) & (effect_size(ratio) > min_effect)
    in_a = (merged["median_a"].notna() | merged["n_a"].notna()).to_numpy()
    in_b = (merged["median_b"].notna() | merged["n_b"].notna()).to_numpy()
    for col in ("n_a", "n_b", "failures_a", "failures_b"):
        merged[col] = merged[col].fillna(0).astype(np.int64)
    # no power: too few runs for any p < alpha, or the medians' interval excludes "no change"
    # while the rank test cannot confirm it; "same" would claim evidence that is not there
    powerless = (min_p_value(merged["n_a"], merged["n_b"]) >= alpha) | (r_lo > 1) | (r_hi < 1)
    merged = merged.assign(
        ratio=ratio,
        ratio_ci_low=r_lo,
        ratio_ci_high=r_hi,
        p_value=pvals,
        q_value=qvals,
        significant=significant,
        change=change_labels(ratio, significant, powerless, in_a, in_b),
    )
    return ordered(merged[keys + COMPARE_COLUMNS], keys)


def _ratio_of_medians(merged: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``median_b / median_a`` per matched trial, with the interval the two medians' intervals give."""
    b, a = (
        [merged[f"{c}_{side}"].to_numpy(dtype=np.float64) for c in ("median", "_lo", "_hi")]
        for side in ("b", "a")
    )
    return ratio_ci(*b, *a)


def compare_verdict(result: pd.DataFrame, alpha: float = 0.05) -> str:
    """One line that says what changed in a ``compare`` result.

    Example::

        >>> compare_verdict(pd.DataFrame({"change": ["faster", "same"], "ratio": [0.5, 1.0]}))
        '1 faster, 1 same; geometric mean of b/a over 2 matched trials: 0.707'
    """
    counts = result["change"].value_counts()
    parts = [f"{int(counts[c])} {c}" for c in CHANGES if c in counts.index]
    ratio = result["ratio"].to_numpy(dtype=np.float64)
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
    line = ", ".join(parts) or "nothing to compare"
    if len(ratio):
        line += f"; geometric mean of b/a over {len(ratio)} matched trials: {np.exp(np.log(ratio).mean()):#.3g}".rstrip(
            "."
        )
    if "n_a" in result.columns and "n_b" in result.columns:
        n_a, n_b = result["n_a"].to_numpy(dtype=float), result["n_b"].to_numpy(dtype=float)
        powerless = (n_a > 0) & (n_b > 0) & (min_p_value(n_a, n_b) >= alpha)
        if powerless.any():
            line += (
                f"; {int(powerless.sum())} trial(s) have too few runs for any change to reach p < {alpha:g}"
                " (more repeats help)"
            )
    return line

"""The speedup over the sequential loop: the baseline each row is measured against, and the ratio.

* The baseline is the median of the sequential runs of the same workload, tasks, size,
  interpreter and node (same affinity where one exists; flagged, on other nodes of one cluster
  where this node ran none). Its doubts travel with it: ``_b_unstable`` and ``_b_noisy``.
* The speedup is paired where the runs can be paired (``conc_lab.analysis.pairing``: the median
  of per-pair ratios, each backend run against the baseline run nearest to it in its round),
  else the ratio of the two medians with an interval that combines theirs (``stats.ratio_ci``);
  ``speedup_method`` says which. A side of one run (the row's, or its node's baseline's) gives
  no interval (NaN), whichever the estimate (``stats.too_few_runs``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from conc_lab.analysis.breakeven import end_to_end
from conc_lab.analysis.frames import BASELINE_KEYS, CROSS_NODE_KEYS, GROUP_KEYS, SEQUENTIAL, match_rows
from conc_lab.analysis.pairing import PAIRED, UNPAIRED, cover_noisy, noisy_runs, paired_speedup, use_paired
from conc_lab.analysis.stats import group_codes, ok_runs, ratio_ci, run_stats, too_few_runs

_BASE_COLS = ["_b_med", "_b_lo", "_b_hi", "_b_n", "_b_cv", "_b_noisy", "_b_wlo", "_b_whi"]


def _baseline_groups(
    seq_df: pd.DataFrame, seq_keyed: pd.DataFrame, level: float
) -> dict[str, pd.DataFrame | None]:
    """Median and CI of the pooled sequential runs, keyed with and without affinity and node."""
    found: dict[str, pd.DataFrame | None] = {}
    for name, keys in (
        ("exact", BASELINE_KEYS + ["affinity"]),
        ("any", BASELINE_KEYS),
        ("nodes", CROSS_NODE_KEYS),
    ):
        if len(seq_df) == 0:
            found[name] = None
            continue
        codes, groups = group_codes(seq_keyed, keys)
        st = run_stats(codes, seq_df, len(groups), level)
        groups["_b_med"] = st["median_s"]
        groups["_b_lo"] = st["ci_low_s"]
        groups["_b_hi"] = st["ci_high_s"]
        groups["_b_n"] = st["n"]
        groups["_b_cv"] = st["cv"]
        noisy = ok_runs(seq_df) & noisy_runs(seq_df)
        groups["_b_noisy"] = np.bincount(codes[noisy], minlength=len(groups)).astype(np.float64)
        run = seq_df["run_s"].to_numpy(dtype=np.float64, na_value=np.nan)
        groups["_b_wlo"], groups["_b_whi"] = cover_noisy(codes, run, noisy, st["ci_low_s"], st["ci_high_s"])
        found[name] = groups
    return found


def _attach_baseline(
    out: pd.DataFrame, base: dict[str, pd.DataFrame | None], cross_node_ok: np.ndarray
) -> pd.DataFrame:
    cols = _BASE_COLS
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
        idx = match_rows(out, groups, keys)
        hit = (idx >= 0) & (cross_node_ok if name == "nodes" else True)
        other_nodes = np.where(hit, name == "nodes", other_nodes)
        for c in cols:
            vals[c][hit] = groups[c].to_numpy(dtype=np.float64)[idx[hit]]
    out = out.assign(**vals, _b_other_nodes=other_nodes)
    return out.rename(columns={"_b_med": "baseline_s"})


def with_baseline(out: pd.DataFrame, df: pd.DataFrame, keyed: pd.DataFrame, level: float) -> pd.DataFrame:
    """``out`` with ``baseline_s`` (and its interval) from the sequential runs of ``df``."""
    seq = (keyed["backend"].astype(object) == SEQUENTIAL).to_numpy()
    base = _baseline_groups(df[seq], keyed[seq], level)
    # Within a cluster sweep (nodes named by Ray node id) a node that ran no sequential trial
    # borrows the other nodes' baseline, flagged; machines told apart by hostname never do.
    ray_nodes = df["node_id"].dropna().astype(object).unique() if "node_id" in df.columns else []
    return _attach_baseline(out, base, cross_node_ok=out["node"].astype(object).isin(ray_nodes).to_numpy())


def _is_base(out: pd.DataFrame, n: np.ndarray, median: np.ndarray, base: pd.DataFrame) -> np.ndarray:
    """A sequential group that *is* its whole baseline: speedup 1 by definition, not a noisy ratio."""
    return (
        (out["backend"].astype(object) == SEQUENTIAL).to_numpy()
        & (n == base["_b_n"].to_numpy())
        & (median == base["baseline_s"].to_numpy())
    )


def _speedups(base: pd.DataFrame, st: dict, is_base: np.ndarray, paired: dict) -> dict[str, np.ndarray]:
    """``speedup``, ``low``, ``high``, ``method``: paired where ``use_paired``, else the ratio of the
    medians (each median's interval widened to cover its noisy runs: ``_b_wlo``/``_b_whi``,
    ``wlo``/``whi``); and, for ``pairing.noise_moves``, what the noisy runs of each side did to it
    (``doubt``: the interval before widening, widened by one side alone, noisy and counted runs)."""
    b = {c: base[c].to_numpy(dtype=np.float64) for c in ("baseline_s", "_b_lo", "_b_hi", "_b_wlo", "_b_whi")}
    speed, lo, hi = ratio_ci(b["baseline_s"], b["_b_wlo"], b["_b_whi"], st["median_s"], st["wlo"], st["whi"])
    ci = {"raw": (b["_b_lo"], b["_b_hi"], st["ci_low_s"], st["ci_high_s"])}
    ci["own"] = (b["_b_lo"], b["_b_hi"], st["wlo"], st["whi"])
    ci["base"] = (b["_b_wlo"], b["_b_whi"], st["ci_low_s"], st["ci_high_s"])
    un = {
        k: ratio_ci(b["baseline_s"], blo, bhi, st["median_s"], lo_, hi_)[1:]
        for k, (blo, bhi, lo_, hi_) in ci.items()
    }
    has = np.isfinite(speed) & ~is_base
    use = has & use_paired(paired["n_pairs"], st["n"])
    method = np.where(use, PAIRED, np.where(has, UNPAIRED, "")).astype(object)
    pick = lambda p, u: np.where(use, p, u)  # noqa: E731
    doubt = {
        "_lo0": pick(paired["low0"], un["raw"][0]),
        "_hi0": pick(paired["high0"], un["raw"][1]),
        "_own_lo": pick(paired["own_low"], un["own"][0]),
        "_own_hi": pick(paired["own_high"], un["own"][1]),
        "_base_lo": pick(paired["base_low"], un["base"][0]),
        "_base_hi": pick(paired["base_high"], un["base"][1]),
        "_own_k": pick(paired["n_own"], st["n_noisy"]),
        "_own_n": pick(paired["n_pairs"], st["n"]),
        "_base_k": pick(paired["n_base"], np.nan_to_num(base["_b_noisy"].to_numpy(dtype=np.float64))),
        "_base_n": pick(paired["n_pairs"], np.nan_to_num(base["_b_n"].to_numpy(dtype=np.float64))),
    }
    # a side of one run has no interval, whichever estimate: never a point claimed as certain
    none = too_few_runs(st["n"], base["_b_n"].to_numpy(dtype=np.float64)) & ~is_base
    return {
        "speedup": pick(paired["speedup"], speed),
        "low": np.where(is_base, 1.0, np.where(none, np.nan, pick(paired["low"], lo))),
        "high": np.where(is_base, 1.0, np.where(none, np.nan, pick(paired["high"], hi))),
        "method": method,
        "doubt": doubt,
    }


def with_speedup(out: pd.DataFrame, df: pd.DataFrame, codes: np.ndarray, pairs: np.ndarray, level: float):
    """``out`` with ``speedup``, its interval and ``speedup_method``, ``efficiency`` and ``karp_flatt``
    (and the hidden columns ``pairing.noise_moves`` reads: ``_lo0``, ``_own_lo``, ...).

    ``pairs``: each run's baseline run (``pairing.pair_runs``), -1 where it has none.
    """
    run = df["run_s"].to_numpy(dtype=np.float64, na_value=np.nan)
    st = {c: out[c].to_numpy(dtype=np.float64) for c in ("median_s", "ci_low_s", "ci_high_s", "n")}
    noisy = noisy_runs(df)
    noisy_ok = ok_runs(df) & noisy
    st["wlo"], st["whi"] = cover_noisy(codes, run, noisy_ok, st["ci_low_s"], st["ci_high_s"])
    st["n_noisy"] = np.bincount(codes[noisy_ok], minlength=len(out)).astype(np.float64)
    paired = paired_speedup(codes, len(out), pairs, run, run, noisy, level)
    is_base = _is_base(out, st["n"], st["median_s"], out)
    found = _speedups(out, st, is_base, paired)
    speed = found["speedup"]
    workers = out["workers"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        kf = (1.0 / speed - 1.0 / workers) / (1.0 - 1.0 / workers)
    return out.assign(
        speedup=speed,
        speedup_ci_low=found["low"],
        speedup_ci_high=found["high"],
        speedup_method=found["method"],
        efficiency=speed / workers,
        karp_flatt=np.where(workers > 1, kf, np.nan),
        **found["doubt"],
    )


def with_end_to_end(
    out: pd.DataFrame,
    df: pd.DataFrame,
    keyed: pd.DataFrame,
    codes: np.ndarray,
    pairs: np.ndarray,
    level: float,
) -> pd.DataFrame:
    """``out`` with ``e2e_s`` (median of start-up + run + teardown) and the end-to-end speedup (paired
    as the speedup is)."""
    if "setup_s" not in df.columns and "teardown_s" not in df.columns:  # nothing but the run: as run_s
        return out.assign(
            e2e_s=out["median_s"],
            e2e_speedup=out["speedup"],
            e2e_speedup_ci_low=out["speedup_ci_low"],
            e2e_speedup_ci_high=out["speedup_ci_high"],
        )
    e2e = end_to_end(df)
    e2e_df = df.assign(run_s=e2e)
    st = run_stats(codes, e2e_df, len(out), level)
    base = with_baseline(out[GROUP_KEYS].copy(), e2e_df, keyed, level)
    noisy = noisy_runs(df)
    noisy_ok = ok_runs(e2e_df) & noisy
    st["wlo"], st["whi"] = cover_noisy(codes, e2e, noisy_ok, st["ci_low_s"], st["ci_high_s"])
    st["n_noisy"] = np.bincount(codes[noisy_ok], minlength=len(out)).astype(np.float64)
    paired = paired_speedup(codes, len(out), pairs, e2e, e2e, noisy, level)
    is_base = _is_base(out, st["n"], st["median_s"], base)
    found = _speedups(base, st, is_base, paired)
    return out.assign(
        e2e_s=st["median_s"],
        e2e_speedup=found["speedup"],
        e2e_speedup_ci_low=found["low"],
        e2e_speedup_ci_high=found["high"],
    )

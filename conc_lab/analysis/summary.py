"""One row per trial parameter set: medians with intervals, the speedup over the sequential loop, flags.

Everything here takes the DataFrame that ``conc_lab.load`` returns (one row per trial run,
columns from ``conc_lab.schema``) and is vectorised over groups with numpy, so a million
runs summarise in a few seconds. The statistics themselves live in ``conc_lab.analysis.stats``.

* The speedup's baseline is the median of the sequential runs of the same workload, tasks,
  size, interpreter and node (same affinity where one exists); its interval combines the two
  medians' intervals (``stats.ratio_ci``).
* A group is *unstable* (as pyperf warns) when its coefficient of variation or the
  relative width of its interval is over a threshold; it is flagged, never dropped.
  Failed and timed-out runs are counted, never silently removed.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from os import PathLike

import numpy as np
import pandas as pd

from conc_lab import schema
from conc_lab.analysis.attribution import median_run_why
from conc_lab.analysis.breakeven import break_even_size, describe_break_even, end_to_end, size_models
from conc_lab.analysis.stats import group_codes, ratio_ci, run_stats

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
SEQUENTIAL = "sequential"
#: Backends in the order a reader expects them: the baseline first, then by weight.
BACKEND_ORDER = {SEQUENTIAL: 0, "threading": 1, "multiprocessing": 2, "ray": 3}

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
    "e2e_s",
    "e2e_speedup",
    "e2e_speedup_ci_low",
    "e2e_speedup_ci_high",
    "break_even_size",
    "break_even",
    "unstable",
    "superlinear",
    "why",
    "notes",
]


def tidy_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with low-cardinality string columns as categoricals (copy; input untouched).

    Example::

        >>> list(tidy_dtypes(pd.DataFrame({"backend": ["threading", "sequential"]})).backend.cat.categories)
        ['sequential', 'threading']
    """
    out = df.copy()
    for col in schema.CATEGORICAL_COLUMNS:
        if col in out.columns and not isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype("category")
    return out


def as_frame(data: pd.DataFrame | str | PathLike | Sequence) -> pd.DataFrame:
    """``data`` itself if it is a DataFrame, else the store(s) it names, read with ``conc_lab.load``."""
    if isinstance(data, pd.DataFrame):
        return data
    from conc_lab.store.core import load  # lazily: analysis works on hand-built frames without the store

    return load(data)


def _null_column(df: pd.DataFrame) -> pd.Series:
    return pd.Series([None] * len(df), index=df.index, dtype=object)


def _node_column(df: pd.DataFrame) -> pd.Series:
    node = df["node_id"] if "node_id" in df.columns else None
    host = df["hostname"] if "hostname" in df.columns else None
    if node is None:
        return _null_column(df) if host is None else host
    if host is None:
        return node
    return node.astype(object).where(node.notna(), host.astype(object))


def key_columns(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The key columns of ``df`` (missing optional ones as null), ``node`` derived from node id or host.

    Example::

        >>> key_columns(pd.DataFrame({"hostname": ["box"], "node_id": [None]}), ["node", "python"]).values.tolist()
        [['box', None]]
    """
    cols = {}
    for key in keys:
        if key == "node" and "node" not in df.columns:
            cols[key] = _node_column(df)
        elif key in df.columns:
            cols[key] = df[key]
        else:
            cols[key] = _null_column(df)
    return pd.DataFrame(cols, index=df.index)


def ordered(frame: pd.DataFrame, keys: Sequence[str] = GROUP_KEYS) -> pd.DataFrame:
    """Rows sorted by the keys, with the backends in ``BACKEND_ORDER``.

    Example::

        >>> ordered(pd.DataFrame({"backend": ["ray", "sequential", "threading"]}), ["backend"]).backend.tolist()
        ['sequential', 'threading', 'ray']
    """
    arrays = []  # np.lexsort: the last array is the primary key
    for key in reversed(keys):
        codes, _ = pd.factorize(frame[key].astype(object).fillna(""), sort=True)
        arrays.append(codes)
        if key == "backend":
            rank = frame[key].astype(object).map(BACKEND_ORDER).fillna(len(BACKEND_ORDER))
            arrays.append(rank.to_numpy())
    return frame.iloc[np.lexsort(arrays)].reset_index(drop=True)


def flag_text(conds: dict[str, np.ndarray]) -> np.ndarray:
    """Per row, the labels whose condition holds, joined by ", ".

    Example::

        >>> flag_text({"a": np.array([True, False]), "b": np.array([True, True])}).tolist()
        ['a, b', 'b']
    """
    n = len(next(iter(conds.values())))
    text = np.full(n, "", dtype=object)
    for label, cond in conds.items():
        sep = np.where(text == "", "", ", ")
        text = np.where(cond, text + sep + label, text)
    return text


def join_key(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    """One string per row from ``keys``: nulls and categoricals become plain strings that compare reliably."""
    parts = [frame[k].astype(object).where(frame[k].notna(), "\x00").astype(str) for k in keys]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + "\x1f" + part
    return joined


def match_rows(left: pd.DataFrame, right: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """For each row of ``left``, the row of ``right`` (unique keys) with equal ``keys``, else -1; nulls match nulls.

    Example::

        >>> match_rows(pd.DataFrame({"k": ["a", None, "c"]}), pd.DataFrame({"k": [None, "a"]}), ["k"]).tolist()
        [1, 0, -1]
    """
    both = pd.concat([left[keys].astype(object), right[keys].astype(object)], ignore_index=True)
    codes = both.groupby(keys, dropna=False, sort=False).ngroup().to_numpy()
    lookup = np.full(codes.max() + 1 if len(codes) else 0, -1, dtype=np.int64)
    lookup[codes[len(left) :]] = np.arange(len(right))
    return lookup[codes[: len(left)]]


def _baseline(seq_df: pd.DataFrame, seq_keyed: pd.DataFrame, level: float) -> dict[str, pd.DataFrame | None]:
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
        found[name] = groups
    return found


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
        idx = match_rows(out, groups, keys)
        hit = (idx >= 0) & (cross_node_ok if name == "nodes" else True)
        other_nodes = np.where(hit, name == "nodes", other_nodes)
        for c in cols:
            vals[c][hit] = groups[c].to_numpy(dtype=np.float64)[idx[hit]]
    out = out.assign(**vals, _b_other_nodes=other_nodes)
    return out.rename(columns={"_b_med": "baseline_s"})


def _with_baseline(out: pd.DataFrame, df: pd.DataFrame, keyed: pd.DataFrame, level: float) -> pd.DataFrame:
    """``out`` with ``baseline_s`` (and its interval) from the sequential runs of ``df``."""
    seq = (keyed["backend"].astype(object) == SEQUENTIAL).to_numpy()
    base = _baseline(df[seq], keyed[seq], level)
    # Within a cluster sweep (nodes named by Ray node id) a node that ran no sequential trial
    # borrows the other nodes' baseline, flagged; machines told apart by hostname never do.
    ray_nodes = df["node_id"].dropna().astype(object).unique() if "node_id" in df.columns else []
    return _attach_baseline(out, base, cross_node_ok=out["node"].astype(object).isin(ray_nodes).to_numpy())


def _with_speedup(out: pd.DataFrame) -> pd.DataFrame:
    """``out`` with ``speedup`` and its interval, ``efficiency`` and ``karp_flatt``."""
    speed, s_lo, s_hi = ratio_ci(
        *(out[c].to_numpy(dtype=np.float64) for c in ("baseline_s", "_b_lo", "_b_hi")),
        *(out[c].to_numpy(dtype=np.float64) for c in ("median_s", "ci_low_s", "ci_high_s")),
    )
    # A sequential group that *is* its whole baseline has speedup 1 by definition, not a noisy ratio.
    is_base = (
        (out["backend"].astype(object) == SEQUENTIAL).to_numpy()
        & (out["n"].to_numpy() == out["_b_n"].to_numpy())
        & (out["median_s"].to_numpy() == out["baseline_s"].to_numpy())
    )
    workers = out["workers"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        kf = (1.0 / speed - 1.0 / workers) / (1.0 - 1.0 / workers)
    return out.assign(
        speedup=speed,
        speedup_ci_low=np.where(is_base, 1.0, s_lo),
        speedup_ci_high=np.where(is_base, 1.0, s_hi),
        efficiency=speed / workers,
        karp_flatt=np.where(workers > 1, kf, np.nan),
    )


def _with_end_to_end(
    out: pd.DataFrame, df: pd.DataFrame, keyed: pd.DataFrame, codes: np.ndarray, level: float
):
    """``out`` with ``e2e_s`` (median of start-up + run + teardown) and the end-to-end speedup."""
    if "setup_s" not in df.columns and "teardown_s" not in df.columns:  # nothing but the run: as run_s
        return out.assign(
            e2e_s=out["median_s"],
            e2e_speedup=out["speedup"],
            e2e_speedup_ci_low=out["speedup_ci_low"],
            e2e_speedup_ci_high=out["speedup_ci_high"],
        )
    e2e_df = df.assign(run_s=end_to_end(df))
    st = run_stats(codes, e2e_df, len(out), level)
    base = _with_baseline(out[GROUP_KEYS].copy(), e2e_df, keyed, level)
    speed, lo, hi = ratio_ci(
        *(base[c].to_numpy(dtype=np.float64) for c in ("baseline_s", "_b_lo", "_b_hi")),
        st["median_s"],
        st["ci_low_s"],
        st["ci_high_s"],
    )
    is_base = (
        (out["backend"].astype(object) == SEQUENTIAL).to_numpy()
        & (st["n"] == base["_b_n"].to_numpy())
        & (st["median_s"] == base["baseline_s"].to_numpy())
    )
    return out.assign(
        e2e_s=st["median_s"],
        e2e_speedup=speed,
        e2e_speedup_ci_low=np.where(is_base, 1.0, lo),
        e2e_speedup_ci_high=np.where(is_base, 1.0, hi),
    )


def _take(frame: pd.DataFrame, column: str, rows: np.ndarray) -> np.ndarray:
    """``frame[column]`` at ``rows``; NaN where a row is -1 (no match)."""
    values = frame[column].to_numpy(dtype=np.float64) if len(frame) else np.zeros(1)
    return np.where(rows >= 0, values[np.clip(rows, 0, None)], np.nan)


def _with_break_even(out: pd.DataFrame, df: pd.DataFrame, keyed: pd.DataFrame) -> pd.DataFrame:
    """``out`` with the work size above which each backend curve beats the sequential loop end to end."""
    size = pd.to_numeric(keyed["size"], errors="coerce")
    if size.isna().all():
        return out.assign(break_even_size=np.nan, break_even="")
    cols = [c for c in ("run_s", "setup_s", "teardown_s", "status") if c in df.columns]
    frame = keyed.drop(columns="size").assign(size=size.to_numpy(), **{c: df[c].to_numpy() for c in cols})
    frame = frame[size.notna().to_numpy()]
    curve_keys = [k for k in GROUP_KEYS if k != "size"]
    seq_keys = [k for k in BASELINE_KEYS if k != "size"]
    curves = size_models(frame, curve_keys)
    seq = frame[(frame["backend"].astype(object) == SEQUENTIAL).to_numpy()]
    at = match_rows(out, curves, curve_keys) if len(curves) else np.full(len(out), -1)
    base = size_models(seq, seq_keys) if len(seq) else pd.DataFrame()
    b = match_rows(out, base, seq_keys) if len(base) else np.full(len(out), -1)
    pick = {c: _take(curves, c, at) for c in ("fixed_s", "per_unit_s", "sizes", "min_size", "max_size")}
    fixed_s, per_unit_s = _take(base, "fixed_s", b), _take(base, "per_unit_s", b)
    found = (at >= 0) & (out["backend"].astype(object) != SEQUENTIAL).to_numpy()
    sizes = np.where(found, break_even_size(pick["fixed_s"], pick["per_unit_s"], fixed_s, per_unit_s), np.nan)
    text = [
        describe_break_even(x, n, lo, hi) if ok else ""
        for x, n, lo, hi, ok in zip(
            sizes, pick["sizes"], pick["min_size"], pick["max_size"], found, strict=True
        )
    ]
    return out.assign(break_even_size=sizes, break_even=text)


def _with_flags(out: pd.DataFrame, cv_threshold: float, ci_threshold: float) -> pd.DataFrame:
    """``out`` with ``unstable``, ``superlinear`` and every flag as text in ``notes``."""
    med = out["median_s"].to_numpy()
    workers = out["workers"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ci_rel = (out["ci_high_s"].to_numpy() - out["ci_low_s"].to_numpy()) / med
    unstable = (np.nan_to_num(out["cv"].to_numpy()) > cv_threshold) | (np.nan_to_num(ci_rel) > ci_threshold)
    # Only beyond one worker: at workers=1 a "superlinear" threading run is noise against sequential.
    superlinear = (workers > 1) & (np.nan_to_num(out["speedup_ci_low"].to_numpy()) > workers)
    has_runs = out["n"].to_numpy() > 0
    notes = flag_text(
        {
            "no runs": ~has_runs,
            "failures": out["failures"].to_numpy() > 0,
            "incorrect": np.nan_to_num(out["correct_share"].to_numpy(), nan=1.0) < 1.0,
            "unstable": unstable,
            "superlinear": superlinear,
            "no baseline": ~np.isfinite(out["baseline_s"].to_numpy()) & has_runs,
            "baseline from other nodes": out["_b_other_nodes"].to_numpy() & has_runs,
        }
    )
    return out.assign(unstable=unstable, superlinear=superlinear, notes=notes)


def summarize(
    df: pd.DataFrame | str | PathLike,
    *,
    level: float = 0.95,
    cv_threshold: float = 0.10,
    ci_threshold: float = 0.20,
    **filters,
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
    ``e2e_s`` (median of start-up + run + teardown, teardown where measured: what a program using the
    backend pays) with ``e2e_speedup`` and its interval, over the sequential loop's end-to-end time;
    ``break_even_size`` and ``break_even`` (the work size above which the backend beats the loop end
    to end, ``conc_lab.analysis.breakeven``);
    ``superlinear`` (workers > 1 and the speedup's whole interval above ``workers``), ``why``
    (the dominant cause of lost worker-time in the median run, ``conc_lab.analysis.attribution``) and
    ``notes`` (every flag as text, with ``failures``, ``incorrect``, ``no runs``, ``no baseline``).

    ``df`` may also be a path to a store, read with ``conc_lab.load``. ``filters`` (a key column
    = a value or a list of them) select rows *after* the sequential baseline is joined, so
    ``summarize(path, backend="threading")`` keeps its speedups (and the baseline rows they are
    measured against); a workload may be named by its function (``sleep`` for
    ``experiments.io:sleep``) where that is unique, and a value that matches no run is a
    ``ValueError`` with a did-you-mean.

    Example::

        >>> df = pd.DataFrame({"workload": "w", "tasks": 4, "size": 10, "status": "ok",
        ...                    "backend": ["sequential"] * 3 + ["threading"] * 3,
        ...                    "workers": [1, 1, 1, 2, 2, 2], "run_s": [2.0, 2.1, 1.9, 1.0, 1.1, 0.9]})
        >>> row = summarize(df).loc[1]
        >>> print(row.backend, row.median_s, row.speedup)
        threading 1.0 2.0
    """
    if filters:
        return _summarize_selected(
            df, filters, level=level, cv_threshold=cv_threshold, ci_threshold=ci_threshold
        )
    df = as_frame(df)
    if len(df) == 0:
        return pd.DataFrame(columns=GROUP_KEYS + SUMMARY_COLUMNS)
    _warn_without_baseline(df)
    keyed = key_columns(df, GROUP_KEYS)
    codes, groups = group_codes(keyed, GROUP_KEYS)
    out = pd.concat([groups, pd.DataFrame(run_stats(codes, df, len(groups), level))], axis=1)
    out["why"] = median_run_why(df, codes, len(groups))
    out = _with_baseline(out, df, keyed, level)
    out = _with_speedup(out)
    out = _with_end_to_end(out, df, keyed, codes, level)
    out = _with_break_even(out, df, keyed)
    out = _with_flags(out, cv_threshold, ci_threshold)
    return ordered(out[GROUP_KEYS + SUMMARY_COLUMNS])


def _warn_without_baseline(df: pd.DataFrame) -> None:
    backend = df["backend"].astype(object) if "backend" in df.columns else pd.Series(dtype=object)
    if len(backend) and not (backend == SEQUENTIAL).any():
        warnings.warn(
            "no sequential runs to measure speedups against (conc_lab.load(path, backend=...) leaves them "
            "out): conc_lab.summarize(path, backend=...) keeps them",
            UserWarning,
            stacklevel=3,
        )


def resolve_filter(column: str, wanted: object, present: Sequence) -> list:
    """The stored values of ``column`` that ``wanted`` (one value or a list) names.

    The Python API's face of ``selection.resolve``, which the CLI's filters use too: a value
    matches as text (``2`` and ``"2"`` alike), a workload also by a unique short or function
    name; one that names nothing is a ValueError with a did-you-mean.

    Example::

        >>> resolve_filter("workload", "sleep", ["experiments.io:sleep", "experiments.cpu:sum_squares"])
        ['experiments.io:sleep']
        >>> resolve_filter("backend", "threadin", ["sequential", "threading"])
        Traceback (most recent call last):
        ...
        conc_lab.analysis.selection.SelectError: backend: no run has backend 'threadin'; did you mean 'threading'?
    """
    from conc_lab.analysis import selection

    values = list(wanted) if isinstance(wanted, (list, tuple, set)) else [wanted]
    return selection.resolve(column, values, present, label=column)


def _summarize_selected(data, filters: dict, **options) -> pd.DataFrame:
    """``summarize`` over everything, then the rows ``filters`` select and their baselines."""
    unknown = set(filters) - set(GROUP_KEYS)
    if unknown:
        raise ValueError(f"cannot filter a summary on {sorted(unknown)}: use {', '.join(GROUP_KEYS)}")
    if not isinstance(data, pd.DataFrame) and set(filters) == {"backend"}:
        wanted = (
            filters["backend"] if isinstance(filters["backend"], (list, tuple, set)) else [filters["backend"]]
        )
        data = as_frame_filtered(data, backend=[*wanted, SEQUENTIAL])  # read only what is needed
    df = as_frame(data)
    keyed = key_columns(df, list(filters))
    chosen = {k: resolve_filter(k, v, keyed[k].astype(object).unique()) for k, v in filters.items()}
    summary = summarize(df, **options)
    mask = np.ones(len(summary), bool)
    for key, values in chosen.items():
        mask &= summary[key].astype(object).isin(values).to_numpy()
    seq = (summary["backend"].astype(object) == SEQUENTIAL).to_numpy()
    base = seq & (match_rows(summary, summary[mask], BASELINE_KEYS) >= 0) if mask.any() else seq & False
    return summary[mask | base].reset_index(drop=True)


def as_frame_filtered(data, **filters) -> pd.DataFrame:
    """The store(s) ``data`` names, read with only the rows ``filters`` select (pushed down to Parquet)."""
    from conc_lab.store.core import load

    return load(data, **filters)


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
    facts = key_columns(df, ["python"]).astype(object)
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

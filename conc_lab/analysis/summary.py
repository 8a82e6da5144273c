"""One row per trial parameter set: medians with intervals, the speedup over the sequential loop, flags.

Everything here takes the DataFrame that ``conc_lab.load`` returns (one row per trial run,
columns from ``conc_lab.schema``) and is vectorised over groups with numpy, so a million
runs summarise in a few seconds. The work is split by job: ``stats`` (order statistics,
intervals), ``frames`` (keys, reading), ``speedup`` (the baseline and the ratio, paired where
the runs can be: ``pairing``), ``breakeven``, ``attribution`` (``why``), ``interpreters``.

The columns, after the keys (``GROUP_KEYS``):

* ``n`` (ok runs), ``failures`` (failed + timeout), ``skipped``; ``median_s``, ``q1_s``, ``q3_s``,
  ``iqr_s``, ``ci_low_s``/``ci_high_s`` (exact bootstrap interval of the median), ``cv``;
  ``setup_s`` (median); ``correct_share`` (over runs whose answer could be checked);
* ``baseline_s``: median of the sequential runs with the same workload, tasks, size, python and
  node (same affinity where one exists; on other nodes, flagged, where this node ran none), and
  ``baseline_n``, the ok runs it is the median of (<NA> without a baseline);
* ``speedup`` with ``speedup_ci_low``/``speedup_ci_high`` and ``speedup_method``: ``paired``
  (median of per-pair ratios, each run against the baseline run nearest to it in its round) or
  ``unpaired`` (ratio of the two medians, for runs that cannot be paired); ``efficiency``
  (speedup/workers); ``karp_flatt`` (experimentally determined serial fraction, workers > 1);
* ``e2e_s`` (median of start-up + run + teardown: what a program using the backend pays) with
  ``e2e_speedup`` and its interval; ``break_even_size`` and ``break_even``
  (``conc_lab.analysis.breakeven``);
* flags, never dropping a row: ``unstable`` (cv over ``cv_threshold`` or interval wider than
  ``ci_threshold`` x median, its own or its baseline's: a speedup inherits its baseline's
  doubts), ``superlinear`` (workers > 1 and the whole interval above ``workers``), ``why`` (the
  dominant cause of lost worker-time, ``conc_lab.analysis.attribution``) and ``notes`` (every
  flag as text, with ``failures``, ``incorrect``, ``no runs``, ``no baseline``, ``baseline
  unstable``, ``noisy`` and ``baseline noisy`` (the row's own noisy runs, or its baseline's, decide
  its speedup: they widened its interval by more than ``NOISE_TOLERANCE`` of it, or are half its
  pairs or more: ``pairing.noise_moves``; a noisy run inside what the quiet ones say flags
  nothing), ``within A/A floor``, ``unpaired``: the speedup is the ratio of two medians, its runs
  could not be paired), ``too few runs`` (one run of its own, or of its baseline: the sequential
  runs on its node; or one pair: its speedup has no interval, NaN, and is never superlinear).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from os import PathLike

import numpy as np
import pandas as pd

from conc_lab.analysis.attribution import median_run_why
from conc_lab.analysis.breakeven import with_break_even
from conc_lab.analysis.frames import (  # noqa: F401  (the summary's names, as other modules import them)
    BACKEND_ORDER,
    BASELINE_KEYS,
    CROSS_NODE_KEYS,
    GROUP_KEYS,
    SEQUENTIAL,
    as_frame,
    as_frame_filtered,
    flag_text,
    join_key,
    key_columns,
    match_rows,
    ordered,
    tidy_dtypes,
)
from conc_lab.analysis.interpreters import interpreter_labels
from conc_lab.analysis.pairing import UNPAIRED, noise_moves, pair_runs
from conc_lab.analysis.selftest import floor_of
from conc_lab.analysis.speedup import with_baseline, with_end_to_end, with_speedup
from conc_lab.analysis.stats import group_codes, run_stats, too_few_runs

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
    "baseline_n",
    "speedup",
    "speedup_ci_low",
    "speedup_ci_high",
    "speedup_method",
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


#: The note on a row that rests on one run, its own or its baseline's (``stats.too_few_runs``), or on
#: one pair: its speedup has no interval, so nothing (superlinear, the fastest) is claimed from it.
TOO_FEW_RUNS = "too few runs"


def _unstable(
    cv: np.ndarray, low: np.ndarray, high: np.ndarray, med: np.ndarray, cv_max: float, ci_max: float
):
    with np.errstate(divide="ignore", invalid="ignore"):
        ci_rel = (high - low) / med
    return (np.nan_to_num(cv) > cv_max) | (np.nan_to_num(ci_rel) > ci_max)


#: Noisy runs that widen a speedup's interval by less than this share of it (or than the A/A
#: floor, if wider) change nothing a reader would act on, and raise no flag.
NOISE_TOLERANCE = 0.05


def _noise_moves(out: pd.DataFrame, side: str, tolerance: float) -> np.ndarray:
    """``pairing.noise_moves`` for the noisy runs of one side (``own`` or ``base``) of each row."""
    col = lambda c: out[c].to_numpy(dtype=np.float64)  # noqa: E731
    return noise_moves(
        col("speedup"),
        col("_lo0"),
        col("_hi0"),
        col(f"_{side}_lo"),
        col(f"_{side}_hi"),
        col(f"_{side}_k"),
        col(f"_{side}_n"),
        tolerance,
    )


def _baseline_row_noisy(out: pd.DataFrame, base_moves: np.ndarray, tolerance: float) -> np.ndarray:
    """Per row, whether it is a baseline (the sequential runs every other row is measured against)
    whose noisy runs decide something: its own median (widened by them beyond ``tolerance`` of it,
    or they are half its runs), or a speedup measured against it (a row flagged ``baseline noisy``).

    Its speedup is 1 by definition, so the speedup's rule never flags it: every row against it
    said ``baseline noisy`` while the baseline's own row, where those runs are, said nothing.
    """
    is_base = (out["backend"].astype(object) == SEQUENTIAL).to_numpy() & (
        out["speedup_method"].to_numpy(dtype=object) == ""
    )
    col = lambda c: out[c].to_numpy(dtype=np.float64)  # noqa: E731
    widened = [col(c) for c in ("baseline_s", "_b_lo", "_b_hi", "_b_wlo", "_b_whi", "_b_noisy", "_b_n")]
    own = noise_moves(*widened, tolerance)
    # the rows measured against it share its baseline keys (as _attach_baseline joins them)
    key = join_key(out, BASELINE_KEYS)
    against = pd.Series(base_moves, index=out.index).groupby(key.to_numpy()).transform("any")
    return is_base & (own | against.to_numpy(dtype=bool))


def _with_flags(
    out: pd.DataFrame, cv_threshold: float, ci_threshold: float, min_effect: float
) -> pd.DataFrame:
    """``out`` with ``unstable``, ``superlinear`` and every flag as text in ``notes``."""
    col = {c: out[c].to_numpy(dtype=np.float64) for c in ("cv", "ci_low_s", "ci_high_s", "median_s")}
    own = _unstable(*col.values(), cv_threshold, ci_threshold)
    base = {c: out[c].to_numpy(dtype=np.float64) for c in ("_b_cv", "_b_lo", "_b_hi", "baseline_s")}
    measured = out["speedup_method"].to_numpy(dtype=object) != ""  # not the baseline itself, and has one
    base_unstable = measured & _unstable(*base.values(), cv_threshold, ci_threshold)
    moves = {
        side: measured & _noise_moves(out, side, max(min_effect, NOISE_TOLERANCE)) for side in ("own", "base")
    }
    workers = out["workers"].to_numpy(dtype=np.float64)
    # Only beyond one worker: at workers=1 a "superlinear" threading run is noise against sequential.
    superlinear = (workers > 1) & (np.nan_to_num(out["speedup_ci_low"].to_numpy()) > workers)
    with np.errstate(divide="ignore", invalid="ignore"):
        effect = np.abs(np.log(out["speedup"].to_numpy(dtype=np.float64)))
    within_floor = measured & (np.nan_to_num(effect, nan=np.inf) <= np.log1p(min_effect)) & (min_effect > 0)
    has_runs = out["n"].to_numpy() > 0
    # one run of its own or of its baseline (its node's), or one pair: a speedup with no interval
    few = too_few_runs(out["n"].to_numpy(), out["_b_n"].to_numpy(dtype=np.float64)) & has_runs
    few |= (
        measured
        & np.isfinite(out["speedup"].to_numpy(dtype=np.float64))
        & ~np.isfinite(out["speedup_ci_low"].to_numpy(dtype=np.float64))
    )
    notes = flag_text(
        {
            "no runs": ~has_runs,
            "failures": out["failures"].to_numpy() > 0,
            "incorrect": np.nan_to_num(out["correct_share"].to_numpy(), nan=1.0) < 1.0,
            "unstable": own,
            "baseline unstable": base_unstable & ~own,
            "noisy": moves["own"] | _baseline_row_noisy(out, moves["base"], max(min_effect, NOISE_TOLERANCE)),
            "baseline noisy": moves["base"],
            "superlinear": superlinear,
            TOO_FEW_RUNS: few,
            "within A/A floor": within_floor,
            # where the runs carry start times (a store's do) but could not be paired: said in the table
            "unpaired": (out["speedup_method"].to_numpy(dtype=object) == UNPAIRED) & out["_timed"].to_numpy(),
            "no baseline": ~np.isfinite(out["baseline_s"].to_numpy()) & has_runs,
            "baseline from other nodes": out["_b_other_nodes"].to_numpy() & has_runs,
        }
    )
    return out.assign(unstable=own | base_unstable, superlinear=superlinear, notes=notes)


def summarize(
    df: pd.DataFrame | str | PathLike,
    *,
    level: float = 0.95,
    cv_threshold: float = 0.10,
    ci_threshold: float = 0.20,
    min_effect: float | None = None,
    **filters,
) -> pd.DataFrame:
    """One row per (workload, tasks, size, backend, workers, start_method, python, node, affinity,
    options): the columns the module doc lists, intervals at ``level``.

    ``df`` may also be a path to a store, read with ``conc_lab.load``. ``filters`` (a key column
    = a value or a list of them) select rows *after* the sequential baseline is joined, so
    ``summarize(path, backend="threading")`` keeps its speedups (and the baseline rows they are
    measured against); a workload may be named by its function (``sleep`` for
    ``experiments.io:sleep``) where that is unique, and a value that matches no run is a
    ``ValueError`` with a did-you-mean. ``conclab summarize --backend ...`` filters the same way.
    ``min_effect`` (the A/A floor of ``conclab selftest``, a fraction): a speedup closer to 1
    than that is noted ``within A/A floor``; None: the floor recorded at or above a path ``df``.

    Example::

        >>> df = pd.DataFrame({"workload": "w", "tasks": 4, "size": 10, "status": "ok",
        ...                    "backend": ["sequential"] * 3 + ["threading"] * 3,
        ...                    "workers": [1, 1, 1, 2, 2, 2], "run_s": [2.0, 2.1, 1.9, 1.0, 1.1, 0.9]})
        >>> row = summarize(df).loc[1]
        >>> print(row.backend, row.median_s, row.speedup, row.speedup_method)
        threading 1.0 2.0 unpaired
    """
    min_effect = floor_of(df) if min_effect is None else min_effect
    if filters:
        options = dict(
            level=level, cv_threshold=cv_threshold, ci_threshold=ci_threshold, min_effect=min_effect
        )
        return _summarize_selected(df, filters, **options)
    df = as_frame(df)
    if len(df) == 0:
        return pd.DataFrame(columns=GROUP_KEYS + SUMMARY_COLUMNS)
    _warn_without_baseline(df)
    out, keyed, codes, pairs = _with_speedups(df, level)
    out["why"] = median_run_why(df, codes, len(out))
    out = out.assign(_timed="started_at" in df.columns)
    out = with_end_to_end(out, df, keyed, codes, pairs, level)
    out = with_break_even(out, df, keyed)
    out = _with_flags(out, cv_threshold, ci_threshold, min_effect)
    out["baseline_n"] = pd.array(np.where(np.isfinite(out["_b_n"]), out["_b_n"], np.nan), dtype="Int64")
    return ordered(out[GROUP_KEYS + SUMMARY_COLUMNS])


def _with_speedups(
    df: pd.DataFrame, level: float
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """The groups with their run statistics, baseline and speedup interval (and the keyed frame,
    group codes and run pairs the rest of ``summarize`` reads)."""
    keyed = key_columns(df, GROUP_KEYS)
    codes, groups = group_codes(keyed, GROUP_KEYS)
    out = pd.concat([groups, pd.DataFrame(run_stats(codes, df, len(groups), level))], axis=1)
    pairs = pair_runs(df)
    out = with_baseline(out, df, keyed, level)
    return with_speedup(out, df, codes, pairs, level), keyed, codes, pairs


def speedup_intervals(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """The part of ``summarize`` a ``precision:`` sweep reads at every added round (``analysis.precision``):
    per group, its keys, ``n``, ``failures``, ``skipped`` and the speedup with its interval, exactly
    as ``summarize`` gives them, without the columns that take most of its time (``why``, the
    end-to-end speedup, break-even, the flags): a third of the time, in a smoke sweep.

    Example::

        >>> df = pd.DataFrame({"workload": "w", "tasks": 4, "size": 10, "status": "ok",
        ...                    "backend": ["sequential"] * 3 + ["threading"] * 3,
        ...                    "workers": [1, 1, 1, 2, 2, 2], "run_s": [2.0, 2.1, 1.9, 1.0, 1.1, 0.9]})
        >>> cols = ["speedup", "speedup_ci_low", "speedup_ci_high"]
        >>> speedup_intervals(df)[cols].equals(summarize(df)[cols])
        True
    """
    return _with_speedups(df, level)[0]


def _warn_without_baseline(df: pd.DataFrame) -> None:
    backend = df["backend"].astype(object) if "backend" in df.columns else pd.Series(dtype=object)
    if len(backend) and not (backend == SEQUENTIAL).any():
        warnings.warn(
            "no sequential runs to measure speedups against, so no speedups: the plain loop is the baseline "
            "(backend: sequential in the config's matrix); a frame from conc_lab.load(path, backend=...) "
            "leaves them out, conc_lab.summarize(path, backend=...) keeps them",
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
        from conc_lab.analysis.selection import stored_values

        # named against every stored backend, before the read that keeps the chosen ones alone
        # (else "no run has backend 'threadin'; there are: sequential")
        stored = stored_values(data, ["backend"])["backend"]
        wanted = resolve_filter("backend", filters["backend"], stored)
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

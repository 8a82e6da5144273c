"""End to end: what a program using a backend pays (start-up + run + teardown), and the work size
above which a backend beats the plain sequential loop end to end (the break-even size).

Each curve's end-to-end time is modelled over the work size as ``T(size) = O + r·size``: ``O``
is the fixed cost (start-up and teardown as measured, plus the run's own fixed part) and ``r``
the time per unit of work. Like the speedups, the model stands on medians: the median ok run
at each measured size. With two or more sizes, ``run_s = c + r·size`` is fitted by least squares
through those medians (with two, the line passes through both) and ``O = median(setup +
teardown) + c``; with one size, the run is taken as proportional to the size (``c = 0``,
``r = median run / size``), and the result says so. (Means let one slow run move the
break-even against the median speedups shown beside it.) The backend breaks even with the sequential loop at
``size* = (O_backend − O_seq) / (r_seq − r_backend)``: at any size when it costs no more to
start, never when it is no faster per unit of work. A crossing is claimed only where the data
shows the backend ahead (its end-to-end speedup interval above 1 at the largest size measured);
else the text is "not at the sizes measured", whatever a fit through the noise would extrapolate.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd

from conc_lab.analysis.frames import BASELINE_KEYS, GROUP_KEYS, SEQUENTIAL, join_key, match_rows
from conc_lab.analysis.stats import SortedGroups, group_codes, ok_runs, sum_by


def end_to_end(df: pd.DataFrame) -> np.ndarray:
    """Per run: ``setup_s + run_s + teardown_s``; teardown counts where measured (column present, not null).

    Example::

        >>> end_to_end(pd.DataFrame({"setup_s": [0.1, 0.1], "run_s": [1.0, 1.0], "teardown_s": [0.2, None]}))
        array([1.3, 1.1])
    """
    run = df["run_s"].to_numpy(dtype=np.float64, na_value=np.nan)
    setup = df["setup_s"].to_numpy(dtype=np.float64, na_value=np.nan) if "setup_s" in df.columns else 0.0
    if "teardown_s" not in df.columns:
        return run + setup
    teardown = df["teardown_s"].to_numpy(dtype=np.float64, na_value=np.nan)
    return run + setup + np.nan_to_num(teardown)


def _fixed_cost(df: pd.DataFrame, codes: np.ndarray, ok: np.ndarray, ngroups: int) -> np.ndarray:
    """Per curve, the median measured start-up + teardown (0 where neither was measured)."""
    fixed = np.nan_to_num(end_to_end(df) - df["run_s"].to_numpy(dtype=np.float64, na_value=np.nan))
    return np.nan_to_num(SortedGroups(codes[ok], fixed[ok], ngroups).quantile(0.5))


def size_models(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per curve (``keys``, not ``size``): ``fixed_s`` (O), ``per_unit_s`` (r), ``sizes`` measured,
    ``min_size``/``max_size``, from the ok runs (see the module doc).

    Example::

        >>> df = pd.DataFrame({"w": "x", "size": [10, 10, 20, 20], "run_s": [1.1, 1.1, 2.1, 2.1], "setup_s": 0.5})
        >>> m = size_models(df, ["w"]).loc[0]
        >>> print(round(m.fixed_s, 6), round(m.per_unit_s, 6), m.sizes)
        0.6 0.1 2
    """
    ok = ok_runs(df)
    part = df[ok]
    codes, groups = group_codes(part[keys].astype(object), keys)
    g = len(groups)
    x, y, curve = _median_runs(
        codes, part["size"].to_numpy(dtype=np.float64), part["run_s"].to_numpy(dtype=np.float64)
    )
    n = np.bincount(curve, minlength=g).astype(np.float64)
    sizes = n.astype(np.int64)  # one median per distinct size
    with np.errstate(divide="ignore", invalid="ignore"):
        mx, my = sum_by(curve, x, g) / n, sum_by(curve, y, g) / n
        dx = x - mx[curve]
        slope = sum_by(curve, dx * (y - my[curve]), g) / sum_by(curve, dx * dx, g)
        # one size: the run taken as proportional to it (no intercept can be told apart)
        slope = np.where(sizes > 1, slope, my / mx)
        intercept = np.where(sizes > 1, my - slope * mx, 0.0)
    groups["fixed_s"] = _fixed_cost(part, codes, np.ones(len(part), bool), g) + intercept
    groups["per_unit_s"] = slope
    groups["sizes"] = sizes
    groups["min_size"] = pd.Series(x).groupby(curve).min().reindex(range(g)).to_numpy()
    groups["max_size"] = pd.Series(x).groupby(curve).max().reindex(range(g)).to_numpy()
    return groups


def _median_runs(
    codes: np.ndarray, size: np.ndarray, run: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (curve, size) measured: the size, the median run, and the curve's code.

    Example::

        >>> x, y, curve = _median_runs(np.array([0, 0, 0, 1]), np.array([5.0, 5.0, 5.0, 5.0]), np.array([1.0, 9.0, 2.0, 3.0]))
        >>> x.tolist(), y.tolist(), curve.tolist()
        ([5.0, 5.0], [2.0, 3.0], [0, 1])
    """
    if not len(codes):
        return size, run, codes
    pairs, inverse = np.unique(np.column_stack([codes.astype(np.float64), size]), axis=0, return_inverse=True)
    medians = SortedGroups(inverse.reshape(-1), run, len(pairs)).quantile(0.5)
    return pairs[:, 1], medians, pairs[:, 0].astype(np.int64)


def break_even_size(fixed_b, per_unit_b, fixed_s, per_unit_s) -> np.ndarray:
    """The work size above which the backend (``_b``) beats the sequential loop (``_s``) end to end:
    0 when it costs no more to start, ``inf`` when it is no faster per unit of work.

    Example::

        >>> break_even_size(np.array([0.1, 0.0, 0.1]), np.array([0.5, 0.5, 1.0]), 0.0, 1.0).tolist()
        [0.2, 0.0, inf]
    """
    fixed_b, per_unit_b = np.asarray(fixed_b, dtype=np.float64), np.asarray(per_unit_b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = per_unit_s - per_unit_b  # time saved per unit of work
        extra = fixed_b - fixed_s  # what the backend costs more to start and stop
        size = np.where(gain > 0, np.clip(extra / gain, 0, None), np.inf)
    size = np.where(extra <= 0, np.where(gain >= 0, 0.0, np.inf), size)
    return np.where(np.isfinite(fixed_b) & np.isfinite(per_unit_b) & np.isfinite(gain), size, np.nan)


def describe_break_even(size: float, sizes: int, min_size: float, max_size: float) -> str:
    """The break-even size as people read it.

    Example::

        >>> describe_break_even(2.5e5, 3, 1e4, 1e6), describe_break_even(2e7, 1, 1e5, 1e5)
        ('size ≥ 250,000', 'size ≥ 20,000,000 (extrapolated; one size measured, run ∝ size assumed)')
    """
    if not np.isfinite(size):
        return "never (no faster per unit of work)" if size == np.inf else ""
    if size == 0:
        return "any size"
    text = f"size ≥ {size_text(size)}"
    notes = []
    if size < min_size or size > max_size:
        notes.append("extrapolated")
    if sizes < 2:
        notes.append("one size measured, run ∝ size assumed")
    return text + (f" ({'; '.join(notes)})" if notes else "")


def size_text(size: float) -> str:
    """A work size to 2 significant figures as people write it, never in e-notation (a fit's
    break-even is no more precise than that, and ``3.7e+05`` was read as a typo).

    Example::

        >>> [size_text(x) for x in (3.74e5, 1234, 99.6, 12, 0.25, 1e-5, 1.2e21)]
        ['370,000', '1,200', '100', '12', '0.25', '0.00001', '1,200,000,000,000,000,000,000']
    """
    return format(Decimal(f"{size:.2g}"), ",f")


def _take(frame: pd.DataFrame, column: str, rows: np.ndarray) -> np.ndarray:
    """``frame[column]`` at ``rows``; NaN where a row is -1 (no match)."""
    values = frame[column].to_numpy(dtype=np.float64) if len(frame) else np.zeros(1)
    return np.where(rows >= 0, values[np.clip(rows, 0, None)], np.nan)


def with_break_even(out: pd.DataFrame, df: pd.DataFrame, keyed: pd.DataFrame) -> pd.DataFrame:
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
    # A crossing is claimed only where the data shows the backend ahead: at the largest size
    # measured, its end-to-end speedup's whole interval above 1. A fit through noise (threads on
    # pure Python, a hair "faster" per unit) would otherwise extrapolate a crossing never seen.
    unsupported = found & np.isfinite(sizes) & ~_ahead_at_largest(out, curve_keys)
    sizes = np.where(unsupported, np.nan, sizes)
    # one size measured on either side: that side's run is taken as proportional to the size
    measured = np.fmin(pick["sizes"], _take(base, "sizes", b))
    text = [
        NOT_SEEN if no else describe_break_even(x, n, lo, hi) if ok else ""
        for x, n, lo, hi, ok, no in zip(
            sizes, measured, pick["min_size"], pick["max_size"], found, unsupported, strict=True
        )
    ]
    return out.assign(break_even_size=sizes, break_even=text)


#: The break-even text where the backend is not ahead at the largest size measured.
NOT_SEEN = "not at the sizes measured"


def where_it_wins(break_even: str) -> str:
    """Where a backend wins, from its break-even text, as the end of a sentence ("so it ...").

    >>> [where_it_wins(t) for t in ("size ≥ 750,000 (extrapolated)", "any size", "never (no faster per unit of work)")]
    ['wins only at size ≥ 750,000', 'wins at any size', 'never wins (no faster per unit of work)']
    >>> where_it_wins(NOT_SEEN)
    'does not win at the sizes measured'
    """
    where, _, why = break_even.partition(" (")
    if where.startswith("size"):
        return f"wins only at {where}"
    if where == "any size":
        return "wins at any size"
    if where == "never":
        return "never wins" + (f" ({why}" if why else "")
    return "does not win " + NOT_SEEN.removeprefix("not ")


def _ahead_at_largest(out: pd.DataFrame, curve_keys: list[str]) -> np.ndarray:
    """Per row, whether its curve's row at the largest measured size has an end-to-end speedup
    interval wholly above 1."""
    key = join_key(out, curve_keys)
    frame = pd.DataFrame(
        {
            "k": key.to_numpy(),
            "size": pd.to_numeric(out["size"], errors="coerce").to_numpy(),
            "low": out["e2e_speedup_ci_low"].to_numpy(dtype=np.float64),
        }
    ).dropna(subset=["size"])
    largest = frame.sort_values("size").groupby("k").tail(1).set_index("k")["low"]
    return key.map(largest).to_numpy(dtype=np.float64, na_value=np.nan) > 1

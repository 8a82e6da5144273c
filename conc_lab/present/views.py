"""The report's tables as frames for people: scaling fits, forecasts, Karp–Flatt, end to end, failures.

Only formatting: every number comes from ``analysis``; the page turns these frames into HTML.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from conc_lab import schema
from conc_lab.analysis.scaling import predict_scaling
from conc_lab.host.protocol import SEQUENTIAL
from conc_lab.host.units import duration
from conc_lab.present.render import interval_cell


def varying(frame: pd.DataFrame, keys: list[str]) -> list[str]:
    """``keys`` without the optional ones that never vary (node, affinity, ...): noise in a table."""
    optional = ("start_method", "python", "node", "affinity", "options")
    return [
        k
        for k in keys
        if k in frame.columns and (k not in optional or frame[k].astype(object).nunique(dropna=False) > 1)
    ]


def _pm(value: float, se: float, spec: str) -> str:
    if not np.isfinite(value):
        return "–"
    return format(value, spec) + (f" ± {format(se, spec)}" if np.isfinite(se) else "")


def fit_view(fits: pd.DataFrame) -> pd.DataFrame:
    """The fits table for people: both laws' parameters with standard errors, misfit, the better one."""
    keys = varying(
        fits,
        ["workload", "tasks", "size", "backend", "start_method", "python", "node", "affinity", "options"],
    )
    view = fits[keys].astype(object).where(fits[keys].notna(), "-").copy()
    view["workers"] = [
        f"{a}–{b} ({n} counts)"
        for a, b, n in zip(fits["min_workers"], fits["max_workers"], fits["points"], strict=True)
    ]
    view["Amdahl f"] = [_pm(v, e, ".3f") for v, e in zip(fits["amdahl_f"], fits["amdahl_f_se"], strict=True)]
    view["Amdahl misfit"] = [f"{v:.2g}" if np.isfinite(v) else "–" for v in fits["amdahl_chi2"]]
    view["USL σ"] = [_pm(v, e, ".3f") for v, e in zip(fits["usl_sigma"], fits["usl_sigma_se"], strict=True)]
    view["USL κ"] = [_pm(v, e, ".4f") for v, e in zip(fits["usl_kappa"], fits["usl_kappa_se"], strict=True)]
    view["USL peak at"] = [_peak(v) for v in fits["usl_peak_workers"]]
    view["USL misfit"] = [f"{v:.2g}" if np.isfinite(v) else "–" for v in fits["usl_chi2"]]
    view["better"] = fits["better"].map({"usl": "USL", "amdahl": "Amdahl", "none": "–"})
    view["note"] = fits["note"]
    return view


def _speed(x: float) -> str:
    """A speedup for a table: 2 decimals, 3 significant digits past 1000, ∞ for an unbounded interval."""
    if not np.isfinite(x):
        return "∞" if x > 0 else "–"
    return f"{x:.2f}" if x < 1000 else f"{x:.3g}"


def _peak(x: float) -> str:
    if not np.isfinite(x):
        return "none" if x == np.inf else "–"
    return f"{x:.1f} workers" if x < 1000 else "beyond 1000 workers"


#: A forecast whose interval spans this factor or more says nothing a reader can use.
FORECAST_MAX_SPREAD = 4.0


def forecast_cell(speedup: float, low: float, high: float, workers: int) -> str:
    """A forecast speedup with its interval, bounded: neither law can forecast more than ``workers``
    nor less than 0, so the interval is clipped there; one still spanning ``FORECAST_MAX_SPREAD``
    times or more is omitted as too uncertain rather than printed as ``64.00 (0.00–4.38e+17)``.

    >>> forecast_cell(64.0, 0.0, 4.38e17, 64), forecast_cell(3.1, 2.8, 5.0, 4), forecast_cell(3.0, 1.0, 3.5, 4)
    ('too uncertain', '3.10 (2.80–4.00)', '3.00 (1.00–3.50)')
    """
    if not np.isfinite(speedup):
        return "–"
    low = max(low, 0.0) if np.isfinite(low) else 0.0
    high = float(workers) if np.isnan(high) else min(high, float(workers))
    if low <= 0 or high / low >= FORECAST_MAX_SPREAD:  # 1–4 at 4 workers: all Amdahl can say
        return "too uncertain"
    return f"{_speed(speedup)} ({_speed(low)}–{_speed(high)})"


def prediction_view(fits: pd.DataFrame) -> pd.DataFrame:
    """Per curve and law, the forecast speedup at 4, 8, 16, 64 workers; * marks an extrapolation."""
    pred = predict_scaling(fits)
    keys = varying(
        pred,
        ["workload", "tasks", "size", "backend", "start_method", "python", "node", "affinity", "options"],
    )
    if len(pred) == 0:
        return pd.DataFrame(columns=keys + ["law"])
    pred = pred.assign(
        law=pred["law"].map({"usl": "USL", "amdahl": "Amdahl"}) + np.where(pred["better"], " (better)", ""),
        cell=[
            forecast_cell(sp, lo, hi, w) + ("*" if ex else "")
            for sp, lo, hi, w, ex in zip(
                pred["speedup"],
                pred["speedup_low"],
                pred["speedup_high"],
                pred["workers"],
                pred["extrapolated"],
                strict=True,
            )
        ],
    )
    index = keys + ["law"]
    flat = pred.assign(**{k: pred[k].astype(object).where(pred[k].notna(), "-") for k in index})
    wide = flat.pivot_table(index=index, columns="workers", values="cell", aggfunc="first", sort=False)
    wide.columns = [f"{w} workers" for w in wide.columns]
    return wide.reset_index()


def karp_view(summary: pd.DataFrame) -> pd.DataFrame:
    karp = summary[np.isfinite(summary["karp_flatt"])][
        ["workload", "tasks", "size", "backend", "start_method", "workers", "speedup", "karp_flatt"]
    ].copy()
    karp["speedup"] = karp["speedup"].map(lambda v: f"{v:.2f}")
    karp["karp_flatt"] = karp["karp_flatt"].map(lambda v: f"{v:.3f}")
    karp = karp.drop(columns=[c for c in karp.columns if karp[c].isna().all()])
    return karp


def end_to_end_view(summary: pd.DataFrame) -> pd.DataFrame:
    """Run-only and end-to-end speedups side by side, with the break-even work size (empty: none)."""
    part = summary[(summary["backend"].astype(object) != SEQUENTIAL) & (summary["n"] > 0)]
    if len(part) == 0 or "e2e_speedup" not in part.columns:
        return pd.DataFrame()
    keys = varying(
        part,
        ["workload", "tasks", "size", "backend", "start_method", "python", "node", "affinity", "options"],
    )
    view = part[keys].astype(object).where(part[keys].notna(), "-").copy()
    view["workers"] = part["workers"]
    view["run-only speedup"] = [
        interval_cell(s, lo, hi)
        for s, lo, hi in zip(part["speedup"], part["speedup_ci_low"], part["speedup_ci_high"], strict=True)
    ]
    view["end-to-end speedup"] = [
        interval_cell(s, lo, hi)
        for s, lo, hi in zip(
            part["e2e_speedup"], part["e2e_speedup_ci_low"], part["e2e_speedup_ci_high"], strict=True
        )
    ]
    view["end to end"] = [duration(x) for x in part["e2e_s"]]
    view["breaks even at"] = part["break_even"]
    return view.reset_index(drop=True)


#: The columns of a failed run worth reading, in this order.
_FAILURE_COLUMNS = (
    "workload",
    "tasks",
    "size",
    "backend",
    "start_method",
    "workers",
    "repeat",
    "status",
    "error",
)


def failures_view(df: pd.DataFrame, limit: int = 50) -> tuple[pd.DataFrame, int]:
    """The first ``limit`` failed or timed-out runs (error cut to 300 characters), and how many failed."""
    if "status" not in df.columns:
        return pd.DataFrame(), 0
    bad = df[df["status"].astype(object).isin(schema.FAILURES)]
    view = bad[[c for c in _FAILURE_COLUMNS if c in bad.columns]].head(limit).copy()
    if "error" in view.columns:
        view["error"] = (
            view["error"].astype(object).map(lambda e: "" if e is None or e != e else str(e)[:300])
        )
    return view, len(bad)

"""Scaling laws fitted to a summary's speedups over worker counts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from conc_lab.analysis.frames import GROUP_KEYS, SEQUENTIAL
from conc_lab.analysis.stats import distinct_per_group, group_codes, sum_by


def fit_amdahl(summary: pd.DataFrame) -> pd.DataFrame:
    """Fit Amdahl's law ``S(p) = 1 / (f + (1 - f) / p)`` per (workload, parameters, backend).

    ``f`` (``serial_fraction``) is the least-squares fit in the time domain: ``1/S - 1/p =
    f (1 - 1/p)`` is linear in ``f``, so the fit is closed-form and exact for data that obey
    the law. Rows: the summary's keys except ``workers``, ``points`` (worker counts used),
    ``max_workers``, ``serial_fraction``, ``max_speedup`` (``1/f``, the law's ceiling) and
    ``rmse`` of the fitted speedups. ``f`` is bounded to [0, 1] (a fraction: a slowdown shows as
    ``f = 1``, and the USL in ``fit_scaling`` is the law that can express it), and is NaN for
    a curve of a single worker count: one parameter is never fitted to one point.

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
    points = distinct_per_group(codes, p, g)
    with np.errstate(divide="ignore", invalid="ignore"):
        # the objective is quadratic in f, so clipping the free optimum is the bounded optimum
        f = np.clip(sum_by(codes, a * y, g) / sum_by(codes, a * a, g), 0.0, 1.0)
        f = np.where(points > 1, f, np.nan)
        fitted = 1.0 / (f[codes] + (1.0 - f[codes]) / p)
        rmse = np.sqrt(sum_by(codes, (fitted - speed) ** 2, g) / np.bincount(codes, minlength=g))
        groups["points"] = points
        groups["max_workers"] = pd.Series(p).groupby(codes).max().to_numpy()
        groups["serial_fraction"] = f
        groups["max_speedup"] = np.where(f > 0, 1.0 / f, np.where(np.isfinite(f), np.inf, np.nan))
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


# --- Amdahl (bounded) and Gunther's Universal Scalability Law, side by side ---------------------

#: Worker counts ``predict_scaling`` forecasts by default.
PREDICT_WORKERS = (4, 8, 16, 64)
#: Parameters of each law and their bounds: a serial fraction lies in [0, 1]; contention σ too,
#: coherency κ is any non-negative number (κ > 0 is what makes the curve fall: retrograde scaling).
LAWS = {
    "amdahl": (("f",), ([0.0], [1.0])),
    "usl": (("sigma", "kappa"), ([0.0, 0.0], [1.0, np.inf])),
}
TOO_FEW = "too few worker counts"
#: Misfit (per degree of freedom) past which a law is said not to describe a curve at all.
MISFIT = 10.0
FIT_COLUMNS = [
    "points",
    "min_workers",
    "max_workers",
    "amdahl_f",
    "amdahl_f_se",
    "amdahl_rmse",
    "amdahl_chi2",
    "usl_sigma",
    "usl_sigma_se",
    "usl_kappa",
    "usl_kappa_se",
    "usl_corr",
    "usl_rmse",
    "usl_chi2",
    "usl_peak_workers",
    "better",
    "note",
]


def usl_speedup(sigma: float, kappa: float, workers: np.ndarray) -> np.ndarray:
    """Gunther's Universal Scalability Law: ``S(N) = N / (1 + σ(N − 1) + κN(N − 1))``.

    σ (contention) caps the speedup as Amdahl's serial fraction does; κ (coherency: workers
    keeping each other's state in step) makes it *fall* past ``N* = sqrt((1 − σ)/κ)``.

    Example::

        >>> usl_speedup(0.0, 0.0, np.array([1, 4])).tolist(), usl_speedup(0.1, 0.01, np.array([1, 2])).tolist()
        ([1.0, 4.0], [1.0, 1.7857142857142856])
    """
    n = np.asarray(workers, dtype=np.float64)
    return n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))


def _law_log_speedup(law: str, params: np.ndarray, n: np.ndarray) -> np.ndarray:
    if law == "amdahl":
        return np.log(amdahl_speedup(params[0], n))
    return np.log(usl_speedup(params[0], params[1], n))


def _law_gradient(law: str, params: np.ndarray, n: np.ndarray) -> np.ndarray:
    """d log S / d params, one row per worker count."""
    n = np.asarray(n, dtype=np.float64)
    if law == "amdahl":
        f = params[0]
        return (-(1.0 - 1.0 / n) / (f + (1.0 - f) / n))[:, None]
    denom = 1.0 + params[0] * (n - 1.0) + params[1] * n * (n - 1.0)
    return np.column_stack([-(n - 1.0) / denom, -n * (n - 1.0) / denom])


def _start(law: str, n: np.ndarray, speed: np.ndarray) -> np.ndarray:
    """A starting point from the linearised laws (``N/S − 1`` is linear in the parameters), clipped.

    Amdahl is USL with κ = 0: ``N/S − 1 = f(N − 1)``.
    """
    lo, hi = LAWS[law][1]
    y = n / speed - 1.0
    x = (n - 1.0)[:, None] if law == "amdahl" else np.column_stack([n - 1.0, n * (n - 1.0)])
    guess = np.linalg.lstsq(x, y, rcond=None)[0]
    return np.clip(np.nan_to_num(guess), np.array(lo) + 1e-9, np.minimum(hi, 1e6) - 1e-9)


def fit_law(law: str, workers: np.ndarray, speedup: np.ndarray, log_sd: np.ndarray | None = None) -> dict:
    """Least-squares fit of ``law`` (``"amdahl"`` or ``"usl"``) to speedups, on the log scale, within bounds.

    ``log_sd`` is each point's standard error of ``log(speedup)`` (from its interval); without it
    every point weighs the same. Returns ``params``, ``se`` (standard errors), ``cov``, ``rmse``
    (of the speedups), ``chi2`` (weighted residual sum of squares per degree of freedom: the
    goodness of fit, lower is better, and ≈ 1 means "within the measured noise") and ``dof``;
    or ``note`` "too few worker counts" when there are not more worker counts than parameters.

    Example::

        >>> n = np.array([1, 2, 4, 8])
        >>> fit = fit_law("usl", n, usl_speedup(0.05, 0.002, n))
        >>> [round(p, 4) for p in fit["params"]]
        [0.05, 0.002]
        >>> fit_law("usl", n[:2], usl_speedup(0.05, 0.002, n[:2]))["note"]
        'too few worker counts (2 for 2 parameters)'
    """
    from scipy.optimize import least_squares

    names, (lo, hi) = LAWS[law]
    n, speed = np.asarray(workers, dtype=np.float64), np.asarray(speedup, dtype=np.float64)
    points = len(np.unique(n))
    if points <= len(names):
        return {"note": f"{TOO_FEW} ({points} for {len(names)} parameter{'s' * (len(names) > 1)})"}
    sd = np.ones(len(n)) if log_sd is None else np.asarray(log_sd, dtype=np.float64)
    weighted = bool(np.all(np.isfinite(sd) & (sd > 0)))
    sd = sd if weighted else np.ones(len(n))
    fit = least_squares(
        lambda p: (np.log(speed) - _law_log_speedup(law, p, n)) / sd, _start(law, n, speed), bounds=(lo, hi)
    )
    dof = len(n) - len(names)
    chi2 = float(np.sum(fit.fun**2)) / dof
    # known per-point errors: scale up only when the scatter exceeds them (Birge ratio); else the scatter
    scale = max(1.0, chi2) if weighted else chi2
    jac = _law_gradient(law, fit.x, n) / sd[:, None]
    cov = np.linalg.pinv(jac.T @ jac) * scale
    model = np.exp(_law_log_speedup(law, fit.x, n))
    return {
        "params": fit.x.tolist(),
        "se": np.sqrt(np.clip(np.diag(cov), 0, None)).tolist(),
        "cov": cov,
        "rmse": float(np.sqrt(np.mean((model - speed) ** 2))),
        "chi2": chi2,
        "rss": chi2 * dof,
        "dof": dof,
        "note": "",
    }


def predict_law(
    law: str, fit: dict, workers: np.ndarray, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Speedup the fitted ``law`` forecasts at ``workers`` and its interval at ``level`` (delta method, t).

    The interval is bounded to what the law can forecast with its parameters in their bounds:
    neither law exceeds the worker count, and Amdahl's (0 ≤ f ≤ 1) never falls below 1.

    Example::

        >>> n = np.array([1, 2, 4, 8])
        >>> s, lo, hi = predict_law("amdahl", fit_law("amdahl", n, amdahl_speedup(0.1, n)), np.array([64]))
        >>> round(float(s[0]), 3), bool(lo[0] <= s[0] <= hi[0])
        (8.767, True)
    """
    from scipy.stats import t

    n = np.asarray(workers, dtype=np.float64)
    params = np.asarray(fit["params"])
    log_s = _law_log_speedup(law, params, n)
    grad = _law_gradient(law, params, n)
    se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", grad, fit["cov"], grad), 0, None))
    half = t.ppf(0.5 + level / 2, fit["dof"]) * se
    floor = 1.0 if law == "amdahl" else 0.0
    with np.errstate(over="ignore"):  # one degree of freedom can make an interval unbounded
        low, high = np.exp(log_s - half), np.exp(log_s + half)
    return np.exp(log_s), np.maximum(low, floor), np.minimum(high, n)


def _log_sd(part: pd.DataFrame) -> np.ndarray:
    """Standard error of log(speedup) per point, from its interval (NaN where there is none)."""
    from scipy.stats import norm

    lo = part["speedup_ci_low"].to_numpy(dtype=np.float64) if "speedup_ci_low" in part.columns else np.nan
    hi = part["speedup_ci_high"].to_numpy(dtype=np.float64) if "speedup_ci_high" in part.columns else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.log(hi) - np.log(lo)) / (2 * norm.ppf(0.975)) * np.ones(len(part))


def _better(amdahl: dict, usl: dict, alpha: float = 0.05) -> str:
    """USL when its extra parameter buys a significant drop in misfit (nested-model F-test), else Amdahl."""
    from scipy.stats import f as f_dist

    if "params" not in amdahl:
        return "usl" if "params" in usl else "none"
    if "params" not in usl:
        return "amdahl"
    gain, rest = amdahl["rss"] - usl["rss"], usl["rss"] / usl["dof"]
    if gain <= 1e-12 * max(amdahl["rss"], 1e-300):
        return "amdahl"  # USL with κ = 0 is Amdahl: no better, and the simpler law wins
    if rest <= 0:
        return "usl"
    return "usl" if f_dist.sf(gain / rest, 1, usl["dof"]) < alpha else "amdahl"


def _fit_row(part: pd.DataFrame) -> dict:
    n = part["workers"].to_numpy(dtype=np.float64)
    speed = part["speedup"].to_numpy(dtype=np.float64)
    sd = _log_sd(part)
    fits = {law: fit_law(law, n, speed, sd) for law in LAWS}
    a, u = fits["amdahl"], fits["usl"]
    row = {"points": len(np.unique(n)), "min_workers": int(n.min()), "max_workers": int(n.max())}
    row.update(amdahl_f=np.nan, amdahl_f_se=np.nan, amdahl_rmse=np.nan, amdahl_chi2=np.nan)
    row.update({k: np.nan for k in FIT_COLUMNS if k.startswith("usl_")})
    if "params" in a:
        row.update(
            amdahl_f=a["params"][0], amdahl_f_se=a["se"][0], amdahl_rmse=a["rmse"], amdahl_chi2=a["chi2"]
        )
    if "params" in u:
        (sigma, kappa), (s_se, k_se) = u["params"], u["se"]
        row.update(usl_sigma=sigma, usl_sigma_se=s_se, usl_kappa=kappa, usl_kappa_se=k_se)
        row.update(usl_rmse=u["rmse"], usl_chi2=u["chi2"])
        row["usl_corr"] = u["cov"][0, 1] / (s_se * k_se) if s_se > 0 and k_se > 0 else 0.0
        # past N* the curve falls; with σ = 1 it falls from the start (N* = 1)
        row["usl_peak_workers"] = max(1.0, np.sqrt((1 - sigma) / kappa)) if kappa > 0 else np.inf
    names = {"usl": "USL", "amdahl": "Amdahl"}
    notes = [f"{names[law]}: {f['note']}" for law, f in fits.items() if f["note"]]
    notes += [
        f"{names[law]} misfit {f['chi2']:.2g}: the law does not describe this curve"
        for law, f in fits.items()
        if "params" in f and f["chi2"] > MISFIT
    ]
    row.update(better=_better(a, u), note="; ".join(notes))
    return row


def _curves(summary: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """The scaling curves of a summary: its non-sequential rows with a usable speedup, and their keys."""
    keys = [k for k in GROUP_KEYS if k != "workers" and k in summary.columns]
    s = summary[(summary["backend"].astype(object) != SEQUENTIAL) & np.isfinite(summary["speedup"])]
    return keys, s[s["speedup"] > 0]


def fit_scaling(summary: pd.DataFrame) -> pd.DataFrame:
    """Amdahl (0 ≤ f ≤ 1) and the USL fitted side by side per curve (a summary's keys but ``workers``).

    Fits are on the log of the speedups, each point weighed by its interval. Columns: the keys;
    ``points`` (worker counts), ``min_workers``, ``max_workers``; ``amdahl_f`` with its standard
    error ``amdahl_f_se``; ``usl_sigma``, ``usl_kappa`` with theirs and their correlation
    ``usl_corr``; per law ``*_rmse`` (of the speedups) and ``*_chi2`` (misfit per degree of
    freedom, ≈ 1 within the noise); ``usl_peak_workers`` (where the USL curve turns down);
    ``better`` (``usl`` when its κ buys a significant drop in misfit, F-test; else ``amdahl``;
    ``none`` when neither could be fitted) and ``note`` (e.g. "USL: too few worker counts
    (2 for 2 parameters)": a law is never fitted with as many parameters as points).

    Example::

        >>> n = np.array([1, 2, 4, 8])
        >>> s = pd.DataFrame({"workload": "w", "backend": "threading", "workers": n,
        ...                   "speedup": usl_speedup(0.02, 0.01, n)})
        >>> fit = fit_scaling(s).loc[0]
        >>> print(fit.better, round(fit.usl_sigma, 3), round(fit.usl_kappa, 3), round(fit.usl_peak_workers, 1))
        usl 0.02 0.01 9.9
    """
    keys, s = _curves(summary)
    if len(s) == 0:
        return pd.DataFrame(columns=keys + FIT_COLUMNS)
    codes, groups = group_codes(s[keys].astype(object), keys)
    rows = [_fit_row(s[codes == g]) for g in range(len(groups))]
    return pd.concat([groups, pd.DataFrame(rows, columns=FIT_COLUMNS)], axis=1)


def _fit_of(row: pd.Series, law: str) -> dict | None:
    """The ``fit_law`` dict of one law, rebuilt from a ``fit_scaling`` row (None where not fitted)."""
    k = len(LAWS[law][0])
    if law == "amdahl":
        if not np.isfinite(row["amdahl_f"]):
            return None
        return {
            "params": [row["amdahl_f"]],
            "cov": np.array([[row["amdahl_f_se"] ** 2]]),
            "dof": row["points"] - k,
        }
    if not np.isfinite(row["usl_sigma"]):
        return None
    s_se, k_se = row["usl_sigma_se"], row["usl_kappa_se"]
    off = row["usl_corr"] * s_se * k_se
    cov = np.array([[s_se**2, off], [off, k_se**2]])
    return {"params": [row["usl_sigma"], row["usl_kappa"]], "cov": cov, "dof": row["points"] - k}


def predict_scaling(
    fits: pd.DataFrame, workers: tuple[int, ...] = PREDICT_WORKERS, level: float = 0.95
) -> pd.DataFrame:
    """Each fitted law's forecast at ``workers``, with its interval; ``extrapolated`` beyond the measured range.

    ``fits`` is what ``fit_scaling`` returns; a summary (``summarize``'s, with ``speedup``) is
    fitted first.

    One row per curve, law and worker count: the curve's keys, ``law``, ``workers``, ``speedup``,
    ``speedup_low``/``speedup_high`` (at ``level``; within what the law can forecast: at most the
    worker count, and at least 1 for Amdahl), ``extrapolated`` (outside the worker counts
    measured: a forecast, not a measurement) and ``better`` (this law fits the curve better).

    Example::

        >>> n = np.array([1, 2, 4])
        >>> s = pd.DataFrame({"workload": "w", "backend": "mp", "workers": n, "speedup": amdahl_speedup(0.1, n)})
        >>> p = predict_scaling(fit_scaling(s), (4, 8))
        >>> p[p.law == "amdahl"][["workers", "extrapolated"]].values.tolist()
        [[4, False], [8, True]]
    """
    if "amdahl_f" not in fits.columns:
        if "speedup" not in fits.columns:
            raise ValueError("predict_scaling needs fit_scaling(summary) or a summary with speedups")
        fits = fit_scaling(fits)
    keys = [k for k in fits.columns if k not in FIT_COLUMNS]
    out = []
    n = np.asarray(workers, dtype=np.float64)
    for _, row in fits.iterrows():
        for law in LAWS:
            fit = _fit_of(row, law)
            if fit is None:
                continue
            speed, lo, hi = predict_law(law, fit, n, level)
            base = {k: row[k] for k in keys}
            out += [
                {
                    **base,
                    "law": law,
                    "workers": int(w),
                    "speedup": sp,
                    "speedup_low": a,
                    "speedup_high": b,
                    "extrapolated": bool(w > row["max_workers"] or w < row["min_workers"]),
                    "better": row["better"] == law,
                }
                for w, sp, a, b in zip(n, speed, lo, hi, strict=True)
            ]
    cols = keys + ["law", "workers", "speedup", "speedup_low", "speedup_high", "extrapolated", "better"]
    return pd.DataFrame(out, columns=cols)

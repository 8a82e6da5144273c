"""How the verdict says its numbers: speedups, intervals, worker counts, durations, and JSON without NaN.

Kept apart from ``verdict`` so that the rules of the verdict and the words it is told in can each
grow without the other's module passing its size.
"""

from __future__ import annotations

import math

import numpy as np


def x_text(value: float, digits: int = 2) -> str:
    return "?×" if not math.isfinite(value) else f"{value:.{digits}f}×"


def span(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "no interval"
    return f"{low:.2f}–{high:.2f}"


def interval(low: float, high: float, runs: int) -> str:
    """An arm's interval as the verdict shows it; with one run there is none to show.

    A single run's "interval" is that run twice (``1.54–1.54``): it claims a precision no run gave.

    >>> interval(1.5, 1.6, 5), interval(1.54, 1.54, 1), interval(float("nan"), 1.0, 3)
    ('1.50–1.60', '1 run: too few for an interval', 'no interval')
    """
    if runs < 2:
        return f"{runs} run{'s' * (runs != 1)}: too few for an interval"
    return span(low, high)


def n_workers(n: int) -> str:
    return f"{n} worker" + ("s" if n != 1 else "")


def seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    return f"{s * 1e6:.0f} µs" if s < 1e-3 else f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return str(value)


def clean(doc):
    """NaN and infinities as null: JSON has none."""
    if isinstance(doc, dict):
        return {k: clean(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [clean(v) for v in doc]
    if isinstance(doc, float) and not math.isfinite(doc):
        return None
    return _plain(doc) if isinstance(doc, (np.integer, np.floating)) else doc

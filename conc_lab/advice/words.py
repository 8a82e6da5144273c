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

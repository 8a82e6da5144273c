"""The chosen arm's speedup forecast at more cores, from the scaling law that fits its runs better.

A forecast, not a measurement: ``conclab advise`` says so beside it (extrapolated past the most
workers measured).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from conc_lab.advice.words import x_text
from conc_lab.host.protocol import ASYNCIO, MULTIPROCESSING, SEQUENTIAL


@dataclass(frozen=True)
class Forecast:
    """The chosen arm's speedup forecast at more cores, from a scaling law: a forecast, not a measurement."""

    cores: int
    speedup: float
    law: str  # "Amdahl f=0.06" or "USL σ=0.02 κ=0.001"
    extrapolated: bool

    def text(self) -> str:
        tail = ", extrapolated" if self.extrapolated else ""
        return f"forecast at {self.cores} cores: {x_text(self.speedup, 1)} ({self.law}{tail})"


def at_more_cores(fits: pd.DataFrame | None, choice, cores: int) -> Forecast | None:
    """The chosen arm's (a ``verdict.ArmResult``) speedup at 4× the cores (at least 8), by the law
    that fits it better."""
    if fits is None or choice is None or len(fits) == 0 or choice.backend in (ASYNCIO, SEQUENTIAL):
        return None
    rows = fits[fits["backend"].astype(object) == choice.backend]
    if "start_method" in rows.columns and "(" in choice.arm and choice.backend == MULTIPROCESSING:
        rows = rows[rows["start_method"].astype(object) == choice.arm.split("(")[1].rstrip(")")]
    if len(rows) == 0:
        return None
    row = rows.iloc[0]
    target = max(8, 4 * cores)
    f = row.get("amdahl_f")
    if row.get("better") == "usl" and pd.notna(row.get("usl_sigma")):
        s, k = float(row["usl_sigma"]), float(row["usl_kappa"])
        speed = target / (1 + s * (target - 1) + k * target * (target - 1))
        law = f"USL σ={s:.2g} κ={k:.2g}"
    elif f is not None and pd.notna(f):
        speed = 1 / (float(f) + (1 - float(f)) / target)
        law = f"Amdahl f={float(f):.2f}"
    else:
        return None
    return Forecast(target, speed, law, bool(target > row.get("max_workers", target)))

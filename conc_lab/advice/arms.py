"""Each *arm* (a backend with its start method or interpreter) at its best worker count, from a
``conc_lab.summarize`` frame: its end-to-end speedup over the plain loop with its interval, its
start-up, its why; and how costly an arm is to use (``cost_rank``), which the verdict picks by.

Kept apart from ``verdict`` so that the rules of the verdict (which arm, settled or not) and its
headline can grow without the module passing its size; ``evidence`` reads arms here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from conc_lab.advice.words import interval, n_workers, seconds, start_up_why, where_it_wins_here, x_text
from conc_lab.analysis.stats import MIN_RUNS_FOR_INTERVAL
from conc_lab.host.protocol import ASYNCIO, MULTIPROCESSING, RAY, SEQUENTIAL, SUBINTERPRETERS, THREADING

#: Cheapest first: what it costs to start and to hand work over.
COST_ORDER = (SEQUENTIAL, ASYNCIO, THREADING, SUBINTERPRETERS, MULTIPROCESSING, RAY)
_METHOD_ORDER = ("fork", "forkserver", "spawn")


@dataclass(frozen=True)
class ArmResult:
    """One arm at its best worker count: end-to-end speedup over the plain loop, with its interval."""

    arm: str
    backend: str
    workers: int
    speedup: float
    low: float
    high: float
    run_speedup: float  # the run alone, start-up left out
    setup_s: float  # median start-up of its pool
    why: str
    break_even: str
    runs: int
    tried: tuple[int, ...] = ()  # every worker count it ran at

    def text(self, most: int = 0) -> str:
        """``threading  0.99× (0.97–1.01) with 2 workers: GIL-bound: …``; where it ran at one count,
        fewer than the ``most`` any arm ran at, it says so: spawn's 1.64× with 2 workers read as
        3.5 times slower than fork's 5.85× with 8, which spawn never ran at.

        >>> spawn = ArmResult("multiprocessing (spawn)", "multiprocessing", 2, 1.6, 1.5, 1.7, 1.8, 0.07, "", "", 3, (2,))
        >>> spawn.text(most=8)
        'multiprocessing (spawn) 1.60× (1.50–1.70) with 2 workers, the only count it ran at'
        >>> spawn.text(most=2)
        'multiprocessing (spawn) 1.60× (1.50–1.70) with 2 workers'
        """
        why = f": {self.why}" if self.why else ""
        only = ", the only count it ran at" if len(self.tried) == 1 and self.workers < most else ""
        said = f"{self.arm} {x_text(self.speedup)} ({self.interval()}) with {n_workers(self.workers)}"
        return f"{said}{only}{why}"

    def wins(self) -> str:
        """Where it wins despite its start-up, as its own interval allows (``words.where_it_wins_here``)."""
        return where_it_wins_here(self.break_even, self.low, self.high, self.runs)

    def pays(self) -> str:
        """Its break-even line: what it pays to start, and where that pays off."""
        full = where_it_wins_here(self.break_even, self.low, self.high, self.runs, full=True)
        return f"{self.arm} pays {seconds(self.setup_s)} to start: {full}"

    def interval(self) -> str:
        """``1.80–1.91``, or why there is none (one run)."""
        return interval(self.low, self.high, self.runs)


def arm_label(row: pd.Series | dict, python_labels: dict | None = None) -> str:
    """``multiprocessing (fork)``, ``threading``, ``subinterpreters (Python 3.14.0)``.

    >>> arm_label({"backend": "multiprocessing", "start_method": "spawn", "python": None})
    'multiprocessing (spawn)'
    """
    label = str(row["backend"])
    method = row.get("start_method")
    if isinstance(method, str) and method:
        label += f" ({method})"
    python = row.get("python")
    if isinstance(python, str) and python:
        label += f" (Python {(python_labels or {}).get(python, python)})"
    return label


def best_arms(summary: pd.DataFrame, python_labels: dict | None = None) -> list[ArmResult]:
    """Each non-sequential arm at its best worker count (end-to-end speedup), best first."""
    rows = summary[(summary["backend"].astype(object) != SEQUENTIAL) & (summary["n"] > 0)]
    rows = rows[np.isfinite(rows["e2e_speedup"].to_numpy(dtype=np.float64))]
    found: dict[str, ArmResult] = {}
    tried: dict[str, set[int]] = {}
    for _, row in rows.iterrows():
        arm = _arm_result(row, arm_label(row, python_labels))
        tried.setdefault(arm.arm, set()).add(arm.workers)
        if arm.arm not in found or arm.speedup > found[arm.arm].speedup:
            found[arm.arm] = arm
    found = {k: replace(a, tried=tuple(sorted(tried[k]))) for k, a in found.items()}
    return sorted(found.values(), key=lambda a: -a.speedup)


def _arm_result(row: pd.Series, label: str) -> ArmResult:
    def num(col: str) -> float:
        value = row.get(col)
        return float(value) if value is not None and pd.notna(value) else math.nan

    if int(row["n"]) < MIN_RUNS_FOR_INTERVAL:  # one run's "interval" is that run twice: none, for scripts too
        row = row.drop(["e2e_speedup_ci_low", "e2e_speedup_ci_high"], errors="ignore")
    return ArmResult(
        arm=label,
        backend=str(row["backend"]),
        workers=int(row["workers"]),
        speedup=num("e2e_speedup"),
        low=num("e2e_speedup_ci_low"),
        high=num("e2e_speedup_ci_high"),
        run_speedup=num("speedup"),
        setup_s=num("setup_s"),
        why=start_up_why(row["why"], num("setup_s"), num("e2e_s")) if isinstance(row.get("why"), str) else "",
        break_even=str(row["break_even"]) if isinstance(row.get("break_even"), str) else "",
        runs=int(row["n"]),
    )


def widest(summary: pd.DataFrame, arm: str) -> ArmResult | None:
    """``arm`` at its most workers: where its limit shows (threads at one worker cannot be GIL-bound).
    Its why is told; its speedup never is (the arm's figure is its best count's, as in its line)."""
    rows = summary[(summary["n"] > 0) & (summary["backend"].astype(object) != SEQUENTIAL)]
    rows = [r for _, r in rows.iterrows() if arm_label(r) == arm and np.isfinite(r["e2e_speedup"])]
    return _arm_result(max(rows, key=lambda r: r["workers"]), arm) if rows else None


def cost_rank(arm: ArmResult) -> tuple[int, int, int, int]:
    """Cheaper arms first: on the Python the function already runs on (an arm on another interpreter
    asks the user to change Pythons), then by backend, start method, fewer workers.

    >>> procs = ArmResult("multiprocessing (fork)", "multiprocessing", 2, 1.8, 1.7, 1.9, 1.8, 0.005, "", "", 5)
    >>> subs = ArmResult("subinterpreters (Python 3.13.0)", "subinterpreters", 2, 1.8, 1.7, 1.9, 1.8, 0.02, "", "", 5)
    >>> min([subs, procs], key=cost_rank).arm
    'multiprocessing (fork)'
    """
    other_python = int("(Python " in arm.arm)
    backend = COST_ORDER.index(arm.backend) if arm.backend in COST_ORDER else len(COST_ORDER)
    method = next((i for i, m in enumerate(_METHOD_ORDER) if f"({m})" in arm.arm), 0)
    return other_python, backend, method, arm.workers

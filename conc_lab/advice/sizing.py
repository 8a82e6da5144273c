"""Keeping a calibrated size within what advise aims for and within its budget.

Calibration doubles the size until one call takes the target time, so work that grows faster
than its size overshoots: a numpy matrix product (cubic) stopped at 2.5 s a sequential run where
0.4 s was aimed for, and ``advise --budget 30`` took 50 s (its warm-up round and first measured
round always run whole). Here the growth calibration saw (time as ``size**k``, ``k`` from its last
two steps) brings the size back down: to the time aimed for, and below what lets the warm-up and
``verdict.MIN_ROUNDS`` rounds fit in the budget that is left.
"""

from __future__ import annotations

import math

from conc_lab.advice import words
from conc_lab.advice.verdict import MIN_ROUNDS
from conc_lab.host.protocol import MULTIPROCESSING, THREADING

#: Seconds kept from the budget for what follows the last round, at least: closing the hosts,
#: reading and summarising the runs, fitting the scaling laws. Under load that takes longer, so the
#: reserve grows with how long the loop's own check of the verdict took (``_Rounds.reserve_s``):
#: at load 12 on 2 cores the conclusion took 6 s, and a fixed 4 s let advise end 10-50% late.
RESERVE_S = 4.0
#: A round is taken to cost up to this many times the sum of its runs' forecast times: start-ups,
#: the hosts' own work, a machine that others load.
ROUND_SLACK = 1.5
#: A calibrated call may take up to this many times the time aimed for before the size is brought down.
OVERSHOOT = 1.5
#: A size the budget brought down by less than this share of calibration's still answers for it: the
#: size is said, the verdict not made tentative (a 0.7% cut once made a settled verdict tentative).
CUT_TOLERANCE = 0.1


def growth(steps: list[tuple[int, float]]) -> float:
    """``k`` in time ∝ ``size**k``, from the last two calibration steps of different sizes; at least 1
    (a forecast of slower growth would shrink too little), 1 where they cannot tell.

    >>> round(growth([(16, 0.004), (32, 0.033), (64, 0.264)]), 2), growth([(1, 1e-6)])
    (3.0, 1.0)
    """
    sized = {}
    for size, seconds in steps:
        sized[size] = seconds  # the last time measured at each size (a step is timed twice at the end)
    pairs = sorted(sized.items())[-2:]
    if len(pairs) < 2 or min(s for _, s in pairs) <= 0:
        return 1.0
    (s1, t1), (s2, t2) = pairs
    return max(math.log(t2 / t1) / math.log(s2 / s1), 1.0)


def round_weight(arms: tuple[str, ...], workers: tuple[int, ...], cores: int, waits: bool) -> float:
    """A round's runs in sequential runs' worth: a run with ``w`` workers counted as 1/min(w, cores) of
    one (1/w for work that waits), threads on work that computes as a whole one (the GIL).

    >>> round_weight(("sequential", "threading", "multiprocessing (fork)", "multiprocessing (spawn)"), (1, 2), 2, False)
    5.0
    """
    total = 0.0
    for arm in arms:
        backend = arm.split(" ")[0]
        if backend == MULTIPROCESSING and "(fork)" not in arm:
            counts = [min(cores, workers[-1])]  # spawn and forkserver run at one worker count
        elif backend in (THREADING, MULTIPROCESSING) or "(Python" in arm or "free-threaded" in arm:
            counts = list(workers) + ([1] if "(Python" in arm or "free-threaded" in arm else [])
        else:
            counts = [1]
        for w in counts:
            gil = backend == THREADING and not waits and "free-threaded" not in arm
            total += 1.0 if gil else 1.0 / (w if waits else min(w, cores))
    return total


def fitted_size(
    size: int, task_s: float, want_s: float, steps: list[tuple[int, float]], left_s: float, runs_s: float
) -> int:
    """The size to run: ``size``, or smaller where its call (``task_s``) is over ``OVERSHOOT`` times
    ``want_s``, or where the warm-up and ``MIN_ROUNDS`` rounds (``runs_s`` a round, at ``size``) would
    not fit in ``left_s``; scaled by the growth calibration saw (``growth``), at least 1.

    >>> fitted_size(64, 0.262, 0.05, [(32, 0.033), (64, 0.262)], 100.0, 0.262 * 40)
    36
    >>> fitted_size(64, 0.06, 0.05, [(32, 0.0075), (64, 0.06)], 1000.0, 0.06 * 40)
    64
    >>> fitted_size(64, 0.06, 0.05, [(32, 0.0075), (64, 0.06)], 6.0, 0.06 * 40)  # 6 s left: a smaller round
    41
    >>> fitted_size(64, 0.06, 0.05, [(32, 0.0075), (64, 0.06)], -2.0, 0.06 * 40)  # none left: the least
    1
    """
    # no time left (a budget shorter than the planning) is the least size, not a negative share:
    # to the power 1/growth that was a complex number, and a traceback from `advise --budget 3`
    fits = max(left_s, 0.0) / ((1 + MIN_ROUNDS) * ROUND_SLACK * max(runs_s, 1e-9))  # share of today's round
    want = min(want_s / task_s if task_s > OVERSHOOT * want_s else 1.0, fits)
    if want >= 1.0:
        return size
    return max(1, int(size * want ** (1 / growth(steps))))


def budget_for(round_s: float, spent_s: float) -> float:
    """Seconds a budget needs for the warm-up and ``MIN_ROUNDS`` rounds of ``round_s`` each (with the
    slack a round takes), the conclusion, and the ``spent_s`` already gone (planning, calibration).

    >>> round(budget_for(10.0, 3.0))
    97
    """
    return spent_s + RESERVE_S + (1 + MIN_ROUNDS) * ROUND_SLACK * round_s


def over_budget(size: int, task_s: float, runs_s: float, left_s: float, budget_s: float) -> str | None:
    """Why a size the user gave (``--size``) cannot be advised on within the budget: the warm-up and
    one round (``runs_s`` each) take longer than ``left_s``; else None. Such a size is never brought
    down as a calibrated one is, and once sat on "warming up" for minutes of a 20 s budget.

    >>> over_budget(3_000_000, 3.0, 138.0, 18.0, 20.0)
    '--size 3,000,000: a call takes 3 s, so the warm-up and one round take about 276 s, over the 20 s budget: a smaller --size, or --budget 1248 or more'
    >>> over_budget(1000, 0.01, 0.5, 18.0, 20.0) is None
    True
    """
    if 2 * runs_s <= left_s:
        return None
    enough = budget_for(runs_s, budget_s - left_s)
    return (
        f"--size {size:,}: a call takes {task_s:.2g} s, so the warm-up and one round take about "
        f"{2 * runs_s:.0f} s, over the {budget_s:g} s budget: a smaller --size, or --budget {enough:.0f} or more"
    )


def past_budget(
    ref: str, probe, runs: float, budget_s: float, left_s: float, aimed_task_s: float = 0.0
) -> str | None:
    """Why a calibrated ``probe`` (a ``plan.Probe``) cannot be advised on within the budget, or None:
    the warm-up and the first round, run whole, take longer than it has left (work of half a second
    a call at any size took 59 s of a 15 s budget). The budget it asks for runs the size calibration
    aimed at (a call ``aimed_task_s``), not only the smaller one this budget brought it down to.

    >>> from types import SimpleNamespace as P
    >>> past_budget("m:f", P(size=1, task_s=9e-6), 40, 1.0, -0.6)
    'm:f: calibrating its size took 1.6 s of the 1 s budget, leaving none for the rounds; give --budget 6 or more'
    """
    round_s = 2 * runs * probe.task_s
    if round_s <= left_s:
        return None
    enough = math.ceil(budget_for(runs * max(probe.task_s, aimed_task_s), budget_s - left_s))
    # was "one round (about 769 µs) do not fit the 1 s budget": it was calibration that did not
    if left_s <= 0:
        return (
            f"{ref}: calibrating its size took {budget_s - left_s:.2g} s of the {budget_s:g} s budget, "
            f"leaving none for the rounds; give --budget {enough} or more"
        )
    return (
        f"{ref}: one call at size {probe.size:,} takes {words.seconds(probe.task_s)}, so the warm-up and "
        f"one round (about {words.seconds(round_s)}) do not fit the {left_s:.2g} s left of the "
        f"{budget_s:g} s budget; give --budget {enough} or more"
    )


def cut_matters(size: int, aimed: int) -> bool:
    """Whether the budget brought ``size`` down from calibration's ``aimed`` by enough
    (``CUT_TOLERANCE``) that the answer is for another size, and so tentative.

    >>> cut_matters(1_262_556, 1_271_091), cut_matters(1, 2_097_152), cut_matters(900, 1_000)
    (False, True, False)
    """
    return size < aimed * (1 - CUT_TOLERANCE)


def squeezed(size: int, aimed: int, aimed_task_s: float, runs: float, budget_s: float, spent_s: float) -> str:
    """Why a verdict at ``size`` is tentative when the budget, not calibration, chose it: calibration
    aimed at ``aimed`` (a call ``aimed_task_s``), and at size 1 work too small for any start-up once
    read "don't bother" as if it were the user's work.

    The budget it asks for keeps, as ``plan._within_budget`` does, the time to time a call again,
    and is more than the one given: at the edge a size brought down by 1% once asked
    ``advise --budget 25`` for "--budget 25 or more".

    >>> squeezed(1, 2_097_152, 0.05, 48, 5.0, 3.0)
    'the 5 s budget brought the size down from 2,097,152 to 1: the answer is for that size; --budget 29 or more measures at 2,097,152'
    >>> squeezed(1_262_556, 1_271_091, 0.0498, 44, 25.0, 0.5).split("; ")[1]
    '--budget 26 or more measures at 1,271,091'
    """
    enough = math.ceil(budget_for(runs * aimed_task_s, spent_s) + 2 * 3 * aimed_task_s)
    enough = max(enough, math.floor(budget_s) + 1)
    return (
        f"the {budget_s:g} s budget brought the size down from {aimed:,} to {size:,}: the answer is for "
        f"that size; --budget {enough} or more measures at {aimed:,}"
    )

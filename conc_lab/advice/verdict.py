"""The verdict: which backend to use for this function on this machine, how much faster, and why.

Built from a ``conc_lab.summarize`` frame (and ``fit_scaling`` fits). Each *arm* (a backend with
its start method or interpreter) is represented by its best worker count (``arms``), measured end
to end (start-up + run + teardown: what a program using it pays), and told at that count wherever
the screen names it, the headline too. The choice is the *cheapest* arm
whose speedup is within ``NEAR`` of the best and whose interval reaches the best one's: threads
that are as fast as processes win, being cheaper (no processes to start, nothing pickled).
When even that gains less than ``WORTH`` over the plain loop, the verdict is "don't bother".

A verdict is *settled* when the intervals that decide it no longer overlap: the choice's against
the best other arm's (or, for two arms alike, both narrower than ``NARROW``), and against the
``WORTH`` line. Else it is tentative, and says which intervals still overlap.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import pandas as pd

from conc_lab.advice.arms import ArmResult, best_arms, cost_rank, widest
from conc_lab.advice.forecast import Forecast, at_more_cores
from conc_lab.advice.words import bracketed, caveat_once, clean, n_workers, seconds, x_text
from conc_lab.analysis.precision import MIN_PAIRS
from conc_lab.host.protocol import MULTIPROCESSING, SEQUENTIAL, THREADING

#: An arm within this share of the best speedup counts as just as fast.
NEAR = 0.10
#: The least gain worth a backend: below it, the verdict is "don't bother".
WORTH = 1.10
#: Two arms alike are told apart no better than this relative interval width; narrower is settled.
NARROW = 0.20
#: A task this many times the median one makes the tasks unequal (the last to finish keeps others idle).
UNEQUAL = 3.0
#: Rounds before a verdict may be called settled: a round runs every arm once, so these are the runs
#: a side, and the floor a sweep's speedup needs to be called precise (``precision.MIN_PAIRS``, why
#: 5): an interval from fewer runs claims too much. Was 3, which a sweep would call too few.
MIN_ROUNDS = MIN_PAIRS
#: Half the runs it hangs on or more crowded by others: an unsettled verdict measured the machine (``busy``).
NOISY_SHARE = 0.5


@dataclass(frozen=True)
class Verdict:
    """The answer, first line first; ``to_json()`` for scripts."""

    headline: str
    choice: str  # the arm to use, "sequential", or CANT_TELL when the machine was too busy to settle it
    dont_bother: bool
    settled: bool
    tentative_why: str | None
    arms: tuple[ArmResult, ...]
    imbalance: str | None = None
    break_even: tuple[str, ...] = ()
    forecast: Forecast | None = None
    left_out: tuple[str, ...] = ()
    rounds: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
    # the size every run was called with, how it came to be (``plan.Probe.told``), the calls a run
    size: int | None = None
    size_why: str = ""
    tasks: int | None = None

    def lines(self) -> list[str]:
        """The verdict line, then the evidence: one line per arm, the size (the break-even sizes are
        read against it), break-even, the forecast where the headline has none, what was left out."""
        out = [self.headline]
        if not self.settled and self.tentative_why:
            out.append(f"tentative: {self.tentative_why}")
        most = max((w for a in self.arms for w in a.tried), default=0)
        out += [f"  {a.text(most)}" for a in self.arms]
        if self.size is not None:
            told = [self.size_why] if self.size_why else []
            told += [f"{self.tasks} task{'s' * (self.tasks != 1)} a run"] if self.tasks else []
            out.append(f"size: {self.size:,}" + (f" ({'; '.join(told)})" if told else ""))
        # one the headline tells in the same words ("spawn pays 73.4 ms to start, so …") is not repeated
        breaks = [b for b in self.break_even if _headline_words(b) not in self.headline]
        out += [f"break-even: {b}" for b in caveat_once(breaks)]
        if self.forecast is not None and self.forecast.text() not in self.headline:  # once a screen
            out.append(self.forecast.text())
        out += [f"left out: {x}" for x in self.left_out]
        out += list(self.notes)
        return out

    def to_dict(self) -> dict:
        return clean(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)


def _headline_words(pays: str) -> str:
    """A break-even line (``ArmResult.pays``) in the headline's words (``_contrasts``), to tell the two
    said the same: the headline names the start method alone.

    >>> _headline_words("multiprocessing (spawn) pays 73.4 ms to start: it is not told apart (1 run)")
    'spawn pays 73.4 ms to start, so it is not told apart (1 run)'
    """
    return re.sub(r"^\S+ \((\w+)\) pays (.+?) to start: ", r"\1 pays \2 to start, so ", pays, count=1)


def choose(arms: list[ArmResult], slower: Callable | None = None) -> ArmResult | None:
    """The cheapest arm as fast as the best (within ``NEAR``, interval reaching the best's, and not
    slower by more than ``NEAR`` run against run: ``evidence.paired_slower``), or None."""
    if not arms:
        return None
    top = max(arms, key=lambda a: a.speedup)
    near = [
        a
        for a in arms
        if a.speedup >= (1 - NEAR) * top.speedup
        and _reaches(a, top)
        and not (slower is not None and a is not top and slower(a, top, 1 / (1 - NEAR)))
    ]
    return min(near or [top], key=cost_rank)


def _reaches(a: ArmResult, top: ArmResult) -> bool:
    return a is top or not (math.isfinite(a.high) and math.isfinite(top.low)) or a.high >= top.low


def candidates(arms: list[ArmResult], gil: bool, wrong: dict | None = None) -> list[ArmResult]:
    """The arms that may be chosen: none with wrong answers (``evidence.wrong_answers``), and not this
    Python's threads where the runs show them GIL-bound (``evidence.gil_bound``): their wall-clock
    gain on CPU-bound work is the load's, not theirs."""
    gil_bound = [a for a in arms if gil and a.backend == THREADING and "(Python" not in a.arm]
    return [a for a in arms if a not in gil_bound and a.arm not in (wrong or {})]


def settled(
    arms: list[ArmResult],
    choice: ArmResult | None,
    waits: bool = False,
    noisy: float = 0.0,
    slower: Callable | None = None,
) -> str | None:
    """None when the intervals that decide the verdict no longer overlap (or, run against run,
    ``slower`` tells the choice and its rival apart); else which still do."""
    if choice is None:
        return "no backend has a speedup yet"
    crowded = None if waits else busy(arms, noisy)  # work that waits hardly needs the CPU others take
    if crowded is not None:  # however tight, those intervals measure the load, not the function
        return f"{crowded}, so the intervals measure the load"
    if not (math.isfinite(choice.low) and math.isfinite(choice.high)):
        return f"{choice.arm} has no interval yet"
    if choice.low <= WORTH <= choice.high:
        return f"{choice.arm}'s interval ({choice.interval()}) still straddles {x_text(WORTH)}, the least gain worth a backend"
    if choice.high < WORTH:  # don't bother: every arm's interval below the line says so
        doubtful = [a for a in arms if a.high >= WORTH]
        return (
            None
            if not doubtful
            else f"{doubtful[0].arm}'s interval ({doubtful[0].interval()}) still reaches {x_text(WORTH)}"
        )
    others = [a for a in arms if a.arm != choice.arm]
    if not others:
        return None
    rival = max(others, key=lambda a: a.speedup)
    apart = slower is not None and (slower(rival, choice, 1.0) or slower(choice, rival, 1.0))
    if rival.high < choice.low or rival.low > choice.high or apart:
        return None
    alike = choice.speedup >= (1 - NEAR) * rival.speedup and rival.speedup >= (1 - NEAR) * choice.speedup
    if alike and _width(choice) <= NARROW and _width(rival) <= NARROW:
        return None  # as fast as each other, measured closely enough to say so
    return (
        f"{choice.arm} {x_text(choice.speedup)} ({choice.interval()}) and {rival.arm} "
        f"{x_text(rival.speedup)} ({rival.interval()}) still overlap"
    )


def _width(a: ArmResult) -> float:
    return (a.high - a.low) / a.speedup if a.speedup > 0 else math.inf


def decide(
    summary: pd.DataFrame,
    fits: pd.DataFrame | None = None,
    *,
    cores: int = 1,
    waits: bool = False,
    left_out: tuple[str, ...] = (),
    rounds: int = 0,
    stop_reason: str | None = None,
    python_labels: dict | None = None,
    unequal: str | None = None,
    notes: tuple[str, ...] = (),
    gil: bool = False,
    noisy: float | Callable = 0.0,
    slower: Callable | None = None,
    wrong: dict | None = None,
    squeezed: str | None = None,
) -> Verdict:
    """The ``Verdict`` from a summary: the choice, whether it is settled, the evidence behind it.

    ``gil``: the runs show this Python's threads GIL-bound on this work (``evidence.gil_bound``):
    they are never the choice. ``noisy``: the share of the runs it hangs on that other processes
    crowded, or a function of the choice giving it (``evidence.crowded_share``); half or more, or
    others on most arms' cores, and an unsettled verdict is "can't tell"
    (``CANT_TELL``), never a guess. ``slower``: arms compared run against run
    (``evidence.paired_slower``). ``wrong``: arms whose answers differ from the plain loop's: the note.
    ``squeezed``: why the size is the budget's, not calibration's (``sizing.squeezed``): tentative.
    """
    arms = best_arms(summary, python_labels)
    eligible = candidates(arms, gil, wrong)
    choice = choose(eligible, slower)
    noisy = noisy(choice) if callable(noisy) else noisy
    unsettled = settled(eligible, choice, waits, noisy, slower)
    if rounds < MIN_ROUNDS:
        unsettled = f"only {rounds} of the {MIN_ROUNDS} rounds an interval needs ran"
    dont = choice is None or choice.speedup < WORTH
    imbalance = _imbalance(arms, choice, unequal)
    breaks = tuple(a.pays() for a in arms if a.setup_s >= 0.01 and a.break_even and a is not choice)
    forecast = None if dont or waits else at_more_cores(fits, choice, cores)
    aside = _set_aside(arms, eligible, choice, widest(summary, THREADING)) if dont and choice else []
    tentative = unsettled is not None or squeezed is not None
    headline = _headline(summary, arms, choice, dont, imbalance, forecast, tentative, aside)
    crowded = None if waits else busy(arms, noisy)
    cant_tell = crowded is not None and unsettled is not None
    if cant_tell:  # the machine, not the function, is what was measured: no arm is named
        headline, forecast = f"too busy to tell: {crowded}; so far: {headline}", None
    return Verdict(
        headline=headline,
        choice=CANT_TELL if cant_tell else SEQUENTIAL if dont else choice.arm,
        dont_bother=dont and not cant_tell,
        settled=not tentative,
        tentative_why=_tentative_why(unsettled, rounds, stop_reason, squeezed),
        arms=tuple(arms),
        imbalance=imbalance,
        break_even=breaks,
        forecast=forecast,
        left_out=tuple(left_out),
        rounds=rounds,
        notes=tuple((wrong or {}).values()) + notes,
    )


#: ``Verdict.choice`` when the machine was too busy to settle it: no arm is named, not even tentatively.
CANT_TELL = "can't tell"


def _tentative_why(unsettled: str | None, rounds: int, stop_reason: str | None, squeezed=None) -> str | None:
    """What still keeps the verdict open, then after how many rounds and why they stopped, in one
    parenthesis: "so the intervals measure the load after 12 rounds" read as if the load came after.

    >>> _tentative_why("so the intervals measure the load", 12, "another round would not end in the 60 s budget")
    'so the intervals measure the load (after 12 rounds; another round would not end in the 60 s budget)'
    >>> _tentative_why("only 2 of the 5 rounds an interval needs ran", 2, "interrupted")
    'only 2 of the 5 rounds an interval needs ran (interrupted)'
    """
    told = [f"after {rounds} rounds"] * (rounds >= MIN_ROUNDS) + [stop_reason] * bool(stop_reason)
    why = None if unsettled is None else unsettled + (f" ({'; '.join(told)})" if told else "")
    return "; ".join(w for w in (why, squeezed) if w) or None


def busy(arms: list[ArmResult], noisy: float = 0.0) -> str | None:
    """``other processes used 75% of the runs' cores`` when they did for most arms (attribution's
    "not attributable"), or where they took the cores of half the runs the verdict hangs on or more
    (``noisy``, the share of those flagged so: ``evidence.crowded_share``); else None.

    >>> a = ArmResult("threading", "threading", 2, 1.0, 0.9, 1.1, 1.0, 0.0, "not attributable: others used 75% of its cores", "", 3)
    >>> busy([a])
    "other processes used 75% of the runs' cores"
    >>> busy([], noisy=0.6)
    'other processes took the cores of 60% of the runs it hangs on'
    """
    if noisy >= NOISY_SHARE:
        return f"other processes took the cores of {noisy:.0%} of the runs it hangs on"
    shares = [re.search(r"others used (\d+)%", a.why) for a in arms if a.why.startswith("not attributable")]
    if not arms or len(shares) * 2 < len(arms):
        return None
    share = statistics.median(int(m.group(1)) for m in shares if m)
    return f"other processes used {share:.0f}% of the runs' cores"


def _imbalance(arms: list[ArmResult], choice: ArmResult | None, unequal: str | None) -> str | None:
    """The imbalance the chosen arm (else the best one) shows, as its ``why`` phrase; else unequal tasks."""
    for arm in [choice] + arms if choice is not None else arms:
        if arm is not None and arm.why.startswith("imbalance") and arm.workers > 1:
            return arm.why + (f"; {unequal}" if unequal else "")
    return unequal


def _headline(summary, arms, choice, dont, imbalance, forecast, tentative: bool, aside=()) -> str:
    """The verdict line: what to use and how much faster, then what a reader needs to believe it."""
    if choice is None:
        return "no answer: no backend ran to completion (see the runs' errors: conclab summarize)"
    mark = " (tentative)" if tentative else ""
    if dont:
        parts = [f"don't bother{mark}: stay sequential; {_why_not(summary, arms)}"]
        parts.append(f"best: {choice.arm} {x_text(choice.speedup)} ({choice.interval()})")
        parts += aside
    else:
        parts = [
            f"use {choice.arm}{mark}: {x_text(choice.speedup)} ({choice.interval()}) "
            f"with {n_workers(choice.workers)}"
        ]
        parts += _contrasts(arms, choice, widest(summary, THREADING))
    if imbalance:
        parts.append(f"{imbalance} (split the work finer, or hand out the largest tasks first)")
    if forecast is not None:
        parts.append(forecast.text())
    return "; ".join(parts)


def _set_aside(arms, eligible, choice, threads) -> list[str]:
    """The fastest arm not chosen from where it beats the "best" named ("best: … (fork) 1.03×" over
    "threading 1.08× …", once), with why: GIL-bound threads' gain on such work is the load's."""
    faster = [a for a in arms if a not in eligible and a.speedup > choice.speedup]
    if not faster:
        return []
    top = max(faster, key=lambda a: a.speedup)
    why = "its answers differ from the plain loop's"
    if top.backend == THREADING and "(Python" not in top.arm:  # this Python's threads: set aside as GIL-bound
        why = threads.why if threads is not None and threads.why.startswith("GIL-bound") else "GIL-bound"
    return [f"{top.arm} {x_text(top.speedup)} with {n_workers(top.workers)} not counted{bracketed(why)}"]


def _why_not(summary: pd.DataFrame, arms: list[ArmResult]) -> str:
    """Why no backend is worth it: the work is too small for the start-up, or nothing gains enough."""
    base = summary[summary["backend"].astype(object) == SEQUENTIAL]
    run_s = float(base["e2e_s"].min()) if len(base) else math.nan
    cheapest = min(arms, key=lambda a: a.setup_s if math.isfinite(a.setup_s) else math.inf)
    # the start-up eats what splitting the run over the workers could save
    small = (
        math.isfinite(run_s)
        and math.isfinite(cheapest.setup_s)
        and cheapest.setup_s * 4 >= run_s * (1 - 1 / max(cheapest.workers, 2))
    )
    if small:
        return (
            f"the work ({seconds(run_s)} a run) is too small for any backend to pay its start-up "
            f"({cheapest.arm} takes {seconds(cheapest.setup_s)})"
        )
    return f"no backend beats the plain loop by {WORTH - 1:.0%}"


def _contrasts(arms: list[ArmResult], choice: ArmResult, threads: ArmResult | None) -> list[str]:
    """What the chosen arm is measured against: an alike costlier arm, threads, a slow start method.

    >>> fork = ArmResult("multiprocessing (fork)", "multiprocessing", 2, 1.8, 1.7, 1.9, 1.8, 0.004, "", "", 5)
    >>> spawn = ArmResult("multiprocessing (spawn)", "multiprocessing", 2, 1.2, 0.9, 1.5, 1.8, 0.2, "",
    ...                   "not at the sizes measured", 5)
    >>> _contrasts([fork, spawn], fork, None)
    ['spawn pays 200 ms to start, so it is not told apart from the plain loop at the sizes measured']
    >>> spawn = ArmResult("multiprocessing (spawn)", "multiprocessing", 2, 1.2, 1.1, 1.3, 1.8, 0.2, "",
    ...                   "size ≥ 750,000 (fit)", 5)
    >>> _contrasts([fork, spawn], fork, None)
    ['spawn pays 200 ms to start, so it wins only at size ≥ 750,000']
    """
    parts = []
    alike = [
        a
        for a in arms
        if a is not choice and a.speedup >= (1 - NEAR) * choice.speedup and a.backend != choice.backend
    ]
    if alike and cost_rank(alike[0]) > cost_rank(choice):
        other = "(Python " in alike[0].arm and "(Python " not in choice.arm
        why = "which needs another Python" if other else f"and {choice.backend} is cheaper"
        parts.append(f"≈ {alike[0].arm} {x_text(alike[0].speedup)}, {why}")
    if threads is not None and choice.backend != THREADING:
        parts.append(_threads_said(arms, threads))
    slow = [
        a
        for a in arms
        if a.backend == choice.backend == MULTIPROCESSING and a.setup_s >= 0.05 and a.break_even
    ]
    if slow:
        a = max(slow, key=lambda a: a.setup_s)
        method = a.arm.split(" ")[-1].strip("()")
        parts.append(f"{method} pays {seconds(a.setup_s)} to start, so {a.wins()}")
    return parts


def _threads_said(arms: list[ArmResult], most: ArmResult) -> str:
    """Threads as their evidence line has them, at their best count (one figure per arm on the
    screen), and, where that is fewer than their ``most`` workers, that more did not help, with why
    where their most workers show a GIL (its phrase names that count).

    >>> most = ArmResult("threading", "threading", 2, 0.93, 0.9, 0.96, 0.93, 0.0003,
    ...                  "GIL-bound: 2 workers, CPU 1.00× wall", "", 5)
    >>> best = ArmResult("threading", "threading", 1, 0.97, 0.95, 0.99, 0.97, 0.0002,
    ...                  "none dominant: workers busy 99%", "", 5)
    >>> _threads_said([best], most)
    'threads 0.97× with 1 worker, no faster with more (GIL-bound: 2 workers, CPU 1.00× wall)'
    >>> _threads_said([most], most)
    'threads 0.93× with 2 workers (GIL-bound: 2 workers, CPU 1.00× wall)'
    """
    best = next((a for a in arms if a.arm == most.arm), most)
    said = f"threads {x_text(best.speedup)} with {n_workers(best.workers)}"
    if best.workers == most.workers:
        return said + bracketed(best.why)
    why = bracketed(most.why) if most.why.startswith("GIL-bound") else ""
    return f"{said}, no faster with more{why}"

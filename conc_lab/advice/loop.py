"""Running the plan adaptively, within a budget: shuffled, interleaved rounds until the verdict settles.

The plan is written as ``advise.yaml`` in its results folder and run by the ordinary sweep
machinery (``run.runner.sweep``), so the results are a sweep like any other: ``summarize``,
``report`` and ``compare`` read them, and ``conclab sweep advise.yaml --resume`` runs the
rounds it did not. The sweep plans ``plan.MAX_ROUNDS`` rounds, each a fresh seeded
permutation of every trial; after each round the runs so far are summarised and the verdict
checked. The loop stops the sweep (as Ctrl-C does: every run is saved first) once

* the verdict is settled (``verdict.settled``: the deciding intervals no longer overlap),
  after at least ``verdict.MIN_ROUNDS`` rounds; or
* the next round would end past the budget; the verdict is then tentative, and says why; or
* a run of the plain loop fails: the function is broken, and no backend will do better.
"""

from __future__ import annotations

import os
import shlex
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from conc_lab import events, schema
from conc_lab.advice import evidence
from conc_lab.advice import verdict as verdicts
from conc_lab.advice.arms import best_arms
from conc_lab.advice.plan import AdvicePlan
from conc_lab.advice.sizing import RESERVE_S
from conc_lab.analysis.summary import summarize
from conc_lab.config.document import load_config
from conc_lab.host.protocol import SEQUENTIAL
from conc_lab.run import runner
from conc_lab.store.layout import make_dirs, write_atomic

#: The reserve is at least this many times the last check of the verdict (a summary of the runs
#: so far); the conclusion reads the store, summarises again and may fit the laws.
RESERVE_CHECKS = 4
#: A round is expected to take up to this many times the slowest one so far: load comes and goes.
ROUND_MARGIN = 1.2

SETTLED, BUDGET, INTERRUPTED, COMPLETE, BROKEN = "settled", "budget", "interrupted", "complete", "broken"


@dataclass(frozen=True)
class LoopResult:
    """What the adaptive run did: the sweep, its rounds, why it stopped, and how to run it again."""

    sweep: runner.SweepResult
    yaml_path: Path
    rounds: int
    stopped: str  # SETTLED, BUDGET, INTERRUPTED (Ctrl-C), COMPLETE (every planned round ran) or BROKEN
    rerun: str  # the one command that reruns or extends it as a sweep
    broken: str | None = None  # the plain loop's error, when it failed
    warnings: tuple[str, ...] = ()  # what the sweep warned of (a busy machine, ...)


class _Rounds:
    """The sweep's event handler: counts rounds, checks the verdict after each, stops the sweep."""

    def __init__(self, plan: AdvicePlan, began: float, budget_s: float, forward: Callable | None):
        self.plan, self.began, self.budget_s, self.forward = plan, began, budget_s, forward
        self.trials = 0
        self.rows: list[dict] = []
        self.rounds = 0
        self.round_began = time.perf_counter()
        self.stopped: str | None = None
        self.broken: str | None = None  # why the plain loop failed, when it did
        self.warnings: list[str] = []
        self.slowest_round_s = 0.0
        self.check_s = 0.0  # how long the last check of the verdict took

    def reserve_s(self) -> float:
        """Seconds to keep for what follows the last run (see ``RESERVE_S``)."""
        return max(RESERVE_S, RESERVE_CHECKS * self.check_s)

    def __call__(self, event: events.Event) -> None:
        if self.forward is not None:
            self.forward(event)
        if isinstance(event, events.Warned):
            self.warnings.append(event.text)
        elif isinstance(event, events.Planned):
            self.trials = event.trials
        elif isinstance(event, events.RunFinished):
            row = event.row
            if row["backend"] == SEQUENTIAL and row["status"] in schema.FAILURES:
                lines = [x for x in str(row.get("error") or row["status"]).splitlines() if x.strip()]
                self.broken = lines[-1].strip() if lines else str(row["status"])
                self._stop(BROKEN)  # the plain loop cannot run it: no backend will
            if not event.measured:
                self.round_began = time.perf_counter()  # the warm-up round is over when a measured one ends
                return
            self.rows.append(event.row)
            if self.trials and len(self.rows) % self.trials == 0:
                self._round_done()
            elif self.rounds and time.perf_counter() - self.began + self.reserve_s() > self.budget_s:
                self._stop(BUDGET)  # a round slower than any before: its finished runs are kept

    def _round_done(self) -> None:
        now = time.perf_counter()
        self.rounds += 1
        round_s = now - self.round_began
        self.round_began = now
        if self.forward is not None:
            self.forward(RoundDone(self.rounds, round_s, now - self.began))
        self.slowest_round_s = max(self.slowest_round_s, round_s)
        checked = time.perf_counter()  # every round, so the reserve knows what a summary costs now
        done = self.unsettled() is None
        self.check_s = time.perf_counter() - checked
        if done and self.rounds >= verdicts.MIN_ROUNDS:
            self._stop(SETTLED)
        now = time.perf_counter()
        if now - self.began + ROUND_MARGIN * self.slowest_round_s + self.reserve_s() > self.budget_s:
            self._stop(BUDGET)

    def unsettled(self) -> str | None:
        df = pd.DataFrame(self.rows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = summarize(df)
        waits, slower = self.plan.probe.waits, evidence.paired_slower(df)
        eligible = verdicts.candidates(best_arms(summary), evidence.gil_bound(df, waits))
        choice = verdicts.choose(eligible, slower)
        return verdicts.settled(eligible, choice, waits, evidence.crowded_share(df)(choice), slower)

    def _stop(self, why: str) -> None:
        self.stopped = why
        raise events.StopSweep  # the sweep saves every run first, and can be resumed


@dataclass(frozen=True)
class AdvicePlanned(events.Event):
    """The matrix is planned (size calibrated, one call timed); the sweep starts next."""

    plan: AdvicePlan


@dataclass(frozen=True)
class RoundDone(events.Event):
    """A measured round of every trial ended (an advise event: the sweep knows no rounds)."""

    round: int
    round_s: float
    elapsed_s: float


def run(
    plan: AdvicePlan,
    out: str | os.PathLike = "results",
    *,
    budget_s: float = 120.0,
    began: float | None = None,
    on_event: Callable | None = None,
) -> LoopResult:
    """Write ``advise.yaml`` beside the results and run it until settled or out of budget."""
    began = time.perf_counter() if began is None else began
    folder = Path(out) / plan.name
    make_dirs(folder)
    yaml_path = folder / "advise.yaml"
    write_atomic(yaml_path, plan.yaml_text().encode())
    config = load_config(yaml_path)
    rounds = _Rounds(plan, began, budget_s, on_event)
    result = runner.sweep(config, out, on_event=rounds)
    if rounds.stopped is not None:
        stopped = rounds.stopped
    elif result.interrupted:
        stopped = INTERRUPTED
    else:
        stopped = COMPLETE
    return LoopResult(
        result,
        yaml_path,
        rounds.rounds,
        stopped,
        rerun_command(plan, yaml_path, out),
        rounds.broken,
        tuple(rounds.warnings),
    )


def rerun_command(plan: AdvicePlan, yaml_path: Path, out: str | os.PathLike) -> str:
    """``conclab sweep results/advise-f/advise.yaml --resume --out results``, with the path it needs.

    >>> from conc_lab.advice.target import Target
    >>> p = type("P", (), {"target": Target("m:f", "/my dir", False)})()
    >>> rerun_command(p, Path("results/advise-f/advise.yaml"), "results")
    "PYTHONPATH='/my dir' conclab sweep results/advise-f/advise.yaml --resume --out results"
    """
    words = shlex.join(["conclab", "sweep", str(yaml_path), "--resume", "--out", str(out)])
    folder = plan.target.search_dir
    return f"PYTHONPATH={shlex.quote(folder)} {words}" if folder else words

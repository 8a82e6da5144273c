"""``conc_lab.advise``: threads or processes — and how much faster — for *this* function, in one call.

The stage that answers the README's question without a YAML file: ``target`` checks the
function (``module:function``, ``path/to/file.py:function`` or the function itself), ``plan``
plans the matrix from it and this machine, ``loop`` runs it as an ordinary sweep in shuffled,
interleaved rounds until the verdict settles or the budget is spent, and ``verdict`` says what
to use, how much faster, and why. The folder is ``advice`` rather than ``advise`` so that
``conc_lab.advise`` stays the function: importing a subpackage binds its name on the parent.

>>> advice = advise("mywork:count_words", budget_s=60)  # doctest: +SKIP
>>> print(advice.verdict.headline)  # doctest: +SKIP
use multiprocessing (fork): 1.86× (1.80–1.91) with 2 workers; threads 1.00× with 1 worker, no faster with more (GIL-bound: …)
"""

from __future__ import annotations

import dataclasses
import html
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from conc_lab.advice.loop import LoopResult
from conc_lab.advice.plan import AdvicePlan
from conc_lab.advice.target import AdviseError, resolve
from conc_lab.advice.verdict import CANT_TELL, Verdict, decide
from conc_lab.config.model import INT64_MAX

__all__ = ["Advice", "AdviseError", "advise"]

#: Columns of the summary the evidence table shows.
_SHOWN = [
    "backend",
    "start_method",
    "workers",
    "n",
    "median_s",
    "e2e_speedup",
    "e2e_speedup_ci_low",
    "e2e_speedup_ci_high",
    "why",
]


@dataclass(frozen=True)
class Advice:
    """What ``advise`` found: the verdict, the summary frame and the scaling fits behind it."""

    verdict: Verdict
    summary: pd.DataFrame
    plan: AdvicePlan
    sweep_dir: Path
    yaml_path: Path
    rerun: str  # the one command that reruns or extends it as a sweep
    stopped: str  # settled, budget, interrupted or complete
    wall_s: float

    @cached_property
    def fits(self) -> pd.DataFrame:
        """Amdahl and the USL fitted per backend (``conc_lab.fit_scaling``); fitted when first asked for."""
        from conc_lab.analysis.scaling import fit_scaling

        return fit_scaling(self.summary) if len(self.summary) else pd.DataFrame()

    @property
    def interrupted(self) -> bool:
        return self.stopped == "interrupted"

    def __str__(self) -> str:
        return "\n".join(self.verdict.lines())

    def _repr_html_(self) -> str:
        lines = self.verdict.lines()
        head = f"<p><b>{html.escape(lines[0])}</b></p>"
        rest = "".join(f"<li>{html.escape(x.strip())}</li>" for x in lines[1:])
        shown = self.summary[[c for c in _SHOWN if c in self.summary.columns]]
        return head + f"<ul>{rest}</ul>" + shown.to_html(index=False, float_format=lambda x: f"{x:.3g}")


#: The longest --budget: a week (a select() or a wait of more than ~24 days overflows).
MAX_BUDGET_S = 7 * 86400


def advise(
    what: str | os.PathLike | Callable,
    *,
    budget_s: float = 120.0,
    size: int | None = None,
    ray: bool = False,
    out: str | os.PathLike = "results",
    on_event: Callable | None = None,
    interpreters: list | None = None,
) -> Advice:
    """Which backend to use for ``what`` on this machine, measured: the ``Advice``.

    ``what`` is ``"module:function"``, ``"path/to/file.py:function"`` or the function (defined
    in a module: a child process cannot import one from ``__main__`` or a notebook cell).
    ``budget_s`` bounds the whole of it; ``size`` skips calibration; ``ray`` adds Ray.
    The runs are a sweep under ``out/advise-<module>.<function>/``; Ctrl-C stops after saving them
    (``Advice.stopped == "interrupted"``; ``Advice.rerun`` resumes). Raises ``AdviseError``
    (one line) when the function cannot be run.
    """
    from conc_lab.advice import loop
    from conc_lab.advice import plan as planning
    from conc_lab.store.layout import preflight

    began = time.perf_counter()
    if not budget_s > 0:
        raise AdviseError(f"--budget: must be a positive number of seconds, got {budget_s}")
    if not budget_s <= MAX_BUDGET_S:  # inf and 1e12 too: select() overflows on a wait past ~24 days
        raise AdviseError(
            f"--budget: must be at most {MAX_BUDGET_S:,.0f} seconds ({MAX_BUDGET_S / 86400:.0f} days), got {budget_s}"
        )
    if size is not None and size < 1:
        raise AdviseError(f"--size: must be a positive integer, got {size}")
    if size is not None and size > INT64_MAX:  # the store's size column
        raise AdviseError(f"--size: must be at most {INT64_MAX}, got {size}")
    target = resolve(what)
    preflight(out, f"advise-{target.name}")  # now, not after the planning: a folder it cannot write to
    with _importable(target.search_dir):
        the_plan = planning.plan(target, size=size, ray=ray, interpreters=interpreters, budget_s=budget_s)
        if on_event is not None:
            on_event(loop.AdvicePlanned(the_plan))
        ran = loop.run(the_plan, out, budget_s=budget_s, began=began, on_event=on_event)
    if ran.broken is not None:
        raise AdviseError(
            f"{target.ref}: the plain loop failed: {ran.broken} (runs kept in {ran.sweep.sweep_dir})"
        )
    try:
        return conclude(the_plan, ran, began, budget_s)
    except KeyboardInterrupt:  # the runs are stored: only the verdict was cut short
        raise AdviceInterrupted(ran.rerun) from None


class AdviceInterrupted(KeyboardInterrupt):
    """Ctrl-C while the verdict was being drawn from runs already stored: ``rerun`` resumes them."""

    def __init__(self, rerun: str):
        super().__init__(rerun)
        self.rerun = rerun


#: Seconds the scaling fits may need (scipy's import alone took 1-10 s under load): with less of
#: the budget left, the verdict goes without a forecast rather than past its budget.
FIT_S = 3.0


def conclude(the_plan: AdvicePlan, ran: LoopResult, began: float, budget_s: float) -> Advice:
    """The ``Advice`` from what the sweep stored (not what it told on the way); ``began``: when the
    advice began (``time.perf_counter``), so ``wall_s`` is the whole of it."""
    from conc_lab.advice import evidence
    from conc_lab.analysis.summary import summarize
    from conc_lab.store.load import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a sweep stopped before its first round: an empty summary
        df = load(ran.sweep.sweep_dir)
        summary = summarize(df) if len(df) else summarize(pd.DataFrame())
    # "the 8 s budget ran out" was said 3 s in: the loop stops when another round would not end in
    # the budget, which is what is said now
    budget = f"another round would not end within the {budget_s:.0f} s budget"
    why = {"budget": budget, "interrupted": "interrupted"}.get(ran.stopped)
    wrong, unchecked = evidence.wrong_answers(df, the_plan.python_labels)
    facts = {
        "cores": the_plan.cores,
        "waits": the_plan.probe.waits,
        "left_out": the_plan.left_out,
        "rounds": ran.rounds,
        "stop_reason": why,
        "unequal": evidence.unequal_tasks(df),
        "notes": evidence.failed_runs(df, the_plan.python_labels)
        + the_plan.probe.notes(the_plan.target.ref)
        + tuple(f"note: {w}" for w in ran.warnings)
        + ((unchecked,) if unchecked else ()),
        "wrong": wrong,
        "gil": evidence.gil_bound(df, the_plan.probe.waits),
        "noisy": evidence.crowded_share(df),
        "slower": evidence.paired_slower(df),
        "squeezed": the_plan.probe.squeezed,
        "python_labels": the_plan.python_labels,
    }
    sized = {"size": the_plan.probe.size, "size_why": the_plan.probe.told(), "tasks": the_plan.tasks}
    advice = Advice(
        _explained(dataclasses.replace(decide(summary, **facts), **sized), the_plan),
        summary,
        the_plan,
        ran.sweep.sweep_dir,
        ran.yaml_path,
        ran.rerun,
        ran.stopped,
        time.perf_counter() - began,
    )
    verdict = advice.verdict
    if (
        verdict.dont_bother
        or verdict.choice == CANT_TELL
        or the_plan.probe.waits
        or len(the_plan.workers) < 2
    ):
        return advice  # no forecast to make: the scaling laws (and scipy) are fitted only when asked for
    if time.perf_counter() - began + FIT_S > budget_s:
        return advice  # no time left to fit the laws: Advice.fits still fits them when read
    verdict = dataclasses.replace(decide(summary, advice.fits, **facts), **sized)
    return dataclasses.replace(advice, verdict=verdict, wall_s=time.perf_counter() - began)


def _explained(verdict: Verdict, the_plan: AdvicePlan) -> Verdict:
    """``verdict`` with what the plan knows of the function that explains it: an ``async def`` that
    waits yet gains nothing blocks its event loop (``evidence.blocked_loop``). A verdict that is not
    don't-bother, the only one this explains, goes on to the forecast and is left as it is."""
    from conc_lab.advice import evidence

    target = the_plan.target
    blocked = evidence.blocked_loop(target.ref, target.is_async, the_plan.probe.waits, verdict.dont_bother)
    return verdict if blocked is None else dataclasses.replace(verdict, notes=verdict.notes + (blocked,))


class _importable:
    """A function's own folder on the path, for this process and the children it starts."""

    def __init__(self, folder: str | None):
        self.folder = folder

    def __enter__(self) -> None:
        self.saved = (sys.path[:], os.environ.get("PYTHONPATH"))
        if self.folder:
            sys.path.insert(0, self.folder)
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [self.folder, self.saved[1]] if p)

    def __exit__(self, *exc: Any) -> None:
        sys.path[:] = self.saved[0]
        if self.saved[1] is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = self.saved[1]

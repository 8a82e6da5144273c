"""Progress as plain lines, for where no bar can be drawn: a notebook, a log file, a batch job.

``conc_lab.sweep(...)`` called from Python with no ``on_event`` prints these to stderr, so a
two-minute sweep in a notebook is not two minutes of silence: what it plans, each calibrated
size, a Ray runtime started, warnings as they come, and a line every tenth of the runs or
``EVERY_S`` seconds (whichever comes first), with the time left.

>>> import io
>>> from conc_lab import events
>>> now = [0.0]
>>> out = io.StringIO()
>>> lines = ProgressLines(out, clock=lambda: now[0])
>>> lines(events.Planned(total=20, measured=20, sweep_dir="results/x/1", trials=4))
>>> for i in range(4):
...     now[0] += 1.0
...     lines(events.RunFinished(row={"status": "failed" if i == 1 else "ok"}, measured=True))
>>> print(out.getvalue(), end="")
sweep: 4 trials, 20 measured runs → results/x/1
2/20 runs (1 failed), 2 s elapsed, about 18 s left
4/20 runs (1 failed), 4 s elapsed, about 16 s left
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

from conc_lab import events, schema
from conc_lab.host.units import duration

#: The longest a running sweep goes without a line.
EVERY_S = 30.0
#: Lines per sweep by count: one each tenth of its runs (and always at the last).
STEPS = 10


class BatchLines:
    """Says ``done/total runs (failed), elapsed, about … left`` every ``total/STEPS`` runs or ``EVERY_S``.

    The one implementation of plain progress lines: the CLI uses it where stdout is no terminal
    (a SLURM job's ``slurm-*.out``: ``tail -f`` shows where the sweep is), ``ProgressLines`` for
    ``conc_lab.sweep`` from Python.

    >>> now = [0.0]
    >>> lines = BatchLines(print, clock=lambda: now[0])
    >>> lines.planned(20)
    >>> for i in range(4):
    ...     now[0] += 1.0
    ...     lines.ran(failed=i == 1)
    2/20 runs (1 failed), 2 s elapsed, about 18 s left
    4/20 runs (1 failed), 4 s elapsed, about 16 s left
    >>> now[0] += 40.0
    >>> lines.ran(failed=False)
    5/20 runs (1 failed), 44 s elapsed, about 132 s left
    """

    def __init__(self, say: Callable[[str], None], clock: Callable[[], float] = time.monotonic):
        self.say, self.clock = say, clock
        self.total = self.done = self.failed = self.wrong = self.last_done = 0
        self.began = self.last_at = clock()

    def planned(self, total: int) -> None:
        self.total = total
        self.began = self.last_at = self.clock()

    def added(self, runs: int) -> None:
        """``runs`` more to come (a round ``precision:`` added)."""
        self.total += runs

    def ran(self, failed: bool, wrong: bool = False) -> None:
        """One more run done: ``failed`` (failed, hung), or ``wrong`` (ok, another answer than the
        plain loop's), counted apart as the sweep's last line counts them."""
        self.done += 1
        self.failed += failed
        self.wrong += wrong and not failed
        now = self.clock()
        step = max(1, self.total // STEPS)
        if self.done - self.last_done < step and now - self.last_at < EVERY_S and self.done != self.total:
            return
        self.last_at, self.last_done = now, self.done
        elapsed = now - self.began
        left = elapsed / self.done * max(self.total - self.done, 0)
        counts = [f"{n} {what}" for n, what in ((self.failed, "failed"), (self.wrong, "wrong")) if n]
        failed_text = f" ({', '.join(counts)})" if counts else ""
        self.say(
            f"{self.done}/{self.total} runs{failed_text}, {duration(elapsed)} elapsed, about {duration(left)} left"
        )


def planned_runs(e: events.Planned) -> str:
    """What a sweep's ``done/total runs`` count up to: its measured runs and its warm-ups, apart
    (``conc_lab.sweep`` said "sweep: 3 trials, 6 runs" of a sweep that recorded 3).

    >>> planned_runs(events.Planned(total=6, measured=3, sweep_dir="d", trials=3))
    '3 measured runs + 3 warm-up'
    """
    warmups = e.total - e.measured
    return f"{e.measured} measured run{'s' * (e.measured != 1)}" + (
        f" + {warmups} warm-up" if warmups else ""
    )


def _share(x: float) -> str:
    """``±12%``, or what an interval that is not there yet is.

    >>> _share(0.123), _share(float("inf"))
    ('±12%', 'no interval yet')
    """
    return f"±{x:.0%}" if math.isfinite(x) else "no interval yet"


def round_added_line(e: events.RoundAdded) -> str:
    """The line for a round ``precision:`` adds.

    >>> round_added_line(events.RoundAdded(5, 3, 0.123, 0.05, 6))
    'round 6: 3 speedups still wider than ±5% (widest ±12%): 6 more runs'
    >>> round_added_line(events.RoundAdded(2, 2, 0.0, 0.25, 4, few=2, min_pairs=5))
    'round 3: 2 speedups within ±25% but on fewer than 5 pairs: 4 more runs'
    >>> round_added_line(events.RoundAdded(2, 2, 0.4, 0.25, 4, few=1, min_pairs=5))
    'round 3: 1 speedup still wider than ±25% (widest ±40%) and 1 on fewer than 5 pairs: 4 more runs'
    """
    wide = e.trials - e.few
    said = f"{_count(wide)} still wider than {_share(e.target)} (widest {_share(e.widest)})" if wide else ""
    if e.few:
        said += f" and {e.few}" if wide else f"{_count(e.few)} within {_share(e.target)} but"
        said += f" on fewer than {e.min_pairs} pairs"
    return f"round {e.round + 1}: {said}: {e.runs} more runs"


def _count(speedups: int) -> str:
    return f"{speedups} speedup{'s' * (speedups != 1)}"


def precision_line(e: events.PrecisionReached) -> str:
    """The line that ends the rounds ``precision:`` added.

    >>> precision_line(events.PrecisionReached(9, 0, 0.0, 0.05))
    'precision: every speedup within ±5% after 9 rounds'
    >>> precision_line(events.PrecisionReached(30, 2, 0.08, 0.05))
    'precision: 2 speedups still wider than ±5% after 30 rounds (precision.max_repeats); the widest ±8%'
    >>> precision_line(events.PrecisionReached(30, 0, 0.0, 0.05, few=1, min_pairs=5))
    'precision: 1 speedup within ±5% but on fewer than 5 pairs (its other runs failed) after 30 rounds'
    """
    if not e.wide and not e.few:
        return f"precision: every speedup within {_share(e.target)} after {e.rounds} rounds"
    said = []
    if e.wide:
        said.append(f"{_count(e.wide)} still wider than {_share(e.target)}")
    if e.few:
        its = "its" if e.few == 1 else "their"
        said.append(
            f"{_count(e.few)} within {_share(e.target)} but on fewer than {e.min_pairs} pairs ({its} other runs failed)"
        )
    line = f"precision: {' and '.join(said)} after {e.rounds} rounds"
    return line + (f" (precision.max_repeats); the widest {_share(e.widest)}" if e.wide else "")


class ProgressLines:
    """An ``on_event`` handler that writes what a sweep does as plain lines to ``stream``."""

    def __init__(self, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.runs = BatchLines(self.say, clock)

    def say(self, text: str) -> None:
        stream = self.stream or sys.stderr  # looked up late: a notebook swaps sys.stderr per cell
        stream.write(text + "\n")
        stream.flush()

    def __call__(self, event: events.Event) -> None:
        if isinstance(event, events.Planned):
            self.runs.planned(event.total)
            self.say(f"sweep: {event.trials} trials, {planned_runs(event)} → {event.sweep_dir}")
        elif isinstance(event, events.RunFinished):
            self.runs.ran(event.row.get("status") in schema.FAILURES, event.row.get("correct") is False)
        elif isinstance(event, events.RayStarted):
            how = "started a local runtime" if event.started else "joined"
            self.say(f"ray: {how} at {event.address} ({event.start_s:.1f} s)")
        elif isinstance(event, events.Calibrated):
            self.say(f"size auto: {event.workload} → {event.size} ({duration(event.task_s)} per task)")
        elif isinstance(event, events.Warned):
            self.say(f"warning: {event.text}")
        elif isinstance(event, events.RoundAdded):
            self.runs.added(event.runs)
            self.say(round_added_line(event))
        elif isinstance(event, events.PrecisionReached):
            self.say(precision_line(event))

"""Progress for batch logs: when stdout is not a terminal, a plain line every tenth of the runs or 30 s.

A progress bar draws nothing into a file, so a SLURM job's ``slurm-*.out`` showed a 6-minute
shard as 2 lines until it ended; ``tail -f`` on it now shows where the sweep is.

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

from __future__ import annotations

import time
from collections.abc import Callable

from conc_lab.host.units import duration

#: The longest a running sweep goes without a line in a batch log.
EVERY_S = 30.0
#: Lines per sweep by count: one each tenth of its runs (and always at the last).
STEPS = 10


class BatchLines:
    """Says ``done/total runs (failed), elapsed, about … left`` every ``total/STEPS`` runs or ``EVERY_S``."""

    def __init__(self, say: Callable[[str], None], clock: Callable[[], float] = time.monotonic):
        self.say, self.clock = say, clock
        self.total = self.done = self.failed = 0
        self.began = self.last_at = clock()
        self.last_done = 0

    def planned(self, total: int) -> None:
        self.total = total
        self.began = self.last_at = self.clock()

    def ran(self, failed: bool) -> None:
        self.done += 1
        self.failed += failed
        now = self.clock()
        step = max(1, self.total // STEPS)
        if self.done - self.last_done >= step or now - self.last_at >= EVERY_S or self.done == self.total:
            self.last_at, self.last_done = now, self.done
            elapsed = now - self.began
            left = elapsed / self.done * max(self.total - self.done, 0)
            failed_text = f" ({self.failed} failed)" if self.failed else ""
            self.say(
                f"{self.done}/{self.total} runs{failed_text}, {duration(elapsed)} elapsed, about {duration(left)} left"
            )

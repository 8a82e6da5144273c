"""The rounds a ``precision:`` goal adds after ``repeats``: asked for one at a time, as each begins.

At the start of each round past ``repeats`` the runs recorded so far (this invocation's and, on
a resume, the earlier ones: the store is read, journal included) are summarised as ``summarize``
would (``analysis.precision``); the round runs the trials whose speedup is still wider than
``±target``, with their baselines, in the round's own shuffled order. The sweep ends once no
speedup is wide, or after ``max_repeats`` rounds: then the rows say how wide each still is.

Each decision reads and summarises the sweep (tens of milliseconds for a few hundred runs); it
is made once a round, never per run.
"""

from __future__ import annotations

import warnings
from collections.abc import Container
from pathlib import Path

from conc_lab import events
from conc_lab.config.model import Config
from conc_lab.events import EventHandler
from conc_lab.plan.matrix import Trial
from conc_lab.plan.runs import baseline_of


class AddedRounds:
    """``more(round)`` for ``Plan.runs``: the trial ids the round runs, or None to stop."""

    def __init__(
        self,
        config: Config,
        trials: list[Trial],
        sweep_dir: Path,
        emit: EventHandler,
        given_up: Container[str],
        done: Container[tuple[str, int]] = frozenset(),
    ):
        """``given_up``: the trials the driver stopped running (hung, cannot run here), read as it grows;
        ``done``: (trial_id, repeat) of the runs a resumed sweep recorded before (``Plan.done``)."""
        assert config.precision is not None
        self.target = config.precision.target
        self.adjacent = config.pairing == "adjacent"
        self.sweep_dir, self.emit = sweep_dir, emit
        self.serves = baseline_of(trials)
        self.given_up = given_up
        self.done = done
        self.last_round = config.repeats - 1

    def wide(self) -> dict[str, float]:
        """trial_id -> half-width, for the speedups recorded so far that are wider than the target."""
        # pandas (0.3 s) only for sweeps that add rounds: not at every sweep's start-up
        from conc_lab.analysis.precision import wide_speedups
        from conc_lab.store.load import load

        with warnings.catch_warnings():  # the store's own warnings were told when the sweep began
            warnings.simplefilter("ignore")
            runs = load(self.sweep_dir, env=False)
        wide = wide_speedups(runs, self.target)
        return {t: h for t, h in wide.items() if t not in self.given_up and t in self.serves}

    def __call__(self, round_no: int) -> set[str] | None:
        wide = self.wide()
        if not wide:
            return None
        bases = {self.serves[t].trial_id for t in wide}
        runs = 2 * len(wide) if self.adjacent else len(wide) + len(bases)
        self.last_round = round_no
        if not all((t, round_no) in self.done for t in wide):  # a resume re-asks the rounds it ran
            widest, few, pairs = self._split(wide)
            self.emit(events.RoundAdded(round_no, len(wide), widest, self.target, runs, few, pairs))
        return set(wide) | bases

    def _split(self, wide: dict[str, float]) -> tuple[float, int, int]:
        """The widest of the speedups wider than the target, how many are within it (so on too few
        pairs), and how many pairs a speedup needs."""
        from conc_lab.analysis.precision import MIN_PAIRS  # imported with pandas by ``wide``

        over = [h for h in wide.values() if h > self.target]
        return max(over, default=0.0), len(wide) - len(over), MIN_PAIRS

    def finish(self) -> None:
        """Tell how precise the speedups came out (``PrecisionReached``)."""
        wide = self.wide()
        widest, few, pairs = self._split(wide)
        self.emit(
            events.PrecisionReached(self.last_round + 1, len(wide) - few, widest, self.target, few, pairs)
        )

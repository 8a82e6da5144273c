"""What a sweep tells as it goes: small frozen dataclasses, one per kind of event.

``runner.sweep(..., on_event=handler)`` calls ``handler(event)`` with each; the CLI
renders them by type (``isinstance``), and a Python caller may ignore what it does not
need. Events carry data, never text to be parsed (``Warned.text`` excepted: it is the
message).

>>> from conc_lab import events
>>> e = events.Calibrated("experiments.cpu:sum_squares", size=524288, task_s=0.061)
>>> e.size, isinstance(e, events.Event)
(524288, True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


class Event:
    """Base class of every sweep event."""


class StopSweep(KeyboardInterrupt):
    """Raised by an event handler to end the sweep on purpose (advise: its verdict settled, or its
    budget is spent). The sweep saves every run as for a Ctrl-C, and its state is ``stopped``, not
    ``interrupted``: a reader later is not told that someone pressed Ctrl-C."""


@dataclass(frozen=True)
class Planned(Event):
    """The plan is made: ``total`` runs will execute (``measured`` of them recorded) into ``sweep_dir``."""

    total: int  # runs to execute, warm-ups included
    measured: int  # runs that make a row
    sweep_dir: str
    trials: int


@dataclass(frozen=True)
class RunFinished(Event):
    """One run ended (or was skipped); ``row`` is its schema row, written when ``measured``."""

    row: dict
    measured: bool  # False: a warm-up run, not recorded


@dataclass(frozen=True)
class RoundAdded(Event):
    """A round past ``repeats`` begins (``precision:``): ``trials`` speedups are still wider than
    ±``target`` of themselves (the widest ±``widest``) or, ``few`` of them, within it on fewer than
    ``min_pairs`` runs a side, so ``runs`` more runs execute."""

    round: int  # the measured round, counted from 0
    trials: int
    widest: float
    target: float
    runs: int
    few: int = 0
    min_pairs: int = 0


@dataclass(frozen=True)
class PrecisionReached(Event):
    """The rounds ``precision:`` adds are over, after ``rounds`` measured rounds: ``wide`` speedups
    are still wider than ±``target`` (0: every one is within it; the widest ±``widest``), ``few``
    within it on fewer than ``min_pairs`` runs a side (their other runs failed)."""

    rounds: int
    wide: int
    widest: float
    target: float
    few: int = 0
    min_pairs: int = 0


@dataclass(frozen=True)
class Warned(Event):
    """Something the user should know that does not stop the sweep."""

    text: str


@dataclass(frozen=True)
class Calibrating(Event):
    """One step of ``size: auto`` for ``workload``: a task of ``size`` took ``task_s`` seconds,
    ``elapsed_s`` into its calibration."""

    workload: str
    size: int
    task_s: float
    elapsed_s: float


@dataclass(frozen=True)
class Calibrated(Event):
    """``size: auto`` resolved for ``workload``: one task of ``size`` takes ``task_s`` seconds."""

    workload: str
    size: int
    task_s: float


@dataclass(frozen=True)
class RayStarted(Event):
    """The Ray runtime for ray trials is up: ``started`` here (True) or joined at ``address`` (False)."""

    address: str
    started: bool
    start_s: float  # seconds it took to start or join; kept out of the runner's overhead


@dataclass(frozen=True)
class NodeJoined(Event):
    """A cluster node was put to work."""

    node_id: str
    hostname: str


@dataclass(frozen=True)
class NodeLost(Event):
    """A cluster node's runner died; its run in flight goes to another node."""

    node_id: str
    hostname: str
    error: str


EventHandler = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The handler when none is given."""

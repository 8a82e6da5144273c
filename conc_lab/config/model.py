"""An experiment matrix as the rest of conc_lab sees it: the frozen ``Config`` and its settings.

``conc_lab.config.document`` builds one from a matrix file (configs/*.yaml), checking every key;
nothing here reads a file or imports a workload. The vocabulary of a matrix (its keys, axes and
backend options) lives here, beside the record it fills; the backend names themselves live in
``conc_lab.host.protocol``, which the host registers its backends under.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Literal

from conc_lab.host import calibrate as host_calibrate
from conc_lab.host.protocol import (
    ASYNCIO,
    MULTIPROCESSING,
    RAY,
    SEQUENTIAL,
    SUBINTERPRETERS,
    THREADING,
)

#: Backends that run on one core whatever ``workers`` says (asyncio: ``workers`` coroutines in flight
#: on one pinned loop), so a workers count above the cores is not oversubscription for them.
ONE_CORE_BACKENDS = (SEQUENTIAL, ASYNCIO)
#: Backends that can run an ``async def`` workload (sequential: one task at a time on one loop).
ASYNC_BACKENDS = (SEQUENTIAL, ASYNCIO)
AXES = ("workload", "backend", "workers", "tasks", "tasks_per_worker", "size", "python")
#: Axes a matrix may leave out, and the value they then take.
AXIS_DEFAULTS = {"workers": [1], "size": [1], "python": [None]}
#: Options each backend accepts under ``backend_options``; a list there is one more matrix axis.
BACKEND_OPTIONS: dict[str, dict[str, tuple]] = {
    MULTIPROCESSING: {"start_method": ("fork", "spawn", "forkserver")},
    SEQUENTIAL: {},
    THREADING: {},
    RAY: {},
    # offload: thread runs a plain function with loop.run_in_executor (asyncio.to_thread's way)
    ASYNCIO: {"offload": ("none", "thread")},
    SUBINTERPRETERS: {},
}
TOP_KEYS = (
    "name",
    "description",
    "repeats",
    "warmup",
    "timeout_s",
    "matrix",
    "exclude",
    "include",
    "backend_options",
    "affinity",
    "shuffle",
    "seed",
    "pairing",
    "ray",  # the YAML section, not the backend
    "limits",
    "noise",
    "calibration",
    "precision",
)
#: ``pairing:`` values: the baseline's runs once a round, or right before each backend run.
PAIRINGS = ("round", "adjacent")
#: ``size: auto``: the size is calibrated before the sweep runs (``conc_lab.run.calibration``).
AUTO = "auto"
#: A trial's size: a number the workload is given, or ``AUTO`` until calibration replaces it.
Size = int | Literal["auto"]
#: The longest a run may take: beyond it a timeout is a typo, and the clocks that wait for it overflow.
MAX_TIMEOUT_S = 30 * 86400
#: Default ``limits.workers``: this many workers per CPU of the machine (oversubscribing on purpose
#: for I/O-bound work has a use; a million forked workers has none).
WORKERS_PER_CPU = 16
INT32_MAX = 2**31 - 1  # workers, tasks, repeat: int32 columns in conc_lab.schema
INT64_MAX = 2**63 - 1  # size: int64


@dataclass(frozen=True)
class Limits:
    """What a sweep may ask for before it is refused as unable to finish (``limits:`` raises them).

    >>> Limits().tasks, Limits().runs
    (1000000, 10000000)
    """

    #: workers in one trial; default WORKERS_PER_CPU per CPU of this machine
    workers: int = field(default_factory=lambda: WORKERS_PER_CPU * (os.cpu_count() or 1))
    #: tasks in one trial: the host holds each task's result and record in memory
    tasks: int = 1_000_000
    #: runs in one sweep (trials x (warm-up + measured)): the plan, the store and the resume set grow with it
    runs: int = 10_000_000


@dataclass(frozen=True)
class NoiseLimits:
    """When a run counts as noisy (``host.noise.verdict``), and how many times such a run is redone.

    >>> NoiseLimits().redo
    0
    """

    max_foreign_cpu: float = 0.1  # share of the run's cores that other processes used
    max_canary_change: float = 0.25  # relative change of the speed canary from before to after
    redo: int = 0  # re-runs of a noisy run; the noisy ones are kept with status "redone"


@dataclass(frozen=True)
class Precision:
    """``precision: {target: 0.05, max_repeats: 30}``: rounds are added after ``repeats`` while a
    speedup's 95% interval is wider than ±``target`` of it, up to ``max_repeats`` rounds in all.

    On a shared VM a pure-Python loop's per-pair ratios spread by 10-25% (bench_precision), so
    five rounds give intervals of ±12%; the rounds such a speedup needs are added for it (and its
    baseline) alone, in the same randomized interleaved order.

    >>> Precision(0.05, 30).target
    0.05
    """

    target: float  # the half-width of the interval wanted, as a share of the speedup
    max_repeats: int  # measured rounds at most, ``repeats`` included


@dataclass(frozen=True)
class CalibrationSettings:
    """How ``size: auto`` calibrates: the time one task should take, and the most it may spend.

    >>> CalibrationSettings().budget_s
    60.0
    """

    target_s: float = host_calibrate.DEFAULT_TARGET_S  # one task at the chosen size takes at least this
    budget_s: float = host_calibrate.DEFAULT_BUDGET_S  # per workload; growth stops when a step would pass it


@dataclass(frozen=True)
class Config:
    """A validated experiment matrix. Build it with ``conc_lab.config.document.load_config`` (a file) or ``parse_config`` (a dict).

    >>> from conc_lab.config.document import parse_config
    >>> cfg = parse_config({"name": "demo", "matrix": {"workload": ["experiments.io:sleep"],
    ...                     "backend": ["sequential", "threading"], "workers": [1, 2]}})
    >>> cfg.repeats, cfg.axes["workers"]
    (5, (1, 2))
    """

    name: str
    axes: dict[str, tuple]  # axis -> values, every axis present (defaults filled)
    workload_sizes: dict[str, tuple] = field(
        default_factory=dict
    )  # per-workload size axis, overrides axes["size"]
    repeats: int = 5
    warmup: int = 1
    timeout_s: float = 120.0
    affinity: str | tuple[int, ...] = "compact"
    exclude: tuple[dict, ...] = ()
    include: tuple[dict, ...] = ()
    backend_options: dict[str, dict[str, tuple]] = field(default_factory=dict)
    shuffle: bool = True  # a fresh seeded permutation per round (RMIT); false: matrix order
    # round: each trial once a round, speedups paired within the round; adjacent: a baseline run
    # right before each backend run (A B A C ...), for trials too short to pair across a round
    pairing: str = "round"
    seed: int = 0
    description: str = ""
    ray_address: str | None = None  # ray: {address: ...}: the Ray runtime ray trials join
    limits: Limits = field(default_factory=Limits)  # not in the fingerprint: they decide nothing that runs
    # noise: {max_foreign_cpu, max_canary_change, redo}: when a run is noisy, and how often it is redone
    noise: NoiseLimits = field(default_factory=lambda: NoiseLimits())
    # calibration: {target_s, budget_s}: not in the fingerprint (a resumed sweep reuses its sizes)
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)
    precision: Precision | None = None  # None: exactly ``repeats`` rounds
    path: str | None = None
    source_text: str = ""  # the file as read, kept in the sweep's manifest
    # settings the command line gave in place of the file's (sweep --repeats/--warmup/--precision), kept in the
    # manifest; the fingerprint holds their values already, so a resume must be given the same
    overrides: dict[str, int | float] = field(default_factory=dict)  # precision: the target, a share
    # settings the file left out, whose default applies: a resume may find its sweep began under an
    # older default (plan.runs.OLD_DEFAULTS); not in the fingerprint (their values are)
    defaulted: frozenset[str] = frozenset()

    @property
    def fingerprint(self) -> str:
        """Hash of everything that decides which trials run and how: resume refuses a changed config."""
        doc = {
            "axes": {k: list(v) for k, v in self.axes.items()},
            "workload_sizes": {k: list(v) for k, v in self.workload_sizes.items()},
            "repeats": self.repeats,
            "warmup": self.warmup,
            "timeout_s": self.timeout_s,
            "affinity": list(self.affinity) if isinstance(self.affinity, tuple) else self.affinity,
            "exclude": list(self.exclude),
            "include": list(self.include),
            "backend_options": {
                b: {k: list(v) for k, v in o.items()} for b, o in self.backend_options.items()
            },
            "shuffle": self.shuffle,
            "seed": self.seed,
        }
        if self.pairing != "round":  # likewise: the default leaves older fingerprints as they were
            doc["pairing"] = self.pairing
        if self.precision is not None:  # absent from older fingerprints likewise
            doc["precision"] = dataclasses.asdict(self.precision)
        if self.noise != NoiseLimits():  # absent from older fingerprints: their sweeps still resume
            doc["noise"] = dataclasses.asdict(self.noise)
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]

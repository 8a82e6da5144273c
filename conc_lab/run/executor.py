"""Turning one run of a trial into one schema row: ``TrialExecutor``.

The executor keeps a trial host per interpreter (Ray trials in a host of their own), pins
workers to cores, checks each answer against the sequential one, and replaces a host that
hung or died; the row of a run that failed says why. Local and cluster dispatch both use
it (a cluster node runs one in its node actor), built from the one ``ExecutorSettings`` of
the sweep; each run returns a ``RunResult``. It knows nothing of plans or stores. The
hosts are ``hosts.HostPool``'s; they speak ``conc_lab.host.protocol``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace

from conc_lab import schema
from conc_lab.config.model import Config, NoiseLimits
from conc_lab.host import affinity, noise, protocol
from conc_lab.plan.matrix import Trial
from conc_lab.run.hosts import HostPool

__all__ = ["ExecutorSettings", "RunResult", "TrialExecutor", "trial_row"]


@dataclass(frozen=True)
class ExecutorSettings:
    """How every run of a sweep executes: built once per sweep (``for_sweep``) and passed whole to
    the local path and to every cluster node, so the two cannot drift apart.

    ``rewarm``: after a host is replaced, each trial runs once untimed before its next measured
    run (a sweep with warm-up rounds wants that; one without does not). ``prime``: each run's
    fresh process calls the workload once, untimed, before its timed run (``host.trial.prime``),
    so runs are measured warm; a sweep with ``warmup: 0`` measures them cold.

    >>> s = ExecutorSettings("demo", "s1", search_path=("/w",))
    >>> s.affinity_mode, s.timeout_s, s.rewarm, s.prime, s.noise_limits.redo
    ('compact', 120.0, True, True, 0)
    >>> s.on_node(["/w", "/srv"]).search_path
    ('/w', '/srv')
    """

    sweep_name: str
    sweep_id: str
    affinity_mode: str | tuple[int, ...] = "compact"
    timeout_s: float = 120.0
    search_path: tuple[str, ...] = ()
    rewarm: bool = True
    prime: bool = True
    noise_limits: NoiseLimits = field(default_factory=NoiseLimits)

    @classmethod
    def for_sweep(cls, config: Config, sweep_id: str, search_path: list[str]) -> ExecutorSettings:
        return cls(
            config.name,
            sweep_id,
            config.affinity,
            config.timeout_s,
            tuple(search_path),
            rewarm=config.warmup > 0,
            prime=config.warmup > 0,
            noise_limits=config.noise,
        )

    def on_node(self, extra: list[str]) -> ExecutorSettings:
        """These settings with ``extra`` folders (a node's working directory) on the search path."""
        return replace(self, search_path=tuple(dict.fromkeys([*self.search_path, *extra])))


@dataclass(frozen=True)
class RunResult:
    """What one run gave the driver: its row, the noisy rows it replaced, and whether it was skipped.

    ``redone``: rows of earlier attempts of this run that were noisy and run again (config
    ``noise.redo``), status ``redone``; they are kept, never counted as the run's result.
    ``skipped``: the run was not executed (the driver said to skip it); ``row`` says why.
    """

    row: dict
    redone: tuple[dict, ...] = ()
    skipped: bool = False


class TrialExecutor:
    """Runs single trial runs in trial hosts and builds their rows.

    >>> with TrialExecutor(ExecutorSettings("demo", "s1")) as ex:  # doctest: +SKIP
    ...     result = ex.execute(Trial("experiments.cpu:sum_squares", "threading", 2, 8, 1000), repeat=0)
    """

    def __init__(self, settings: ExecutorSettings, node_id: str | None = None):
        self.settings = settings
        self.sweep_name, self.sweep_id = settings.sweep_name, settings.sweep_id
        self.noise_limits = settings.noise_limits  # when a run is noisy, and how often redone
        self.node_id = node_id
        self.hosts = HostPool(list(settings.search_path) or [os.getcwd()], settings.timeout_s)
        self.references: dict[tuple, str | None] = {}
        # The cores this process may use, read once (from /proc and /sys: not a per-run cost).
        self.allowed = affinity.available_cores()

    @property
    def measured_s(self) -> float:
        """Time spent inside trial hosts, for the overhead figure."""
        return self.hosts.measured_s

    @property
    def inside_s(self) -> float:
        """The runs' own measured windows (setup + run + teardown) within ``measured_s``."""
        return self.hosts.inside_s

    @property
    def starting_s(self) -> float:
        """Time spent starting trial hosts (the first, and replacements of hung or dead ones)."""
        return self.hosts.starting_s

    def cores_for(self, trial: Trial, within: list[int] | None = None) -> list[int] | None:
        """The cores of ``trial``'s workers, planned for this run within ``within`` (the cores a
        cluster node was given for it), else within all this process may use. Never cached: on a
        shared machine each run gets the cores it was granted, which differ from run to run.

        >>> ex = TrialExecutor(ExecutorSettings("demo", "s1"))
        >>> ex.cores_for(Trial("m:f", "threading", 2, 2, 1), within=[1]) in ([1, 1], None)
        True
        """
        mode = self.settings.affinity_mode
        return affinity.plan(
            list(mode) if isinstance(mode, tuple) else mode, trial.workers, within or self.allowed
        )

    def execute(
        self, trial: Trial, repeat: int, warmup: bool = False, within: list[int] | None = None
    ) -> RunResult:
        """Run ``trial``; its row (also for a failure or timeout), pinned inside ``within`` if given.

        ``warmup``: the run is a warm-up (its row is not recorded); ``repeat`` is then the
        warm-up round. A measured run that is noisy is run again, up to ``noise_limits.redo``
        times; the rows it replaced come with the last, status ``redone``, in ``redone``.
        """
        row = self._execute_once(trial, repeat, warmup, within)
        redone = []
        while (
            not warmup
            and row["noisy"]
            and row[protocol.STATUS] == schema.OK
            and len(redone) < self.noise_limits.redo
        ):
            row[protocol.STATUS] = schema.REDONE
            redone.append(row)
            row = self._execute_once(trial, repeat, warmup, within)
        return RunResult(row, tuple(redone))

    def _execute_once(self, trial: Trial, repeat: int, warmup: bool, within: list[int] | None) -> dict:
        cores = self.cores_for(trial, within)
        started_at = int(time.time() * 1e6)
        prime = self.settings.prime
        outcome = self.hosts.call(trial, protocol.RUN, cores, prime)
        if outcome.get(protocol.STATUS) == schema.OK and not warmup and self._cold(trial):
            # A fresh host runs a trial slower the first time (imports, caches, the interpreter
            # specialising its code): the warm-up round covered the sweep's first host, this
            # covers its replacements, so the run after a hang or crash is measured warm.
            # A first run that failed is the row itself: a hang is not waited for twice.
            self.hosts.mark_ran(trial)
            outcome = self.hosts.call(trial, protocol.RUN, cores, prime)
        self.hosts.mark_ran(trial)
        return self._row(trial, repeat, outcome, cores, started_at)

    def _row(
        self, trial: Trial, repeat: int, outcome: dict, cores: list[int] | None, started_at: int
    ) -> dict:
        status, error = outcome.get(protocol.STATUS, schema.FAILED), outcome.get(protocol.ERROR)
        row = trial_row(trial, repeat, self.sweep_id, self.sweep_name, status, error, started_at)
        row["node_id"] = self.node_id
        # The row's columns of the same names as outcome fields are spelled through the protocol too
        # (the schema keeps the two equal, tests/test_protocol.py): no outcome key is retyped here.
        for key in (*protocol.MEASURED_FIELDS, protocol.STDERR_TAIL):
            row[key] = outcome.get(key)
        row["pinned"] = cores is not None
        # The cores the backend used, where it says (asyncio pins one whatever workers is), else the plan.
        row[protocol.CORES] = outcome.get(protocol.CORES) or cores or []
        limits = self.noise_limits  # after the cores: the verdict weighs foreign CPU over them
        note = noise.verdict(row, limits.max_foreign_cpu, limits.max_canary_change)
        measured = row[protocol.FOREIGN_CPU] is not None or row[protocol.CANARY_BEFORE_S] is not None
        if measured:  # else: the run's noise was not measured
            row["noisy"], row["noise_note"] = note is not None, note
        records = outcome.get(protocol.TASK_RECORDS) or []
        row[protocol.TASK_RECORDS] = [protocol.task_record(rec) for rec in records]
        row.update(self.interpreter_facts(trial.python))
        if outcome.get(protocol.GIL_ENABLED) is not None:  # the state during the run, not at host start
            row[protocol.GIL_ENABLED] = outcome[protocol.GIL_ENABLED]
        if row[protocol.STATUS] == schema.OK and outcome.get(protocol.CHECKABLE, True):
            row["correct"] = self._check(trial, outcome[protocol.CHECKSUM])
        return row

    def _cold(self, trial: Trial) -> bool:
        """True when the host that replaced a failed one has not yet run ``trial`` (and we re-warm)."""
        return self.settings.rewarm and self.hosts.is_cold(trial)

    def skipped(self, trial: Trial, repeat: int, why: str, status: str = schema.SKIPPED) -> RunResult:
        """A run not executed, its row with the facts of the interpreter it was skipped under."""
        row = trial_row(trial, repeat, self.sweep_id, self.sweep_name, status, why)
        row["node_id"] = self.node_id
        row.update(self.interpreter_facts(trial.python))
        return RunResult(row, skipped=True)

    def interpreter_facts(self, python: str | None) -> dict:
        """What the latest host for ``python`` said of its interpreter (empty before one started)."""
        return self.hosts.facts(python)

    def _check(self, trial: Trial, checksum: str) -> bool | None:
        key = trial.reference_key
        # the plain loop's own ok run is the reference, also where the reference call failed once
        # (a flaky workload): unchecked until then, not for the rest of the sweep
        if self.references.get(key) is None:
            if trial.backend == protocol.SEQUENTIAL:
                self.references[key] = checksum
            elif key not in self.references:
                ref = self.hosts.call(trial, protocol.REFERENCE, None)
                self.references[key] = (
                    ref.get(protocol.CHECKSUM) if ref.get(protocol.STATUS) == schema.OK else None
                )
        reference = self.references[key]
        return None if reference is None else checksum == reference

    def close(self) -> None:
        self.hosts.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def unstorable(row: dict, problem: str) -> dict:
    """``row`` made the row of a failed run, its measured values dropped: the store refused them
    (``problem``: a CPU time below zero, from a workload that rewound conc_lab's CPU clock).

    What the run left behind is kept. The row is changed in place and returned.
    """
    for key in protocol.MEASURED_FIELDS:
        if key != protocol.LEFT_BEHIND:
            row[key] = None
    row.update(status=schema.FAILED, error=f"its outcome cannot be stored: {problem}", correct=None)
    row.update(noisy=None, noise_note=None, task_records=[])
    return row


def trial_row(
    trial: Trial,
    repeat: int,
    sweep_id: str,
    name: str,
    status: str,
    error: str | None,
    started_at: int | None = None,
) -> dict:
    """A row naming the run and its trial's parameters, with nothing measured yet.

    As it stands, the row of a run that never reached a trial host (its cluster node lost);
    ``TrialExecutor.execute`` fills in what a host measured.
    """
    row = schema.empty_row()
    row.update(
        sweep_id=sweep_id,
        sweep_name=name,
        trial_id=trial.trial_id,
        **trial.params(),
        repeat=repeat,
        status=status,
        error=error,
        started_at=int(time.time() * 1e6) if started_at is None else started_at,
        pinned=False,
        cores=[],
        task_records=[],
    )
    if trial.backend == protocol.MULTIPROCESSING and trial.start_method is None:
        # What the host runs it with, stored rather than null: a reader of the rows needs no default.
        row["start_method"] = protocol.DEFAULT_START_METHOD
    return row

"""Turning one run of a trial into one schema row: ``TrialExecutor``.

The executor keeps a trial host per interpreter (Ray trials in a host of their own), pins
workers to cores, checks each answer against the sequential one, and replaces a host that
hung or died; the row of a run that failed says why. Local and cluster dispatch both use
it (a cluster node runs one in its node actor); it knows nothing of plans or stores.
The host speaks ``conc_lab.host.protocol``.
"""

from __future__ import annotations

import os
import time

from conc_lab import schema
from conc_lab.config.model import NoiseLimits
from conc_lab.host import affinity, noise, protocol
from conc_lab.machine.interpreters import InterpreterError, resolve
from conc_lab.plan.matrix import Trial
from conc_lab.run.trial_host import HostDied, HostTimeout, TrialHost

#: Key of a row that carries the noisy rows its run replaced (config noise.redo); not a column.
REDONE_ROWS = "_redone_rows"
#: The row column for the end of a failed run's stderr (the executor's, not the host's: the runner reads it).
STDERR_TAIL = "stderr_tail"


class TrialExecutor:
    """Runs single trial runs in trial hosts and builds their rows.

    >>> with TrialExecutor("demo", "s1", affinity_mode="compact") as ex:  # doctest: +SKIP
    ...     row = ex.execute(Trial("experiments.cpu:sum_squares", "threading", 2, 8, 1000), repeat=0)
    """

    def __init__(
        self,
        sweep_name: str,
        sweep_id: str,
        affinity_mode: str | tuple[int, ...] = "compact",
        timeout_s: float = 120.0,
        search_path: list[str] | None = None,
        node_id: str | None = None,
        rewarm: bool = True,
        noise_limits: NoiseLimits | None = None,
    ):
        self.sweep_name, self.sweep_id = sweep_name, sweep_id
        self.noise_limits = noise_limits or NoiseLimits()  # when a run is noisy, and how often redone
        # After a host is replaced, each trial runs once untimed before its next measured run.
        self.rewarm = rewarm
        self._ran: dict[tuple, set[str]] = {}  # host key -> trial ids its current host has run
        self._replaced: set[tuple] = set()  # host keys whose host was replaced at least once
        self.affinity_mode, self.timeout_s = affinity_mode, timeout_s
        self.search_path = search_path or [os.getcwd()]
        self.node_id = node_id
        self.hosts: dict[tuple, TrialHost] = {}  # see host_key
        self.references: dict[tuple, str | None] = {}
        self._facts: dict[str | None, dict] = {}
        self.measured_s = 0.0  # time spent inside trial hosts, for the overhead figure
        self._cores: dict[int, list[int] | None] = {}  # workers -> cores, see cores_for

    @staticmethod
    def host_key(trial: Trial) -> tuple:
        """Which host runs ``trial``: one per interpreter, and Ray trials in a host of their own.

        A host that has imported Ray holds ~150 MB more; forking multiprocessing workers from it
        would cost several times more than from the small host, and that is no number to report.
        """
        return (trial.python, trial.backend == "ray")

    def host(self, key: tuple) -> TrialHost:
        python = key[0]
        host = self.hosts.get(key)
        if host is None or host.proc.poll() is not None:
            # a matrix names "3.12" or "python3.12"; the host needs the executable it stands for
            host = self.hosts[key] = TrialHost(resolve(python), self.search_path)
            self._facts[python] = host.info  # kept for the row of a trial that kills its host
            if key in self._ran:
                self._replaced.add(key)
            self._ran[key] = set()
        return host

    def _drop_host(self, key: tuple) -> None:
        host = self.hosts.pop(key, None)
        if host is not None:
            host.close()

    def _call(self, trial: Trial, op: str, cores: list[int] | None) -> dict:
        """One request to the trial's host; a timeout or death becomes a failed outcome."""
        message = protocol.request(op, {**trial.params(), protocol.CORES: cores})
        try:
            host = self.host(self.host_key(trial))
        except (HostDied, HostTimeout, OSError, InterpreterError) as exc:
            self._drop_host(self.host_key(trial))
            return {
                protocol.STATUS: schema.FAILED,
                protocol.ERROR: f"cannot start trial host for {trial.python or 'python'}: {exc}",
            }
        started = time.perf_counter()
        try:
            reply = host.request(message, self.timeout_s)
        except HostTimeout as exc:
            self._drop_host(self.host_key(trial))
            return {
                protocol.STATUS: schema.TIMEOUT,
                protocol.ERROR: f"{exc}; trial host killed and replaced",
                STDERR_TAIL: host.stderr_text(),
            }
        except HostDied as exc:
            self._drop_host(self.host_key(trial))
            return {protocol.STATUS: schema.FAILED, protocol.ERROR: str(exc), STDERR_TAIL: host.stderr_text()}
        finally:
            self.measured_s += time.perf_counter() - started
        if not reply.get(protocol.OK):
            outcome = {
                protocol.STATUS: schema.FAILED,
                protocol.ERROR: reply.get(protocol.ERROR) or "trial host error",
                protocol.LEFT_BEHIND: reply.get(protocol.LEFT_BEHIND),
            }
        else:
            outcome = reply[protocol.OUTCOME]
        if outcome.get(protocol.STATUS) in schema.FAILURES:
            outcome[STDERR_TAIL] = host.stderr_text()  # the end of what it wrote, kept for failed runs
        return outcome

    def cores_for(self, trial: Trial) -> list[int] | None:
        """The cores of ``trial``'s workers; planned once per worker count for the executor's life
        (the cores this process may use are read from /proc and /sys: not a per-run cost)."""
        if trial.workers not in self._cores:
            mode = self.affinity_mode
            self._cores[trial.workers] = affinity.plan(
                list(mode) if isinstance(mode, tuple) else mode, trial.workers
            )
        cores = self._cores[trial.workers]
        return None if cores is None else list(cores)

    def execute(self, trial: Trial, repeat: int, warmup: bool = False) -> dict:
        """Run ``trial`` and return its row (also for a failure or timeout).

        ``warmup``: the run is a warm-up (its row is not recorded); ``repeat`` is then the
        warm-up round. A measured run that is noisy is run again, up to ``noise_limits.redo``
        times; the rows it replaced come with the last, status ``redone``, under REDONE_ROWS.
        """
        row = self._execute_once(trial, repeat, warmup)
        redone = []
        while (
            not warmup
            and row["noisy"]
            and row["status"] == schema.OK
            and len(redone) < self.noise_limits.redo
        ):
            row["status"] = schema.REDONE
            redone.append(row)
            row = self._execute_once(trial, repeat, warmup)
        if redone:
            row[REDONE_ROWS] = redone
        return row

    def _execute_once(self, trial: Trial, repeat: int, warmup: bool) -> dict:
        cores = self.cores_for(trial)
        started_at = int(time.time() * 1e6)
        outcome = self._call(trial, protocol.RUN, cores)
        if outcome.get(protocol.STATUS) == schema.OK and not warmup and self._cold(trial):
            # A fresh host runs a trial slower the first time (imports, caches, the interpreter
            # specialising its code): the warm-up round covered the sweep's first host, this
            # covers its replacements, so the run after a hang or crash is measured warm.
            # A first run that failed is the row itself: a hang is not waited for twice.
            self._ran[self.host_key(trial)].add(trial.trial_id)
            outcome = self._call(trial, protocol.RUN, cores)
        self._ran.setdefault(self.host_key(trial), set()).add(trial.trial_id)
        return self._row(trial, repeat, outcome, cores, started_at)

    def _row(
        self, trial: Trial, repeat: int, outcome: dict, cores: list[int] | None, started_at: int
    ) -> dict:
        status, error = outcome.get(protocol.STATUS, schema.FAILED), outcome.get(protocol.ERROR)
        row = trial_row(trial, repeat, self.sweep_id, self.sweep_name, status, error, started_at)
        row["node_id"] = self.node_id
        for key in (*protocol.MEASURED_FIELDS, STDERR_TAIL):
            row[key] = outcome.get(key)
        limits = self.noise_limits
        note = noise.verdict(row, limits.max_foreign_cpu, limits.max_canary_change)
        if row["foreign_cpu"] is not None or row["canary_before_s"] is not None:  # else: not measured
            row["noisy"], row["noise_note"] = note is not None, note
        row["pinned"] = cores is not None
        # The cores the backend used, where it says (asyncio pins one whatever workers is), else the plan.
        row["cores"] = outcome.get(protocol.CORES) or cores or []
        row["task_records"] = [protocol.task_record(rec) for rec in outcome.get(protocol.TASK_RECORDS) or []]
        row.update(self.interpreter_facts(trial.python))
        if outcome.get(protocol.GIL_ENABLED) is not None:  # the state during the run, not at host start
            row["gil_enabled"] = outcome[protocol.GIL_ENABLED]
        if row["status"] == schema.OK and outcome.get(protocol.CHECKABLE, True):
            row["correct"] = self._check(trial, outcome["checksum"])
        return row

    def _cold(self, trial: Trial) -> bool:
        """True when the host that replaced a failed one has not yet run ``trial``."""
        key = self.host_key(trial)
        return self.rewarm and key in self._replaced and trial.trial_id not in self._ran.get(key, set())

    def skipped_row(self, trial: Trial, repeat: int, reason: str, status: str = schema.SKIPPED) -> dict:
        """The row of a run not executed, with the facts of the interpreter it was skipped under."""
        row = trial_row(trial, repeat, self.sweep_id, self.sweep_name, status, reason)
        row["node_id"] = self.node_id
        row.update(self.interpreter_facts(trial.python))
        return row

    def interpreter_facts(self, python: str | None) -> dict:
        """What the latest host for ``python`` said of its interpreter (empty before one started)."""
        info = self._facts.get(python, {})
        return {key: info[key] for key in protocol.HELLO_FACTS if info.get(key) is not None}

    def _check(self, trial: Trial, checksum: str) -> bool | None:
        key = trial.reference_key
        if key not in self.references:
            if trial.backend == "sequential":
                self.references[key] = checksum
            else:
                ref = self._call(trial, protocol.REFERENCE, None)
                self.references[key] = ref.get("checksum") if ref.get(protocol.STATUS) == schema.OK else None
        reference = self.references[key]
        return None if reference is None else checksum == reference

    def close(self) -> None:
        for key in list(self.hosts):
            self._drop_host(key)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


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
    return row

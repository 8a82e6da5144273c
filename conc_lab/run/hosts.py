"""The executor's trial hosts: one per interpreter (Ray trials in a host of their own), replaced when one dies.

``HostPool`` starts hosts on demand, sends each request to the right one, turns a hang or a
death into a failed outcome (killing and forgetting that host), and remembers which trials a
replacement host has not run yet, so the executor can re-warm them. It knows nothing of rows.
"""

from __future__ import annotations

import time

from conc_lab import schema
from conc_lab.host import own, protocol, shm
from conc_lab.machine.interpreters import InterpreterError, resolve
from conc_lab.plan.matrix import Trial
from conc_lab.run.trial_host import HostDied, HostTimeout, TrialHost


class HostPool:
    """The trial hosts of one executor, keyed by ``host_key``.

    >>> HostPool.host_key(Trial("experiments.cpu:sum_squares", "ray", 2, 8, 1000))
    (None, True)
    """

    def __init__(self, search_path: list[str], timeout_s: float):
        self.search_path, self.timeout_s = search_path, timeout_s
        self.hosts: dict[tuple, TrialHost] = {}
        self._facts: dict[str | None, dict] = {}  # python -> what its latest host said of it
        self._ran: dict[tuple, set[str]] = {}  # host key -> trial ids its current host has run
        self._replaced: set[tuple] = set()  # host keys whose host was replaced at least once
        self.measured_s = 0.0  # time spent inside trial hosts, for the overhead figure
        self.inside_s = 0.0  # the runs' own windows (setup + run + teardown) within it
        self.starting_s = 0.0  # starting trial hosts (a start-up cost, not a per-run one)
        #: The runner's settings as the sweep starts: a run can change them through the runner's pid
        #: (the host's parent), and every fresh host would inherit them as its clean state.
        self.runner = own.Settings("the runner's", limits=False)
        self.shm = shm.Watch()  # what a run killed before it could report left in /dev/shm

    @staticmethod
    def host_key(trial: Trial) -> tuple:
        """Which host runs ``trial``: one per interpreter, and Ray trials in a host of their own.

        A host that has imported Ray holds ~150 MB more; forking multiprocessing workers from it
        would cost several times more than from the small host, and that is no number to report.
        """
        return (trial.python, trial.backend == protocol.RAY)

    def host(self, key: tuple) -> TrialHost:
        python = key[0]
        host = self.hosts.get(key)
        if host is None or host.proc.poll() is not None:
            started = time.perf_counter()
            try:
                # a matrix names "3.12" or "python3.12"; the host needs the executable it stands for
                host = self.hosts[key] = TrialHost(resolve(python), self.search_path, shm_watch=self.shm)
            finally:
                self.starting_s += time.perf_counter() - started
            self._facts[python] = host.info  # kept for the row of a trial that kills its host
            if key in self._ran:
                self._replaced.add(key)
            self._ran[key] = set()
        return host

    def drop(self, key: tuple) -> None:
        host = self.hosts.pop(key, None)
        if host is not None:
            host.close()

    def call(self, trial: Trial, op: str, cores: list[int] | None, prime: bool = False) -> dict:
        """One request to the trial's host; a timeout or death becomes a failed outcome.

        ``prime``: the run's process calls the workload once, untimed, first (``host.trial.prime``);
        that call gets a timeout of its own, so a trial of one long task is not cut short by it.
        What the run changed in the runner itself is put back and said on its row.
        """
        outcome = self._call(trial, op, cores, prime)
        notes = self.runner.restore()[0]
        if notes:
            left = [outcome.get(protocol.LEFT_BEHIND)] + notes
            outcome[protocol.LEFT_BEHIND] = "; ".join(n for n in left if n)
        return outcome

    def _call(self, trial: Trial, op: str, cores: list[int] | None, prime: bool) -> dict:
        params = {**trial.params(), protocol.CORES: cores}
        if prime:
            params[protocol.PRIME] = True
        message = protocol.request(op, params)
        key = self.host_key(trial)
        try:
            host = self.host(key)
        except (HostDied, HostTimeout, OSError, InterpreterError) as exc:
            self.drop(key)
            why = f"cannot start trial host for {trial.python or 'python'}: {exc}"
            return protocol.outcome(status=schema.FAILED, error=why)
        started = time.perf_counter()
        self.shm.mark()
        try:
            reply = host.request(message, self.timeout_s * (2 if prime else 1))
        except HostTimeout:
            self.drop(key)
            first = f" (plus {self.timeout_s:g} s for its untimed first call)" if prime else ""
            why = f"no answer within {self.timeout_s:g} s{first}; trial host killed and replaced"
            return self._killed(schema.TIMEOUT, why, host)
        except HostDied as exc:
            self.drop(key)
            return self._killed(schema.FAILED, str(exc), host)
        finally:
            self.measured_s += time.perf_counter() - started
        if not reply.get(protocol.OK):
            why = reply.get(protocol.ERROR) or "trial host error"
            outcome = protocol.outcome(
                status=schema.FAILED, error=why, left_behind=reply.get(protocol.LEFT_BEHIND)
            )
        else:
            outcome = reply[protocol.OUTCOME]
            if op == protocol.RUN:
                self.inside_s += sum(outcome.get(k) or 0.0 for k in protocol.INSIDE_DURATIONS)
        if outcome.get(protocol.STATUS) in schema.FAILURES:  # the end of what it wrote, kept for failed runs
            outcome[protocol.STDERR_TAIL] = host.stderr.text()
        return outcome

    def _killed(self, status: str, why: str, host: TrialHost) -> dict:
        """The outcome of a run whose host was killed or died: with what it left in /dev/shm (its
        resource trackers, which would have unlinked it, died with it); what its processes held
        as they were killed (``TrialHost.shm_held``) is the run's, and removed."""
        left = "; ".join(self.shm.left(host.shm_held)) or None
        return protocol.outcome(status=status, error=why, stderr_tail=host.stderr.text(), left_behind=left)

    def is_cold(self, trial: Trial) -> bool:
        """True when a host that replaced a failed one has not yet run ``trial``."""
        key = self.host_key(trial)
        return key in self._replaced and trial.trial_id not in self._ran.get(key, set())

    def mark_ran(self, trial: Trial) -> None:
        self._ran.setdefault(self.host_key(trial), set()).add(trial.trial_id)

    def facts(self, python: str | None) -> dict:
        """What the latest host for ``python`` said of its interpreter (empty before one started)."""
        info = self._facts.get(python, {})
        return {key: info[key] for key in protocol.HELLO_FACTS if info.get(key) is not None}

    def close(self) -> None:
        for key in list(self.hosts):
            self.drop(key)

"""Where a sweep's runs execute: one small interface, two implementations.

``Dispatch`` takes the plan's runs and yields ``(run, RunResult)`` as each finishes; a run
the driver's ``skip`` names is not executed, and its result says so (``skipped``, with the
row that records why). Like the executors of
``concurrent.futures``, implementations differ only in where the work happens:

* ``LocalDispatch`` (here): trial hosts on this machine, through one ``TrialExecutor``;
  it starts or joins the Ray runtime a sweep's ``ray`` trials need;
* ``cluster.ClusterDispatch``: one node actor per Ray node, each with its own executor.

Both depend on the executor, never on the driver (``runner``).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterable, Iterator

from conc_lab import events, schema
from conc_lab.events import EventHandler
from conc_lab.host.protocol import RAY
from conc_lab.host.workload import lacks
from conc_lab.plan.matrix import Trial
from conc_lab.plan.runs import Run
from conc_lab.run.executor import RunResult, TrialExecutor

#: The driver's word on a trial: None to run it, else (status, why) for the row of a run not executed.
Skip = Callable[[Trial], "tuple[str, str] | None"]


class Dispatch:
    """The interface. ``open``, then ``results`` once, then ``close`` (also after an error)."""

    #: seconds spent inside trial hosts (for the overhead figure); nodes' time shared out over them
    measured_s: float = 0.0
    #: the runs' own windows (setup + run + teardown) within ``measured_s``, shared out likewise
    inside_s: float = 0.0
    #: seconds spent starting trial hosts during the runs: start-up, not the runner's per-run cost
    starting_s: float = 0.0
    #: seconds ``open`` took (Ray's start-up): reported on its own, not as runner overhead
    setup_s: float = 0.0
    #: seconds ``close`` took (hosts and Ray shutting down), likewise
    teardown_s: float = 0.0

    def open(self, trials: list[Trial], emit: EventHandler) -> dict[str, tuple[str, str]]:
        """Get ready to run ``trials``; return {trial_id: (status, why)} for trials it cannot run.

        ``schema.SKIPPED`` where this machine lacks what they need, ``schema.FAILED`` where
        what they need broke (a Ray runtime that did not start).
        """
        return {}

    def results(self, runs: Iterable[Run], skip: Skip) -> Iterator[tuple[Run, RunResult]]:
        """Execute ``runs``; yield (run, result) as each finishes, a skipped result where ``skip(trial)``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release hosts, actors and runtimes; safe to call twice."""


class LocalDispatch(Dispatch):
    """Runs every run here, in order, in the executor's trial hosts."""

    def __init__(self, executor: TrialExecutor, ray_address: str | None = None):
        self.executor = executor
        self.ray_address = ray_address
        self._ray = None

    @property
    def measured_s(self) -> float:
        return self.executor.measured_s

    @property
    def inside_s(self) -> float:
        return self.executor.inside_s

    @property
    def starting_s(self) -> float:
        return self.executor.starting_s

    def open(self, trials: list[Trial], emit: EventHandler) -> dict[str, tuple[str, str]]:
        ray_trials = [t.trial_id for t in trials if t.backend == RAY]
        if not ray_trials:
            return {}
        missing = ray_missing()
        if missing:
            emit(events.Warned(f"ray trials ({len(ray_trials)}) are skipped: {missing}"))
            return dict.fromkeys(ray_trials, (schema.SKIPPED, missing))
        from conc_lab.run.ray_runtime import RayRuntime  # Ray is imported only for sweeps that use it

        started = time.perf_counter()
        runtime = RayRuntime(self.ray_address)
        try:
            self._ray = runtime.open()
        except Exception as exc:  # Ray's own start-up failed (overload, no room): the others still run
            runtime.close()
            why = f"the Ray runtime did not start: {type(exc).__name__}: {str(exc).strip()[:300]}"
            emit(events.Warned(f"ray trials ({len(ray_trials)}) fail: {why}"))
            return dict.fromkeys(ray_trials, (schema.FAILED, why))
        self.setup_s = time.perf_counter() - started
        emit(events.RayStarted(self._ray.address, self._ray.started, self.setup_s))
        return {}

    def results(self, runs: Iterable[Run], skip: Skip) -> Iterator[tuple[Run, RunResult]]:
        executor = self.executor
        for run in runs:
            said = skip(run.trial)
            if said is None:
                yield run, executor.execute(run.trial, run.repeat, run.warmup)
            else:
                yield run, executor.skipped(run.trial, run.repeat, why=said[1], status=said[0])

    def close(self) -> None:
        started = time.perf_counter()
        try:
            self.executor.close()  # once per sweep (a Ray-connected host takes ~0.5 s)
        finally:
            if self._ray is not None:
                self._ray.close()
                self._ray = None
            self.teardown_s += time.perf_counter() - started


def ray_missing() -> str | None:
    """Why Ray cannot be used here (one line), or None when it can be imported."""
    package = "ray"  # package, not the backend
    missing = lacks(package)  # the same words as a trial skipped for what its interpreter lacks
    try:
        found = importlib.util.find_spec(package) is not None
    except ModuleNotFoundError:
        return missing
    except (ImportError, ValueError) as exc:
        return f"ray cannot be imported here ({exc})"
    return None if found else missing

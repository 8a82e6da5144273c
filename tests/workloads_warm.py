"""Workloads that tell what a run's processes hold: warm or cold, lean or not (tests/test_warm_runs.py).

``counted`` counts its calls in the process that makes them; ``observe`` (called after the
timed run, in the run's own process) reads how many came before the run's own tasks.
"""

_CALLS = [0]


def counted(task: int, size: int) -> int:
    _CALLS[0] += 1
    return task * size


def _calls() -> int:
    return _CALLS[0]


counted.observe = _calls


def holds_the_host(task: int, size: int) -> bool:
    """Whether the process running this task has the trial host's own modules loaded."""
    import sys

    return "conc_lab.host.fork" in sys.modules


holds_the_host.checkable = False  # True in the run's own process, False in a spawned worker


def spawned(task: int, size: int) -> int:
    return task * size


def _tracker() -> list:
    """The resource tracker the run's process uses (its pid, alive or not), read after the run."""
    import os
    import sys

    module = sys.modules.get("multiprocessing.resource_tracker")
    pid = getattr(getattr(module, "_resource_tracker", None), "_pid", None)
    return [pid, pid is not None and os.path.exists(f"/proc/{pid}")]


spawned.observe = _tracker

"""Workloads that tell a warm process from a cold one (tests/test_warm_runs.py).

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

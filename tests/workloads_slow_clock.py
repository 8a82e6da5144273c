"""A workload module that rewires ``time.perf_counter`` in C when it is imported, before any window
opens: the same function object then returns the process's CPU time, so a run that sleeps reads
almost no time, never a negative one, and fits inside the host's outside time (tests/test_hostile_host.py)."""

import time

from workloads_hostile import _c_function

_c_function(time.perf_counter).value = _c_function(time.process_time).value


def sleeps(task: int, size: int) -> int:
    """Sleeps 300 ms a task: by any honest clock its run takes that long."""
    time.sleep(0.3)
    return task

"""Workloads that measure the machinery rather than the work.

Timing: these workloads do not time themselves. Each call starts and joins ``size``
threads / processes / Ray tasks one after another, and conc_lab's ``run_s`` times the
call, so the cost of one start+join is ``run_s / (tasks * size)`` (``conclab`` rows carry
``tasks`` and ``size``). What each returns is deterministic and proves the started thing
really ran: every child computes a value from its index and the answers are summed, so
they stay checkable against the sequential backend like any other workload.

* ``noop`` on a backend measures that backend's per-task submit/result round trip
  (its pool is started in ``setup_s``, apart from ``run_s``).
* ``thread_start``: ``threading.Thread`` start + join.
* ``process_start_fork`` / ``_spawn`` / ``_forkserver``: ``multiprocessing.Process``
  start + join with that start method. The first forkserver start also starts the
  server; warm-up repeats absorb it. Run these on the sequential or threading backend:
  multiprocessing pool workers are daemonic and may not have children.
* ``ray_task`` / ``ray_actor``: a Ray task submitted and awaited; an actor created, called
  once and killed. They use the Ray runtime this process already joined (the ray
  backend's) or start a local one of their own (never attaching to another program's).
"""

import threading


def noop(task: int, size: int) -> int:
    """Do nothing; return the task index. Runs of it measure the runner's own overhead.

    >>> noop(5, 0)
    5
    """
    return task


def _value(task: int, size: int, i: int) -> int:
    # Small enough to be a process exit code, different for each start.
    return (task * size + i) % 100


def thread_start(task: int, size: int) -> int:
    """Start and join ``size`` threads one at a time; each stores a value, the answer is their sum.

    >>> thread_start(0, 3)  # values 0, 1, 2
    3
    """
    out = [0]

    def child(v: int) -> None:
        out[0] += v  # threads run one at a time here, so no update is lost

    for i in range(size):
        t = threading.Thread(target=child, args=(_value(task, size, i),))
        t.start()
        t.join()
    return out[0]


def _exit_with(code: int) -> None:
    import os

    os._exit(code)  # skip interpreter teardown: the measured cost is start + join, not cleanup


def _process_start(method: str, task: int, size: int) -> int:
    import multiprocessing

    ctx = multiprocessing.get_context(method)
    total = 0
    for i in range(size):
        value = _value(task, size, i)
        p = ctx.Process(target=_exit_with, args=(value,))
        p.start()
        p.join()
        # A child that failed to start (exit 1 from a traceback) must not pass for a value.
        if p.exitcode != value:
            raise RuntimeError(f"{method} child exited with {p.exitcode!r}, expected {value}")
        total += p.exitcode
    return total


def process_start_fork(task: int, size: int) -> int:
    """Start and join ``size`` processes with the fork start method; answer: sum of exit codes.

    >>> process_start_fork(0, 2)
    1
    """
    return _process_start("fork", task, size)


def process_start_spawn(task: int, size: int) -> int:
    """Like ``process_start_fork``, with the spawn start method (a fresh interpreter each time)."""
    return _process_start("spawn", task, size)


def process_start_forkserver(task: int, size: int) -> int:
    """Like ``process_start_fork``, with the forkserver start method."""
    return _process_start("forkserver", task, size)


_RAY: dict = {}


def _ray():
    """The ray module, initialised (joining a runtime already up in this process if any)."""
    import ray

    if not ray.is_initialized():
        # address="local": a runtime of our own, never one another program left running here
        ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
    if "echo" not in _RAY:

        @ray.remote(num_cpus=0)
        def echo(v: int) -> int:
            return v

        @ray.remote(num_cpus=0)
        class Echo:
            def echo(self, v: int) -> int:
                return v

        _RAY["echo"], _RAY["Echo"] = echo, Echo
    return ray


def ray_task(task: int, size: int) -> int:
    """Submit and await ``size`` Ray tasks one at a time; answer: the sum of their results."""
    ray = _ray()
    echo = _RAY["echo"]
    return sum(ray.get(echo.remote(_value(task, size, i))) for i in range(size))


def ray_actor(task: int, size: int) -> int:
    """Create a Ray actor, call it once and kill it, ``size`` times; answer: sum of the calls."""
    ray = _ray()
    total = 0
    for i in range(size):
        actor = _RAY["Echo"].remote()
        total += ray.get(actor.echo.remote(_value(task, size, i)))
        ray.kill(actor)
    return total

"""Workloads that misbehave on purpose, for the fault tests and benchmarks/bench_recovery.py.

They live with the tests, not in experiments/, because no one should sweep them for numbers;
a sweep reaches them as ``workloads_faulty:<name>`` with tests/ on its search path. Each one
behaves like ``experiments.cpu:sum_squares`` except on task ``FAULTY_TASK``, where it fails
in its own way, so a trial with several workers has good tasks running beside the bad one.
The workload contract is in experiments/__init__.py.
"""

from __future__ import annotations

import os
import time

FAULTY_TASK = 1


def _work(task: int, size: int) -> int:
    total = 0
    for i in range(task * size, (task + 1) * size):
        total += i * i
    return total


def good(task: int, size: int) -> int:
    """The well-behaved twin: the answer the others would give.

    >>> good(0, 4)
    14
    """
    return _work(task, size)


def raises(task: int, size: int) -> int:
    """Raises ValueError on the faulty task."""
    if task == FAULTY_TASK:
        raise ValueError(f"task {task} is broken on purpose")
    return _work(task, size)


def exits(task: int, size: int) -> int:
    """Leaves the process at once with ``os._exit(3)``: no cleanup, no exception to catch."""
    if task == FAULTY_TASK:
        os._exit(3)
    return _work(task, size)


def exits_zero(task: int, size: int) -> int:
    """``os._exit(0)``: a death that looks like success from the exit code alone."""
    if task == FAULTY_TASK:
        os._exit(0)
    return _work(task, size)


def segfaults(task: int, size: int) -> int:
    """Dereferences address 0 through ctypes: SIGSEGV in native code, no Python frame to unwind."""
    if task == FAULTY_TASK:
        import ctypes

        ctypes.string_at(0)
    return _work(task, size)


def hangs(task: int, size: int) -> int:
    """Sleeps for an hour (the GIL released): only a timeout ends it."""
    if task == FAULTY_TASK:
        time.sleep(3600)
    return _work(task, size)


def spins(task: int, size: int) -> int:
    """Loops forever holding the GIL: the host cannot even answer, so it must be killed from outside."""
    if task == FAULTY_TASK:
        while True:
            pass
    return _work(task, size)


def reads_stdin(task: int, size: int) -> int:
    """Reads standard input, which in the trial host must not be the runner's request pipe."""
    import sys

    data = sys.stdin.read()
    return _work(task, size) + len(data)


def unpicklable(task: int, size: int):
    """Returns a lambda: fine in a thread, cannot cross a process boundary or be hashed as JSON."""
    return lambda: task


_calls = 0


def counts_calls(task: int, size: int) -> int:
    """How many tasks this process has run, this one included: tells a host's first run from later ones."""
    global _calls
    _calls += 1
    return _calls


counts_calls.checkable = False  # its answer depends on the process's history, by design


# --- The same faults as coroutines, for the asyncio backend ---------------------------------


async def async_good(task: int, size: int) -> int:
    return _work(task, size)


async def async_raises(task: int, size: int) -> int:
    return raises(task, size)


async def async_exits(task: int, size: int) -> int:
    return exits(task, size)


async def async_hangs(task: int, size: int) -> int:
    """Awaits for an hour: the loop is free, the trial never ends."""
    import asyncio

    if task == FAULTY_TASK:
        await asyncio.sleep(3600)
    return _work(task, size)


async def async_blocks(task: int, size: int) -> int:
    """Sleeps for an hour *without* awaiting: the event loop itself is stuck."""
    return hangs(task, size)


def on_main_thread(task: int, size: int) -> bool:
    """Waits ``size`` ms, then answers whether it ran on its process's main thread: the plain loop and
    worker processes say True, a thread pool False. Threads are fastest at waiting, and wrong here."""
    import threading

    time.sleep(size / 1000)
    return threading.current_thread() is threading.main_thread()


def calls_sys_exit(task: int, size: int) -> int:
    """``sys.exit(3)`` on every call: the function's exit, which the tool must name as the function's."""
    import sys

    sys.exit(3)


#: A file that counts calls of ``fails_one_call`` across processes (set by the test).
CALLS_FILE_ENV = "CONCLAB_TEST_CALLS_FILE"
#: Which call (1-based, across every process) of ``fails_one_call`` raises.
FAILING_CALL = 3


def fails_one_call(task: int, size: int) -> int:
    """Raises on the ``FAILING_CALL``-th call across all processes, else does the work: with 2 tasks a
    run, the first run's two calls pass and the check's reference call after it fails (a flaky
    reference), while every later run passes."""
    import fcntl

    fd = os.open(os.environ[CALLS_FILE_ENV], os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        calls = int(os.read(fd, 32) or b"0") + 1
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, str(calls).encode())
    finally:
        os.close(fd)
    if calls == FAILING_CALL:
        raise RuntimeError("a flaky call")
    return _work(task, size)


def big_factorial(task: int, size: int) -> int:
    """A legitimate answer of 9,131 digits (3000!): past the 4,300 that Python converts to decimal."""
    import math

    return math.factorial(3000 + task)

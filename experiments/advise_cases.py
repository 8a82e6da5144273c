"""Six workloads whose right answer is known, for ``conclab advise`` (``benchmarks/bench_advise.py``).

Each is a plain ``fn(task, size)`` as any workload; on a machine with two or more cores:

* ``python_loop``: pure-Python arithmetic, holding the GIL: processes.
* ``hash_buffers``: SHA-256 over large buffers, the GIL released in C: threads ≈ processes, threads cheaper.
* ``wait``: sleeps (a stand-in for socket waits): threads.
* ``tiny``: a few microseconds whatever the size: too small for any backend's start-up, "don't bother".
* ``unequal``: pure Python, task 0 sixteen times the others: processes, and the imbalance named.
* ``wait_async``: an ``async def`` awaiting sleeps: asyncio.
"""

import asyncio
import time

from experiments.cpu import sha256_blocks, sum_squares


def python_loop(task: int, size: int) -> int:
    """Sum of squares over ``size`` integers.

    >>> python_loop(0, 4)
    14
    """
    return sum_squares(task, size)


def hash_buffers(task: int, size: int) -> str:
    """SHA-256 of ``size`` MiB (hashlib releases the GIL for each MiB).

    >>> len(hash_buffers(0, 1))
    64
    """
    return sha256_blocks(task, size)


def wait(task: int, size: int) -> int:
    """Sleep ``size`` milliseconds.

    >>> wait(3, 1)
    3
    """
    time.sleep(size / 1000.0)
    return task


def tiny(task: int, size: int) -> int:
    """A few microseconds of work, the same at every size.

    >>> tiny(1, 10**9)
    4951
    """
    return task + sum(range(100))


def unequal(task: int, size: int) -> int:
    """Pure Python; task 0 does sixteen times the work of the others.

    >>> unequal(1, 2)
    13
    """
    return sum_squares(task, size * (16 if task == 0 else 1))


async def wait_async(task: int, size: int) -> int:
    """Await a sleep of ``size`` milliseconds.

    >>> asyncio.run(wait_async(2, 1))
    2
    """
    await asyncio.sleep(size / 1000.0)
    return task

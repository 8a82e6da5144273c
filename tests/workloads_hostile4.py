"""Workloads that hide work in their answer, or leave shared memory behind, for tests/test_hostile_round4.py.

* The lazy answers look like plain data (a dict, a list, an int, bytes) but hold nothing: the
  work runs when conc_lab *reads* them, which it did after the timed window (checksumming the
  answers), so the row's ``run_s`` held almost nothing while the work ran untimed. Each counts
  the seconds its work ran that way, and ``observe`` (run after the backend) reports them.
* The leaky ones create a POSIX shared-memory segment, or a plain file in /dev/shm, and never
  unlink it: it outlives the run's process. Names carry the test's marker (``MARKER_ENV``), so
  the test removes only what it made.
"""

from __future__ import annotations

import collections.abc
import os
import time

MARKER_ENV = "CONCLAB_TEST_MARKER"
#: How long each lazy answer's hidden work takes when it is read.
HIDDEN_S = 0.15
_late = [0.0]  # seconds of hidden work that ran after the workload returned


def _hidden_work(task: int) -> int:
    start = time.perf_counter()
    total = 0
    while time.perf_counter() - start < HIDDEN_S:
        total += 1
    _late[0] += time.perf_counter() - start
    return task * task


def _observe_late() -> dict:
    return {"late_s": round(_late[0], 3)}


class LazyDict(dict):
    """A dict whose items are computed when they are read."""

    def __init__(self, task):
        dict.__init__(self)
        self.task = task

    def items(self):
        return [("square", _hidden_work(self.task))]


class LazyList(list):
    """A list whose items are computed when it is iterated."""

    def __init__(self, task):
        list.__init__(self)
        self.task = task

    def __iter__(self):
        return iter([_hidden_work(self.task)])


class LazyInt(int):
    """An int that holds 0 and computes its value in ``__int__``."""

    def __new__(cls, task):
        self = int.__new__(cls, 0)
        self.task = task
        return self

    def __int__(self):
        return _hidden_work(self.task)


class LazyBytes(bytes):
    """Bytes that hold nothing and compute their content in ``__bytes__``."""

    def __new__(cls, task):
        self = bytes.__new__(cls, b"")
        self.task = task
        return self

    def __bytes__(self):
        return str(_hidden_work(self.task)).encode()


class LazyMapping(collections.abc.Mapping):
    """Not a dict at all: a Mapping computed on reading."""

    def __init__(self, task):
        self.task = task

    def __getitem__(self, key):
        return _hidden_work(self.task)

    def __iter__(self):
        return iter(["square"])

    def __len__(self):
        return 1


def returns_lazy_dict(task: int, size: int):
    return LazyDict(task)


def returns_lazy_list(task: int, size: int):
    return LazyList(task)


def returns_lazy_int(task: int, size: int):
    return LazyInt(task)


def returns_lazy_bytes(task: int, size: int):
    return LazyBytes(task)


def returns_lazy_mapping(task: int, size: int):
    return LazyMapping(task)


for _fn in (returns_lazy_dict, returns_lazy_list, returns_lazy_int, returns_lazy_bytes, returns_lazy_mapping):
    _fn.observe = _observe_late


def returns_subclassed_plain_data(task: int, size: int):
    """Honest subclasses of builtins (an IntEnum, a namedtuple, an OrderedDict, a Counter): their value is the answer."""
    import collections
    import enum

    Point = collections.namedtuple("Point", "x y")
    Colour = enum.IntEnum("Colour", "RED GREEN")
    return [
        Colour.GREEN,
        Point(task, size),
        collections.OrderedDict([("a", task)]),
        collections.Counter("aab"),
        collections.defaultdict(int, b=2),
    ]


def _marker() -> str:
    return os.environ.get(MARKER_ENV, "conclab-hostile4")


_kept = []  # segments kept open, as a careless program keeps them in a global


def leaks_shared_memory(task: int, size: int) -> int:
    """Creates a shared-memory segment and never unlinks it (nor closes it: it is kept in a global)."""
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(name=f"{_marker()}-shm-{task}", create=True, size=4096)
    shm.buf[:4] = b"left"
    _kept.append(shm)
    return task


def leaks_closed_shared_memory(task: int, size: int) -> int:
    """Creates a segment, closes it, and never unlinks it: what a worker process that forgets does."""
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(name=f"{_marker()}-worker-{task}", create=True, size=4096)
    shm.close()
    return task


def leaks_shm_file(task: int, size: int) -> int:
    """Writes a plain file into /dev/shm and leaves it there."""
    with open(f"/dev/shm/{_marker()}-raw-{task}", "wb") as f:
        f.write(b"x" * 100)
    return task


#: A file the run writes when it starts, and one it waits for (set by the test around it).
STARTED_ENV, GO_ENV = "CONCLAB_TEST_STARTED", "CONCLAB_TEST_GO"


def waits_while_another_program_makes_a_semaphore(task: int, size: int) -> int:
    """Innocent: says it started, then waits (up to 20 s) for the test to say go; leaves nothing."""
    with open(os.environ[STARTED_ENV], "a") as f:
        f.write(f"{task}\n")
    deadline = time.monotonic() + 20
    while not os.path.exists(os.environ[GO_ENV]) and time.monotonic() < deadline:
        time.sleep(0.005)
    return task


def leaks_shared_memory_then_hangs(task: int, size: int) -> int:
    """Creates a segment (registered with its own process's resource tracker), then hangs past the timeout."""
    from multiprocessing import shared_memory

    _kept.append(shared_memory.SharedMemory(name=f"{_marker()}-hung-{task}", create=True, size=4096))
    time.sleep(600)
    return task

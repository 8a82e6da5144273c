"""Memory and shared state: what a worker's write does to the parent's memory.

How the effect is recorded
--------------------------
Each task is one call in *some* worker (a thread of the parent, or another process), so a
task alone cannot know what the parent will see. The post's program shows the shape of
the experiment: the parent sets ``result = None``, starts the workers, joins them, and
*then* reads ``result``. These workloads follow it with two optional hooks that conc_lab's
trial host calls in the parent process, outside the timed run:

* ``fn.prepare()`` before the workers run (the post's ``result = None``): resets the
  module's state in the parent;
* ``fn.observe()`` after every task has finished (the post's ``print(result)``): returns
  what the parent's memory holds now, as JSON-able data, stored in the ``observed``
  column of the run's row.

The per-task answers stay deterministic (a task returns what it wrote, or how many
increments it made), so every backend is still checked against the sequential one; the
effect itself (threads share the parent's memory, processes write to copies) is in
``observed``, measured, not asserted. Called directly, without conc_lab, the functions
work the same: call ``prepare()``, the tasks, then ``observe()``.

Workloads
---------
* ``result_global``: the post's ``calc_square`` writing its answer to the module global
  ``result`` (with ``global``, as the post's commenters advise).
* ``result_local``: the post's bug as written: ``result = ...`` inside the function makes a
  new local, so the parent sees ``None`` even with threads.
* ``counter_unlocked`` / ``counter_locked``: ``size`` read-modify-write increments of one
  shared counter, with a call between the read and the write (as real code has: a log
  line, a lookup) where the interpreter may switch threads. ``observed`` gives the counter
  the parent ends with and the increments really made in the parent's process; the
  difference is the lost updates.
* ``payload_pickle`` / ``payload_shared_memory``: move a ``size``-byte payload across a real
  OS channel to a receiver that checksums it: pickled through a pipe (what a process pool
  does with every argument) vs written once into ``multiprocessing.shared_memory`` with only
  its name sent. The receiver is a thread of the worker (a pool worker may not start
  processes), so ``run_s`` is the mechanism's cost without a process switch.
"""

import itertools
import threading
import zlib

# --- The post's `result` -------------------------------------------------------------

#: What the post's ``main`` reads after joining its workers.
result = None
#: Task indices whose write reached this process's ``result``.
_writers: list = []


def _square(task: int, size: int) -> int:
    from experiments.seed import calc_square

    return calc_square(task, size)


def result_global(task: int, size: int) -> int:
    """Compute the post's square and store it in the module global ``result``; return it.

    >>> result_global.prepare(); result_global(0, 1); result_global.observe()
    49
    {'result': 49, 'writers': [0]}
    """
    global result
    value = _square(task, size)
    result = value
    _writers.append(task)  # list.append is atomic: no write is lost here
    return value


def result_local(task: int, size: int) -> int:
    """The post's bug: ``result = ...`` without ``global`` binds a local; the parent sees None.

    >>> result_local.prepare(); result_local(0, 1); result_local.observe()
    49
    {'result': None, 'writers': []}
    """
    value = _square(task, size)
    result = value  # noqa: F841 -- the bug under study: a new local, the global is untouched
    return value


def _prepare_result() -> None:
    global result
    result = None
    _writers.clear()


def _observe_result() -> dict:
    return {"result": result, "writers": sorted(_writers)}


for _fn in (result_global, result_local):
    _fn.prepare = _prepare_result
    _fn.observe = _observe_result


# --- A shared counter, with and without a lock ----------------------------------------

_counter = [0]
_lock = threading.Lock()
#: Counts every increment really made in this process; next() on it is atomic in CPython.
_made = itertools.count()


def _pause() -> None:
    """Work between read and write (a lookup, a log line): where the interpreter may switch threads.

    CPython switches threads only at calls and backward jumps; a short loop gives the
    switch several chances to land inside the read-modify-write window.
    """
    for _ in range(4):
        pass


def counter_unlocked(task: int, size: int) -> int:
    """Increment the shared counter ``size`` times, read-pause-write, with no lock; return ``size``.

    >>> counter_unlocked.prepare(); counter_unlocked(0, 5); counter_unlocked.observe()
    5
    {'counter': 5, 'increments': 5, 'lost': 0}
    """
    cell = _counter
    for _ in range(size):
        value = cell[0]
        _pause()
        cell[0] = value + 1
        next(_made)
    return size


def counter_locked(task: int, size: int) -> int:
    """Like ``counter_unlocked`` but each read-pause-write holds a lock: no update is lost.

    >>> counter_locked.prepare(); counter_locked(0, 5); counter_locked.observe()
    5
    {'counter': 5, 'increments': 5, 'lost': 0}
    """
    cell = _counter
    lock = _lock
    for _ in range(size):
        with lock:
            value = cell[0]
            _pause()
            cell[0] = value + 1
        next(_made)
    return size


def _prepare_counter() -> None:
    global _made
    _counter[0] = 0
    _made = itertools.count()


def _observe_counter() -> dict:
    # next() also consumes one, which is harmless: prepare() makes a new count per run.
    increments = next(_made)
    return {"counter": _counter[0], "increments": increments, "lost": increments - _counter[0]}


for _fn in (counter_unlocked, counter_locked):
    _fn.prepare = _prepare_counter
    _fn.observe = _observe_counter


# --- Payload transfer: pickling vs shared memory ---------------------------------------

_PAYLOADS: dict = {}


#: Payloads kept per process (by size), so building one is paid once, in the warm-up.
_PAYLOAD_CACHE_BYTES = 256 << 20


def _payload(size: int) -> bytes:
    """``size`` fixed pseudo-random bytes, cached per process so building them is not timed."""
    data = _PAYLOADS.get(size)
    if data is None:
        import random

        # getrandbits, not randbytes (3.9+): the interpreter axis reaches back to 3.8
        data = random.Random(size).getrandbits(8 * size).to_bytes(size, "little") if size else b""
        while _PAYLOADS and sum(map(len, _PAYLOADS.values())) + size > _PAYLOAD_CACHE_BYTES:
            del _PAYLOADS[next(iter(_PAYLOADS))]  # oldest first
        _PAYLOADS[size] = data
    return data


def _receive(conn, out: list, use_shm: bool) -> None:
    """The receiving side: get the payload (or its shared-memory name) and checksum it."""
    import pickle

    try:
        if use_shm:
            from multiprocessing import shared_memory

            name, length = pickle.loads(conn.recv_bytes())
            shm = shared_memory.SharedMemory(name=name)
            try:
                out.append(zlib.crc32(shm.buf[:length]))
            finally:
                shm.close()
        else:
            out.append(zlib.crc32(pickle.loads(conn.recv_bytes())))
    finally:
        conn.send_bytes(b"done")  # also on failure, so the sender never waits forever


def _transfer(task: int, size: int, use_shm: bool) -> int:
    import pickle
    from multiprocessing import Pipe

    data = _payload(size)  # the same bytes for every task: the cost is the transfer, not the content
    receiver, sender = Pipe(duplex=True)
    out: list = []
    thread = threading.Thread(target=_receive, args=(receiver, out, use_shm), daemon=True)
    thread.start()
    shm = None
    try:
        if use_shm:
            from multiprocessing import shared_memory

            shm = shared_memory.SharedMemory(create=True, size=max(1, size))
            shm.buf[:size] = data
            sender.send_bytes(pickle.dumps((shm.name, size)))
        else:
            sender.send_bytes(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
        sender.recv_bytes()  # wait for the receiver: the transfer is complete only then
    finally:
        thread.join(30)
        sender.close()
        receiver.close()
        if shm is not None:
            shm.close()
            shm.unlink()
    if not out:
        raise RuntimeError("payload receiver did not finish")
    return out[0]


def payload_pickle(task: int, size: int) -> int:
    """Send a ``size``-byte payload pickled through a pipe; answer: its crc32 as received.

    >>> payload_pickle(1, 1000) == zlib.crc32(_payload(1000))
    True
    """
    return _transfer(task, size, use_shm=False)


def payload_shared_memory(task: int, size: int) -> int:
    """Put a ``size``-byte payload in shared memory, send only its name; answer: crc32 as read.

    >>> payload_shared_memory(1, 1000) == payload_pickle(1, 1000)
    True
    """
    return _transfer(task, size, use_shm=True)

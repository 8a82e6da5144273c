"""CPU affinity: which cores a trial's workers get, and pinning the calling thread to one.

On Linux ``os.sched_setaffinity(0, ...)`` acts on the *calling thread*, so a worker thread
or process pins itself. Where the call does not exist (macOS, Windows) trials still run
unpinned and record ``pinned=false``.

Standard library only, Python 3.8 syntax: this runs inside the trial host.
"""

import os

SUPPORTED = hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


def available_cores():
    """The cores this process may run on, sorted; isolated CPUs (isolcpus) first, as pyperf prefers them."""
    if not SUPPORTED:
        return list(range(os.cpu_count() or 1))
    allowed = sorted(os.sched_getaffinity(0))
    isolated = [c for c in _read_cpu_list("/sys/devices/system/cpu/isolated") if c in allowed]
    return isolated + [c for c in allowed if c not in isolated]


def plan(mode, workers, cores=None):
    """Cores for workers 0..workers-1, or None when not pinning.

    ``mode``: "compact" fills cores in order (SMT siblings together), "spread" puts one
    worker per physical core before doubling up on siblings, "none" does not pin, and a
    list of core numbers is used as given (worker i gets ``mode[i % len(mode)]``).

    >>> plan("none", 2) is None
    True
    """
    if mode == "none" or not SUPPORTED:
        return None
    if isinstance(mode, (list, tuple)):
        return [int(mode[i % len(mode)]) for i in range(workers)]
    cores = list(cores if cores is not None else available_cores())
    if mode == "spread":
        cores = _spread_order(cores)
    elif mode != "compact":
        raise ValueError("unknown affinity mode %r" % (mode,))
    return [cores[i % len(cores)] for i in range(workers)]


def pin(core):
    """Pin the calling thread (Linux) to ``core``; returns the previous affinity set."""
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    return previous


def restore(previous):
    if previous is not None:
        os.sched_setaffinity(0, previous)


def current_cpu():
    """The CPU the calling thread last ran on (field 39 of /proc/thread-self/stat), or -1."""
    try:
        # os.read, no file object: in a run's fresh process the first open() costs ~0.1 ms more
        # (the io stack's first use after the fork), and this is read once per task.
        fd = os.open("/proc/thread-self/stat", os.O_RDONLY)
        try:
            stat = os.read(fd, 4096)
        finally:
            os.close(fd)
        return int(stat[stat.rindex(b")") + 2 :].split()[36])
    except (OSError, ValueError, IndexError):
        return -1


def _spread_order(cores):
    """One core per physical core first, then their SMT siblings."""
    first, rest, seen = [], [], set()
    for c in cores:
        siblings = tuple(_read_cpu_list("/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list" % c))
        key = siblings or (c,)
        (rest if key in seen else first).append(c)
        seen.add(key)
    return first + rest


def _read_cpu_list(path):
    """Parse a kernel CPU list such as "0-3,8,10-11"; an absent file is an empty list."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return []
    cores = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        cores.extend(range(int(lo), int(hi or lo) + 1))
    return cores

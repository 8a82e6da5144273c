"""What a trial measures: clocks, CPU time, peak memory, the answer's checksum, the interpreter.

Standard library only, Python 3.8 syntax: this runs inside the trial host and its workers.
"""

import os
import resource
import sys
import time

from conc_lab.host import protocol

#: Monotonic and system-wide on Linux, so times taken in worker processes compare with the host's.
clock = time.perf_counter


def cpu_times():
    """(user, system) CPU seconds of the calling thread when the platform can tell, else the process."""
    if hasattr(resource, "RUSAGE_THREAD"):
        r = resource.getrusage(resource.RUSAGE_THREAD)
    else:
        r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def involuntary_switches():
    """Involuntary context switches of the calling thread so far (the scheduler took its CPU away)."""
    if hasattr(resource, "RUSAGE_THREAD"):
        return resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
    return resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw


def cpu_wait_s():
    """Seconds the calling thread has spent ready to run but waiting for a CPU (the scheduler's
    ``run_delay``, /proc/thread-self/schedstat), or None where the kernel does not say.

    What a busy core costs a run is this wait: a worker that sleeps barely has one, one that
    computes beside others waits for most of what they take.
    """
    try:  # raw calls, no file object: this runs twice in each worker of every run
        fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        try:
            return int(os.read(fd, 256).split()[1]) / 1e9
        finally:
            os.close(fd)
    except (OSError, ValueError, IndexError):
        return None


def reset_peak_rss():
    """Reset this process's peak-RSS watermark (Linux >= 4.0), so a reused host measures each trial anew."""
    try:  # raw calls, no file object: this runs in every run's process
        fd = os.open("/proc/self/clear_refs", os.O_WRONLY)
        try:
            os.write(fd, b"5")
        finally:
            os.close(fd)
        return True
    except OSError:
        return False


def peak_rss_bytes():
    """Peak resident set size since the last reset (VmHWM), falling back to ru_maxrss."""
    try:
        fd = os.open("/proc/self/status", os.O_RDONLY)
        try:
            status = os.read(fd, 1 << 16)  # a few kB: one read holds it
        finally:
            os.close(fd)
        at = status.find(b"\nVmHWM:")
        if at >= 0:
            return int(status[at + 1 :].split(None, 2)[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


class NotJSONable(TypeError):
    """A task result outside the checksum's contract; ``str()`` is the row's error text."""

    def __init__(self, value, why=""):
        TypeError.__init__(self, "result is not JSON-able: %s%s" % (_type_name(type(value)), why))


def checksum(results):
    """sha256 of the task results in task order; equal answers give equal checksums.

    The contract: JSON values (None, bool, int, float, str, lists, dicts) plus tuples (as
    lists), sets and frozensets, and bytes. The encoding is canonical: a set's items and a
    dict's entries are sorted by their own encoding, so neither hash seeds nor insertion
    order change the checksum, and a dict may mix key types. Anything else (a lambda, a
    generator, an object) raises ``NotJSONable``: its ``repr`` would name its address.

    It runs after the timed window, so no code of the workload's may run in it: an answer
    that computed itself when read (a dict subclass whose ``items()`` does the work) did the
    work untimed. Every value is read through its builtin type's own methods, never its
    subclass's: an IntEnum, a namedtuple or an OrderedDict is its builtin value; a list,
    tuple, set or dict subclass that overrides how it is read is refused (``_READS``).

    >>> checksum([{"b", "a"}, {1: "x", "k": None}]) == checksum([{"a", "b"}, {"k": None, 1: "x"}])
    True
    >>> checksum([lambda: 0])
    Traceback (most recent call last):
    ...
    conc_lab.host.measure.NotJSONable: result is not JSON-able: function
    """
    try:
        blob = _canonical(list(results))
    except RecursionError:  # a list that contains itself
        raise NotJSONable(results) from None
    import hashlib  # here: the run's process has it from the host, a spawned worker never needs it

    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


def check_jsonable(value):
    """Raise ``NotJSONable`` unless ``checksum`` accepts ``value`` (a worker asks before sending)."""
    try:
        _canonical(value)
    except RecursionError:
        raise NotJSONable(value) from None


_ENCODE = []  # json's encoder, made at the first checksum


def _json(value):
    if not _ENCODE:
        # Here, not at the top: a spawned worker imports this module but never checksums, and json
        # took 2 ms of each one's set-up (setup_s) there.
        import json

        _ENCODE.append(json.JSONEncoder(ensure_ascii=True, allow_nan=True).encode)
    return _ENCODE[0](value)


def _int(value):
    """``int.__repr__``, or the number in hex past the digits Python converts to decimal (3.11+:
    4,300 by default): a workload that computes a large factorial is answered, not failed.

    >>> _int(12), _int(1 << 20000)[:6], len(_int(1 << 20000))
    ('12', '0x1000', 5003)
    """
    try:
        return int.__repr__(value)
    except ValueError:
        return "0x" + int.__format__(value, "x")


def _canonical(value):
    kind = type(value)
    encode = _ENCODERS.get(kind)
    if encode is None:  # a subclass of a builtin (read as its builtin value), or not JSON-able
        base = _builtin_base(value, kind)
        if base is str:  # an exact copy: no encoder, C or Python, can meet the subclass's methods
            value = str.__str__(value)
        encode = _ENCODERS[base]
    return encode(value)


# Each reads its value only through the builtin type's own (C) methods, so no method of a subclass
# runs: ``int.__repr__`` of an IntEnum is its number, ``dict.items`` of a dict subclass its entries.
_ENCODERS = {
    type(None): _json,
    bool: _json,
    str: _json,
    int: _int,
    float: float.__repr__,
    list: lambda v: "[" + ",".join([_canonical(x) for x in list.__iter__(v)]) + "]",
    tuple: lambda v: "[" + ",".join([_canonical(x) for x in tuple.__iter__(v)]) + "]",
    dict: lambda v: (
        "{" + ",".join(sorted(_canonical(k) + ":" + _canonical(x) for k, x in dict.items(v))) + "}"
    ),
    set: lambda v: "set[" + ",".join(sorted(_canonical(x) for x in set.__iter__(v))) + "]",
    frozenset: lambda v: "set[" + ",".join(sorted(_canonical(x) for x in frozenset.__iter__(v))) + "]",
    bytes: lambda v: 'b"' + bytes.hex(v) + '"',
    bytearray: lambda v: 'b"' + bytearray.hex(v) + '"',
}
#: The builtins a subclass may extend, scalars first (bool cannot be subclassed).
_BASES = (int, float, str, bytes, bytearray, tuple, list, dict, set, frozenset)
#: How a container is read: a subclass that defines one of these would compute its answer when read.
_READS = ("__iter__", "__getitem__", "__len__", "items", "keys", "values")
_MRO = type.__dict__["__mro__"].__get__  # the type's own, not a metaclass property's
_VARS = type.__dict__["__dict__"].__get__


def _builtin_base(value, kind):
    """The builtin ``kind`` extends, or ``NotJSONable``; a container subclass must not override ``_READS``."""
    for base in _BASES:
        if issubclass(kind, base):  # on a type: its MRO, no __subclasscheck__ of the workload's
            break
    else:
        raise NotJSONable(value)
    if base in (tuple, list, dict, set, frozenset) and kind not in _trusted():
        for klass in _MRO(kind):
            if klass is base:
                break
            own = _VARS(klass)
            for name in _READS:
                if name in own:
                    raise NotJSONable(value, " overrides %s(), which would run after the timed window" % name)
    return base


_TRUSTED = []


def _trusted():
    """Standard-library subclasses that override how they are read, in C, honestly."""
    if not _TRUSTED:
        import collections  # loaded already in every process that runs a workload

        _TRUSTED.append(frozenset((collections.OrderedDict,)))
    return _TRUSTED[0]


def _type_name(kind):
    name = type.__dict__["__qualname__"].__get__(kind)
    module = type.__dict__["__module__"].__get__(kind)
    return name if module in ("builtins", None) else "%s.%s" % (module, name)


def gil_enabled():
    """Whether the GIL is on now: ``sys._is_gil_enabled()`` (3.13+), else true for CPython.

    A free-threaded build starts without it but turns it on when it imports an extension
    module not marked safe for free threading (or with PYTHON_GIL=1), so ask at run time.
    """
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    if is_gil_enabled is not None:
        return bool(is_gil_enabled())
    return sys.implementation.name == "cpython"


def interpreter():
    """Facts about the running interpreter that every row records."""
    import platform  # here, not at the top: every worker imports this module (6 ms), few ask this
    import socket
    import sysconfig

    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    return {
        "python_version": platform.python_version(),
        "python_impl": platform.python_implementation(),
        protocol.GIL_ENABLED: gil_enabled(),
        "free_threaded": free_threaded,
        "executable": sys.executable,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
    }

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

    def __init__(self, value):
        TypeError.__init__(self, "result is not JSON-able: %s" % type(value).__name__)


def checksum(results):
    """sha256 of the task results in task order; equal answers give equal checksums.

    The contract: JSON values (None, bool, int, float, str, lists, dicts) plus tuples (as
    lists), sets and frozensets, and bytes. The encoding is canonical: a set's items and a
    dict's entries are sorted by their own encoding, so neither hash seeds nor insertion
    order change the checksum, and a dict may mix key types. Anything else (a lambda, a
    generator, an object) raises ``NotJSONable``: its ``repr`` would name its address.

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


def _canonical(value):
    # Exact types first: a subclass (IntEnum, a str subclass) is encoded as its base value.
    if value is None or isinstance(value, (bool, str)):
        return _json(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, (list, tuple)):
        return "[" + ",".join([_canonical(v) for v in value]) + "]"
    if isinstance(value, dict):
        items = sorted(_canonical(k) + ":" + _canonical(v) for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (set, frozenset)):
        return "set[" + ",".join(sorted(_canonical(v) for v in value)) + "]"
    if isinstance(value, (bytes, bytearray)):
        return 'b"' + bytes(value).hex() + '"'
    raise NotJSONable(value)


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

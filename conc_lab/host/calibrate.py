"""Calibration for ``size: auto``: grow a workload's size until one task takes a target time.

Like pyperf calibrating its loop count, the size starts at 1 and grows (x8 while a call
is far below the target, then x2) until one call of ``fn(0, size)`` takes at least
``target_s`` (default 50 ms) twice in a row (so one slow call, e.g. a first-time import,
cannot stop it early). The total time spent is a few times the target.

Run as a module it calibrates one workload in a fresh process and prints JSON, which is
how the runner uses it (under the sweep's interpreter, unpinned, before any trial)::

    python -m conc_lab.host.calibrate experiments.cpu:sum_squares 0.05
    {"size": 524288, "seconds": 0.061}

Standard library only, Python 3.8 syntax: it runs where the trial host runs.
"""

import json
import os
import sys
import time

from conc_lab.host import protocol

DEFAULT_TARGET_S = 0.05
#: Largest size tried: past it a workload evidently does not grow with ``size``.
MAX_SIZE = 1 << 40
#: Give up when calibration itself has run this many times the target (plus a fixed allowance).
BUDGET_TARGETS = 40
BUDGET_EXTRA_S = 30.0


class CalibrationError(ValueError):
    """The workload cannot be calibrated (it does not take longer with a larger size, or it fails)."""


def calibrate(fn, target_s=DEFAULT_TARGET_S, clock=time.perf_counter):
    """The smallest size found (growing from 1) where ``fn(0, size)`` takes >= ``target_s``; (size, seconds).

    >>> calibrate(lambda task, size: time.sleep(size / 1000.0), target_s=0.004)[0]
    4
    """
    if not target_s > 0:
        raise CalibrationError("target must be a positive number of seconds, got %r" % (target_s,))
    budget = BUDGET_TARGETS * target_s + BUDGET_EXTRA_S
    started = clock()
    size = 1
    fn(0, size)  # first call pays imports and caches
    while True:
        elapsed = _timed(fn, size, clock)
        if elapsed >= target_s:
            again = _timed(fn, size, clock)
            if again >= target_s:
                return size, min(elapsed, again)
            elapsed = again
        if size >= MAX_SIZE or clock() - started > budget:
            raise CalibrationError(
                "one task still takes %.3g ms at size %d (target %.3g ms): "
                "the workload does not take longer with size" % (elapsed * 1e3, size, target_s * 1e3)
            )
        size *= 8 if elapsed < target_s / 16 else 2


def _timed(fn, size, clock):
    t0 = clock()
    fn(0, size)
    return clock() - t0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not 1 <= len(argv) <= 2:
        sys.stderr.write("usage: python -m conc_lab.host.calibrate module:function [target_s]\n")
        return 2
    from conc_lab.host.workload import import_function

    extra = protocol.search_path(os.environ)
    sys.path[:0] = [p for p in extra if p not in sys.path]
    proto_out = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # a workload's prints must not corrupt the JSON answer
    os.close(devnull)
    try:
        fn = import_function(argv[0])
        size, seconds = calibrate(fn, float(argv[1]) if len(argv) > 1 else DEFAULT_TARGET_S)
        answer = {"size": size, "seconds": seconds}
    except Exception as exc:  # reported as data: the runner turns it into one line for the user
        answer = {"error": "%s: %s" % (type(exc).__name__, exc)}
    proto_out.write(json.dumps(answer) + "\n")
    proto_out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

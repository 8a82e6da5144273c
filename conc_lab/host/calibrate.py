"""Calibration for ``size: auto``: grow a workload's size until one task takes a target time.

Like pyperf calibrating its loop count, the size starts at 1 and doubles until one call of
``fn(0, size)`` takes at least ``target_s`` (default 50 ms) twice in a row (so one slow call,
e.g. a first-time import, cannot stop it early). Doubling, not a bigger factor, because a
workload's time may grow much faster than its size (``fib(n)`` grows as 1.6**n): one step of x8
from a size that takes microseconds can take hours. The total time spent is a few times the target.

Before each step the next one's time is forecast from the last two: time is taken to grow as
``size**k`` with the ``k`` of the last doubling. When that forecast would pass the budget
(default 60 s for the whole calibration), growth stops at the size reached, below the target, and
the answer says why. The runner also kills the calibrator at the budget, in case one step runs far
past its forecast.

Run as a module it calibrates one workload in a fresh process and prints JSON lines, one per step
and then the answer, which is how the runner uses it (under the sweep's interpreter, unpinned,
before any trial)::

    python -m conc_lab.host.calibrate experiments.cpu:sum_squares 0.05 60   # lines: protocol.CAL_*
    {"step": 1, "seconds": 1.2e-06, "elapsed": 0.0}
    ...
    {"size": 524288, "seconds": 0.061}

Standard library only, Python 3.8 syntax: it runs where the trial host runs.
"""

import json
import math
import os
import sys
import time

from conc_lab.host import protocol
from conc_lab.host.units import duration

DEFAULT_TARGET_S = 0.05
DEFAULT_BUDGET_S = 60.0
#: Largest size tried: past it a workload evidently does not grow with ``size``.
MAX_SIZE = 1 << 40


class CalibrationError(ValueError):
    """The workload cannot be calibrated (it does not take longer with a larger size, or it fails)."""


def calibrate(
    fn, target_s=DEFAULT_TARGET_S, clock=time.perf_counter, budget_s=DEFAULT_BUDGET_S, on_step=None
):
    """(size, seconds, why_stopped): the smallest size (doubling from 1) where ``fn(0, size)`` takes
    >= ``target_s``; ``why_stopped`` is None then, or says why growth stopped below the target.

    ``on_step(size, seconds, elapsed)`` is called after every timed call.

    A workload that takes ``size`` ms on a clock of its own (so the example holds on any machine):

    >>> now = [0.0]
    >>> def work(task, size):
    ...     now[0] += size / 1000.0
    >>> calibrate(work, target_s=0.004, clock=lambda: now[0])
    (4, 0.004, None)
    """
    if not target_s > 0:
        raise CalibrationError("target must be a positive number of seconds, got %r" % (target_s,))
    fn = callable_sync(fn)
    started = clock()
    step = _stepper(fn, clock, started, on_step)
    size, times = 1, []
    fn(0, size)  # first call pays imports and caches
    while True:
        elapsed = step(size)
        if elapsed >= target_s:
            again = step(size)
            if again >= target_s:
                return size, min(elapsed, again), None
            elapsed = again
        if size >= MAX_SIZE:
            raise CalibrationError(
                "one task still takes %.3g ms at size %d (target %.3g ms): "
                "the workload does not take longer with size" % (elapsed * 1e3, size, target_s * 1e3)
            )
        times.append(max(elapsed, 1e-9))
        forecast = _forecast(times)
        spent = clock() - started
        cost = forecast * (2 if forecast >= target_s else 1)  # a step that reaches the target is timed twice
        if spent + cost > budget_s:
            left = max(budget_s - spent, 0.0)
            why = "size %d is forecast to take %s a task, and calibration has %s of its %s budget left" % (
                size * 2,
                duration(forecast),
                duration(left),
                duration(budget_s),
            )
            return size, elapsed, why
        size *= 2


def callable_sync(fn):
    """``fn`` as a plain call: an ``async def`` workload is run to completion on one event loop.

    Calling it as it is would time the creation of a coroutine, never awaited, which takes no
    longer at any size (#26 item 1: ``size: auto`` failed for every ``async def`` workload).
    """
    from conc_lab.host.backends._worker import is_async

    if not is_async(fn):
        return fn
    import asyncio  # only for async workloads, as the sequential backend does

    loop = asyncio.new_event_loop()
    return lambda task, size: loop.run_until_complete(fn(task, size))


def _forecast(times):
    """The time of one task at twice the last size, from the times of the last two sizes.

    Time is taken to grow as ``size**k``, with ``k`` from the last doubling (at least 1). A
    workload that grows faster (``2**size``) is forecast short and stopped by the runner at the
    budget instead; a forecast that errs long would stop a good workload below its target, so
    none is made steeper than what was measured.

    >>> [round(_forecast(t), 3) for t in ([1.0], [0.5, 1.0], [0.125, 1.0], [1.0, 1.0])]
    [2.0, 2.0, 8.0, 2.0]
    """
    if len(times) < 2:
        return times[-1] * 2  # nothing to go by: linear
    k = max(math.log2(times[-1] / times[-2]), 1.0)  # never forecast less than linear growth
    return times[-1] * 2.0**k


def _stepper(fn, clock, started, on_step):
    def step(size):
        t0 = clock()
        fn(0, size)
        seconds = clock() - t0
        if on_step is not None:
            on_step(size, seconds, clock() - started)
        return seconds

    return step


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not 1 <= len(argv) <= 3:
        sys.stderr.write("usage: python -m conc_lab.host.calibrate module:function [target_s [budget_s]]\n")
        return 2
    from conc_lab.host.hygiene import die_with_parent
    from conc_lab.host.workload import import_function, search_first

    die_with_parent()  # a call at a huge size must not outlive a killed sweep or advise

    extra = protocol.search_path(os.environ)
    search_first(extra)
    proto_out = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # a workload's prints must not corrupt the JSON answer
    os.close(devnull)

    def say(doc):
        proto_out.write(json.dumps(doc) + "\n")
        proto_out.flush()

    target = float(argv[1]) if len(argv) > 1 else DEFAULT_TARGET_S
    budget = float(argv[2]) if len(argv) > 2 else DEFAULT_BUDGET_S
    try:
        fn = import_function(argv[0])
        size, seconds, why = calibrate(
            fn,
            target,
            budget_s=budget,
            on_step=lambda s, t, e: say(
                {protocol.CAL_STEP: s, protocol.CAL_SECONDS: t, protocol.CAL_ELAPSED: e}
            ),
        )
        answer = {protocol.CAL_SIZE: size, protocol.CAL_SECONDS: seconds}
        if why:
            answer[protocol.CAL_STOPPED] = why
    except Exception as exc:  # reported as data: the runner turns it into one line for the user
        answer = {protocol.CAL_ERROR: "%s: %s" % (type(exc).__name__, exc)}
    except SystemExit as exc:  # the function's own sys.exit, not this process's: said as such
        answer = {protocol.CAL_ERROR: "the function called sys.exit(%r)" % (exc.code,)}
    say(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())

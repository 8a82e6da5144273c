"""One run of a trial, in the process that runs it: import the workload, run its backend, measure.

In a forked child (``host.fork``) this runs once and the process ends; for Ray trials it runs
in the host itself (a Ray connection cannot cross a fork), guarded by ``host.hygiene``.

Standard library only, Python 3.8 syntax: this runs inside the trial host.
"""

import importlib.util
import json

from conc_lab.host import backends, measure, noise, protocol
from conc_lab.host.backends._worker import is_async
from conc_lab.host.workload import import_function, lacks


def handle(request, workloads, canary_cache=None, alone=None, early=None):
    """The outcome of ``request`` (a run or reference op); ``workloads`` caches imported functions.

    ``canary_cache``: the host's recent canary readings per core (see ``noise.Canary``).
    ``alone``: the sweep's processes counted without their children (``noise.own_cpu_s``).
    ``early``: the canary's before-reading, taken already (``canary_before``).
    """
    trial = request[protocol.TRIAL]
    ref = trial["workload"]
    fn = workloads.get(ref)
    if fn is None:
        fn = workloads[ref] = load_workload(ref)
    if not callable(fn):  # what this interpreter lacks: the trial is skipped here, not failed
        return protocol.outcome(status=protocol.STATUS_SKIPPED, error=fn)
    reference = request[protocol.OP] == protocol.REFERENCE
    if reference:
        trial = dict(trial, backend=protocol.SEQUENTIAL, cores=None)
    backend = backends.get(trial["backend"])
    if trial.get(protocol.PRIME) and not reference:
        prime(fn, trial)
    measure.reset_peak_rss()
    # Optional hooks, run here in the parent and untimed, as the seed post's main does
    # `result = None`, starts and joins its workers, then reads `result` (experiments.memory).
    prepare, observe = getattr(fn, "prepare", None), getattr(fn, "observe", None)
    if prepare is not None:
        prepare()
    if reference:  # untimed: no noise to measure
        outcome = backend.run(fn, trial)
    else:
        outcome = _measured(backend, fn, trial, early or canary_before(request, canary_cache), alone)
    if observe is not None and outcome.get(protocol.STATUS) == protocol.STATUS_OK:
        outcome[protocol.OBSERVED] = json.dumps(observe(), sort_keys=True, default=repr)
    outcome[protocol.PEAK_RSS_BYTES] = (outcome.get(protocol.PEAK_RSS_BYTES) or 0) + measure.peak_rss_bytes()
    outcome[protocol.CHECKABLE] = getattr(fn, "checkable", True)
    outcome[protocol.GIL_ENABLED] = measure.gil_enabled()  # a free-threaded build may have turned it back on
    return protocol.check_outcome(outcome)


def prime(fn, trial):
    """Call ``fn`` once on its first task, untimed, in this process: a warm process to measure in.

    A run's process is fresh (``host.fork``), so without this every run would pay what only a
    program's first call pays: a table a workload builds on first use, a lazy import, a compiled
    pattern. Threads and forked workers then start from the warm process, as they would in a
    program that called it before; spawned workers, subinterpreters and Ray actors start cold
    there too. Its outcome is dropped: a task that fails fails the timed run as well. Not for
    Ray trials, whose work runs in actors this process does not warm.
    """
    if trial["backend"] == protocol.RAY:
        return
    try:
        if is_async(fn):  # needs an event loop: the baseline's, as its timed run would
            once = dict(trial, backend=protocol.SEQUENTIAL, workers=1, tasks=1, cores=None)
            backends.get(protocol.SEQUENTIAL).run(fn, once)
        else:  # a plain call: a whole backend here cost 1.5 ms a run (bench_core overhead)
            fn(0, trial["size"])
    except Exception:  # noqa: BLE001 - the timed run meets the same failure and records it
        pass


#: conc_lab's clock as the host loaded it, before any workload ran: what every run is timed with.
_CLOCK = measure.clock
CLOCK_REPLACED = (
    "conc_lab's clock (conc_lab.host.measure.clock) was replaced during the run: its durations "
    "cannot be trusted"
)


def canary_before(request, cache):
    """(``noise.Canary``, its before-reading) for the run ``request``, taken now.

    A run's process takes it before any of the workload's code runs (fork._run_and_reply), and
    sends its fresh readings to the host at once: a reading in the run's reply, which the
    workload writes, once handed the next run a canary of 0.1 µs (flagged +43000% noisy).
    """
    canary = noise.Canary(cache)
    return canary, canary.before(request[protocol.TRIAL].get(protocol.CORES))


def _measured(backend, fn, trial, early, alone):
    """``backend.run`` with the noise around it: foreign CPU, steal, and the speed canary."""
    cores = trial.get(protocol.CORES)
    canary, before = early
    with_ray = trial["backend"] == protocol.RAY  # else what Ray still runs is foreign to this run
    sample = noise.Sample(cores, with_ray, alone)
    outcome = backend.run(fn, trial)
    if measure.clock is not _CLOCK:
        # The host bounds a run's durations from above only (its outside time): a clock that runs
        # slow (a 1% one stored two 0.3 s sleeps as 0.006 s) or stands still (a frozen-time test
        # helper) passes that. Caught here when it is replaced, not when it is rewired in C.
        outcome[protocol.STATUS], outcome[protocol.ERROR] = protocol.STATUS_FAILED, CLOCK_REPLACED
        for key in protocol.INSIDE_DURATIONS:
            outcome[key] = None
    # What the backend ended during the run took its CPU time with it: it says how much (Ray's actors)
    outcome.update(noise.Sample(cores, with_ray, alone).since(sample, getattr(backend, "gone_cpu_s", 0.0)))
    inside = sum(outcome.get(k) or 0.0 for k in (protocol.SETUP_S, protocol.RUN_S, protocol.TEARDOWN_S))
    outcome[protocol.CANARY_BEFORE_S] = before
    outcome[protocol.CANARY_AFTER_S] = canary.after(cores, inside)
    outcome[protocol.CANARY_READINGS] = canary.fresh  # for the host's in-process runs (Ray's) alone
    return outcome


def load_workload(ref):
    """The workload's function, or a string naming the module this interpreter lacks for it.

    A workload that needs a package says so by importing it at the top of its module, or,
    if it imports lazily, with ``fn.requires = ("numpy",)``. The config check already
    imported the workload under conc_lab's own interpreter, so a module missing *here* is
    this interpreter's lack (a package not installed in it, a stdlib module newer than it),
    not a bug; only a module of the workload's own package missing is left to fail.
    """
    try:
        fn = import_function(ref)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        own = ref.partition(":")[0].partition(".")[0]
        if type(exc).__name__ != "ModuleNotFoundError" or not missing or missing.partition(".")[0] == own:
            raise
        return lacks(missing)
    for name in getattr(fn, "requires", ()):
        try:
            found = importlib.util.find_spec(name.partition(".")[0]) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return lacks(name)
    return fn

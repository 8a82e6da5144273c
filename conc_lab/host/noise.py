"""Noise around one run: how much CPU others took, what the hypervisor stole, and a speed canary.

On a shared machine other processes take CPU during single runs; those runs must be marked,
not averaged in. Around each trial the host records:

* **foreign CPU**: busy time of the run's cores (all cores when unpinned) from /proc/stat,
  minus the CPU time of the sweep's own processes, as a share of those cores over the trial.
  The sweep's own are exactly: this host and everything under it (the workers) and, for ray
  trials only, the trees of the Ray runtime the runner started (``protocol.SWEEP_PIDS_ENV``).
  Not the runner: it only waits while a run runs, so what its process and its other children
  take then is taken from the run. A runner inside a Jupyter kernel, an app or pytest has
  threads and children of its own, and a busy one on the run's core is exactly the noise to
  catch (a subreaper runner even inherits detached ones);
* **steal**: time the hypervisor gave those cores to other guests, as the same kind of share;
* a **speed canary**: a short fixed loop timed on each of the run's cores just before and
  just after the trial, in the thread's CPU time. Foreign CPU cannot see a hypervisor that
  runs this guest slower (the loop's CPU time grows with its wall time): the canary can.
  CPU time, not wall time, so that other processes preempting it (which foreign CPU
  already counts) do not move it; the fastest of a few rounds, so one cache miss does not.

The workers' involuntary context switches come with their task messages (``_worker``).
``verdict`` turns these into the reason a run is noisy, or None. Linux only; elsewhere
the figures are None and no run is flagged.

Standard library only, Python 3.8 syntax: this runs inside the trial host.
"""

import os
import time

from conc_lab.host import affinity, hygiene, protocol

#: Iterations of one canary round: about 0.1 ms of pure Python on a 2020s core.
CANARY_LOOPS = 1500
#: Canary rounds per core; the fastest counts, so a round that an interrupt or a preemption
#: (cold caches after it) lengthened does not.
CANARY_ROUNDS = 12
#: Rounds run first and not counted, on each core: the first round after the host waited for a
#: request and moved to the core ran 1.47x the later ones (median of 40), the second 1.12x.
#: With both (benchmarks/bench_canary.py, 40 before/after pairs around 0.05-0.3 s of work, load
#: ~2): the canary moved > 25% in 2 pairs, against 13 with the earlier 5 rounds of 3000 loops
#: and no warm-up; it costs ~3.5 ms a core each time instead of ~1.5.
CANARY_WARMUP_ROUNDS = 3
#: Defaults of the ``noise:`` config keys.
MAX_FOREIGN_CPU = 0.1
MAX_CANARY_CHANGE = 0.25

try:
    _TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
except (AttributeError, ValueError, OSError):
    _TICK_S = 0.01


#: How long a canary reading of a core stands for that core's speed: a run whose cores were all
#: measured more recently than this takes its ``canary_before_s`` from those readings. Amortizes the
#: canary over many short runs (about one measurement a second per core, instead of two per run).
CANARY_PERIOD_S = 1.0
#: A run at least this long (setup + run + teardown, its own clock) is followed by a canary of its
#: own: the canary's ~1.5 ms a core is then at most a few percent of the run it guards. A shorter run
#: gets an after-canary only when its before-canary was measured fresh (once per period), so a slow
#: state is caught within a period, not on every short run.
CANARY_MIN_RUN_S = 0.05


def canary(cores):
    """CPU seconds the reference loop takes on the slowest of ``cores`` (None: where the host runs now)."""
    return max(_canary_on(core) for core in (sorted(set(cores)) if cores else [None]))


#: Warm-up rounds of a before-reading that stands for its core for a period (``Canary.before``): it
#: is taken in a run's fresh process, just woken, which ran the loop slower than after the work.
CANARY_FRESH_WARMUP_ROUNDS = 12


def _canary_on(core, warmup=CANARY_WARMUP_ROUNDS):
    clock = getattr(time, "thread_time", time.perf_counter)  # 3.7+ everywhere the host runs
    previous = affinity.pin(core) if core is not None else None
    try:
        for _ in range(warmup):
            _reference_loop(CANARY_LOOPS)
        best = None
        for _ in range(CANARY_ROUNDS):
            start = clock()
            _reference_loop(CANARY_LOOPS)
            took = clock() - start
            best = took if best is None or took < best else best
    finally:
        affinity.restore(previous)
    return best


class Canary(object):
    """The canary around one run, reusing the host's recent readings (``cache``: {core: (s, when)}).

    ``fresh`` holds [core, seconds] of what this run measured before it, for the host's cache.
    """

    def __init__(self, cache, now=None):
        self.cache = cache if cache is not None else {}
        self.now = time.monotonic() if now is None else now
        self.fresh = []

    def before(self, cores):
        slowest = 0.0
        for core in sorted(set(cores)) if cores else [None]:
            cached = self.cache.get(core)
            if cached is not None and self.now - cached[1] < CANARY_PERIOD_S:
                seconds = cached[0]
            else:
                seconds = _canary_on(core, CANARY_FRESH_WARMUP_ROUNDS)
                self.fresh.append([core, seconds])
            slowest = max(slowest, seconds)
        return slowest

    def after(self, cores, inside_s):
        """The canary after the run, or None for a short run whose before-reading was reused."""
        if inside_s < CANARY_MIN_RUN_S and not self.fresh:
            return None
        return canary(cores)


def remember(cache, readings, now=None):
    """Put a run's fresh ``readings`` ([core, seconds] pairs) into the host's ``cache``."""
    now = time.monotonic() if now is None else now
    for core, seconds in readings or ():
        cache[core] = (seconds, now)


def _reference_loop(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


class Sample(object):
    """CPU counters at one moment: per-CPU busy and steal seconds, and the sweep tree's CPU seconds."""

    def __init__(self, cores=None, with_ray=True, alone=None):
        self.when = time.perf_counter()
        self.cpus = _proc_stat()
        # The Ray runtime's CPU is the sweep's own only for a ray trial: what a ray trial left
        # running (workers winding down, the raylet) during the next trial is foreign to that one.
        # ({} holds no Ray process list: only own_cpu_s's one key is read, so no copy of the environment.)
        self.own = own_cpu_s(None if with_ray else {}, alone=alone)
        self.cores = cores

    def since(self, before, gone_own_s=0.0):
        """{"foreign_cpu", "steal_cpu"}: shares of the run's cores from ``before`` to this sample.

        ``gone_own_s``: CPU of the sweep's processes that ended between the samples without it
        reaching a parent counted here (``cpu_s_of``, read just before they were ended).
        """
        wall = self.when - before.when
        cpus = sorted(set(self.cores)) if self.cores else sorted(self.cpus)
        if wall <= 0 or not cpus or any(c not in self.cpus or c not in before.cpus for c in cpus):
            return {protocol.FOREIGN_CPU: None, protocol.STEAL_CPU: None}
        busy = sum(self.cpus[c][0] - before.cpus[c][0] for c in cpus)
        steal = sum(self.cpus[c][1] - before.cpus[c][1] for c in cpus)
        own = None if self.own is None or before.own is None else self.own + gone_own_s - before.own
        foreign = None if own is None else max(busy - own, 0.0) / (wall * len(cpus))
        return {
            protocol.FOREIGN_CPU: None if foreign is None else min(foreign, 1.0),
            protocol.STEAL_CPU: min(steal / (wall * len(cpus)), 1.0),
        }


def _proc_stat():
    """{cpu: (busy_s, steal_s)} from /proc/stat; empty where there is none."""
    out = {}
    try:
        # The cpu lines come first: reading stops at the next one (intr), which can be long.
        for line in hygiene.read_proc("/proc/stat", until=b"\nintr").split(b"\n"):
            if not line.startswith(b"cpu"):
                break
            name, _, rest = line.partition(b" ")
            if name == b"cpu":
                continue
            v = [int(x) for x in rest.split()]
            # user nice system idle iowait irq softirq steal ...: busy leaves out idle, iowait, steal
            busy = v[0] + v[1] + v[2] + v[5] + v[6]
            out[int(name[3:])] = (busy * _TICK_S, (v[7] if len(v) > 7 else 0) * _TICK_S)
    except (OSError, ValueError, IndexError):
        return {}
    return out


def own_cpu_s(environ=None, alone=None):
    """CPU seconds of the sweep's own processes (see the module doc); None if unknown.

    Each process counts once with its reaped children (cutime, cstime: a worker that ended
    during the run moves there from its own entry). ``alone``: pids counted without their
    children (utime, stime), as what they reaped may be anything they started. A run's process
    forked from the host passes the host: its own tree is walked, and is small.
    """
    environ = os.environ if environ is None else environ
    roots = [os.getpid()]
    for text in environ.get(protocol.SWEEP_PIDS_ENV, "").split(","):
        if text.strip().isdigit():
            roots.append(int(text))
    pids = set()
    for root in roots:
        if root not in pids:
            pids.add(root)
            # A run's process that started nothing has no subtree to walk: one syscall says so.
            if root != roots[0] or hygiene.has_children():
                pids.update(hygiene.descendants(root))
    total, found = 0, False
    for pid in pids:
        ticks = _cpu_ticks(pid, children=True)
        if ticks is not None:
            total, found = total + ticks, True
    for pid in alone or ():
        if pid not in pids:
            total += _cpu_ticks(pid, children=False) or 0
    return total * _TICK_S if found else None


def cpu_s_of(pids):
    """CPU seconds (utime + stime) of ``pids`` over their lives so far; those gone count 0.

    For processes about to be ended whose parent does not wait for them: a Ray raylet reaps
    its workers itself, so a worker's CPU time leaves no trace in any process once it ends.
    """
    return sum(_cpu_ticks(pid, children=False) or 0 for pid in pids) * _TICK_S


def _cpu_ticks(pid, children):
    """utime + stime (+ cutime + cstime) of ``pid`` in clock ticks; None if it is gone."""
    fields = hygiene.stat_fields(pid)
    if len(fields) <= 14:
        return None
    # utime stime cutime cstime are fields 14-17 of /proc/PID/stat (11-14 after "state")
    return sum(int(x) for x in fields[11 : 15 if children else 13])


#: Clock ticks of foreign CPU a run's figure cannot tell from nothing, beyond one per core measured:
#: /proc/stat and each process's CPU time count whole ticks (10 ms), so the foreign figure, their
#: difference, is off by a few ticks whatever the run. On a 40 ms run one tick reads as "others
#: used 25% of its cores": in a smoke sweep at load 0.2, 70 of 110 runs were flagged so. Of its 90
#: runs other than ray's, 8 ran over 15% slower than their trial's median: with this margin 18 runs
#: are flagged (36 of 110 with ray's), 7 of the 8 among them; with 2 ticks 13, 4 of the 8.
FOREIGN_RESOLUTION_TICKS = 1


def foreign_beyond_resolution(row):
    """The share of the run's cores others used, less what tick counting cannot resolve; None if unknown.

    The window is the run's own (setup + run + teardown), its cores those in ``cores`` (all of
    this machine's where none are named). Without its durations, the share as measured.

    >>> foreign_beyond_resolution({"foreign_cpu": 0.25, "run_s": 0.04, "cores": [0]})  # one tick
    0.0
    >>> round(foreign_beyond_resolution({"foreign_cpu": 0.9, "run_s": 1.0, "cores": [0]}), 2)
    0.88
    """
    foreign = row.get(protocol.FOREIGN_CPU)
    if foreign is None:
        return None
    parts = [row.get(k) for k in (protocol.SETUP_S, protocol.RUN_S, protocol.TEARDOWN_S)]
    window = sum(p for p in parts if p is not None and p == p)  # None or NaN: not measured
    if not window > 0:
        return foreign
    cores = row.get(protocol.CORES)
    ncores = (len(cores) if cores is not None else 0) or os.cpu_count() or 1
    return resolved_share(foreign, window, ncores)


def resolved_share(foreign, window, ncores):
    """``foreign`` (a share of ``ncores`` cores over ``window`` seconds) less what ticks cannot
    resolve, at least 0; elementwise on numpy arrays too (``analysis.attribution`` uses it so).

    >>> round(resolved_share(0.9, 1.0, 1), 2), resolved_share(0.25, 0.04, 1)
    (0.88, 0.0)
    """
    excess = foreign * window * ncores - (FOREIGN_RESOLUTION_TICKS + ncores) * _TICK_S
    return (excess + abs(excess)) / 2 / (window * ncores)  # max(excess, 0), for floats and arrays alike


def verdict(row, max_foreign_cpu=MAX_FOREIGN_CPU, max_canary_change=MAX_CANARY_CHANGE):
    """Why a run is noisy (a short phrase), or None when nothing says so.

    Foreign CPU counts beyond what tick counting can resolve (``foreign_beyond_resolution``): a
    flag says others took a share of the run's cores that could have moved its time, not that a
    tick of someone's CPU fell in its window. It counts in proportion to the time the run wanted a
    CPU (``wanted_cpu_share``): a run that sleeps is not slowed by a busy core, and was flagged
    "others used 61% of its cores" at its nominal time (2 x 20 ms sleeps of a smoke sweep beside
    other work: 41-46 ms, flagged or not).

    >>> verdict({"foreign_cpu": 0.4, "canary_before_s": 1e-3, "canary_after_s": 1e-3})
    'others used 40% of its cores'
    >>> verdict({"foreign_cpu": 0.25, "run_s": 0.04, "cores": [0]}) is None  # a tick in 40 ms
    True
    >>> verdict({"foreign_cpu": 0.0, "canary_before_s": 1e-3, "canary_after_s": 2e-3})
    'speed canary moved +100%'
    >>> verdict({"foreign_cpu": None, "canary_before_s": None, "canary_after_s": None}) is None
    True
    >>> sleeps = {"run_s": 0.04, "cpu_user_s": 0.001, "cpu_sys_s": 0.0, "cpu_wait_s": 0.0002, "cores": [0, 1]}
    >>> verdict(dict(sleeps, foreign_cpu=0.6)) is None  # off the CPU: a busy core does not slow it
    True
    """
    reasons = []
    foreign = foreign_beyond_resolution(row)
    if foreign is not None and foreign * wanted_cpu_share(row) > max_foreign_cpu:
        reasons.append("others used %.0f%% of its cores" % (100 * row[protocol.FOREIGN_CPU]))
    before, after = row.get(protocol.CANARY_BEFORE_S), row.get(protocol.CANARY_AFTER_S)
    if before and after:
        change = after / before - 1
        share = on_cpu_share(row)
        if abs(change) * share > max_canary_change:
            on_cpu = "" if share == 1.0 else " (on a CPU %.0f%% of its time)" % (100 * share)
            reasons.append("speed canary moved %+.0f%%%s" % (100 * change, on_cpu))
    return "; ".join(reasons) or None


def on_cpu_share(row):
    """How much of the run's window a change of the machine's speed could move: its workers' CPU
    time over its run time, with set-up and teardown counted as on the CPU throughout; at most 1,
    and 1 where unknown.

    A run that sleeps or waits for I/O is barely moved by a slower CPU, and its after-reading comes
    from a core that sat idle (on this VM, 29-36% slower for a moment after 80 ms of sleep): the
    canary's change counts for such a run in proportion to its time on the CPU.

    >>> on_cpu_share({"run_s": 0.1, "cpu_user_s": 0.002, "cpu_sys_s": 0.0, "setup_s": 0.0, "teardown_s": 0.0})
    0.02
    >>> on_cpu_share({"run_s": 0.1, "cpu_user_s": 0.19, "cpu_sys_s": 0.01})  # two busy workers
    1.0
    >>> on_cpu_share({"run_s": 0.1, "cpu_user_s": None})
    1.0
    """
    user, system, run = row.get(protocol.CPU_USER_S), row.get(protocol.CPU_SYS_S), row.get(protocol.RUN_S)
    if user is None or run is None or not user == user or not run > 0:  # None or NaN: not measured
        return 1.0
    edges = sum(
        v for v in (row.get(protocol.SETUP_S), row.get(protocol.TEARDOWN_S)) if v is not None and v == v
    )
    cpu = user + (system if system is not None and system == system else 0.0)
    return min((cpu + edges) / (run + edges), 1.0)


def wanted_cpu_share(row):
    """How much of the run's window it wanted a CPU: its workers' CPU time and their wait for one
    (``cpu_wait_s``) over its run time, set-up and teardown counted throughout; at most 1, and 1
    where the wait is unknown (a row from before it was measured, a kernel without schedstat).

    Not ``on_cpu_share``: a loop starved by 24 others gets 4% of its core, and waits the rest.

    >>> sleeps = {"run_s": 0.1, "cpu_user_s": 0.002, "cpu_sys_s": 0.0, "setup_s": 0.0, "teardown_s": 0.0}
    >>> round(wanted_cpu_share(dict(sleeps, cpu_wait_s=0.001)), 3), wanted_cpu_share(dict(sleeps, cpu_wait_s=0.3))
    (0.03, 1.0)
    >>> wanted_cpu_share(sleeps)
    1.0
    """
    wait = row.get(protocol.CPU_WAIT_S)
    if wait is None or not wait == wait:
        return 1.0
    return min(on_cpu_share(row) + wait / max(row.get(protocol.RUN_S) or 0.0, 1e-9), 1.0)

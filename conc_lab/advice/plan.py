"""Planning the matrix ``advise`` runs, from the function itself and this machine.

* **The function**: its size is calibrated as ``size: auto`` does (unless given), then one
  call is timed in a fresh process for its CPU share: work that mostly waits (sleep, I/O)
  gets worker counts past the cores; work on the CPU stops at the cores.
* **The machine**: every backend it can run: sequential, threading, multiprocessing with each
  start method the platform has, asyncio for an ``async def`` (which only sequential and asyncio
  can await), subinterpreters and free-threaded threads where an interpreter for them is found,
  Ray only when asked. What is left out is said, with why.

The plan is plain data (``AdvicePlan``), its ``document`` the YAML matrix a sweep runs.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import math
import multiprocessing
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

import yaml

from conc_lab.advice import sizing
from conc_lab.advice.target import AdviseError, Target
from conc_lab.advice.words import seconds
from conc_lab.host import affinity
from conc_lab.host.protocol import ASYNCIO, MULTIPROCESSING, RAY, SEQUENTIAL, SUBINTERPRETERS, THREADING
from conc_lab.machine import interpreters as found_interpreters
from conc_lab.run import calibration
from conc_lab.run.trial_host import child_env

#: The sequential run advise aims for, in seconds: long enough to measure, short enough for rounds.
SEQUENTIAL_RUN_S = 0.4
#: Below this share of CPU time in a call's wall time, the work waits (sleep, I/O) more than it computes.
WAITS_BELOW = 0.5
#: Work that waits gets worker counts up to this many times the cores.
WAIT_OVERSUBSCRIBE = 4
#: Rounds planned at most: the adaptive loop stops far sooner, at its budget or once settled;
#: ``conclab sweep advise.yaml --resume`` runs the rest.
MAX_ROUNDS = 30
START_METHODS = ("fork", "forkserver", "spawn")

# Runs in a fresh process: one warm call, then two timed ones (wall and the whole process's CPU time).
_PROBE = r"""
import asyncio, inspect, json, sys, threading, time
from conc_lab.host.workload import import_function, search_first
from conc_lab.host import protocol
from conc_lab.host.hygiene import die_with_parent
import os
die_with_parent()  # a call at a huge size must not outlive a killed advise
search_first(protocol.search_path(os.environ))
fn = import_function(sys.argv[1]); size = int(sys.argv[2])
call = (lambda: asyncio.run(fn(0, size))) if inspect.iscoroutinefunction(fn) else (lambda: fn(0, size))
def queued():  # seconds this thread waited for a CPU it was ready for (Linux), else 0
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0
try:
    call()
    shares, walls = [], []
    for _ in range(2):
        w, c, q = time.perf_counter(), time.process_time(), queued()
        call()
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        walls.append(wall)
        # a busy machine keeps a computing call off the CPU too: that wait is not the call's own
        shares.append(cpu / max(wall - (queued() - q), cpu, 1e-9))
    left = [t.name for t in threading.enumerate()
            if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    print(json.dumps({"wall": min(walls), "cpu_share": max(shares), "threads": left}))
except BaseException as exc:
    print(json.dumps({"error": "%s: %s" % (type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")}))
sys.stdout.flush()
os._exit(0)  # a non-daemon thread the function left would keep this process from ending: said above
"""


@dataclass(frozen=True)
class Probe:
    """What one call of the function at the planned size costs.

    >>> Probe(size=20, task_s=0.02, cpu_share=0.01).waits
    True
    """

    size: int
    task_s: float  # wall time of one call at ``size``
    cpu_share: float  # CPU time / wall time of that call: ~1 computing, ~0 waiting
    size_note: str | None = None  # why the size is what it is, where that is worth saying
    threads: tuple[str, ...] = ()  # non-daemon threads its calls left running (their names)
    steps: tuple[tuple[int, float], ...] = ()  # calibration's (size, seconds of one call), when calibrated
    squeezed: str | None = None  # why the answer is for a size the budget chose: ``sizing.squeezed``

    @property
    def waits(self) -> bool:
        return self.cpu_share < WAITS_BELOW

    def told(self) -> str:
        """How the size came to be, for the verdict's size line: break-even sizes are read against it.

        >>> Probe(1, 3e-6, 1.0, "its time does not grow with size", steps=((1, 3e-6),)).told()
        'calibrated: its time does not grow with size; one call took 3 µs'
        """
        how = "calibrated" if self.steps else "given"
        return f"{how}: {self.size_note + '; ' if self.size_note else ''}one call took {seconds(self.task_s)}"

    def notes(self, ref: str) -> tuple[str, ...]:
        """What the verdict should say about the call itself: a thread it left that keeps a process alive.

        >>> Probe(1, 0.1, 1.0, threads=("Thread-1 (sleep)",)).notes("m:f")[0][:70]
        "note: m:f returned but left a non-daemon thread running ('Thread-1 (sl"
        """
        if not self.threads:
            return ()
        names = ", ".join(repr(t) for t in self.threads[:3]) + (" …" if len(self.threads) > 3 else "")
        return (
            f"note: {ref} returned but left a non-daemon thread running ({names}), so a process that "
            "calls it cannot end until that thread does; advise ended its own processes. Join the "
            "thread before returning, or start it with daemon=True",
        )


@dataclass(frozen=True)
class AdvicePlan:
    """The matrix advise runs: which arms, worker counts and tasks, and what was left out and why."""

    target: Target
    name: str
    cores: int
    workers: tuple[int, ...]
    tasks: int
    probe: Probe
    arms: tuple[str, ...]  # "sequential", "threading", "multiprocessing (fork)", ...
    left_out: tuple[str, ...] = ()
    document: dict = field(default_factory=dict)
    #: An arm's interpreter as its rows name it (a path) -> as the verdict says it ("3.13.0").
    python_labels: dict = field(default_factory=dict)

    def yaml_text(self) -> str:
        head = (
            f"# Planned by `conclab advise {self.target.ref}`: run it again, or extend it, with\n"
            f"#   conclab sweep THIS_FILE --resume --out RESULTS\n"
        )
        return head + yaml.safe_dump(self.document, sort_keys=False, width=100)


def usable_cores() -> int:
    """The cores this process may run on (its affinity), else the CPU count."""
    if affinity.SUPPORTED:
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_counts(cores: int, waits: bool) -> tuple[int, ...]:
    """1, 2, 4, … up to the cores (the cores themselves included); for work that waits, past them.

    >>> worker_counts(6, False), worker_counts(2, True), worker_counts(1, False)
    ((1, 2, 4, 6), (1, 2, 4, 8), (1,))
    """
    top = min(cores * WAIT_OVERSUBSCRIBE, 32) if waits else cores
    counts, n = [], 1
    while n < top:
        counts.append(n)
        n *= 2
    return tuple(counts + [top])


def plan(
    target: Target,
    *,
    size: int | None = None,
    ray: bool = False,
    cores: int | None = None,
    interpreters: list | None = None,
    budget_s: float = 120.0,
    probe: Probe | None = None,
) -> AdvicePlan:
    """The plan for ``target``: probe the function (calibrating its size unless given), then the matrix.

    ``interpreters`` (``machine.interpreters.Interpreter``s) are the other Pythons to consider for
    subinterpreters and free-threaded threads; None looks for them.
    A ``probe`` given is used as it is (nothing is run).
    """
    began = time.perf_counter()
    cores = cores or usable_cores()
    # before the probe, not beside it: starting a dozen interpreters would slow the calls it times
    interpreters = found_interpreters.find_interpreters() if interpreters is None else interpreters
    probe = probe or probe_function(target, size, cores, budget_s)
    waits = probe.waits
    workers = worker_counts(cores, waits)
    tasks = workers[-1] if waits else 4 * workers[-1]
    arms, extra, left_out = _arms(target, ray, interpreters)
    runs = sizing.round_weight(tuple(arms + extra_names(extra)), workers, cores, waits) * tasks
    left_s = budget_s - (time.perf_counter() - began)
    if probe.steps:  # calibrated here: brought down where it overshot, or the rounds would not fit
        calibrated, probe = probe, _within_budget(target, probe, runs, cores, (left_s, budget_s))
        # work slow at any size: half a second a call took 59 s of a 15 s budget
        left_s = budget_s - (time.perf_counter() - began)
        problem = sizing.past_budget(target.ref, probe, runs, budget_s, left_s, calibrated.task_s)
        if problem:
            raise AdviseError(problem)
    elif size is not None:  # the user's own: kept as it is, unless nothing can be measured within the budget
        problem = sizing.over_budget(probe.size, probe.task_s, runs * probe.task_s, left_s, budget_s)
        if problem:
            raise AdviseError(problem)
    doc = _document(target, probe, workers, tasks, arms, extra, waits, cores)
    name = doc["name"]
    return AdvicePlan(
        target,
        name,
        cores,
        workers,
        tasks,
        probe,
        tuple(arms + extra_names(extra)),
        tuple(left_out),
        doc,
        {e.python: e.version for e in extra},
    )


def _per_task(cores: int) -> float:
    """Seconds one call is aimed at: the sequential run (4 tasks a core) about ``SEQUENTIAL_RUN_S``."""
    return max(SEQUENTIAL_RUN_S / (4 * cores), 0.005)


def _within_budget(target: Target, probe: Probe, runs: float, cores: int, budget: tuple) -> Probe:
    """``probe``, or one at a smaller size (``sizing.fitted_size``) timed again; ``runs``: a round's
    runs in sequential runs' worth, each ``tasks`` calls; ``budget``: (seconds left, the budget)."""
    # what is left for the rounds once the conclusion and timing a smaller size again are kept
    left_s = budget[0] - sizing.RESERVE_S - 2 * 3 * probe.task_s
    fit = functools.partial(sizing.fitted_size, probe.size, probe.task_s, _per_task(cores), list(probe.steps))
    size, aimed = fit(left_s, runs * probe.task_s), fit(math.inf, runs * probe.task_s)
    if size >= probe.size:
        return probe
    note, squeezed = probe.size_note, None
    if size < aimed:  # the budget, not calibration, chose it: said, as a size of 1 reads oddly
        note = f"brought down from {aimed:,} to fit the budget"
    if sizing.cut_matters(size, aimed):  # by enough to be another size: tentative
        aimed_s = probe.task_s * (aimed / probe.size) ** sizing.growth(list(probe.steps))
        squeezed = sizing.squeezed(size, aimed, aimed_s, runs, budget[1], budget[1] - budget[0])
    smaller = _time_one_call(target, size, note, max(left_s, 1.0))
    return dataclasses.replace(smaller, steps=probe.steps, squeezed=squeezed)


def probe_function(target: Target, size: int | None, cores: int, budget_s: float) -> Probe:
    """Calibrate the size (unless given) so the sequential run takes about ``SEQUENTIAL_RUN_S``; time one call."""
    if size is not None:
        return _time_one_call(target, size, None, budget_s)
    per_task = _per_task(cores)
    probe = _calibrated(target, per_task, budget_s)
    if probe.size_note is None and probe.task_s < per_task / 4:
        # two slow calls in a row on a busy machine stop calibration early: measure again, once
        probe = _calibrated(target, per_task, budget_s)
    return probe


def _calibrated(target: Target, per_task: float, budget_s: float) -> Probe:
    """One call timed at the size calibration found, with calibration's steps."""
    steps: list[tuple[int, float]] = []
    size, note = _calibrate(target, per_task, budget_s, lambda w, size, s, e: steps.append((size, s)))
    return dataclasses.replace(_time_one_call(target, size, note, budget_s), steps=tuple(steps))


def _calibrate(target: Target, per_task: float, budget_s: float, on_step=None) -> tuple[int, str | None]:
    """(size, why it is below the target or None), as ``size: auto`` finds it."""
    ran = [0]  # the largest size that ran: the size the user never gave is said with the failure

    def step(w, size, s, e):
        ran[0] = max(ran[0], size)
        if on_step is not None:
            on_step(w, size, s, e)

    try:
        found = calibration.calibrate_workload(
            target.ref, per_task, _search_path(target), budget_s=max(budget_s / 8, 5.0), on_step=step
        )
    except calibration.CalibrationFailed as exc:
        if "does not take longer with size" not in exc.reason:
            # was "mywork:picky: ValueError: size 65536 too big for me": a size nobody gave, no way out
            last = f"sizes up to {ran[0]:,} ran" if ran[0] else "at size 1"
            raise AdviseError(
                f"{target.ref}: while advise calibrated its size (doubling it from 1; {last}): "
                f"{exc.reason}; give a size it takes with --size"
            ) from None
        return 1, "its time does not grow with size"
    return found.size, found.stopped


def _time_one_call(target: Target, size: int, note: str | None, budget_s: float) -> Probe:
    """One call at ``size`` timed in a fresh process: its wall time and CPU share."""
    env = child_env(_search_path(target))
    try:
        out = subprocess.run(
            [sys.executable, "-c", _PROBE, target.ref, str(size)],
            env=env,
            capture_output=True,
            text=True,
            timeout=max(budget_s, 30.0),
        )
    except subprocess.TimeoutExpired:
        raise AdviseError(
            f"{target.ref}: one call at size {size} took over {budget_s:.0f} s; give a smaller --size"
        ) from None
    try:
        doc = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise AdviseError(f"{target.ref}: calling it in a fresh process failed: {tail}") from None
    if "error" in doc:
        raise AdviseError(f"{target.ref}({0}, {size}) raised {doc['error']}")
    threads = tuple(str(t) for t in doc.get("threads", ()))
    return Probe(size, float(doc["wall"]), min(float(doc["cpu_share"]), 1.0), note, threads)


def _search_path(target: Target) -> list[str]:
    return [os.getcwd()] + ([target.search_dir] if target.search_dir else [])


def _subinterpreters_here() -> bool:
    """Whether this Python has the subinterpreters backend's API (3.14's stdlib, or the 3.13 backport)."""
    return any(_has(m) for m in ("concurrent.interpreters", "interpreters_backport.interpreters"))


def _has(module: str) -> bool:
    try:  # find_spec of a submodule imports its parent, which raises when the parent is missing
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _imports_in(python: str, module: str) -> bool:
    try:
        return (
            subprocess.run([python, "-c", f"import {module}"], capture_output=True, timeout=20).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass(frozen=True)
class _Extra:
    """An arm run on another interpreter (a python axis value), with its own sequential baseline."""

    backend: str
    python: str
    label: str
    version: str  # how the verdict names its interpreter


def extra_names(extra: list[_Extra]) -> list[str]:
    return [e.label for e in extra]


def _arms(target: Target, ray: bool, interpreters: list) -> tuple[list[str], list[_Extra], list[str]]:
    """The backends to run here, those on other interpreters, and what was left out (with why)."""
    left_out: list[str] = []
    if target.is_async:
        # the two that run it named as what gives it a loop: "(sequential, asyncio)" read as a riddle
        left_out.append(
            "threading, multiprocessing: an async def runs on an event loop, which only the plain loop "
            "(sequential) and asyncio give it"
        )
        return [SEQUENTIAL, ASYNCIO], [], left_out
    methods = [m for m in START_METHODS if m in multiprocessing.get_all_start_methods()]
    gone = [m for m in START_METHODS if m not in methods]
    if gone:
        left_out.append(f"multiprocessing ({', '.join(gone)}): this platform has no such start method")
    arms = [SEQUENTIAL, THREADING] + [f"{MULTIPROCESSING} ({m})" for m in methods]
    extra: list[_Extra] = []
    usable = [i for i in interpreters if i.can_host]
    if _subinterpreters_here():
        arms.append(SUBINTERPRETERS)
    else:
        sub = next((i for i in usable if i.version_info >= (3, 14) and not i.free_threaded), None)
        sub = sub or next(
            (
                i
                for i in usable
                if i.version_info[:2] == (3, 13) and _imports_in(i.path, "interpreters_backport")
            ),
            None,
        )
        if sub is not None:
            extra.append(
                _Extra(SUBINTERPRETERS, sub.path, f"{SUBINTERPRETERS} (Python {sub.version})", sub.version)
            )
        else:
            left_out.append(
                f"subinterpreters: Python {sys.version.split()[0]} has none, and no Python ≥ 3.14 "
                "(or 3.13 with interpreters-pep-734) was found"
            )
    ft = next((i for i in usable if i.free_threaded), None)
    if ft is not None:
        extra.append(
            _Extra(
                THREADING,
                ft.path,
                f"{THREADING} (free-threaded {ft.version})",
                f"{ft.version}, free-threaded",
            )
        )
    else:
        left_out.append("free-threaded threads: no free-threaded Python (python3.13t, 3.14t) was found")
    if ray:
        if importlib.util.find_spec("ray") is None:  # package, not the backend
            left_out.append("ray: not installed (pip install 'ray[default]')")
        else:
            arms.append(RAY)
    else:
        left_out.append("ray: not asked for (--ray)")
    return arms, extra, left_out


def folder_name(target: Target) -> str:
    """The sweep's name, its folder under the results: the function with its module, so that
    ``a.work`` and ``b.work`` do not share one (the second's advise.yaml once replaced the first's).

    >>> folder_name(Target("experiments.advise_cases:tiny", None, False))
    'advise-experiments.advise_cases.tiny'
    >>> len(folder_name(Target("m" * 200 + ":f", None, False)))
    100
    """
    name = "advise-" + target.ref.replace(":", ".")
    if len(name) <= 100:  # a sweep's name is at most 100 characters
        return name
    digest = hashlib.sha1(target.ref.encode()).hexdigest()[:8]  # cut names stay apart
    return f"{name[:91]}-{digest}"


def _document(target, probe, workers, tasks, arms, extra, waits, cores) -> dict:
    """The YAML matrix: interleaved, shuffled rounds of every arm at every worker count."""
    backends = list(dict.fromkeys(a.split(" ")[0] for a in arms))
    methods = [a[a.index("(") + 1 : -1] for a in arms if a.startswith(MULTIPROCESSING)]
    sequential_s = probe.task_s * tasks
    doc: dict = {
        "name": folder_name(target),
        "description": f"conclab advise {target.ref}: {', '.join(arms + extra_names(extra))}",
        "repeats": MAX_ROUNDS,
        "warmup": 1,
        # generous: a hung call is killed, never waited for; 20 sequential runs or a minute
        "timeout_s": round(max(60.0, 20 * sequential_s), 1),
        "shuffle": True,
        "seed": int.from_bytes(os.urandom(4), "little"),
        "matrix": {
            "workload": [target.ref],
            "backend": backends,
            "workers": list(workers),
            "tasks": [tasks],
            "size": [probe.size],
        },
        # pinning refuses more workers than cores; work that waits runs past them on purpose
        "affinity": "none" if workers[-1] > cores else "compact",
    }
    if methods:
        doc["backend_options"] = {MULTIPROCESSING: {"start_method": methods}}
        # spawn and forkserver differ from fork in what they pay to start, seen at one worker count
        doc["exclude"] = [
            {"backend": MULTIPROCESSING, "start_method": m, "workers": w}
            for m in methods
            if m != "fork"
            for w in workers
            if w != min(cores, workers[-1])
        ]
    include = []
    for e in extra:
        include.append(
            {
                "workload": target.ref,
                "backend": SEQUENTIAL,
                "python": e.python,
                "tasks": tasks,
                "size": probe.size,
            }
        )
        for w in workers:
            include.append(
                {
                    "workload": target.ref,
                    "backend": e.backend,
                    "workers": w,
                    "python": e.python,
                    "tasks": tasks,
                    "size": probe.size,
                }
            )
    if include:
        doc["include"] = include
    return doc

"""Reading and validating an experiment matrix file (configs/*.yaml).

Every problem is a ``ConfigError`` that names the file, the key and what is wrong, in one
line, e.g. ``configs/cpu.yaml: matrix.workers[1]: must be a positive integer, got -2``.
Validation happens before anything is written or run.

A config is code-equivalent: its workloads are imported and run. Trust a config as you
would a Makefile. YAML is parsed with the safe loader (no object tags).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import inspect
import json
import multiprocessing
import os
import re
import reprlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from conc_lab.host import affinity as host_affinity
from conc_lab.host import calibrate as host_calibrate
from conc_lab.host import workload as host_workload

BACKENDS = ("sequential", "threading", "multiprocessing", "ray", "asyncio", "subinterpreters")
#: Backends that run on one core whatever ``workers`` says (asyncio: ``workers`` coroutines in flight
#: on one pinned loop), so a workers count above the cores is not oversubscription for them.
ONE_CORE_BACKENDS = ("sequential", "asyncio")
#: Backends that can run an ``async def`` workload (sequential: one task at a time on one loop).
ASYNC_BACKENDS = ("sequential", "asyncio")
AXES = ("workload", "backend", "workers", "tasks", "tasks_per_worker", "size", "python")
#: Axes a matrix may leave out, and the value they then take.
AXIS_DEFAULTS = {"workers": [1], "size": [1], "python": [None]}
#: Options each backend accepts under ``backend_options``; a list there is one more matrix axis.
BACKEND_OPTIONS: dict[str, dict[str, tuple]] = {
    "multiprocessing": {"start_method": ("fork", "spawn", "forkserver")},
    "sequential": {},
    "threading": {},
    "ray": {},
    # offload: thread runs a plain function with loop.run_in_executor (asyncio.to_thread's way)
    "asyncio": {"offload": ("none", "thread")},
    "subinterpreters": {},
}
TOP_KEYS = (
    "name",
    "description",
    "repeats",
    "warmup",
    "timeout_s",
    "matrix",
    "exclude",
    "include",
    "backend_options",
    "affinity",
    "shuffle",
    "seed",
    "ray",
    "limits",
    "noise",
    "calibration",
)
#: ``size: auto``: the size is calibrated before the sweep runs (``conc_lab.run.calibration``).
AUTO = "auto"
#: A trial's size: a number the workload is given, or ``AUTO`` until calibration replaces it.
Size = int | Literal["auto"]
#: The longest a run may take: beyond it a timeout is a typo, and the clocks that wait for it overflow.
MAX_TIMEOUT_S = 30 * 86400
#: Default ``limits.workers``: this many workers per CPU of the machine (oversubscribing on purpose
#: for I/O-bound work has a use; a million forked workers has none).
WORKERS_PER_CPU = 16
_INT32_MAX = 2**31 - 1  # workers, tasks, repeat: int32 columns in conc_lab.schema
_INT64_MAX = 2**63 - 1  # size: int64
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_WORKLOAD_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class ConfigError(ValueError):
    """A bad config: ``str(err)`` is the one line a user sees (file: key: problem)."""

    def __init__(self, path: str | os.PathLike | None, key: str, problem: str):
        # A key or message may quote what the user wrote, newlines included: it stays one line.
        self.path = _one_line(str(path or "<config>"))
        self.key, self.problem = _one_line(_clip(key)), _one_line(_clip(problem, 2000))
        super().__init__(f"{self.path}: {self.key}: {self.problem}")


def _one_line(text: str) -> str:
    """``text`` with control characters escaped (\\n, \\t, \\x00), so it prints as one line."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@dataclass(frozen=True)
class Limits:
    """What a sweep may ask for before it is refused as unable to finish (``limits:`` raises them).

    >>> Limits().tasks, Limits().runs
    (1000000, 10000000)
    """

    #: workers in one trial; default WORKERS_PER_CPU per CPU of this machine
    workers: int = field(default_factory=lambda: WORKERS_PER_CPU * (os.cpu_count() or 1))
    #: tasks in one trial: the host holds each task's result and record in memory
    tasks: int = 1_000_000
    #: runs in one sweep (trials x (warm-up + measured)): the plan, the store and the resume set grow with it
    runs: int = 10_000_000


@dataclass(frozen=True)
class NoiseLimits:
    """When a run counts as noisy (``host.noise.verdict``), and how many times such a run is redone.

    >>> NoiseLimits().redo
    0
    """

    max_foreign_cpu: float = 0.1  # share of the run's cores that other processes used
    max_canary_change: float = 0.25  # relative change of the speed canary from before to after
    redo: int = 0  # re-runs of a noisy run; the noisy ones are kept with status "redone"


@dataclass(frozen=True)
class CalibrationSettings:
    """How ``size: auto`` calibrates: the time one task should take, and the most it may spend.

    >>> CalibrationSettings().budget_s
    60.0
    """

    target_s: float = host_calibrate.DEFAULT_TARGET_S  # one task at the chosen size takes at least this
    budget_s: float = host_calibrate.DEFAULT_BUDGET_S  # per workload; growth stops when a step would pass it


@dataclass(frozen=True)
class Config:
    """A validated experiment matrix. Build it with ``load_config`` or ``parse_config``.

    >>> cfg = parse_config({"name": "demo", "matrix": {"workload": ["experiments.io:sleep"],
    ...                     "backend": ["sequential", "threading"], "workers": [1, 2]}})
    >>> cfg.repeats, cfg.axes["workers"]
    (5, (1, 2))
    """

    name: str
    axes: dict[str, tuple]  # axis -> values, every axis present (defaults filled)
    workload_sizes: dict[str, tuple] = field(
        default_factory=dict
    )  # per-workload size axis, overrides axes["size"]
    repeats: int = 5
    warmup: int = 1
    timeout_s: float = 120.0
    affinity: str | tuple[int, ...] = "compact"
    exclude: tuple[dict, ...] = ()
    include: tuple[dict, ...] = ()
    backend_options: dict[str, dict[str, tuple]] = field(default_factory=dict)
    shuffle: bool = False
    seed: int = 0
    description: str = ""
    ray_address: str | None = None  # ray: {address: ...}: the Ray runtime ray trials join
    limits: Limits = field(default_factory=Limits)  # not in the fingerprint: they decide nothing that runs
    # noise: {max_foreign_cpu, max_canary_change, redo}: when a run is noisy, and how often it is redone
    noise: NoiseLimits = field(default_factory=lambda: NoiseLimits())
    # calibration: {target_s, budget_s}: not in the fingerprint (a resumed sweep reuses its sizes)
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)
    path: str | None = None
    source_text: str = ""  # the file as read, kept in the sweep's manifest

    @property
    def fingerprint(self) -> str:
        """Hash of everything that decides which trials run and how: resume refuses a changed config."""
        doc = {
            "axes": {k: list(v) for k, v in self.axes.items()},
            "workload_sizes": {k: list(v) for k, v in self.workload_sizes.items()},
            "repeats": self.repeats,
            "warmup": self.warmup,
            "timeout_s": self.timeout_s,
            "affinity": list(self.affinity) if isinstance(self.affinity, tuple) else self.affinity,
            "exclude": list(self.exclude),
            "include": list(self.include),
            "backend_options": {
                b: {k: list(v) for k, v in o.items()} for b, o in self.backend_options.items()
            },
            "shuffle": self.shuffle,
            "seed": self.seed,
        }
        if self.noise != NoiseLimits():  # absent from older fingerprints: their sweeps still resume
            doc["noise"] = dataclasses.asdict(self.noise)
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def load_config(path: str | os.PathLike, *, check_imports: bool = True) -> Config:
    """Read and validate a matrix file; raises ``ConfigError`` on any problem.

    >>> load_config("configs/smoke.yaml").name
    'smoke'
    """
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(path, "(file)", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "(file)", f"cannot read: {exc}") from None
    try:
        doc = _load_yaml(text)
    except RecursionError:  # the composer recurses once per nesting level
        raise ConfigError(path, "(yaml)", "nested too deeply to be a matrix file") from None
    except ValueError as exc:  # an integer of more than 4300 digits (sys.get_int_max_str_digits)
        raise ConfigError(path, "(yaml)", f"cannot read a value: {str(exc).split(';')[0]}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(path, "(yaml)", f"{where}{problem}") from None
    return parse_config(doc, path=str(path), source_text=text, check_imports=check_imports)


def parse_config(
    doc: Any, *, path: str | None = None, source_text: str = "", check_imports: bool = True
) -> Config:
    """Validate an already-parsed document (a dict) into a ``Config``.

    The stages, in order: top-level settings, the matrix's axes, affinity, backend options,
    exclude and include entries, then (``check_imports``) the workloads and interpreters named.
    """
    v = _Validator(path)
    if not isinstance(doc, dict):
        v.fail("(top level)", f"must be a mapping of keys such as name and matrix, got {_kind(doc)}")
    v.known_keys(doc, TOP_KEYS, "")
    v.limits = v.limits_section(doc.get("limits"))
    settings = _settings(v, doc, path)
    matrix = doc.get("matrix")
    axes, workload_sizes = _matrix_axes(v, matrix)
    aff = _affinity(v, doc.get("affinity", "compact"), axes["workers"], axes["backend"])
    v.worker_count(max(axes["workers"]), "matrix.workers")  # after affinity: "cores to pin" says more
    backend_options = v.backend_options(doc.get("backend_options") or {}, axes["backend"])
    option_names = {k for opts in BACKEND_OPTIONS.values() for k in opts}
    exclude = tuple(v.partial_params(doc.get("exclude") or [], "exclude", option_names))
    include = tuple(v.partial_params(doc.get("include") or [], "include", option_names))
    _check_includes(v, include, aff)
    if check_imports:
        _check_workloads(v, axes["workload"], include, path)
        _check_interpreters(v, axes["python"], isinstance(matrix.get("python"), list), include)
        _check_async_pairs(v, axes, include, exclude, backend_options, Path(path).parent if path else None)
    return Config(
        **settings,
        axes=axes,
        workload_sizes=workload_sizes,
        affinity=aff,
        exclude=exclude,
        include=include,
        backend_options=backend_options,
        limits=v.limits,
        path=path,
        source_text=source_text,
    )


def _settings(v: _Validator, doc: dict, path: str | None) -> dict[str, Any]:
    """The top-level settings: name, repeats, warmup, timeout_s, shuffle, seed, description, ray, noise,
    calibration."""
    name = doc.get("name")
    if name is None:
        if path is None:
            v.fail("name", "is required")
        name = Path(path).stem
    if not isinstance(name, str) or not _NAME_RE.match(name):
        v.fail("name", f"must be letters, digits, '_', '.', '-' (no path separators), got {_show(name)}")
    shuffle = doc.get("shuffle", False)
    if not isinstance(shuffle, bool):
        v.fail("shuffle", f"must be true or false, got {_show(shuffle)}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        v.fail("description", "must be a string")
    repeats = v.integer(doc.get("repeats", 5), "repeats", minimum=1)
    warmup = v.integer(doc.get("warmup", 1), "warmup", minimum=0)
    if warmup + repeats > v.limits.runs:
        v.fail(
            "repeats",
            f"{warmup} warm-up + {repeats:,} measured runs of each trial is more than limits.runs "
            f"({v.limits.runs:,}), more than a sweep can finish; lower repeats or raise limits.runs",
        )
    return {
        "name": name,
        "repeats": repeats,
        "warmup": warmup,
        "timeout_s": v.number(doc.get("timeout_s", 120), "timeout_s", maximum=MAX_TIMEOUT_S),
        "shuffle": shuffle,
        "seed": v.integer(doc.get("seed", 0), "seed", minimum=0, maximum=_INT64_MAX),
        "description": description,
        "ray_address": v.ray_section(doc.get("ray")),
        "noise": v.noise_section(doc.get("noise")),
        "calibration": v.calibration_section(doc.get("calibration")),
    }


def _matrix_axes(v: _Validator, matrix: Any) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """(axes, per-workload sizes) from the ``matrix`` mapping, every axis present (defaults filled)."""
    if not isinstance(matrix, dict) or not matrix:
        v.fail("matrix", "is required: a mapping of axes (workload, backend, workers, ...) to lists")
    v.known_keys(matrix, AXES, "matrix.")
    for axis in ("workload", "backend"):
        if axis not in matrix:
            v.fail(f"matrix.{axis}", "is required")
    if "tasks" in matrix and "tasks_per_worker" in matrix:
        v.fail(
            "matrix.tasks_per_worker",
            "give either tasks (strong scaling) or tasks_per_worker (weak), not both",
        )
    axes: dict[str, tuple] = {}
    workload_sizes: dict[str, tuple] = {}
    for axis in AXES:
        if axis in matrix:
            axes[axis] = tuple(v.axis_values(axis, matrix[axis], f"matrix.{axis}", workload_sizes))
        elif axis in AXIS_DEFAULTS:
            axes[axis] = tuple(AXIS_DEFAULTS[axis])
    if "tasks" not in axes and "tasks_per_worker" not in axes:
        axes["tasks_per_worker"] = (1,)
    if "tasks_per_worker" in axes:
        v.task_count(max(axes["tasks_per_worker"]) * max(axes["workers"]), "matrix.tasks_per_worker")
    return axes, workload_sizes


def _affinity(
    v: _Validator, aff: Any, workers: tuple[int, ...], backends: tuple[str, ...]
) -> str | tuple[int, ...]:
    """``compact``, ``spread``, ``none`` or a tuple of cores; pinned workers must fit the cores."""
    if isinstance(aff, list):
        cores = host_affinity.available_cores()
        for i, c in enumerate(aff):
            if not isinstance(c, int) or isinstance(c, bool) or c not in cores:
                v.fail(
                    f"affinity[{i}]", f"{_show(c)} is not a core this process may use (available: {cores})"
                )
            if c in aff[:i]:
                v.fail(f"affinity[{i}]", f"core {c} is listed twice")
        if not aff:
            v.fail("affinity", "an explicit core list must not be empty")
        aff = tuple(aff)
    elif aff not in ("compact", "spread", "none"):
        v.fail("affinity", f"must be compact, spread, none or a list of cores, got {_show(aff)}")
    n_cores = _pinning_cores(aff)
    pinned_backends = set(backends) - set(ONE_CORE_BACKENDS)  # the others use one core whatever workers says
    too_many = [w for w in workers if n_cores is not None and w > n_cores and pinned_backends]
    if too_many:
        v.fail(
            "matrix.workers",
            f"{too_many[0]} workers but only {n_cores} cores to pin them to; "
            "use fewer workers or 'affinity: none' to oversubscribe on purpose",
        )
    return aff


def _pinning_cores(aff: str | tuple[int, ...]) -> int | None:
    """How many cores workers are pinned to under ``aff``; None when they are not pinned."""
    if aff == "none" or not host_affinity.SUPPORTED:
        return None
    return len(aff) if isinstance(aff, tuple) else len(host_affinity.available_cores())


def _check_includes(v: _Validator, include: tuple[dict, ...], aff: str | tuple[int, ...]) -> None:
    """An include entry names its workload and backend, and pins no more workers than there are cores."""
    n_cores = _pinning_cores(aff)
    for i, inc in enumerate(include):
        for required in ("workload", "backend"):
            if required not in inc:
                v.fail(f"include[{i}].{required}", "is required in an include entry")
        one_core = inc["backend"] in ONE_CORE_BACKENDS
        if n_cores is not None and inc.get("workers", 1) > n_cores and not one_core:
            v.fail(
                f"include[{i}].workers", f"{inc['workers']} workers but only {n_cores} cores to pin them to"
            )
        v.worker_count(inc.get("workers", 1), f"include[{i}].workers")
        if "tasks_per_worker" in inc:
            v.task_count(inc["tasks_per_worker"] * inc.get("workers", 1), f"include[{i}].tasks_per_worker")


def _check_workloads(v: _Validator, workloads: tuple[str, ...], include: tuple[dict, ...], path: str | None):
    """Every workload named imports and is callable (this imports the workload modules)."""
    config_dir = Path(path).parent if path else None
    for i, ref in enumerate(dict.fromkeys([*workloads, *(inc["workload"] for inc in include)])):
        problem = check_workload(ref, config_dir)
        if problem:
            v.fail(f"matrix.workload[{i}]" if ref in workloads else "include", problem)


def _check_interpreters(v: _Validator, pythons: tuple, listed: bool, include: tuple[dict, ...]) -> None:
    """Every interpreter named on the python axis or in an include entry can host trials."""
    named = [(f"matrix.python[{i}]" if listed else "matrix.python", p) for i, p in enumerate(pythons)]
    named += [(f"include[{i}].python", inc["python"]) for i, inc in enumerate(include) if "python" in inc]
    for key, value in named:
        problem = check_interpreter(value)
        if problem:
            v.fail(key, problem)


def _check_async_pairs(v, axes, include, exclude, backend_options, config_dir) -> None:
    """An ``async def`` workload only on sequential or asyncio; a plain one on asyncio only offloaded.

    A pair the matrix crosses is refused unless an exclude entry naming only workload, backend
    and backend options removes it whole; an include entry is checked as it stands.
    """
    offloads = backend_options.get("asyncio", {}).get("offload", ("none",))
    pairs = [
        (f"matrix.workload[{i}]", w, b, {"offload": o} if b == "asyncio" else {})
        for i, w in enumerate(axes["workload"])
        for b in axes["backend"]
        for o in (offloads if b == "asyncio" else (None,))
    ]
    pairs += [
        (f"include[{i}]", inc["workload"], inc["backend"], {"offload": inc.get("offload", "none")})
        for i, inc in enumerate(include)
    ]
    pair_keys = {"workload", "backend", "offload"}
    for key, workload, backend, opts in pairs:
        point = {"workload": workload, "backend": backend, **opts}
        if key.startswith("matrix") and any(
            set(ex) <= pair_keys and all(point.get(k) == val for k, val in ex.items()) for ex in exclude
        ):
            continue
        problem = async_pair_problem(workload, backend, opts.get("offload"), config_dir)
        if problem:
            v.fail(key, problem)


def async_pair_problem(
    ref: str, backend: str, offload: str | None, config_dir: Path | None = None
) -> str | None:
    """Why ``ref`` cannot run on ``backend`` (async vs plain), or None."""
    with _workload_path(config_dir):
        fn = host_workload.import_function(ref)
    if inspect.iscoroutinefunction(fn):
        if backend not in ASYNC_BACKENDS:
            return f"{ref} is an async def workload, which {backend} cannot await; run it on sequential or asyncio"
        return None
    if backend == "asyncio" and offload != "thread":
        return (
            f"{ref} is a plain function: asyncio awaits async def workloads; to run it with "
            "asyncio.to_thread set backend_options: {asyncio: {offload: thread}}, or pair it "
            "with other backends (exclude / include)"
        )
    return None


def workload_search_path(config_dir: Path | None = None) -> list[str]:
    """Where workloads are imported from: the working directory, then the config's project root."""
    paths = [os.getcwd()]
    if config_dir is not None:
        root = Path(config_dir).resolve()
        paths += [str(root), str(root.parent)]
    return list(dict.fromkeys(paths))


def check_workload(ref: str, config_dir: Path | None = None) -> str | None:
    """None if ``module:function`` imports, is callable and takes ``(task, size)``, else what is wrong."""
    module_name, _, attr = ref.partition(":")
    try:
        with _workload_path(config_dir):
            fn = host_workload.import_function(ref)
    except ImportError as exc:
        return f"cannot import {module_name!r} for {ref!r}: {exc}"
    except host_workload.MissingFunction as exc:
        return f"module {module_name!r} has no {attr!r}{_did_you_mean_function(ref, exc)}"
    except host_workload.NotCallable:
        return f"{ref!r} is not callable"
    except Exception as exc:  # a workload module that raises on import is a bad config too
        return f"importing {module_name!r} raised {type(exc).__name__}: {exc}"
    return signature_problem(ref, fn)


def signature_problem(ref: str, fn: Any) -> str | None:
    """Why ``fn`` cannot be called as ``fn(task, size)``, as every backend calls a workload; else None.

    ``async def`` functions, defaults, ``*args`` and ``**kwargs`` are fine; a builtin without
    a signature to read is given the benefit of the doubt (it fails at run time if wrong).

    >>> signature_problem("m:f", lambda n: n)
    'm:f takes (n), but a workload is called as m:f(task, size): too many positional arguments'
    >>> signature_problem("m:f", lambda *args, **kw: 0) is None
    True
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(0, 0)
    except TypeError as exc:
        return f"{ref} takes {signature}, but a workload is called as {ref}(task, size): {exc}"
    return None


@contextlib.contextmanager
def _workload_path(config_dir: Path | None) -> Iterator[None]:
    """``workload_search_path`` in front of ``sys.path`` for the duration, as the trial host has it."""
    saved = sys.path[:]
    host_workload.search_first(workload_search_path(config_dir))
    try:
        yield
    finally:
        sys.path[:] = saved


def _did_you_mean_function(ref: str, missing: host_workload.MissingFunction) -> str:
    """``; did you mean 'module:close_name'?`` for a misspelled function, else nothing."""
    owner = missing.owner
    names = [n for n in dir(owner) if not n.startswith("_") and callable(getattr(owner, n, None))]
    hint = difflib.get_close_matches(missing.missing, names, n=1)
    if not hint:
        return ""
    prefix, _, _ = ref.rpartition(missing.missing)
    return f"; did you mean {prefix + hint[0]!r}?"


def check_interpreter(value: str | None) -> str | None:
    """None if the ``python`` value names an interpreter that can host trials, else what is wrong."""
    if value is None:
        return None
    from conc_lab.machine import interpreters  # probing starts a process: only when a matrix names one

    try:
        interpreters.check(value)
    except interpreters.InterpreterError as exc:
        return exc.problem
    return None


class _Validator:
    def __init__(self, path: str | None):
        self.path = path
        self.limits = Limits()

    def limits_section(self, raw: Any) -> Limits:
        """``limits: {workers: N, tasks: N, runs: N}``: raise what a sweep may ask for, on purpose."""
        if raw is None:
            return Limits()
        if not isinstance(raw, dict):
            self.fail("limits", f"must be a mapping such as {{workers: 64}}, got {_kind(raw)}")
        self.known_keys(raw, ("workers", "tasks", "runs"), "limits.")
        tops = {"workers": _INT32_MAX, "tasks": _INT32_MAX, "runs": _INT64_MAX}
        return Limits(
            **{k: self.integer(v, f"limits.{k}", minimum=1, maximum=tops[k]) for k, v in raw.items()}
        )

    def task_count(self, tasks: int, key: str) -> None:
        """One trial's tasks within ``limits.tasks`` (the host holds a result and a record per task)."""
        if tasks > self.limits.tasks:
            self.fail(
                key,
                f"{tasks:,} tasks in one trial is more than limits.tasks ({self.limits.tasks:,}); "
                "the host holds every task's result in memory; use fewer or raise limits.tasks",
            )

    def fail(self, key: str, problem: str):
        raise ConfigError(self.path, key, problem)

    def known_keys(self, mapping: dict, known: tuple | set, prefix: str):
        for key in mapping:
            if not isinstance(key, str) or key not in known:
                hint = difflib.get_close_matches(str(key), list(known), n=1)
                suggestion = (
                    f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(sorted(known))}"
                )
                # quoted when it would not show: an empty key, or one with spaces around it
                shown = (
                    _show(key) if not isinstance(key, str) or not key or key.strip() != key else _clip(key)
                )
                self.fail(f"{prefix}{shown}", f"unknown key{suggestion}")

    def integer(self, value: Any, key: str, minimum: int, maximum: int = _INT32_MAX) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(key, f"must be an integer, got {_kind(value)} {_show(value)}")
        if value < minimum:
            what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            self.fail(key, f"must be {what}, got {value}")
        if value > maximum:  # the store keeps it in a fixed-width column: refuse now, not at the first write
            self.fail(key, f"must be at most {maximum}, got {value}")
        return value

    def number(self, value: Any, key: str, maximum: float) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            self.fail(key, f"must be a positive number of seconds, got {_show(value)}")
        if not value <= maximum:  # inf too: select() and Event.wait() overflow on a huge timeout
            self.fail(
                key,
                f"must be at most {maximum:,.0f} seconds ({maximum / 86400:.0f} days), got {_show(value)}",
            )
        return float(value)

    def axis_values(self, axis: str, raw: Any, key: str, sizes: dict | None = None) -> list:
        """The values of one axis (a scalar is a one-value axis), each checked, none listed twice.

        ``sizes`` collects per-workload size axes (``{workload: ..., size: [...]}`` entries);
        None where such entries are not allowed (exclude, include).
        """
        values = raw if isinstance(raw, list) else [raw]
        if not values:
            self.fail(key, "is empty: an empty axis makes an empty matrix")
        check = getattr(self, f"_{axis}_value")
        out: list = []
        seen: set = set()  # checked values are hashable: a set keeps a long axis linear
        for i, value in enumerate(values):
            k = f"{key}[{i}]" if isinstance(raw, list) else key
            value = check(value, k, sizes)
            if value in seen:
                self.fail(k, f"{_show(value)} is listed twice")
            seen.add(value)
            out.append(value)
        return out

    def _workload_value(self, value: Any, key: str, sizes: dict | None) -> str:
        if isinstance(value, dict) and sizes is not None:
            # {workload: module:function, size: [...]}: sizes that suit this workload alone
            self.known_keys(value, ("workload", "size"), f"{key}.")
            if "workload" not in value:
                self.fail(f"{key}.workload", "is required")
            if "size" in value and isinstance(value["workload"], str):
                sizes[value["workload"]] = tuple(self.axis_values("size", value["size"], f"{key}.size"))
            value = value["workload"]
        if not isinstance(value, str) or not _WORKLOAD_RE.match(value):
            self.fail(key, f"must be 'module:function' or {{workload: ..., size: [...]}}, got {_show(value)}")
        return value

    def _backend_value(self, value: Any, key: str, sizes: dict | None) -> str:
        if not isinstance(value, str) or value not in BACKENDS:
            hint = difflib.get_close_matches(str(value), BACKENDS, n=1)
            more = f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(BACKENDS)}"
            self.fail(key, f"unknown backend {_show(value)}{more}")
        return value

    def _workers_value(self, value: Any, key: str, sizes: dict | None) -> int:
        return self.integer(value, key, minimum=1)

    def worker_count(self, workers: int, key: str) -> None:
        """Workers within ``limits.workers``: each is a thread or a forked process, started at once."""
        if workers > self.limits.workers:
            self.fail(
                key,
                f"{workers:,} workers is more than limits.workers ({self.limits.workers:,}: "
                f"{WORKERS_PER_CPU} per CPU here unless raised); use fewer or raise limits.workers",
            )

    def _tasks_value(self, value: Any, key: str, sizes: dict | None) -> int:
        self.integer(value, key, minimum=1)
        self.task_count(value, key)
        return value

    def _tasks_per_worker_value(self, value: Any, key: str, sizes: dict | None) -> int:
        return self.integer(value, key, minimum=1)

    def _size_value(self, value: Any, key: str, sizes: dict | None) -> Size:
        # "auto": calibrated before the sweep runs (conc_lab.run.calibration)
        if value != AUTO and (
            not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _INT64_MAX
        ):
            self.fail(key, f"must be an integer >= 0 or 'auto', got {_kind(value)} {_show(value)}")
        return value

    def _python_value(self, value: Any, key: str, sizes: dict | None) -> str | None:
        if value is not None and (not isinstance(value, str) or not value):
            self.fail(key, f"must be an interpreter name or path, got {_show(value)}")
        return value

    def backend_options(self, raw: Any, backends: tuple) -> dict[str, dict[str, tuple]]:
        if not isinstance(raw, dict):
            self.fail("backend_options", f"must be a mapping of backend to options, got {_kind(raw)}")
        out: dict[str, dict[str, tuple]] = {}
        for backend, opts in raw.items():
            key = f"backend_options.{backend}"
            if backend not in BACKEND_OPTIONS:
                self.known_keys({backend: None}, tuple(BACKEND_OPTIONS), "backend_options.")
            if backend not in backends:
                self.fail(key, f"options for {_show(backend)}, which matrix.backend does not list")
            if not isinstance(opts, dict):
                self.fail(key, f"must be a mapping of option to values, got {_kind(opts)}")
            allowed = BACKEND_OPTIONS[backend]
            self.known_keys(opts, tuple(allowed), key + ".")
            out[backend] = {}
            for opt, values in opts.items():
                values = values if isinstance(values, list) else [values]
                if not values:
                    self.fail(f"{key}.{opt}", "is empty")
                for i, value in enumerate(values):
                    if value not in allowed[opt]:
                        self.fail(
                            f"{key}.{opt}[{i}]",
                            f"must be one of {', '.join(allowed[opt])}, got {_show(value)}",
                        )
                    if opt == "start_method" and value not in multiprocessing.get_all_start_methods():
                        self.fail(f"{key}.{opt}[{i}]", f"{_show(value)} is not available on this platform")
                out[backend][opt] = tuple(dict.fromkeys(values))
        return out

    def ray_section(self, raw: Any) -> str | None:
        """``ray: {address: HOST:PORT | auto}``; None when absent (a runtime is started per sweep)."""
        if raw is None:
            return None
        if not isinstance(raw, dict):
            self.fail("ray", f"must be a mapping such as {{address: auto}}, got {_kind(raw)}")
        self.known_keys(raw, ("address",), "ray.")
        address = raw.get("address")
        if address is not None and (not isinstance(address, str) or not address.strip()):
            self.fail(
                "ray.address",
                f"must be a cluster address such as 10.0.0.5:6379 or auto, got {_show(address)}",
            )
        return address

    def noise_section(self, raw: Any) -> NoiseLimits:
        """``noise: {max_foreign_cpu: 0.1, max_canary_change: 0.25, redo: 3}``; defaults where absent."""
        if raw is None:
            return NoiseLimits()
        if not isinstance(raw, dict):
            self.fail(
                "noise", f"must be a mapping such as {{max_foreign_cpu: 0.1, redo: 3}}, got {_kind(raw)}"
            )
        self.known_keys(raw, ("max_foreign_cpu", "max_canary_change", "redo"), "noise.")
        limits = {}
        for key in ("max_foreign_cpu", "max_canary_change"):
            if key in raw:
                value = raw[key]
                if (
                    not isinstance(value, (int, float))
                    or isinstance(value, bool)
                    or not 0 <= value < float("inf")
                ):
                    self.fail(f"noise.{key}", f"must be a share such as 0.1 (10%), got {value!r}")
                limits[key] = float(value)
        if "redo" in raw:
            limits["redo"] = self.integer(raw["redo"], "noise.redo", minimum=0, maximum=100)
        return NoiseLimits(**limits)

    def calibration_section(self, raw: Any) -> CalibrationSettings:
        """``calibration: {target_s: 0.05, budget_s: 60}`` (how ``size: auto`` calibrates); defaults where absent."""
        if raw is None:
            return CalibrationSettings()
        if not isinstance(raw, dict):
            self.fail(
                "calibration", f"must be a mapping such as {{target_s: 0.05, budget_s: 60}}, got {_kind(raw)}"
            )
        self.known_keys(raw, ("target_s", "budget_s"), "calibration.")
        got = {k: self.number(raw[k], f"calibration.{k}", maximum=MAX_TIMEOUT_S) for k in raw}
        return CalibrationSettings(**got)

    def partial_params(self, raw: Any, key: str, option_names: set) -> list[dict]:
        if not isinstance(raw, list):
            self.fail(key, f"must be a list of mappings, got {_kind(raw)}")
        out = []
        for i, entry in enumerate(raw):
            if not isinstance(entry, dict) or not entry:
                self.fail(f"{key}[{i}]", f"must be a non-empty mapping of axis to value, got {_show(entry)}")
            self.known_keys(entry, set(AXES) | option_names, f"{key}[{i}].")
            for axis, value in entry.items():
                if isinstance(value, (list, dict)):
                    self.fail(f"{key}[{i}].{axis}", f"must be a single value, got {_kind(value)}")
                if axis in AXES:
                    self.axis_values(axis, [value], f"{key}[{i}].{axis}")
                else:  # a backend option: a value no backend accepts would silently match nothing
                    allowed = {v for opts in BACKEND_OPTIONS.values() for v in opts.get(axis, ())}
                    if value not in allowed:
                        known = ", ".join(sorted(map(str, allowed)))
                        self.fail(f"{key}[{i}].{axis}", f"must be one of {known}, got {_show(value)}")
            out.append(dict(entry))
        return out


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 3, 4, 6, 6, 6
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 80


def _show(value: Any) -> str:
    """``repr(value)``, cut short: a value quoted in an error may be huge (an alias bomb), the line is not.

    >>> _show(list(range(10**6)))
    '[0, 1, 2, 3, 4, 5, ...]'
    """
    return _REPR.repr(value)


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


#: The most values (scalars, lists, mappings) a matrix file may hold once its aliases are expanded.
#: A real matrix holds hundreds; an alias bomb (each level naming the one before nine times) billions.
MAX_YAML_NODES = 1_000_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, refusing duplicate keys (YAML silently keeps the last one)."""


def _fast_loader() -> type | None:
    """The strict loader on libyaml's parser (about 3x faster on a long matrix), where it is safe.

    libyaml refuses nesting past 1000 levels from 0.2.5 on; an older one would let the
    parser's recursion overflow the C stack, so only then is the pure-Python parser used.
    """
    if not yaml.__with_libyaml__ or yaml._yaml.get_version() < (0, 2, 5):
        return None

    class _StrictCLoader(yaml.CSafeLoader):
        """``_StrictLoader`` with libyaml's parser."""

    _StrictCLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    return _StrictCLoader


def _load_yaml(text: str) -> Any:
    """The document in ``text``, refused (a ``YAMLError``) before it is built if it expands too far."""
    loader = (_FAST_LOADER or _StrictLoader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node) -> None:
    """Count the nodes of the document as if every alias were copied out, without copying anything.

    An alias is the node it names, shared: its expanded size is computed once (memo by
    identity), so the walk is linear in the text, however far the aliases multiply it.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # on the path from the root: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = _children(node)
        if children_done:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] > MAX_YAML_NODES:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"expands to more than {MAX_YAML_NODES:,} values once its aliases are repeated "
                    "(an alias bomb?); a matrix file needs far fewer",
                    node.start_mark,
                )
        elif id(node) in open_nodes:
            raise yaml.composer.ComposerError(
                None, None, "an alias refers to a list or mapping that contains it", node.start_mark
            )
        elif id(node) not in sizes:
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """A mapping whose keys are each written once; ``<<: *base`` merges, and keys written here override it."""
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue  # the merged keys are defaults: construct_mapping lets the written ones win
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"unhashable key {_show(key)}", key_node.start_mark
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {_show(key)}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_FAST_LOADER = _fast_loader()

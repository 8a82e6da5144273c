"""Expanding a Config into Trials: product, per-backend options, exclude, include, trial ids.

``expand`` is a generator: a matrix of 10^6 points is never held in memory, and
``count`` walks the same combinations without building Trial objects.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from functools import cached_property
from operator import itemgetter

from conc_lab.config.errors import ConfigError
from conc_lab.config.model import Config, Size
from conc_lab.host.protocol import SEQUENTIAL


@dataclass(frozen=True)
class Trial:
    """One point of the matrix: a workload on a backend with its parameters.

    >>> t = Trial("experiments.io:sleep", "threading", workers=2, tasks=8, size=10)
    >>> len(t.trial_id)
    16
    """

    workload: str
    backend: str
    workers: int
    tasks: int
    size: Size  # "auto" until calibration.resolve_auto_sizes replaces the trial with a calibrated one
    start_method: str | None = None
    python: str | None = None
    affinity: str = "compact"  # compact | spread | none | explicit cores as "0,1"
    options: str | None = None  # other backend options, canonical JSON

    @cached_property
    def trial_id(self) -> str:
        """A stable hash of the parameters: the same trial has the same id in every sweep."""
        blob = json.dumps(self.params(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def reference_key(self) -> tuple:
        """Trials with this key must all give the sequential answer."""
        return (self.workload, self.tasks, self.size, self.python)

    def params(self) -> dict:
        # Every field is a str, an int or None: a shallow copy is asdict's answer, without its
        # recursive deep copy (called for every run, twice).
        return {name: getattr(self, name) for name in _PARAM_NAMES}


_PARAM_NAMES = tuple(f.name for f in fields(Trial))  # in field order, as asdict


def _affinity_label(config: Config) -> str:
    aff = config.affinity
    return ",".join(map(str, aff)) if isinstance(aff, tuple) else aff


def _combos(config: Config, build: bool = True) -> Iterator[dict]:
    """Parameter dicts in matrix order; the shared walk behind ``expand`` and ``count``.

    Excludes are narrowed level by level (an exclude naming another workload is dropped
    for this workload's whole block), so a large matrix with a few excludes walks at
    nearly the speed of one without.
    """
    axes = config.axes
    n_key = "tasks_per_worker" if "tasks_per_worker" in axes else "tasks"
    variants = _backend_variants(config)
    outer_checks = _outer_checks(config.exclude, ("workload", "size", n_key, "python"))
    outer = (
        (workload, size, n, python)
        for workload in axes["workload"]
        for size, n, python in itertools.product(
            config.workload_sizes.get(workload, axes["size"]), axes[n_key], axes["python"]
        )
    )
    for combo in outer:
        block_excludes = [ex for get, want, ex in outer_checks if get is None or get(combo)[:-1] == want[:-1]]
        fixed = dict(zip(("workload", "size", n_key, "python"), combo)) if block_excludes else None
        for backend in axes["backend"]:
            for opts in variants[backend]:
                live = _narrow(block_excludes, {"backend": backend, **opts}) if block_excludes else ()
                yield from _over_workers(axes["workers"], combo, n_key, backend, opts, live, fixed, build)
    yield from _includes(config)


def _backend_variants(config: Config) -> dict[str, list[dict]]:
    """Each backend's option combinations (its ``backend_options`` lists crossed), ``[{}]`` for none."""
    out = {}
    for backend in config.axes["backend"]:
        opts = config.backend_options.get(backend, {})
        names = sorted(opts)
        out[backend] = [dict(zip(names, values)) for values in itertools.product(*(opts[n] for n in names))]
    return out


def _outer_checks(excludes: tuple[dict, ...], outer_keys: tuple[str, ...]) -> list[tuple]:
    """Each exclude's constraints on the outer axes, as an itemgetter over the outer tuple: C-speed checks."""
    checks = []
    for ex in excludes:
        idx = [i for i, k in enumerate(outer_keys) if k in ex]
        want = tuple(ex[outer_keys[i]] for i in idx)
        checks.append((itemgetter(*idx, 0) if idx else None, want + (None,), ex))
    return checks


def _over_workers(workers_axis, combo, n_key, backend, opts, live, fixed, build) -> Iterator[dict | None]:
    """One (workload, size, n, python, backend, options) block over the workers axis."""
    workload, size, n, python = combo
    weak = n_key == "tasks_per_worker"
    seen_sequential = set()
    for workers in workers_axis:
        if live and any(
            _matches({**fixed, "backend": backend, "workers": workers, **opts}, ex) for ex in live
        ):
            continue
        tasks = n * workers if weak else n
        if backend == SEQUENTIAL:
            # The baseline has one worker; the workers axis only changes its task count.
            if tasks in seen_sequential:
                continue
            seen_sequential.add(tasks)
            workers = 1
        if not build:  # counting: the dict would be thrown away
            yield None
            continue
        yield {
            "workload": workload,
            "backend": backend,
            "workers": workers,
            "tasks": tasks,
            "size": size,
            "python": python,
            **opts,
        }


def _includes(config: Config) -> Iterator[dict]:
    """The include entries, each completed with the defaults a matrix point would have."""
    axes = config.axes
    for inc in config.include:
        combo = {"workers": 1, "size": axes["size"][0], "python": None, **inc}
        tpw = combo.pop("tasks_per_worker", None)
        combo.setdefault(
            "tasks", tpw * combo["workers"] if tpw else axes.get("tasks", (combo["workers"],))[0]
        )
        yield combo


def _narrow(excludes, fixed: dict) -> list[dict]:
    """The excludes that can still match once the keys in ``fixed`` have these values."""
    return [ex for ex in excludes if all(fixed[k] == v for k, v in ex.items() if k in fixed)]


def _matches(raw: dict, exclude: dict) -> bool:
    return all(raw.get(k, _MISSING) == v for k, v in exclude.items())


_MISSING = object()


def expand(config: Config) -> Iterator[Trial]:
    """Yield every Trial of the matrix, lazily, in matrix order.

    >>> from conc_lab.config.document import parse_config
    >>> cfg = parse_config({"name": "d", "matrix": {"workload": "experiments.io:sleep",
    ...        "backend": ["sequential", "threading"], "workers": [1, 2], "tasks": 4}})
    >>> [(t.backend, t.workers) for t in expand(cfg)]
    [('sequential', 1), ('threading', 1), ('threading', 2)]
    """
    label = _affinity_label(config)
    for combo in _combos(config):
        start_method = combo.pop("start_method", None)
        extra = {k: combo.pop(k) for k in list(combo) if k not in _TRIAL_FIELDS}
        yield Trial(
            **combo,
            start_method=start_method,
            affinity=label,
            options=json.dumps(extra, sort_keys=True) if extra else None,
        )


_TRIAL_FIELDS = {"workload", "backend", "workers", "tasks", "size", "python"}


def count(config: Config) -> int:
    """Number of trials ``expand`` yields, without building them.

    Without excludes the count is arithmetic (instant for any size); with them, the
    combinations are walked once, in constant memory.
    """
    if config.exclude:
        return sum(1 for _ in _combos(config, build=False))
    return _count_before_excludes(config)


def _count_before_excludes(config: Config) -> int:
    """The trials of the matrix as if it had no excludes: arithmetic, instant at any size."""
    axes = config.axes
    weak = "tasks_per_worker" in axes
    per_block = 0  # trials for one (workload, size, python) block, over the tasks axis
    for n in axes["tasks_per_worker" if weak else "tasks"]:
        for backend in axes["backend"]:
            opts = config.backend_options.get(backend, {})
            variants = 1
            for values in opts.values():
                variants *= len(values)
            if backend == SEQUENTIAL:
                workers = len({n * w for w in axes["workers"]}) if weak else 1
            else:
                workers = len(axes["workers"])
            per_block += variants * workers
    blocks = sum(len(config.workload_sizes.get(w, axes["size"])) for w in axes["workload"]) * len(
        axes["python"]
    )
    return blocks * per_block + len(config.include)


def check_size(config: Config, shards: int = 1) -> None:
    """Refuse, with a ``ConfigError`` naming the count, a sweep of more runs than ``limits.runs``.

    Runs are trials x (warm-up + measured); a sweep of one of ``shards`` shards runs its share.
    With excludes the walk stops once past the limit.

    >>> from conc_lab.config.document import parse_config
    >>> check_size(parse_config({"name": "d", "repeats": 10**6, "affinity": "none", "matrix": {"workload": "m:f",
    ...     "backend": ["sequential", "threading"], "workers": list(range(1, 11)), "tasks": 4}}, check_imports=False))
    Traceback (most recent call last):
    ...
    conc_lab.config.errors.ConfigError: <config>: matrix: 11 trials x 1,000,001 runs each (1 warm-up + 1,000,000 measured) = 11,000,011 runs, more than limits.runs (10,000,000): a sweep this size cannot finish; narrow the matrix or raise limits.runs
    """
    rounds = config.warmup + config.repeats
    most = config.limits.runs // rounds * shards  # the most trials that fit, over all the shards
    trials = _count_before_excludes(config)
    exact = True
    if trials > most and config.exclude:
        trials = sum(1 for _ in itertools.islice(_combos(config, build=False), most + 1))
        exact = trials <= most
    if trials > most:
        runs = f"{trials * rounds:,} runs" if exact else f"more than {most * rounds:,} runs"
        per_shard = f" per shard, x {shards} shards" if shards > 1 else ""
        raise ConfigError(
            config.path,
            "matrix",
            f"{f'{trials:,}' if exact else f'more than {most:,}'} trials x {rounds:,} runs each "
            f"({config.warmup} warm-up + {config.repeats:,} measured) = {runs}, more than limits.runs "
            f"({config.limits.runs:,}{per_shard}): a sweep this size cannot finish; narrow the matrix "
            "or raise limits.runs",
        )

"""Reading and validating an experiment matrix file (configs/*.yaml) into a ``Config``.

Every problem is a ``ConfigError`` that names the file, the key and what is wrong, in one
line, e.g. ``configs/cpu.yaml: matrix.workers[1]: must be a positive integer, got -2``.
Validation happens before anything is written or run.

A config is code-equivalent: its workloads are imported and run (by trial hosts; the checks
here look at them from a child process, so no workload code runs in this one). Trust a config
as you would a Makefile. YAML is parsed with the safe loader (no object tags).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import yaml

from conc_lab.config import checks, sections
from conc_lab.config.errors import ConfigError, kind, show
from conc_lab.config.model import (
    AXES,
    AXIS_DEFAULTS,
    BACKEND_OPTIONS,
    INT64_MAX,
    MAX_TIMEOUT_S,
    ONE_CORE_BACKENDS,
    PAIRINGS,
    TOP_KEYS,
    Config,
    Precision,
)
from conc_lab.config.validate import Validator
from conc_lab.config.yaml_safe import load_yaml
from conc_lab.host import affinity as host_affinity

_NAME_CHARS = re.compile(r"[A-Za-z0-9_.-]")
#: The most characters in a sweep's name: it is a folder in every results path.
MAX_NAME_CHARS = 100


def _name_problem(name: Any) -> str | None:
    """Why ``name`` cannot name a sweep (it is a folder of every results path), or None.

    >>> _name_problem("a" * 101)
    'too long (101 characters; at most 100)'
    >>> _name_problem("cpu x")
    "must be letters, digits, '_', '.', '-' only: ' ' is not, got 'cpu x'"
    """
    if not isinstance(name, str):
        return f"must be text: letters, digits, '_', '.', '-', got {show(name)}"
    if not name:
        return "must not be empty"
    if "/" in name or "\\" in name:
        return f"must be one folder name (no path separators), got {show(name)}"
    if len(name) > MAX_NAME_CHARS:
        return f"too long ({len(name)} characters; at most {MAX_NAME_CHARS})"
    wrong = next((c for c in name if not _NAME_CHARS.fullmatch(c)), None)
    if wrong is not None:
        return f"must be letters, digits, '_', '.', '-' only: {wrong!r} is not, got {show(name)}"
    if not name[0].isalnum():
        return f"must start with a letter or a digit, got {show(name)}"
    return None


def _near_file(path: Path) -> str:
    """``; did you mean 'configs/smoke.yaml'?`` for a mistyped matrix file (``smoke.yml``, ``smok.yaml``),
    from the YAML files beside where it was looked for; else what is there to choose from, or nothing.

    >>> _near_file(Path("configs/smoke.yml"))
    "; did you mean 'configs/smoke.yaml'?"
    """
    import difflib

    try:
        there = sorted(f.name for f in path.parent.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file())
    except OSError:
        return ""
    stems = {Path(name).stem.lower(): name for name in there}  # without .yaml: zzz.yaml is not io.yaml
    close = difflib.get_close_matches(path.stem.lower(), list(stems), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {str(path.with_name(stems[close[0]]))!r}?"
    if there and len(there) <= 12:
        return f"; {path.parent} holds {', '.join(there)}"
    return ""


def load_config(path: str | os.PathLike, *, check_imports: bool = True) -> Config:
    """Read and validate a matrix file; raises ``ConfigError`` on any problem.

    >>> load_config("configs/smoke.yaml").name
    'smoke'
    """
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(path, "(file)", "no such file" + _near_file(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "(file)", f"cannot read: {exc}") from None
    try:
        doc = load_yaml(text)
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
    v = Validator(path)
    if not isinstance(doc, dict):
        v.fail("(top level)", f"must be a mapping of keys such as name and matrix, got {kind(doc)}")
    v.known_keys(doc, TOP_KEYS, "")
    v.limits = sections.limits_section(v, doc.get("limits"))
    settings = _settings(v, doc, path)
    matrix = doc.get("matrix")
    axes, workload_sizes = _matrix_axes(v, matrix)
    aff = _affinity(v, doc.get("affinity", "compact"), axes["workers"], axes["backend"])
    v.worker_count(max(axes["workers"]), "matrix.workers")  # after affinity: "cores to pin" says more
    backend_options = sections.backend_options(v, doc.get("backend_options") or {}, axes["backend"])
    option_names = {k for opts in BACKEND_OPTIONS.values() for k in opts}
    exclude = tuple(sections.partial_params(v, doc.get("exclude") or [], "exclude", option_names))
    include = tuple(sections.partial_params(v, doc.get("include") or [], "include", option_names))
    _check_includes(v, include, aff)
    if check_imports:
        checks.check_workloads(v, axes, include, exclude, backend_options, path)
        checks.check_interpreters(v, axes["python"], isinstance(matrix.get("python"), list), include)
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


def override(
    config: Config, *, repeats: int | None = None, warmup: int | None = None, precision: float | None = None
) -> Config:
    """``config`` with the ``repeats`` / ``warmup`` / precision target a command line gave in place
    of the file's.

    They are checked as the file's would be (key ``--repeats``), listed in ``overrides`` (the
    sweep's manifest keeps them) and, as values, in the fingerprint: a resumed sweep must be
    given the same ones. ``precision`` is ``precision.target`` (``max_repeats`` stays the file's,
    else 6 x repeats; a noisy run is redone as with ``precision:`` in the file).

    >>> cfg = parse_config({"name": "d", "matrix": {"workload": "m:f", "backend": "sequential"}},
    ...                    check_imports=False)
    >>> again = override(cfg, repeats=2, warmup=0)
    >>> again.repeats, again.warmup, again.overrides, again.fingerprint != cfg.fingerprint
    (2, 0, {'repeats': 2, 'warmup': 0}, True)
    >>> override(cfg, repeats=0)
    Traceback (most recent call last):
    ...
    conc_lab.config.errors.ConfigError: <config>: --repeats: must be a positive integer, got 0
    """
    v = Validator(config.path)
    v.limits = config.limits
    given = {"repeats": repeats, "warmup": warmup}
    overrides = {
        k: v.integer(n, f"--{k}", minimum=int(k == "repeats")) for k, n in given.items() if n is not None
    }
    if precision is not None:
        config = _with_precision(v, config, precision, overrides.get("repeats", config.repeats))
    if not overrides:
        return config
    changed = {"repeats": config.repeats, "warmup": config.warmup, **overrides}
    if changed["repeats"] + changed["warmup"] > config.limits.runs:
        v.fail(
            "--repeats" if "repeats" in overrides else "--warmup",
            f"{changed['warmup']} warm-up + {changed['repeats']:,} measured runs of each trial is more than "
            f"limits.runs ({config.limits.runs:,}), more than a sweep can finish",
        )
    most = config.precision.max_repeats if config.precision else changed["repeats"]
    if changed["repeats"] > most:
        v.fail("--repeats", f"must be at most the config's precision.max_repeats ({most}), got {repeats}")
    return dataclasses.replace(config, **changed, overrides={**config.overrides, **overrides})


def _with_precision(v: Validator, config: Config, target: float, repeats: int) -> Config:
    """``config`` with ``precision.target`` from the command line (``--precision``)."""
    target = sections.precision_target(v, target, "--precision")
    most = config.precision.max_repeats if config.precision else 6 * repeats
    if config.warmup + most > v.limits.runs:
        v.fail(
            "--precision",
            f"{config.warmup} warm-up + up to {most:,} rounds is more than limits.runs ({v.limits.runs:,})",
        )
    noise = config.noise
    if config.precision is None and "noise.redo" in config.defaulted:  # as precision: in the file does
        noise = dataclasses.replace(noise, redo=PRECISION_REDO)
    return dataclasses.replace(
        config,
        precision=Precision(target, most),
        noise=noise,
        overrides={**config.overrides, "precision": target},
    )


def _mapping(value: Any) -> dict:
    """``value`` where it is a mapping, else empty: a wrong-shaped section is refused where it is read."""
    return value if isinstance(value, dict) else {}


def _settings(v: Validator, doc: dict, path: str | None) -> dict[str, Any]:
    """The top-level settings: name, repeats, warmup, timeout_s, shuffle, seed, description, ray, noise,
    calibration, precision."""
    name = doc.get("name")
    if name is None:
        if path is None:
            v.fail("name", "is required")
        name = Path(path).stem
    problem = _name_problem(name)
    if problem:
        v.fail("name", problem if "name" in doc else f"{problem} (from the file's name; set name: in it)")
    shuffle = doc.get("shuffle", True)
    if not isinstance(shuffle, bool):
        v.fail("shuffle", f"must be true or false, got {show(shuffle)}")
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
    settings = {
        "name": name,
        "repeats": repeats,
        "warmup": warmup,
        "timeout_s": v.number(doc.get("timeout_s", 120), "timeout_s", maximum=MAX_TIMEOUT_S),
        "shuffle": shuffle,
        "defaulted": frozenset(key for key in ("shuffle",) if key not in doc)
        | ({"noise.redo"} if "redo" not in _mapping(doc.get("noise")) else set()),
        "seed": v.integer(doc.get("seed", 0), "seed", minimum=0, maximum=INT64_MAX),
        "pairing": _pairing(v, doc.get("pairing", "round")),
        "description": description,
        "ray_address": sections.ray_section(v, doc.get("ray")),  # the YAML section, not the backend
        "noise": sections.noise_section(v, doc.get("noise")),
        "calibration": sections.calibration_section(v, doc.get("calibration")),
        "precision": sections.precision_section(v, doc.get("precision"), repeats, warmup),
    }
    if settings["precision"] is not None and "noise.redo" in settings["defaulted"]:
        # A noisy run widens its speedup's interval to cover it, and no added round undoes that:
        # with a precision goal, a noisy run is run again unless the file says how often.
        settings["noise"] = dataclasses.replace(settings["noise"], redo=PRECISION_REDO)
    return settings


#: ``noise.redo`` where a file sets ``precision:`` and says nothing of redoing.
PRECISION_REDO = 2


def _pairing(v: Validator, raw: Any) -> str:
    if raw not in PAIRINGS:
        v.fail("pairing", f"must be one of {', '.join(PAIRINGS)}, got {show(raw)}")
    return raw


def _matrix_axes(v: Validator, matrix: Any) -> tuple[dict[str, tuple], dict[str, tuple]]:
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
    v: Validator, aff: Any, workers: tuple[int, ...], backends: tuple[str, ...]
) -> str | tuple[int, ...]:
    """``compact``, ``spread``, ``none`` or a tuple of cores; pinned workers must fit the cores."""
    if isinstance(aff, list):
        cores = host_affinity.available_cores()
        for i, c in enumerate(aff):
            if not isinstance(c, int) or isinstance(c, bool) or c not in cores:
                v.fail(f"affinity[{i}]", f"{show(c)} is not a core this process may use (available: {cores})")
            if c in aff[:i]:
                v.fail(f"affinity[{i}]", f"core {c} is listed twice")
        if not aff:
            v.fail("affinity", "an explicit core list must not be empty")
        aff = tuple(aff)
    elif aff not in ("compact", "spread", "none"):
        v.fail("affinity", f"must be compact, spread, none or a list of cores, got {show(aff)}")
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


def _check_includes(v: Validator, include: tuple[dict, ...], aff: str | tuple[int, ...]) -> None:
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

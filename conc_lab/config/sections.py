"""The settings sections of a matrix file (limits, ray, noise, calibration, backend_options) and its
exclude / include entries, each checked into the value a ``Config`` holds.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

from conc_lab.config.errors import kind, show
from conc_lab.config.model import (
    AXES,
    BACKEND_OPTIONS,
    INT32_MAX,
    INT64_MAX,
    MAX_TIMEOUT_S,
    CalibrationSettings,
    Limits,
    NoiseLimits,
    Precision,
)
from conc_lab.config.validate import Validator


def limits_section(v: Validator, raw: Any) -> Limits:
    """``limits: {workers: N, tasks: N, runs: N}``: raise what a sweep may ask for, on purpose."""
    if raw is None:
        return Limits()
    if not isinstance(raw, dict):
        v.fail("limits", f"must be a mapping such as {{workers: 64}}, got {kind(raw)}")
    v.known_keys(raw, ("workers", "tasks", "runs"), "limits.")
    tops = {"workers": INT32_MAX, "tasks": INT32_MAX, "runs": INT64_MAX}
    return Limits(**{k: v.integer(n, f"limits.{k}", minimum=1, maximum=tops[k]) for k, n in raw.items()})


def backend_options(v: Validator, raw: Any, backends: tuple) -> dict[str, dict[str, tuple]]:
    if not isinstance(raw, dict):
        v.fail("backend_options", f"must be a mapping of backend to options, got {kind(raw)}")
    out: dict[str, dict[str, tuple]] = {}
    for backend, opts in raw.items():
        key = f"backend_options.{backend}"
        if backend not in BACKEND_OPTIONS:
            v.known_keys({backend: None}, tuple(BACKEND_OPTIONS), "backend_options.")
        if backend not in backends:
            v.fail(key, f"options for {show(backend)}, which matrix.backend does not list")
        if not isinstance(opts, dict):
            v.fail(key, f"must be a mapping of option to values, got {kind(opts)}")
        allowed = BACKEND_OPTIONS[backend]
        v.known_keys(opts, tuple(allowed), key + ".")
        out[backend] = {}
        for opt, values in opts.items():
            values = values if isinstance(values, list) else [values]
            if not values:
                v.fail(f"{key}.{opt}", "is empty")
            for i, value in enumerate(values):
                if value not in allowed[opt]:
                    v.fail(
                        f"{key}.{opt}[{i}]",
                        f"must be one of {', '.join(allowed[opt])}, got {show(value)}",
                    )
                if opt == "start_method" and value not in multiprocessing.get_all_start_methods():
                    v.fail(f"{key}.{opt}[{i}]", f"{show(value)} is not available on this platform")
            out[backend][opt] = tuple(dict.fromkeys(values))
    return out


def ray_section(v: Validator, raw: Any) -> str | None:
    """``ray: {address: HOST:PORT | auto}``; None when absent (a runtime is started per sweep)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        section = "ray"  # the YAML section, not the backend
        v.fail(section, f"must be a mapping such as {{address: auto}}, got {kind(raw)}")
    v.known_keys(raw, ("address",), "ray.")
    address = raw.get("address")
    if address is not None and (not isinstance(address, str) or not address.strip()):
        v.fail(
            "ray.address",
            f"must be a cluster address such as 10.0.0.5:6379 or auto, got {show(address)}",
        )
    return address


def noise_section(v: Validator, raw: Any) -> NoiseLimits:
    """``noise: {max_foreign_cpu: 0.1, max_canary_change: 0.25, redo: 3}``; defaults where absent."""
    if raw is None:
        return NoiseLimits()
    if not isinstance(raw, dict):
        v.fail("noise", f"must be a mapping such as {{max_foreign_cpu: 0.1, redo: 3}}, got {kind(raw)}")
    v.known_keys(raw, ("max_foreign_cpu", "max_canary_change", "redo"), "noise.")
    limits = {}
    for key in ("max_foreign_cpu", "max_canary_change"):
        if key in raw:
            value = raw[key]
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not 0 <= value < float("inf")
            ):
                v.fail(f"noise.{key}", f"must be a share such as 0.1 (10%), got {value!r}")
            limits[key] = float(value)
    if "redo" in raw:
        limits["redo"] = v.integer(raw["redo"], "noise.redo", minimum=0, maximum=100)
    return NoiseLimits(**limits)


def precision_section(v: Validator, raw: Any, repeats: int, warmup: int) -> Precision | None:
    """``precision: {target: 0.05, max_repeats: 30}``: more rounds while a speedup is wider than that."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        v.fail("precision", f"must be a mapping such as {{target: 0.05, max_repeats: 30}}, got {kind(raw)}")
    v.known_keys(raw, ("target", "max_repeats"), "precision.")
    target = precision_target(v, raw.get("target", 0.05), "precision.target")
    most = v.integer(raw.get("max_repeats", 6 * repeats), "precision.max_repeats", minimum=repeats)
    if warmup + most > v.limits.runs:
        v.fail(
            "precision.max_repeats",
            f"{warmup} warm-up + {most:,} measured runs of each trial is more than limits.runs "
            f"({v.limits.runs:,}); lower it or raise limits.runs",
        )
    return Precision(target, most)


def precision_target(v: Validator, target: Any, key: str) -> float:
    """A precision target (``precision.target``, ``--precision``): a share between 0 and 1."""
    if not isinstance(target, (int, float)) or isinstance(target, bool) or not 0 < target < 1:
        v.fail(key, f"must be a share between 0 and 1 such as 0.05 (±5%), got {show(target)}")
    return float(target)


def calibration_section(v: Validator, raw: Any) -> CalibrationSettings:
    """``calibration: {target_s: 0.05, budget_s: 60}`` (how ``size: auto`` calibrates); defaults where absent."""
    if raw is None:
        return CalibrationSettings()
    if not isinstance(raw, dict):
        v.fail("calibration", f"must be a mapping such as {{target_s: 0.05, budget_s: 60}}, got {kind(raw)}")
    v.known_keys(raw, ("target_s", "budget_s"), "calibration.")
    got = {k: v.number(raw[k], f"calibration.{k}", maximum=MAX_TIMEOUT_S) for k in raw}
    return CalibrationSettings(**got)


def partial_params(v: Validator, raw: Any, key: str, option_names: set) -> list[dict]:
    if not isinstance(raw, list):
        v.fail(key, f"must be a list of mappings, got {kind(raw)}")
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or not entry:
            v.fail(f"{key}[{i}]", f"must be a non-empty mapping of axis to value, got {show(entry)}")
        v.known_keys(entry, set(AXES) | option_names, f"{key}[{i}].")
        for axis, value in entry.items():
            if isinstance(value, (list, dict)):
                v.fail(f"{key}[{i}].{axis}", f"must be a single value, got {kind(value)}")
            if axis in AXES:
                v.axis_values(axis, [value], f"{key}[{i}].{axis}")
            else:  # a backend option: a value no backend accepts would silently match nothing
                allowed = {o for opts in BACKEND_OPTIONS.values() for o in opts.get(axis, ())}
                if value not in allowed:
                    known = ", ".join(sorted(map(str, allowed)))
                    v.fail(f"{key}[{i}].{axis}", f"must be one of {known}, got {show(value)}")
        out.append(dict(entry))
    return out

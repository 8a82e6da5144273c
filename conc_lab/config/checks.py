"""The checks of a config that look past the file: its workloads and the interpreters it names.

A workload check imports the workload's module; an interpreter check starts the interpreter.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conc_lab.config.model import ASYNC_BACKENDS
from conc_lab.config.validate import Validator
from conc_lab.host import workload as host_workload


def check_workloads(v: Validator, axes, include, exclude, backend_options, path: str | None) -> None:
    """Every workload named imports and is callable, and each pair with a backend can run."""
    _check_workloads(v, axes["workload"], include, path)
    _check_async_pairs(v, axes, include, exclude, backend_options, Path(path).parent if path else None)


def _check_workloads(v: Validator, workloads: tuple[str, ...], include: tuple[dict, ...], path: str | None):
    """Every workload named imports and is callable (this imports the workload modules)."""
    config_dir = Path(path).parent if path else None
    for i, ref in enumerate(dict.fromkeys([*workloads, *(inc["workload"] for inc in include)])):
        problem = check_workload(ref, config_dir)
        if problem:
            v.fail(f"matrix.workload[{i}]" if ref in workloads else "include", problem)


def check_interpreters(v: Validator, pythons: tuple, listed: bool, include: tuple[dict, ...]) -> None:
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

"""The checks of a config that look past the file: its workloads and the interpreters it names.

No workload is imported here. ``inspect_workloads`` asks one child process
(``python -m conc_lab.host.inspect``) about all the workloads of a config and gets their facts
back (imports, takes ``(task, size)``, is ``async def``): a module's import-time code runs there,
so its ``sys.exit``, ``chdir`` or prints cannot decide what this process does. An interpreter
check starts the interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conc_lab.config.model import ASYNC_BACKENDS
from conc_lab.config.validate import Validator
from conc_lab.host import PACKAGE_ROOT
from conc_lab.host.inspect import Facts
from conc_lab.host.protocol import ASYNCIO

#: The longest the child may take to import a config's workloads: one that waits on input or the
#: network at import would otherwise hang the command before anything runs.
INSPECT_TIMEOUT_S = 120.0


class InspectError(RuntimeError):
    """The child could not answer for ``ref`` (it died or hung importing it): ``str()`` says how."""

    def __init__(self, ref: str, problem: str):
        super().__init__(problem)
        self.ref = ref


def check_workloads(v: Validator, axes, include, exclude, backend_options, path: str | None) -> None:
    """Every workload named imports and is callable, and each pair with a backend can run."""
    workloads = axes["workload"]
    refs = list(dict.fromkeys([*workloads, *(inc["workload"] for inc in include)]))
    key = {ref: f"matrix.workload[{i}]" if ref in workloads else "include" for i, ref in enumerate(refs)}
    try:
        found = inspect_workloads(refs, workload_search_path(Path(path).parent if path else None))
    except InspectError as exc:
        v.fail(key[exc.ref], str(exc))
    for ref in refs:
        if found[ref].problem:
            v.fail(key[ref], found[ref].problem + _path_hint(ref, found[ref].problem))
    _check_async_pairs(v, axes, include, exclude, backend_options, found)


def _path_hint(ref: str, problem: str) -> str:
    """Why a module this process imports fails in the child: it is here only through ``sys.path``.

    Trial hosts are fresh processes: a ``sys.path.insert`` made in a notebook or script does not
    reach them, so the run would fail with ModuleNotFoundError; this says what to do instead.
    """
    import importlib.util

    module = ref.partition(":")[0]
    if not problem.startswith("cannot import") or not module:
        return ""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return ""
    if spec is None or spec.origin is None:
        return ""
    folder = (
        Path(spec.origin).parent
        if spec.submodule_search_locations is None
        else Path(spec.origin).parent.parent
    )
    for _ in module.split(".")[1:]:
        folder = folder.parent
    return (
        f" (this process imports it from {folder} through sys.path, which trial hosts do not inherit: "
        f"set PYTHONPATH={folder} before starting Python, or install the module)"
    )


def workload_search_path(config_dir: Path | None = None) -> list[str]:
    """Where workloads are imported from: the working directory, then the config's project root."""
    paths = [os.getcwd()]
    if config_dir is not None:
        root = Path(config_dir).resolve()
        paths += [str(root), str(root.parent)]
    return list(dict.fromkeys(paths))


def check_workload(ref: str, search_path: list[str] | None = None) -> str | None:
    """None if ``module:function`` imports (in a child), is callable and takes ``(task, size)``, else what is wrong.

    ``search_path``: where to import it from (default: ``workload_search_path()``).
    """
    try:
        return inspect_workloads([ref], search_path)[ref].problem
    except InspectError as exc:
        return str(exc)


def inspect_workloads(refs: list[str], search_path: list[str] | None = None) -> dict[str, Facts]:
    """The facts of each workload in ``refs``, found by one child process that imports them all
    from ``search_path`` (default: ``workload_search_path()``).

    Raises ``InspectError`` naming the workload the child was importing when it died or hung.
    """
    if not refs:
        return {}
    paths = search_path if search_path is not None else workload_search_path()
    request = json.dumps({"search_path": paths, "workloads": refs})
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "conc_lab.host.inspect"],
            input=request,
            capture_output=True,
            text=True,
            env=env,
            timeout=INSPECT_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        answered = _answers(exc.stdout or "")
        ref = next(r for r in refs if r not in answered)
        raise InspectError(
            ref, f"importing {ref.partition(':')[0]!r} took more than {INSPECT_TIMEOUT_S:.0f} s"
        ) from None
    found = _answers(proc.stdout)
    missing = [r for r in refs if r not in found]
    if missing:
        raise InspectError(missing[0], _died(missing[0], proc))
    return found


def _answers(stdout: str | bytes) -> dict[str, Facts]:
    text = stdout.decode(errors="replace") if isinstance(stdout, bytes) else stdout
    found = {}
    for line in text.splitlines():
        try:
            facts = Facts.from_json(line)
        except ValueError:  # not an answer (the child's stdout carries nothing else, but be sure)
            continue
        found[facts.ref] = facts
    return found


def _died(ref: str, proc: subprocess.CompletedProcess) -> str:
    """Why the child gave no answer for ``ref``: the exit code, or the signal, and its last words."""
    how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1:]
    said = f": {last[0].strip()[:300]}" if last else ""
    return f"importing {ref.partition(':')[0]!r} ended the process importing it ({how}){said}"


def check_interpreters(v: Validator, pythons: tuple, listed: bool, include: tuple[dict, ...]) -> None:
    """Every interpreter named on the python axis or in an include entry can host trials."""
    named = [(f"matrix.python[{i}]" if listed else "matrix.python", p) for i, p in enumerate(pythons)]
    named += [(f"include[{i}].python", inc["python"]) for i, inc in enumerate(include) if "python" in inc]
    for key, value in named:
        problem = check_interpreter(value)
        if problem:
            v.fail(key, problem)


def _check_async_pairs(v, axes, include, exclude, backend_options, found: dict[str, Facts]) -> None:
    """An ``async def`` workload only on sequential or asyncio; a plain one on asyncio only offloaded.

    A pair the matrix crosses is refused unless an exclude entry naming only workload, backend
    and backend options removes it whole; an include entry is checked as it stands.
    """
    offloads = backend_options.get(ASYNCIO, {}).get("offload", ("none",))
    pairs = [
        (f"matrix.workload[{i}]", w, b, {"offload": o} if b == ASYNCIO else {})
        for i, w in enumerate(axes["workload"])
        for b in axes["backend"]
        for o in (offloads if b == ASYNCIO else (None,))
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
        problem = async_pair_problem(found[workload], backend, opts.get("offload"))
        if problem:
            v.fail(key, problem)


def async_pair_problem(facts: Facts, backend: str, offload: str | None) -> str | None:
    """Why the workload of ``facts`` cannot run on ``backend`` (async vs plain), or None.

    >>> async_pair_problem(Facts("m:f", is_async=True), "threading", None)
    'm:f is an async def workload, which threading cannot await; run it on sequential or asyncio'
    >>> async_pair_problem(Facts("m:f"), "asyncio", "thread") is None
    True
    """
    ref = facts.ref
    if facts.is_async:
        if backend not in ASYNC_BACKENDS:
            return f"{ref} is an async def workload, which {backend} cannot await; run it on sequential or asyncio"
        return None
    if backend == ASYNCIO and offload != "thread":
        return (
            f"{ref} is a plain function: asyncio awaits async def workloads; to run it with "
            "asyncio.to_thread set backend_options: {asyncio: {offload: thread}}, or pair it "
            "with other backends (exclude / include)"
        )
    return None


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

"""What on this machine could spoil a measurement, each with a plain recommendation.

``diagnose()`` inspects the machine (sysfs, procfs, the interpreter) and returns one
``Finding`` per check: SMT siblings, CPU frequency governor and turbo, load average,
isolated cores, cgroup CPU quota, affinity support, timer resolution, the GIL, a
virtual machine, Ray. Nothing is changed; ``conclab doctor`` prints the findings and
``conclab sweep`` stores them with the sweep and warns once when one is ``warn`` or ``bad``.

Paths are read under ``root`` (default ``/``) so the logic can be exercised against a
copy of a sysfs tree laid out in a temporary directory.

>>> findings = diagnose()
>>> {f.status for f in findings} <= set(STATUSES)
True
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

#: From harmless to spoiling: ``info`` is context, ``warn`` adds noise, ``bad`` biases results.
STATUSES = ("ok", "info", "warn", "bad")


@dataclass(frozen=True)
class Finding:
    """One check: its ``name``, a ``status`` (see ``STATUSES``), what was seen and what to do.

    >>> Finding("load", "ok", "load average 0.1", "").spoils
    False
    """

    name: str
    status: str
    detail: str
    advice: str = ""

    @property
    def spoils(self) -> bool:
        """True when this finding can distort measurements (status warn or bad)."""
        return self.status in ("warn", "bad")

    def to_dict(self) -> dict:
        return asdict(self)


def diagnose(root: str | os.PathLike = "/") -> list[Finding]:
    """Run every check against the machine (files read under ``root``); never raises for a missing file.

    >>> [f.name for f in diagnose()][:2]
    ['cores', 'smt']
    """
    sysfs = _Sys(Path(root))
    cpus = _allowed_cpus(sysfs)
    checks = [
        lambda: _cores(sysfs, cpus),
        lambda: _smt(sysfs, cpus),
        lambda: _governor(sysfs, cpus),
        lambda: _turbo(sysfs),
        lambda: _load(sysfs, cpus),
        lambda: _isolated(sysfs, cpus),
        lambda: _cgroup_quota(sysfs, cpus),
        lambda: _affinity(),
        _timer,
        _gil,
        lambda: _virtual_machine(sysfs),
        _ray,
    ]
    out = []
    for check in checks:
        try:
            out.append(check())
        except Exception as exc:  # a check that breaks is itself a finding, never a crash
            out.append(Finding(getattr(check, "__name__", "check"), "info", f"check failed: {exc}", ""))
    return out


def load(root: str | os.PathLike = "/") -> Finding:
    """The load check alone, as ``diagnose`` makes it: for a command that tells the load before and
    after its runs without the other checks (``conclab selftest``).

    >>> load().name
    'load'
    """
    sysfs = _Sys(Path(root))
    return _load(sysfs, _allowed_cpus(sysfs))


def worst(findings: list[Finding]) -> str:
    """The most serious status among ``findings`` ("ok" for none).

    >>> worst([Finding("a", "info", ""), Finding("b", "warn", "")])
    'warn'
    """
    return max((f.status for f in findings), key=STATUSES.index, default="ok")


def summary_line(findings: list[Finding]) -> str | None:
    """One warning line naming the findings that can spoil measurements, or None when none can.

    >>> summary_line([Finding("load", "bad", "load average 3.0", "")])
    'measurements here may be spoiled by: load (bad: load average 3.0); run `conclab doctor` for advice'
    """
    spoiling = [f for f in findings if f.spoils]
    if not spoiling:
        return None
    parts = "; ".join(f"{f.name} ({f.status}: {f.detail})" for f in spoiling)
    return f"measurements here may be spoiled by: {parts}; run `conclab doctor` for advice"


# --- the checks -------------------------------------------------------------------------


class _Sys:
    """Reads files under a root, returning None when absent or unreadable."""

    def __init__(self, root: Path):
        self.root = root

    def read(self, path: str) -> str | None:
        try:
            return (self.root / path.lstrip("/")).read_text().strip()
        except (OSError, UnicodeDecodeError):
            return None

    def cpu_list(self, path: str) -> list[int] | None:
        text = self.read(path)
        return None if text is None else parse_cpu_list(text)


def parse_cpu_list(text: str) -> list[int]:
    """Parse a kernel CPU list such as ``0-3,8``.

    >>> parse_cpu_list("0-2,5")
    [0, 1, 2, 5]
    """
    cpus: list[int] = []
    for part in filter(None, text.strip().split(",")):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def _allowed_cpus(sysfs: _Sys) -> list[int]:
    if sysfs.root == Path("/") and hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    online = sysfs.cpu_list("/sys/devices/system/cpu/online")
    return online or list(range(os.cpu_count() or 1))


def _siblings(sysfs: _Sys, cpu: int) -> tuple[int, ...]:
    got = sysfs.cpu_list(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
    return tuple(got) if got else (cpu,)


def _physical_cores(sysfs: _Sys, cpus: list[int]) -> int:
    return len({_siblings(sysfs, c) for c in cpus})


def _cores(sysfs: _Sys, cpus: list[int]) -> Finding:
    logical = len(cpus)
    physical = _physical_cores(sysfs, cpus)
    detail = f"{logical} logical CPUs usable ({cpus}), {physical} physical cores"
    if logical == 1:
        return Finding("cores", "bad", detail, "one CPU: no parallel backend can run in parallel here")
    return Finding("cores", "ok", detail, f"keep workers <= {physical} to give each its own core")


def _smt(sysfs: _Sys, cpus: list[int]) -> Finding:
    shared = sorted({s for c in cpus if len(s := _siblings(sysfs, c)) > 1})
    if not shared:
        return Finding("smt", "ok", "no SMT siblings among usable CPUs", "")
    groups = ", ".join("+".join(map(str, s)) for s in shared)
    return Finding(
        "smt",
        "warn",
        f"SMT siblings share a core: {groups}",
        "use 'affinity: spread' (one worker per physical core first) or workers <= physical cores; "
        "two workers on siblings scale far below 2x",
    )


def _governor(sysfs: _Sys, cpus: list[int]) -> Finding:
    governors = {c: sysfs.read(f"/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor") for c in cpus}
    seen = {g for g in governors.values() if g}
    if not seen:
        return Finding(
            "cpu_governor",
            "info",
            "frequency scaling not exposed (typical of a VM or container)",
            "the host decides the clock; repeat runs and compare their spread",
        )
    if seen == {"performance"}:
        return Finding("cpu_governor", "ok", "governor 'performance' on every usable CPU", "")
    return Finding(
        "cpu_governor",
        "warn",
        "governor " + ", ".join(sorted(seen)) + " (clock speed varies with load)",
        "sudo cpupower frequency-set -g performance (or: python -m pyperf system tune)",
    )


def _turbo(sysfs: _Sys) -> Finding:
    no_turbo = sysfs.read("/sys/devices/system/cpu/intel_pstate/no_turbo")
    boost = sysfs.read("/sys/devices/system/cpu/cpufreq/boost")
    if no_turbo == "0" or boost == "1":
        return Finding(
            "turbo",
            "warn",
            "turbo boost on: one busy core runs faster than two, inflating the 1-worker baseline",
            "disable it for scaling studies (python -m pyperf system tune does)",
        )
    if no_turbo is None and boost is None:
        return Finding("turbo", "info", "turbo control not exposed", "")
    return Finding("turbo", "ok", "turbo boost off", "")


def _load(sysfs: _Sys, cpus: list[int]) -> Finding:
    text = sysfs.read("/proc/loadavg")
    if text is None:
        return Finding("load", "info", "load average unavailable", "")
    load1 = float(text.split()[0])
    detail = f"load average {load1:.2f} over 1 min on {len(cpus)} CPUs"
    if load1 >= max(1.0, len(cpus) / 2):
        return Finding(
            "load", "bad", detail, "other work is competing for the CPUs: stop it, or results will be slow"
        )
    if load1 >= 0.5:
        return Finding(
            "load", "warn", detail, "something else is running; close it and re-run for steadier numbers"
        )
    return Finding("load", "ok", detail, "")


def _isolated(sysfs: _Sys, cpus: list[int]) -> Finding:
    isolated = sysfs.cpu_list("/sys/devices/system/cpu/isolated") or []
    usable = [c for c in isolated if c in cpus]
    if usable:
        return Finding("isolated_cpus", "ok", f"isolated CPUs {usable} (pinned workers prefer them)", "")
    return Finding(
        "isolated_cpus",
        "info",
        "no isolated CPUs: the OS may schedule other work on measured cores",
        "for the steadiest numbers boot with isolcpus=<cores> (pyperf's advice); affinity then uses them first",
    )


def _cgroup_quota(sysfs: _Sys, cpus: list[int]) -> Finding:
    text = sysfs.read("/sys/fs/cgroup/cpu.max")  # cgroup v2
    quota = period = None
    if text:
        q, _, p = text.partition(" ")
        if q != "max":
            quota, period = float(q), float(p or 100000)
    else:
        q = sysfs.read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")  # cgroup v1
        p = sysfs.read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
        if q and p and int(q) > 0:
            quota, period = float(q), float(p)
    if quota is None:
        return Finding("cpu_quota", "ok", "no cgroup CPU quota", "")
    allowed = quota / period
    detail = f"cgroup CPU quota {allowed:.2f} CPUs for {len(cpus)} usable CPUs"
    if allowed < len(cpus):
        return Finding(
            "cpu_quota",
            "bad",
            detail,
            f"parallel workers are throttled: use at most {int(allowed) or 1} workers or raise the quota",
        )
    return Finding("cpu_quota", "ok", detail, "")


def _affinity() -> Finding:
    if not (hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")):
        return Finding(
            "affinity", "warn", "CPU affinity not supported here", "workers run unpinned (pinned=false)"
        )
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        ok = os.sched_getaffinity(0) == {min(before)}
    except OSError as exc:
        return Finding("affinity", "warn", f"pinning refused: {exc}", "workers will run unpinned")
    finally:
        os.sched_setaffinity(0, before)
    if not ok:
        return Finding("affinity", "warn", "pinning did not take effect", "workers will run unpinned")
    return Finding("affinity", "ok", f"pinning works on CPUs {sorted(before)}", "")


def _timer() -> Finding:
    info = time.get_clock_info("perf_counter")
    detail = f"perf_counter ({info.implementation}) resolution {info.resolution * 1e9:.0f} ns"
    if info.resolution > 1e-6:
        return Finding("timer", "warn", detail, "use sizes where one trial runs for milliseconds or more")
    return Finding("timer", "ok", detail, "")


def _gil() -> Finding:
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    enabled = is_enabled() if is_enabled else sys.implementation.name == "cpython"
    version = sys.version.split()[0]
    if enabled:
        return Finding(
            "gil",
            "info",
            f"{sys.implementation.name} {version} with the GIL",
            "threads run Python code one at a time: expect thread speedups only for I/O and GIL-releasing C code",
        )
    return Finding("gil", "info", f"{sys.implementation.name} {version} without a GIL (free-threaded)", "")


def _virtual_machine(sysfs: _Sys) -> Finding:
    cpuinfo = sysfs.read("/proc/cpuinfo") or ""
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    if " hypervisor" in flags:
        return Finding(
            "virtual_machine",
            "info",
            "running under a hypervisor: vCPUs may be descheduled (steal time)",
            "repeat runs and look at the spread; prefer medians",
        )
    return Finding("virtual_machine", "ok", "bare metal (no hypervisor flag)", "")


def _ray() -> Finding:
    package = "ray"  # package, not the backend
    if importlib.util.find_spec(package) is None:
        return Finding(
            package, "warn", "ray is not installed: the ray backend cannot run", "pip install 'ray>=2.9'"
        )
    from importlib.metadata import PackageNotFoundError, version

    try:
        return Finding(package, "ok", f"ray {version(package)} available", "")
    except PackageNotFoundError:
        return Finding(package, "ok", "ray importable", "")


def interpreters() -> list[Finding]:
    """One finding per Python interpreter found (PATH, pyenv, common places): can it host trials?

    Not one of ``diagnose()``'s checks: it starts every interpreter once (about a second in
    all), and every sweep runs ``diagnose()``. The advice is the value to put in ``matrix.python``.

    >>> any(f.status == "ok" for f in interpreters())
    True
    """
    from conc_lab.machine import interpreters as interp

    root = interp.pyenv_root()
    out = []
    for info in interp.find_interpreters():
        name = f"python {info.label}" if info.version else "python ?"
        if not info.can_host:
            out.append(Finding(name, "info", f"{info.path}: cannot host trials: {info.problem}", ""))
            continue
        build = "free-threaded" if info.free_threaded else "default build"
        gil = "GIL off" if info.gil_enabled is False else "GIL on"
        path = Path(info.path)
        value = path.parent.parent.name if root and path.is_relative_to(root / "versions") else info.path
        out.append(
            Finding(
                name,
                "ok",
                f"{info.path}: {info.implementation} {info.version}, {build}, {gil}; can host trials",
                f"name it in matrix.python as {value}",
            )
        )
    if not any(f.status == "ok" and "free-threaded" in f.detail for f in out):
        out.append(FREE_THREADED_ADVICE)
    return out


#: What doctor says when no interpreter found is a free-threaded build (PEP 703/779).
FREE_THREADED_ADVICE = Finding(
    "free-threaded python",
    "info",
    "no free-threaded build found: no interpreter here runs Python threads in parallel",
    "build one from Debian's sources with benchmarks/build_free_threaded_python.sh (3.13; '3.14' for 3.14, "
    "which also has concurrent.interpreters), about 6 min on 2 cores, into pyenv as e.g. 3.13.5t; "
    'or `pyenv install 3.13t` where python.org is reachable. Then put "3.13t" in matrix.python',
)

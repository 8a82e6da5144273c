"""Which Python interpreters a matrix may name, and what each one is.

A ``python`` axis value is a path (``/opt/py/bin/python3.13t``), a name looked up on
``PATH`` (``python3.12``), or a pyenv version (``3.12``, ``3.13t``, ``3.12.1``) found under
the pyenv root even when pyenv has not activated it. ``resolve`` turns a value into an
executable; ``probe`` starts it once (cached) to learn its version, implementation and
build, and whether it can import conc_lab's trial host from source; ``check`` does both
and refuses an interpreter that is missing or older than ``MIN_VERSION``.

pyenv's shims only work for activated versions (an inactive one prints "command not
found"), so a shim found on ``PATH`` is followed to the real executable under the pyenv
root, active versions first, as the user's shell would.

>>> check(None).can_host
True
"""

from __future__ import annotations

import functools
import glob
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from conc_lab.host import PACKAGE_ROOT

#: The oldest Python the trial host supports (its code keeps to 3.8 syntax and library).
MIN_VERSION = (3, 8)
_PROBE_TIMEOUT_S = 20.0
#: "3.12", "python3.12", "3.13t", "python3.13t", "3.12.1": a version that pyenv may hold.
_VERSION_NAME = re.compile(r"^(?:python)?(\d+(?:\.\d+){0,2})(t?)$")
#: Executable names that look like a Python interpreter (python, python3, python3.12, python3.13t, pypy3).
_EXE_NAME = re.compile(r"^(?:python|pypy)(?:\d+(?:\.\d+)?t?)?$")

# Runs under the probed interpreter, which may be anything down to 2.7: keep this 2.7 syntax.
# It reports the facts first, then imports the trial host from source (argv[1]) where the
# version allows, so a host that cannot load there is known before a sweep starts.
_PROBE = r"""
import json, platform, sys
try:
    import sysconfig
    ft = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
except Exception:
    ft = False
g = getattr(sys, "_is_gil_enabled", None)
info = {"version": platform.python_version(), "version_info": list(sys.version_info[:3]),
        "impl": platform.python_implementation(), "free_threaded": ft,
        "gil_enabled": bool(g()) if g else platform.python_implementation() == "CPython",
        "executable": sys.executable, "host_error": None}
if tuple(sys.version_info[:2]) >= MIN_VERSION:
    sys.path.insert(0, sys.argv[1])
    try:
        import conc_lab.host.__main__, conc_lab.host.backends.sequential
        import conc_lab.host.backends.threads, conc_lab.host.backends.processes
    except Exception as exc:
        info["host_error"] = type(exc).__name__ + ": " + str(exc)
sys.stdout.write(json.dumps(info))
""".replace("MIN_VERSION", repr(MIN_VERSION))


class InterpreterError(ValueError):
    """A ``python`` value that names no usable interpreter; ``problem`` says why in one phrase."""

    def __init__(self, value: str | None, problem: str):
        self.value, self.problem = value, problem
        super().__init__(problem)


@dataclass(frozen=True)
class Interpreter:
    """What probing an interpreter found.

    >>> info = probe(sys.executable)
    >>> info.version_info[:2] == tuple(sys.version_info[:2]), info.can_host
    (True, True)
    """

    path: str  # the executable as resolved (not symlink-resolved: a venv's python stays the venv's)
    version: str = ""  # e.g. "3.12.1"
    version_info: tuple[int, ...] = ()
    implementation: str = ""  # CPython, PyPy, ...
    free_threaded: bool = False  # built with --disable-gil (PEP 703)
    gil_enabled: bool | None = None  # at start-up; a free-threaded build may still turn it on
    executable: str = ""  # sys.executable as the interpreter reports it
    problem: str | None = None  # why it cannot host trials; None when it can

    @property
    def can_host(self) -> bool:
        """True when a trial host can run under this interpreter."""
        return self.problem is None

    @property
    def label(self) -> str:
        """Short name for tables and plots: ``3.12.1``, ``3.13.5t``, ``PyPy 3.10.14``."""
        text = self.version + ("t" if self.free_threaded else "")
        return text if self.implementation in ("CPython", "") else f"{self.implementation} {text}"


def pyenv_root() -> Path | None:
    """pyenv's root ($PYENV_ROOT, else ~/.pyenv) when it holds any versions."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv").expanduser()
    return root if (root / "versions").is_dir() else None


def resolve(value: str | None) -> str:
    """The executable a ``python`` axis value names; raises ``InterpreterError`` when none.

    None is the interpreter conc_lab itself runs under.

    >>> resolve(None) == sys.executable
    True
    """
    if value is None:
        return sys.executable
    if not isinstance(value, str) or not value.strip():
        raise InterpreterError(value, f"must be an interpreter name or path, got {value!r}")
    if os.sep in value or value.startswith("~") or (os.altsep and os.altsep in value):
        path = Path(value).expanduser()
        if not path.exists():
            raise InterpreterError(value, f"{value!r}: no such file")
        if not path.is_file() or not os.access(path, os.X_OK):
            raise InterpreterError(value, f"{value!r} is not an executable file")
        return str(path)
    found = _on_path(value) or _pyenv_version(value)
    if found is None:
        root = pyenv_root()
        where = "on PATH" + (f" or under {root}/versions" if root else "")
        have = sorted(_pyenv_versions(root), key=_version_key) if root else []
        hint = (
            f" (pyenv has {', '.join(have)}; `conclab doctor` lists every interpreter found)" if have else ""
        )
        raise InterpreterError(value, f"no interpreter {value!r} {where}{hint}")
    return found


def _on_path(name: str) -> str | None:
    root = pyenv_root()
    for entry in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if not entry:
            continue
        if root is not None and _is_shims_dir(Path(entry), root):
            # A shim only runs activated versions; follow it to the real one instead.
            if (Path(entry) / name).exists():
                hit = _pyenv_executable(name, root)
                if hit:
                    return hit
            continue
        hit = shutil.which(name, path=entry)
        if hit:
            return hit
    return None


def _is_shims_dir(entry: Path, root: Path) -> bool:
    try:
        return entry.name == "shims" and entry.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def _pyenv_versions(root: Path) -> list[str]:
    """pyenv's installed versions: the active ones first (as the shell would pick), then newest first."""
    names = [p.name for p in (root / "versions").iterdir() if (p / "bin").is_dir()]
    names.sort(key=_version_key, reverse=True)
    active = [v for v in _active_pyenv_versions(root) if v in names]
    return active + [v for v in names if v not in active]


def _active_pyenv_versions(root: Path) -> list[str]:
    text = os.environ.get("PYENV_VERSION")
    if text:
        return text.replace(":", " ").split()
    here = Path.cwd()
    for folder in (here, *here.parents):
        local = folder / ".python-version"
        if local.is_file():
            return _read_version_file(local)
    return _read_version_file(root / "version")


def _read_version_file(path: Path) -> list[str]:
    try:
        lines = path.read_text().split()
    except OSError:
        return []
    return [line for line in lines if line and not line.startswith("#")]


def _version_key(name: str) -> tuple:
    nums = re.findall(r"\d+", name)
    return (name[:1].isdigit(), tuple(int(n) for n in nums[:3]), name)


def _pyenv_executable(name: str, root: Path) -> str | None:
    for version in _pyenv_versions(root):
        exe = root / "versions" / version / "bin" / name
        if exe.is_file() and os.access(exe, os.X_OK):
            return str(exe)
    return None


def _pyenv_version(value: str) -> str | None:
    """``3.12`` / ``python3.12`` / ``3.13t`` -> the newest matching pyenv version's python."""
    root = pyenv_root()
    match = _VERSION_NAME.match(value)
    if root is None or match is None:
        return None
    wanted, threaded = match.group(1), bool(match.group(2))
    for version in sorted(_pyenv_versions(root), key=_version_key, reverse=True):
        base = version[:-1] if version.endswith("t") else version
        if version.endswith("t") != threaded:
            continue  # "3.13" means the default build, "3.13t" the free-threaded one
        if base == wanted or base.startswith(wanted + "."):
            for exe in ("python", "python3"):
                path = root / "versions" / version / "bin" / exe
                if path.is_file() and os.access(path, os.X_OK):
                    return str(path)
    return None


def probe(path: str) -> Interpreter:
    """Start ``path`` once and report what it is; cached per executable (until the file changes).

    Never raises for a broken interpreter: ``problem`` says what is wrong.
    """
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError as exc:
        return Interpreter(path, problem=f"cannot run {path}: {exc.strerror or exc}")
    return _probe_cached(path, stamp)


@functools.lru_cache(maxsize=256)
def _probe_cached(path: str, stamp: int) -> Interpreter:
    try:
        proc = subprocess.run(
            [path, "-E", "-s", "-c", _PROBE, PACKAGE_ROOT],
            capture_output=True,
            timeout=_PROBE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return Interpreter(path, problem=f"{path} did not answer within {_PROBE_TIMEOUT_S:g} s")
    except OSError as exc:
        return Interpreter(path, problem=f"cannot run {path}: {exc.strerror or exc}")
    try:
        info = json.loads(proc.stdout.decode(errors="replace"))
    except ValueError:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        why = err[-1] if err else f"exit code {proc.returncode}"
        return Interpreter(path, problem=f"{path} is not a working Python interpreter ({why})")
    version_info = tuple(int(x) for x in info["version_info"])
    problem = None
    if version_info[:2] < MIN_VERSION:
        problem = (
            f"{info['impl']} {info['version']} is too old (the trial host needs Python "
            f"{'.'.join(map(str, MIN_VERSION))} or newer)"
        )
    elif info.get("host_error"):
        problem = f"cannot import conc_lab's trial host: {info['host_error']}"
    return Interpreter(
        path=path,
        version=info["version"],
        version_info=version_info,
        implementation=info["impl"],
        free_threaded=bool(info["free_threaded"]),
        gil_enabled=info["gil_enabled"],
        executable=info.get("executable") or path,
        problem=problem,
    )


def check(value: str | None) -> Interpreter:
    """Resolve and probe a ``python`` axis value; ``InterpreterError`` unless it can host trials.

    >>> check("python0.1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    conc_lab.machine.interpreters.InterpreterError: no interpreter 'python0.1' on PATH...
    """
    path = resolve(value)
    info = probe(path)
    if not info.can_host:
        raise InterpreterError(
            value, info.problem if value in (None, path) else f"{value!r} is {path}: {info.problem}"
        )
    return info


#: Folders where interpreters are commonly installed besides PATH and pyenv (globs).
COMMON_PLACES = (
    "/usr/bin",
    "/usr/local/bin",
    "/opt/*/bin",
    "/opt/python*/bin",
    "/opt/homebrew/bin",
    "/usr/local/opt/python*/bin",
    "/Library/Frameworks/Python.framework/Versions/*/bin",
    "~/.local/bin",
    "~/.local/share/uv/python/*/bin",
    "~/.pyenv/versions/*/bin",
    "~/miniconda3/bin",
    "~/anaconda3/bin",
    "~/miniforge3/bin",
    "/opt/conda/bin",
)


def find_interpreters(extra: list[str] | None = None) -> list[Interpreter]:
    """Every interpreter found on PATH, under pyenv and in ``COMMON_PLACES``, probed; newest first.

    Copies of one binary (python3 -> python3.11 symlinks) are listed once.

    >>> any(i.can_host for i in find_interpreters())
    True
    """
    candidates: list[str] = [sys.executable]
    root = pyenv_root()
    folders = [e for e in os.environ.get("PATH", os.defpath).split(os.pathsep) if e]
    folders = [f for f in folders if root is None or not _is_shims_dir(Path(f), root)]
    if root is not None:
        folders += [str(root / "versions" / v / "bin") for v in _pyenv_versions(root)]
    for pattern in COMMON_PLACES:
        folders += sorted(glob.glob(os.path.expanduser(pattern)))
    for folder in dict.fromkeys(folders):
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        candidates += [os.path.join(folder, n) for n in names if _EXE_NAME.match(n)]
    candidates += list(extra or [])
    unique: dict[str, str] = {}
    for path in candidates:
        try:
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                continue
            real = os.path.realpath(path)
        except OSError:
            continue
        unique.setdefault(real, path)
    with ThreadPoolExecutor(max_workers=8) as pool:
        out = list(pool.map(probe, unique.values()))
    out.sort(key=lambda i: (i.can_host, i.version_info, i.free_threaded, i.path), reverse=True)
    return out

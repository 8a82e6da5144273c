"""Workload modules compiled once in the host, so a run's process only executes them.

A run's process is forked from the clean host, which must never *execute* a workload's
module (what its import starts would run beside every later run). Finding and compiling
it executes nothing, so the host does that once per module (again when its file changes),
and every run's process imports from the compiled code: without it each run recompiled
the module's source wherever no ``.pyc`` is written (``PYTHONDONTWRITEBYTECODE``, a
read-only checkout), the largest part of a short run's cost.

Standard library only, Python 3.8 syntax: this runs inside the trial host.
"""

import importlib.machinery
import importlib.util
import os
import sys

#: fullname -> (origin, search path it was found on or None, code, submodule locations or None, stamp)
_codes = {}


#: ref -> the modules prepare found for it: a later run of the same workload only re-stats them.
_prepared = {}


def prepare(ref):
    """Find and compile the modules of workload ``ref`` ("pkg.mod:fn") without running them."""
    names = _prepared.get(ref)
    if names is not None and all(_stamp(_codes[n][0]) == _codes[n][4] for n in names):
        return
    before = set(_codes)
    _find(ref)
    _prepared[ref] = [n for n in _codes if n not in before or n in (names or ())]


def _find(ref):
    parts = ref.partition(":")[0].split(".")
    path = None
    for i in range(len(parts)):
        fullname = ".".join(parts[: i + 1])
        if fullname in sys.modules:  # the host's own (a stdlib module): nothing to do
            module = sys.modules[fullname]
            path = getattr(module, "__path__", None)
            continue
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        loader = getattr(spec, "loader", None)
        if spec is None or not isinstance(loader, importlib.machinery.SourceFileLoader):
            return  # a namespace package, an extension: imported the ordinary way
        stamp = _stamp(spec.origin)
        cached = _codes.get(fullname)
        if cached is None or cached[4] != stamp:
            try:
                code = loader.get_code(fullname)
            except (ImportError, SyntaxError, OSError):
                return  # the run's own import reports it
            where = None if path is None else tuple(path)
            _codes[fullname] = (spec.origin, where, code, spec.submodule_search_locations, stamp)
        path = spec.submodule_search_locations
        if path is None and i < len(parts) - 1:
            return


def install():
    """In a run's process: serve the compiled modules to its imports (first on ``sys.meta_path``)."""
    if _codes:
        sys.meta_path.insert(0, _Finder())


def _stamp(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class _Finder(object):
    def find_spec(self, fullname, path, target=None):
        hit = _codes.get(fullname)
        if hit is None:
            return None
        origin, where, code, locations, stamp = hit
        if (None if path is None else tuple(path)) != where:
            return None  # asked for on another path than the host found it on
        if _stamp(origin) != stamp:
            return None  # edited since the host compiled it (this process was forked before)
        return importlib.util.spec_from_file_location(
            fullname, origin, loader=_Loader(fullname, origin, code), submodule_search_locations=locations
        )


class _Loader(importlib.machinery.SourceFileLoader):
    def __init__(self, fullname, path, code):
        importlib.machinery.SourceFileLoader.__init__(self, fullname, path)
        self._code = code

    def get_code(self, fullname):
        return self._code

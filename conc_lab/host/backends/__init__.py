"""Backends: where a trial's task units run. One small interface, registered by name.

A backend splits ``trial["tasks"]`` task units over ``trial["workers"]`` workers, each
pinned to ``trial["cores"][i]`` (or unpinned when ``cores`` is None), and returns an
outcome dict (see ``_worker.Collector.outcome``). Like ``concurrent.futures`` executors,
backends share a base class and differ only in where the work runs.

Backends are imported on first use, so the host never imports Ray unless a trial asks.
Standard library only, Python 3.8 syntax.
"""

from conc_lab.host import protocol
from conc_lab.host.workload import import_function

_REGISTRY = {
    protocol.SEQUENTIAL: "conc_lab.host.backends.sequential:SequentialBackend",
    protocol.THREADING: "conc_lab.host.backends.threads:ThreadingBackend",
    protocol.MULTIPROCESSING: "conc_lab.host.backends.processes:ProcessBackend",
    protocol.RAY: "conc_lab.host.backends.ray_backend:RayBackend",
    protocol.ASYNCIO: "conc_lab.host.backends.asyncio_backend:AsyncioBackend",
    protocol.SUBINTERPRETERS: "conc_lab.host.backends.subinterpreters:SubinterpreterBackend",
}
_instances = {}


class Backend(object):
    """The interface: ``run`` one trial, ``close`` what was kept between trials.

    >>> get("sequential").name
    'sequential'
    """

    name = ""

    def run(self, fn, trial):  # pragma: no cover - interface
        """Run ``fn(task, trial["size"])`` for every task; return the outcome dict."""
        raise NotImplementedError

    def close(self):
        """Release anything kept across trials (a Ray connection, a forkserver)."""


def register(name, target):
    """Register a backend class under ``name``; ``target`` is "module:Class" (imported lazily)."""
    _REGISTRY[name] = target


def names():
    """Registered backend names."""
    return sorted(_REGISTRY)


def get(name):
    """The backend registered as ``name`` (one instance per host)."""
    if name not in _instances:
        if name not in _REGISTRY:
            raise KeyError("unknown backend %r (known: %s)" % (name, ", ".join(names())))
        _instances[name] = import_function(_REGISTRY[name])()
    return _instances[name]


def close_all():
    for backend in _instances.values():
        backend.close()
    _instances.clear()

"""The Ray runtime a sweep's ``ray`` trials use: started once per sweep, or an existing one joined.

Trial hosts are separate processes; they learn the runtime's address from
``CONCLAB_RAY_ADDRESS``, which ``RayRuntime`` sets in this process's environment for as
long as it is open (``TrialHost`` passes the environment on). Which runtime:

1. ``address`` given (``--ray-address``, or ``ray: {address: ...}`` in the config): joined;
2. else ``RAY_ADDRESS`` in the environment (what ``ray job submit`` sets): joined;
3. else this process is already a Ray driver: its cluster is used;
4. else a local runtime is started here: bound to 127.0.0.1 only, no dashboard, one
   logical CPU per core this process may use; it is shut down when the sweep ends.

Ray itself is imported only when a sweep has ``ray`` trials.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

from conc_lab.host import affinity, hygiene, protocol
from conc_lab.host.backends.ray_backend import ADDRESS_ENV, import_ray, mark_loopback


@contextlib.contextmanager
def keep_signal_handlers() -> Iterator[None]:
    """Put back this process's SIGTERM and SIGINT handlers after ``ray.init`` replaced them.

    ``ray.init`` installs a SIGTERM handler that exits at once, so a batch scheduler's
    ``scancel`` would leave the sweep's manifest ``running`` with no resume hint; the
    sweep's own handler (save, then stop) must win.
    """
    main = threading.current_thread() is threading.main_thread()  # only it may set handlers
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)} if main else {}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if handler is not None:
                signal.signal(signum, handler)


class RayRuntime:
    """A Ray runtime for the trial hosts of one sweep; use as a context manager.

    >>> with RayRuntime() as rt:  # doctest: +SKIP
    ...     rt.address, rt.started
    ('127.0.0.1:6379', True)
    """

    def __init__(self, address: str | None = None):
        self.requested = address
        self.address: str | None = None
        self.started = False
        self._previous_env: str | None = None
        self._previous_pids: str | None = None
        self._own_pids: list[int] = []

    def open(self) -> RayRuntime:
        address = self.requested or os.environ.get("RAY_ADDRESS") or None
        if address is None:
            ray = import_ray(None)
            if ray.is_initialized():
                address = ray.get_runtime_context().gcs_address
            else:
                before = set(hygiene.descendants())
                with keep_signal_handlers():
                    context = ray.init(
                        address="local",
                        num_cpus=len(affinity.available_cores()),
                        include_dashboard=False,
                        _node_ip_address="127.0.0.1",
                        log_to_driver=False,
                        configure_logging=False,
                    )
                address = context.address_info["gcs_address"]
                self.started = True
                # What ray.init started here (GCS, raylet and its workers, agents) is the sweep's own:
                # the hosts leave its CPU time out of the foreign share (host.noise).
                self._own_pids = sorted(set(hygiene.descendants()) - before)
        else:
            mark_loopback(address)  # the hosts join it; this process needs no Ray
        self.address = address
        self._previous_env = os.environ.get(ADDRESS_ENV)
        os.environ[ADDRESS_ENV] = address
        self._previous_pids = os.environ.get(protocol.SWEEP_PIDS_ENV)
        if self._own_pids:
            os.environ[protocol.SWEEP_PIDS_ENV] = ",".join(map(str, self._own_pids))
        return self

    def close(self) -> None:
        if self.address is None:
            return
        for name, previous in (
            (ADDRESS_ENV, self._previous_env),
            (protocol.SWEEP_PIDS_ENV, self._previous_pids),
        ):
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous
        if self.started:
            import ray

            ray.shutdown()
            self.started = False
        self.address = None
        self._own_pids = []

    def __enter__(self) -> RayRuntime:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

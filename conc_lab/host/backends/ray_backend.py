"""A trial's tasks as Ray work: ``workers`` Ray actors, each pinned to its own core per task.

Actors, not plain tasks, because a worker must keep its slot: worker ``i`` owns
``cores[i]``, and an actor runs one call at a time, so a worker never runs two task
units at once even though the host keeps two calls queued on it (which hides the round
trip). Ray reuses worker processes and a process KEEPS the affinity an earlier call set
(measured here), so every unit of work pins at its start and restores the process's
original affinity at its end: ``_worker.run_worker``, the loop every backend runs, does
exactly that for one task.

``setup_s`` is the actors' start-up (process, import of the workload) until every one
has answered; ``run_s`` is the work. Actors are placed on the host's own Ray node
(``CONCLAB_RAY_NODE`` when a cluster node runs the trial) and killed after the trial.

The Ray runtime: the runner starts one per sweep and passes its address in
``CONCLAB_RAY_ADDRESS``; without it ``RAY_ADDRESS`` is joined, and failing that the
host starts a private local runtime (127.0.0.1 only, no dashboard).

Ray is imported here only when a ``ray`` trial runs. Python 3.8 syntax.
"""

import os
import sys
import time

from conc_lab.host import hygiene, measure, noise, protocol
from conc_lab.host.backends import Backend
from conc_lab.host.backends._worker import Collector, _short_traceback, run_worker
from conc_lab.host.workload import import_function, lacks, search_first

ADDRESS_ENV = protocol.RAY_ADDRESS_ENV
NODE_ENV = protocol.RAY_NODE_ENV
#: Calls kept queued on each actor: 2 hides the round trip; more would unbalance the last tasks.
PIPELINE_DEPTH = 2
#: Ray resolves 127.0.0.1 to the machine's outward address unless told the cluster is single-host;
#: this is how a loopback-only runtime (and any driver joining it) keeps off the network.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def is_loopback(address):
    host = (address or "").rpartition(":")[0] if ":" in (address or "") else (address or "")
    return host in ("127.0.0.1", "localhost", "::1", "[::1]")


def mark_loopback(address):
    """Tell Ray (here and in child processes) that a loopback cluster is single-host."""
    if address is None or is_loopback(address):
        os.environ.setdefault(LOOPBACK_ENV, "0")


def import_ray(address=None):
    """Import Ray, first marking a loopback cluster as single-host so Ray binds and dials 127.0.0.1."""
    mark_loopback(address)
    import ray

    if os.environ.get(LOOPBACK_ENV) == "0":
        # Already imported by someone else before the variable was set: its constant is read per call.
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    return ray


class _RayWorker(object):
    """One worker: runs task units one call at a time, pinned to its core for each unit."""

    def __init__(self, index, core, ref, size, path, node):
        search_first(path)
        self.index, self.core, self.size, self.node = index, core, size, node
        self.fn = import_function(ref)
        self.user = self.sys = 0.0
        measure.reset_peak_rss()

    def ready(self):
        return os.getpid()

    def run(self, task):
        """Run task unit ``task``; return its worker messages (``done`` or ``error``)."""
        out = []
        pending = [task]
        try:
            user, system = run_worker(
                self.index,
                self.core,
                self.fn,
                self.size,
                lambda: pending.pop() if pending else None,
                out.append,
                self.node,
            )
        except BaseException:  # noqa: B036 - pinning failed: report it as the task's failure
            return [("error", task, _short_traceback())]
        self.user += user
        self.sys += system
        return [m for m in out if m[0] != "ready"]

    def finish(self):
        return ("exit", self.index, self.user, self.sys, measure.peak_rss_bytes())


class RayBackend(Backend):
    name = protocol.RAY

    def __init__(self):
        self.ray = None
        self.actor_cls = None
        self.node = None
        self.connected_here = False  # ray.init was ours to call, so shutdown is ours too
        #: The last run's actors' CPU seconds, read just before they were killed: the raylet reaps
        #: them, so their CPU time leaves no trace once they end, and the run's foreign-CPU figure
        #: would count it as others' (every ray run was flagged "others used 80-100%").
        self.gone_cpu_s = 0.0

    def _connect(self):
        if self.ray is not None:
            return self.ray
        address = os.environ.get(ADDRESS_ENV) or os.environ.get("RAY_ADDRESS") or None
        ray = import_ray(address)
        if not ray.is_initialized():
            self.connected_here = True
            if address:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            else:
                ray.init(
                    address="local",
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    log_to_driver=False,
                    configure_logging=False,
                )
        self.node = os.environ.get(NODE_ENV) or ray.get_runtime_context().get_node_id()
        # num_cpus=0: conc_lab does its own core accounting by pinning; Ray's logical CPUs must not
        # make a workers=2 trial wait on a node that advertises fewer.
        self.actor_cls = ray.remote(num_cpus=0, max_restarts=0)(_RayWorker)
        self.ray = ray
        return ray

    def run(self, fn, trial):
        self.gone_cpu_s = 0.0  # also for a run that returns before starting actors: not the last one's
        try:
            # Ray's threads, processes and environment variables are the host's from now on.
            with hygiene.infrastructure():
                ray = self._connect()
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] != "ray":  # package, not the backend
                raise
            # An interpreter of the python axis without Ray: skipped there, as a workload it cannot import.
            missing = lacks("ray")  # package, not the backend
            return protocol.outcome(status=protocol.STATUS_SKIPPED, error=missing)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        workers, cores, tasks = trial["workers"], trial["cores"], trial["tasks"]
        collector = Collector(tasks, workers)
        strategy = NodeAffinitySchedulingStrategy(node_id=self.node, soft=False)
        setup_start = measure.clock()
        actors = [
            self.actor_cls.options(scheduling_strategy=strategy, name=None).remote(
                i, cores[i] if cores else None, trial["workload"], trial["size"], sys.path, self.node
            )
            for i in range(workers)
        ]
        pids = []
        try:
            try:
                pids = ray.get([a.ready.remote() for a in actors])
                for _ in actors:
                    collector.feed(("ready", None))
            except Exception as exc:
                collector.error = "a Ray worker failed to start: %s" % _first_line(exc)
            run_start = measure.clock()
            setup_s = run_start - setup_start
            if collector.error is None:
                self._dispatch(ray, actors, collector, tasks)
            if collector.error is None:
                try:
                    for msg in ray.get([a.finish.remote() for a in actors]):
                        collector.feed(msg)
                except Exception as exc:
                    collector.error = "a Ray worker died: %s" % _first_line(exc)
            outcome = collector.outcome(setup_s, run_start, cores)
        finally:
            self.gone_cpu_s = noise.cpu_s_of(pids)
            for a in actors:
                try:
                    ray.kill(a, no_restart=True)
                except Exception:
                    pass
            _wait_gone(pids)
        outcome[protocol.TEARDOWN_S] = collector.teardown_s()  # until the actors' processes are gone
        return outcome

    @staticmethod
    def _dispatch(ray, actors, collector, tasks):
        """Hand out task units: each actor keeps PIPELINE_DEPTH calls queued until none are left."""
        next_task = 0
        in_flight = {}  # ObjectRef -> index of the actor running it

        def submit(i):
            nonlocal next_task
            in_flight[actors[i].run.remote(next_task)] = i
            next_task += 1

        for _ in range(PIPELINE_DEPTH):
            for i in range(len(actors)):
                if next_task < tasks:
                    submit(i)
        while in_flight:
            done, _ = ray.wait(list(in_flight), num_returns=1)
            ref = done[0]
            i = in_flight.pop(ref)
            try:
                messages = ray.get(ref)
            except Exception as exc:
                collector.error = "Ray worker %d died: %s" % (i, _first_line(exc))
                return
            for msg in messages:
                collector.feed(msg)
            if collector.error is not None:
                return  # the trial has failed; the finally in run() kills the actors
            if next_task < tasks:
                submit(i)

    def close(self):
        if self.connected_here and self.ray.is_initialized():
            self.ray.shutdown()
        self.ray = None
        self.connected_here = False


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return "%s: %s" % (type(exc).__name__, text[0] if text else "")


def _wait_gone(pids, limit_s=5.0):
    """Wait until the killed actors' processes are gone (they run on this node).

    ``ray.kill`` returns at once; an actor process still shutting down competes for the cores
    of whatever trial runs next (seen: a sequential trial right after a ray trial ran 3x slower).
    """
    deadline = measure.clock() + limit_s
    for pid in pids:
        while measure.clock() < deadline:
            try:
                os.kill(pid, 0)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.005)

"""Sweeps spread over the nodes of a Ray cluster: ``ClusterDispatch``.

A cluster sweep is the local sweep with one more hop. The driver (``runner.sweep``) plans
the runs, writes the store and reports progress exactly as for a local sweep; only where a
run executes changes: ``ClusterDispatch`` sends each run to a ``NodeRunner`` actor, one per
live node, and that actor runs it with the same ``executor.TrialExecutor`` (trial host,
pinning, answer check) that ``conclab sweep`` uses on one machine. So:

* one trial at a time per node (an actor runs one call at a time, and only one call is
  ever in flight per node), so trials never share a node's cores;
* rows come back to the driver, which alone writes the store: no shared filesystem;
* a node that dies loses its actor; the run it held goes back to the front of the queue
  and runs again on another node. A row reaches the driver only from a completed call,
  so nothing is doubled, and nothing leaves the queue until its row is in, so nothing is lost;
* nodes that join while the sweep runs are put to work.

Ray is Ray's: no scheduler, queue or RPC of our own beyond this dispatch loop. This module
depends on the executor and the dispatch interface, never on the driver.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Iterator

from conc_lab import events, schema
from conc_lab.dispatch import Dispatch, Skip
from conc_lab.events import EventHandler
from conc_lab.executor import TrialExecutor, trial_row
from conc_lab.host import protocol
from conc_lab.host.backends.ray_backend import import_ray
from conc_lab.matrix import Trial
from conc_lab.plan import Run

#: How often the driver looks for nodes that joined, in seconds.
NODE_POLL_S = 2.0
#: A run whose node is lost this many times is recorded as failed rather than retried forever.
MAX_ATTEMPTS = 3
#: Actors that die on a node that still looks alive (a broken install there) before it is dropped.
MAX_NODE_FAILURES = 3
#: How long to wait for a first (or replacement) live node before giving up.
NO_NODE_TIMEOUT_S = 60.0


class ClusterError(RuntimeError):
    """The cluster cannot run the sweep (unreachable, or no live node left)."""


class NodeRunner:
    """Runs trial runs on its node with the local executor; one per node, one call at a time."""

    def __init__(
        self,
        sweep_name: str,
        sweep_id: str,
        affinity_mode,
        timeout_s: float,
        search_path: list[str],
        noise_limits=None,
    ):
        import ray

        context = ray.get_runtime_context()
        self.node_id = context.get_node_id()
        # The node's ray trials join this cluster and stay on this node (see ray_backend).
        os.environ[protocol.RAY_ADDRESS_ENV] = context.gcs_address
        os.environ[protocol.RAY_NODE_ENV] = self.node_id
        path = list(dict.fromkeys(list(search_path) + [os.getcwd()]))
        self.executor = TrialExecutor(
            sweep_name,
            sweep_id,
            affinity_mode,
            timeout_s,
            path,
            node_id=self.node_id,
            noise_limits=noise_limits,
        )

    def execute(self, params: dict, repeat: int, warmup: bool = False) -> tuple[dict, float]:
        """The run's row, and the seconds this node spent inside its trial host for it."""
        before = self.executor.measured_s
        row = self.executor.execute(Trial(**params), repeat, warmup)
        return row, self.executor.measured_s - before

    def close(self) -> None:
        self.executor.close()


class ClusterDispatch(Dispatch):
    """Runs a sweep's runs on the nodes of the Ray cluster at ``address``, one at a time per node.

    ``max_nodes`` caps the nodes used. ``open`` connects (``ClusterError`` when it cannot);
    ``emit`` hears ``NodeJoined``, ``NodeLost`` and ``Warned``; ``close`` stops the node
    runners (also early: fail-fast, Ctrl-C).

    >>> with_cluster = ClusterDispatch("auto", sweep_name="cpu", sweep_id="s", affinity_mode="compact",
    ...                                timeout_s=60, search_path=["."])  # doctest: +SKIP
    """

    def __init__(
        self,
        address: str,
        *,
        sweep_name: str,
        sweep_id: str,
        affinity_mode,
        timeout_s: float,
        search_path: list[str],
        max_nodes: int | None = None,
        noise_limits=None,
    ):
        self.address, self.max_nodes = address, max_nodes
        self.sweep_name, self.sweep_id = sweep_name, sweep_id
        self._actor_args = (sweep_name, sweep_id, affinity_mode, timeout_s, search_path, noise_limits)
        self.emit: EventHandler = events.ignore
        self.ray = None
        self._connected_here = False
        self.actors: dict[str, object] = {}  # node id -> its NodeRunner
        self.hostnames: dict[str, str] = {}
        self.busy: dict[object, tuple[str, Run, int]] = {}  # ObjectRef -> (node, run, attempt)
        self.failures: dict[str, int] = {}
        self.dropped: set[str] = set()
        self.nodes_used = 0
        self.measured_total_s = 0.0  # summed over nodes

    @property
    def measured_s(self) -> float:
        # Nodes run side by side: their trial time, shared out over them, is what the wall time covers.
        return self.measured_total_s / max(self.nodes_used, 1)

    def open(self, trials: list[Trial], emit: EventHandler) -> dict[str, tuple[str, str]]:
        self.emit = emit
        started = time.perf_counter()
        try:
            self.ray = ray = import_ray(self.address)
        except ImportError as exc:
            raise ClusterError(
                f"--cluster {self.address}: needs ray, which cannot be imported ({exc})"
            ) from None
        self._connected_here = not ray.is_initialized()
        if self._connected_here:
            try:
                ray.init(address=self.address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                self._connected_here = False
                raise ClusterError(
                    f"--cluster {self.address}: cannot connect to a Ray cluster there ({exc})"
                ) from None
        self._node_cls = ray.remote(num_cpus=0, max_restarts=0, max_concurrency=1)(NodeRunner)
        self.setup_s = time.perf_counter() - started
        return {}

    def results(self, runs: Iterable[Run], skip: Skip) -> Iterator[tuple[Run, dict | None]]:
        pending: deque[tuple[Run, int]] = deque((run, 0) for run in runs)
        last_poll, no_node_since = -1e9, None
        while pending or self.busy:
            now = time.monotonic()
            if now - last_poll >= NODE_POLL_S or not self.actors:
                self._refresh_nodes()
                last_poll = now
            if not self.actors:
                no_node_since = no_node_since or now
                if now - no_node_since > NO_NODE_TIMEOUT_S:
                    raise ClusterError(
                        f"--cluster {self.address}: no live node to run on for {NO_NODE_TIMEOUT_S:g} s"
                    )
                time.sleep(0.5)
                continue
            no_node_since = None
            yield from self._send(pending, skip)
            if self.busy:
                yield from self._collect(pending)

    def _send(self, pending: deque, skip: Skip) -> Iterator[tuple[Run, None]]:
        """Give every idle node its next run; yield the runs skipped on the way."""
        busy_nodes = {entry[0] for entry in self.busy.values()}
        for nid in [n for n in self.actors if n not in busy_nodes]:
            while pending:
                run, attempt = pending.popleft()
                if skip(run.trial):
                    yield run, None
                    continue
                ref = self.actors[nid].execute.remote(run.trial.params(), run.repeat, run.warmup)
                self.busy[ref] = (nid, run, attempt)
                break

    def _collect(self, pending: deque) -> Iterator[tuple[Run, dict]]:
        """Wait a while for a finished call; yield its row, or requeue its run if its node was lost."""
        from ray.exceptions import RayActorError

        done, _ = self.ray.wait(list(self.busy), num_returns=1, timeout=NODE_POLL_S)
        for ref in done:
            nid, run, attempt = self.busy.pop(ref)
            try:
                row, measured = self.ray.get(ref)
            except RayActorError as exc:
                why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                self._lose(nid, why)
                if attempt + 1 >= MAX_ATTEMPTS:
                    yield run, self._lost_row(run, attempt + 1, why)
                else:
                    self.emit(events.Warned(f"node {nid[:8]} lost ({why}); its run goes to another node"))
                    pending.appendleft((run, attempt + 1))
                continue
            self.measured_total_s += measured
            yield run, row

    def _refresh_nodes(self) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        for node in self.ray.nodes():
            nid = node["NodeID"]
            if not node["Alive"] or nid in self.actors or nid in self.dropped:
                continue
            if self.max_nodes is not None and len(self.actors) >= self.max_nodes:
                break
            strategy = NodeAffinitySchedulingStrategy(node_id=nid, soft=False)
            self.actors[nid] = self._node_cls.options(scheduling_strategy=strategy).remote(*self._actor_args)
            self.hostnames[nid] = node.get("NodeManagerHostname") or node.get("NodeManagerAddress") or "?"
            self.nodes_used += 1
            self.emit(events.NodeJoined(nid, self.hostnames[nid]))

    def _lose(self, nid: str, why: str) -> None:
        actor = self.actors.pop(nid, None)
        if actor is not None:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:
                pass
        self.failures[nid] = self.failures.get(nid, 0) + 1
        alive = any(n["NodeID"] == nid and n["Alive"] for n in self.ray.nodes())
        if not alive or self.failures[nid] >= MAX_NODE_FAILURES:
            self.dropped.add(nid)
        self.emit(events.NodeLost(nid, self.hostnames.get(nid, "?"), why))

    def _lost_row(self, run: Run, attempts: int, why: str) -> dict:
        error = f"its node was lost {attempts} times (last: {why})"
        return trial_row(run.trial, run.repeat, self.sweep_id, self.sweep_name, schema.FAILED, error)

    def skipped_row(self, run: Run, reason: str, status: str = schema.SKIPPED) -> dict:
        return trial_row(run.trial, run.repeat, self.sweep_id, self.sweep_name, status, reason)

    def close(self) -> None:
        if self.ray is None:
            return
        started = time.perf_counter()
        try:  # trial hosts exit cleanly first; the kills then take what is left
            closing = [actor.close.remote() for actor in self.actors.values()]
            self.ray.wait(closing, num_returns=len(closing), timeout=10)
        except Exception:
            pass
        for actor in self.actors.values():
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:
                pass
        self.actors.clear()
        if self._connected_here:
            self.ray.shutdown()
        self.ray = None
        self.teardown_s += time.perf_counter() - started

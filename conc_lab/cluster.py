"""Sweeps spread over the nodes of a Ray cluster, and deterministic shards for batch schedulers.

A cluster sweep is the local sweep with one more hop. The driver (``runner.sweep``) plans
the runs, writes the store and reports progress exactly as for a local sweep; only where a
run executes changes: ``run_on_cluster`` sends each (trial, repeat) to a ``NodeRunner``
actor, one per live node, and that actor runs it with the same ``runner.TrialExecutor``
(trial host, pinning, answer check) that ``conclab sweep`` uses on one machine. So:

* one trial at a time per node (an actor runs one call at a time, and only one call is
  ever in flight per node), so trials never share a node's cores;
* rows come back to the driver, which alone writes the store: no shared filesystem;
* a node that dies loses its actor; the run it held goes back to the front of the queue
  and runs again on another node. A row reaches the driver only from a completed call,
  so nothing is doubled, and nothing leaves the queue until its row is in, so nothing is lost;
* nodes that join while the sweep runs are put to work.

Ray is Ray's: no scheduler, queue or RPC of our own beyond this dispatch loop.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping

from conc_lab import events, schema
from conc_lab.events import EventHandler
from conc_lab.host import protocol
from conc_lab.host.backends.ray_backend import import_ray
from conc_lab.matrix import Trial

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


def parse_shard(text: str, environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``"3/10"`` -> (3, 10): the third of ten slices, counted from 1.

    ``"auto"`` is this SLURM array task's slice, from ``SLURM_ARRAY_TASK_ID`` and the array's
    ``SLURM_ARRAY_TASK_MIN`` with ``SLURM_ARRAY_TASK_COUNT`` (or ``_MAX`` and ``_STEP``), so an
    array job script needs no arithmetic: ``--array=0-3`` and ``--array=1-4`` both give 1/4 .. 4/4.

    >>> parse_shard("3/10")
    (3, 10)
    >>> parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"})
    (3, 4)
    """
    if str(text).strip().lower() == "auto":
        return _slurm_array_shard(os.environ if environ is None else environ)
    k, sep, n = str(text).partition("/")
    try:
        k_i, n_i = int(k), int(n)
    except ValueError:
        k_i = n_i = 0
    if not sep or n_i < 1 or not 1 <= k_i <= n_i:
        raise ValueError(f"--shard: must be K/N with 1 <= K <= N or auto, e.g. 3/10, got {text!r}")
    return k_i, n_i


def _slurm_array_shard(environ: Mapping[str, str]) -> tuple[int, int]:
    """(K, N) of this SLURM array task; ValueError naming the variable when it cannot tell."""
    get = environ.get
    if get("SLURM_ARRAY_TASK_ID") is None:
        raise ValueError("--shard auto: not a SLURM array task (SLURM_ARRAY_TASK_ID is unset); give K/N")
    try:
        task, low = int(get("SLURM_ARRAY_TASK_ID")), int(get("SLURM_ARRAY_TASK_MIN", ""))
        step = int(get("SLURM_ARRAY_TASK_STEP") or 1)
        high = int(get("SLURM_ARRAY_TASK_MAX") or low + (int(get("SLURM_ARRAY_TASK_COUNT", "")) - 1) * step)
        count = int(get("SLURM_ARRAY_TASK_COUNT") or (high - low) // step + 1)
    except ValueError:
        raise ValueError(
            "--shard auto: SLURM_ARRAY_TASK_ID, _MIN and _COUNT (or _MAX) must be set, as integers; give K/N"
        ) from None
    k, off = divmod(task - low, step)
    # An index list like --array=1,5,7 has no stride that maps every index to a slice.
    if off or not 0 <= k < count or (high - low) // step + 1 != count:
        raise ValueError(
            f"--shard auto: array index {task} is not one of {count} evenly spaced indices from {low} "
            "(use --array=1-N, or give K/N)"
        )
    return k + 1, count


def shard_trials(trials: Iterable[Trial], shard: tuple[int, int]) -> list[Trial]:
    """The K-th of N slices of ``trials``: every N-th trial in matrix order, starting at the K-th.

    Deterministic (matrix order is), disjoint and complete over K = 1..N, and striding
    spreads every backend and size over all shards so they take similar times.

    >>> [t for t in shard_trials(list("abcdefg"), (2, 3))]
    ['b', 'e']
    """
    k, n = shard
    return [t for i, t in enumerate(trials) if i % n == k - 1]


class NodeRunner:
    """Runs trial runs on its node with the local runner; one per node, one call at a time."""

    def __init__(
        self,
        sweep_name: str,
        sweep_id: str,
        affinity_mode,
        timeout_s: float,
        search_path: list[str],
    ):
        import ray

        from conc_lab.runner import TrialExecutor

        context = ray.get_runtime_context()
        self.node_id = context.get_node_id()
        # The node's ray trials join this cluster and stay on this node (see ray_backend).
        os.environ[protocol.RAY_ADDRESS_ENV] = context.gcs_address
        os.environ[protocol.RAY_NODE_ENV] = self.node_id
        path = list(dict.fromkeys(list(search_path) + [os.getcwd()]))
        self.executor = TrialExecutor(
            sweep_name, sweep_id, affinity_mode, timeout_s, path, node_id=self.node_id
        )

    def execute(self, params: dict, repeat: int) -> tuple[dict, float]:
        """The run's row, and the seconds this node spent inside its trial host for it."""
        before = self.executor.measured_s
        row = self.executor.execute(Trial(**params), repeat)
        return row, self.executor.measured_s - before

    def close(self) -> None:
        self.executor.close()


def run_on_cluster(  # noqa: C901 -- being split (#11)
    address: str,
    runs: Iterable[tuple[Trial, int]],
    *,
    sweep_name: str,
    sweep_id: str,
    affinity_mode,
    timeout_s: float,
    search_path: list[str],
    skip: Callable[[Trial], bool] = lambda trial: False,
    on_event: EventHandler | None = None,
    max_nodes: int | None = None,
    stats: dict | None = None,
) -> Iterator[tuple[Trial, int, dict | None]]:
    """Run ``runs`` on the cluster at ``address``; yield (trial, repeat, row) as each finishes.

    ``skip(trial)`` is asked just before a run is sent; a skipped run is yielded with row
    None. ``on_event`` hears ``NodeJoined``, ``NodeLost`` and ``Warned`` events. ``max_nodes`` caps the nodes used. ``stats``, when given, is kept up to date
    with ``measured_s`` (seconds the nodes spent inside trial hosts, summed) and ``nodes``
    (nodes that took part).
    Closing the generator early (fail-fast, Ctrl-C) stops the node runners.

    >>> for trial, repeat, row in run_on_cluster("auto", runs, sweep_name="cpu", ...):  # doctest: +SKIP
    ...     store_row(row)
    """
    emit = on_event or events.ignore
    stats = stats if stats is not None else {}
    stats.update(measured_s=0.0, nodes=0)
    ray = import_ray(address)
    from ray.exceptions import RayActorError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    connected_here = not ray.is_initialized()
    if connected_here:
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(
                f"--cluster {address}: cannot connect to a Ray cluster there ({exc})"
            ) from None
    node_cls = ray.remote(num_cpus=0, max_restarts=0, max_concurrency=1)(NodeRunner)
    pending: deque[tuple[Trial, int, int]] = deque((t, r, 0) for t, r in runs)
    actors: dict[str, object] = {}  # node id -> its NodeRunner
    hosts: dict[str, str] = {}
    busy: dict[object, tuple[str, Trial, int, int]] = {}  # ObjectRef -> (node, trial, repeat, attempt)
    failures: dict[str, int] = {}
    dropped: set[str] = set()
    last_poll = -1e9
    no_node_since = None

    def refresh_nodes():
        for node in ray.nodes():
            nid = node["NodeID"]
            if not node["Alive"] or nid in actors or nid in dropped:
                continue
            if max_nodes is not None and len(actors) >= max_nodes:
                break
            strategy = NodeAffinitySchedulingStrategy(node_id=nid, soft=False)
            actors[nid] = node_cls.options(scheduling_strategy=strategy).remote(
                sweep_name, sweep_id, affinity_mode, timeout_s, search_path
            )
            hosts[nid] = node.get("NodeManagerHostname") or node.get("NodeManagerAddress") or "?"
            stats["nodes"] += 1
            emit(events.NodeJoined(nid, hosts[nid]))

    def lose(nid: str, why: str):
        actor = actors.pop(nid, None)
        if actor is not None:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                pass
        failures[nid] = failures.get(nid, 0) + 1
        alive = any(n["NodeID"] == nid and n["Alive"] for n in ray.nodes())
        if not alive or failures[nid] >= MAX_NODE_FAILURES:
            dropped.add(nid)
        emit(events.NodeLost(nid, hosts.get(nid, "?"), why))

    try:
        while pending or busy:
            now = time.monotonic()
            if now - last_poll >= NODE_POLL_S or not actors:
                refresh_nodes()
                last_poll = now
            if not actors:
                no_node_since = no_node_since or now
                if now - no_node_since > NO_NODE_TIMEOUT_S:
                    raise ClusterError(
                        f"--cluster {address}: no live node to run on for {NO_NODE_TIMEOUT_S:g} s"
                    )
                time.sleep(0.5)
                continue
            no_node_since = None
            busy_nodes = {entry[0] for entry in busy.values()}
            for nid in [n for n in actors if n not in busy_nodes]:
                while pending:
                    trial, repeat, attempt = pending.popleft()
                    if skip(trial):
                        yield trial, repeat, None
                        continue
                    ref = actors[nid].execute.remote(trial.params(), repeat)
                    busy[ref] = (nid, trial, repeat, attempt)
                    break
            if not busy:
                continue
            done, _ = ray.wait(list(busy), num_returns=1, timeout=NODE_POLL_S)
            for ref in done:
                nid, trial, repeat, attempt = busy.pop(ref)
                try:
                    row, measured = ray.get(ref)
                except RayActorError as exc:
                    why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    lose(nid, why)
                    if attempt + 1 >= MAX_ATTEMPTS:
                        yield trial, repeat, _lost_row(trial, repeat, sweep_id, sweep_name, attempt + 1, why)
                    else:
                        emit(events.Warned(f"node {nid[:8]} lost ({why}); its run goes to another node"))
                        pending.appendleft((trial, repeat, attempt + 1))
                    continue
                stats["measured_s"] += measured
                yield trial, repeat, row
    finally:
        try:  # trial hosts exit cleanly first; the kills then take what is left
            closing = [actor.close.remote() for actor in actors.values()]
            ray.wait(closing, num_returns=len(closing), timeout=10)
        except Exception:
            pass
        for actor in actors.values():
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                pass
        if connected_here:
            ray.shutdown()


def _lost_row(trial: Trial, repeat: int, sweep_id: str, name: str, attempts: int, why: str) -> dict:
    from conc_lab.runner import trial_row  # runner imports this module lazily; import back the same way

    return trial_row(
        trial, repeat, sweep_id, name, schema.FAILED, f"its node was lost {attempts} times (last: {why})"
    )

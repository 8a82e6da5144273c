"""Sweeps spread over the nodes of a Ray cluster: ``ClusterDispatch``.

A cluster sweep is the local sweep with one more hop. The driver (``runner.sweep``) plans
the runs, writes the store and reports progress exactly as for a local sweep; only where a
run executes changes: ``ClusterDispatch`` sends each run to a ``NodeRunner`` actor, one per
live node, and that actor runs it with the same ``executor.TrialExecutor`` (trial host,
pinning, answer check) that ``conclab sweep`` uses on one machine. So:

* one trial at a time per node (an actor runs one call at a time, and only one call is
  ever in flight per node), so trials never share a node's cores;
* nodes that share a machine (the same kernel boot id: pods, containers, or several
  ``ray start`` on one host) share its cores: each trial is given cores no trial running
  beside it holds, and waits for them when there are none (``CorePool``); freed cores go to
  the node that has waited longest, so with more nodes than cores every node still takes part;
* rows come back to the driver, which alone writes the store: no shared filesystem;
* a node that dies loses its actor; the run it held goes back to the front of the queue
  and runs again on another node. A node whose actor died is given no new one until Ray
  says whether it is dead (Ray lists a killed node alive for some seconds), so one dead
  node costs its run one attempt, not two. A row reaches the driver only from a completed call,
  so nothing is doubled, and nothing leaves the queue until its row is in, so nothing is lost;
* nodes that join while the sweep runs are put to work.

Ray is Ray's: no scheduler, queue or RPC of our own beyond this dispatch loop. This module
depends on the executor and the dispatch interface, never on the driver.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from conc_lab import events, schema
from conc_lab.events import EventHandler
from conc_lab.host import protocol
from conc_lab.host.backends.ray_backend import import_ray
from conc_lab.plan.matrix import Trial
from conc_lab.plan.runs import Run
from conc_lab.run.dispatch import Dispatch, Skip
from conc_lab.run.executor import ExecutorSettings, RunResult, trial_row
from conc_lab.run.node_runner import NodeRunner
from conc_lab.run.nodes import CorePool, Nodes, first_line
from conc_lab.run.ray_runtime import keep_signal_handlers

#: How often the driver looks for nodes that joined, in seconds.
NODE_POLL_S = 2.0
#: A run whose node is lost this many times is recorded as failed rather than retried forever.
MAX_ATTEMPTS = 3
#: How long to wait for a first (or replacement) live node before giving up.
NO_NODE_TIMEOUT_S = 60.0
#: How far down the queue a node looks for a run whose cores are free (keeps a send O(1)).
LOOKAHEAD = 64
#: How long the check that something listens at a cluster's address waits for an answer.
CONNECT_TIMEOUT_S = 5.0


class ClusterError(RuntimeError):
    """The cluster cannot run the sweep (unreachable, or no live node left)."""


#: What Ray prints when the cluster wants a token this side does not send, or not this one.
AUTH_REFUSED = ("Unauthenticated", "InvalidAuthToken", "authentication token")


def connect_error(address: str, exc: BaseException, ray_said: str = "", environ=os.environ) -> str:
    """One line saying why ``ray.init(address)`` failed: token authentication named, with its fix.

    >>> said = "gcs_client.cc:210: Unauthenticated: InvalidAuthToken"
    >>> connect_error("h:6379", ConnectionError("Failed to connect"), said, {}).split(":", 2)[2][:52]
    ' the cluster wants a Ray auth token (token authentic'
    """
    if any(mark in ray_said or mark in str(exc) for mark in AUTH_REFUSED):
        if environ.get("RAY_AUTH_MODE", "").lower() != "token":
            return (
                f"--cluster {address}: the cluster wants a Ray auth token (token authentication is on "
                "there) and none is sent from here: export RAY_AUTH_MODE=token, with the head's "
                "~/.ray/auth_token copied here (or RAY_AUTH_TOKEN_PATH)"
            )
        return (
            f"--cluster {address}: the cluster refused this side's Ray auth token: copy the head's "
            "~/.ray/auth_token here (or point RAY_AUTH_TOKEN_PATH at it)"
        )
    return f"--cluster {address}: cannot connect to a Ray cluster there ({first_line(exc)})"


def missing_token(address: str, environ=os.environ, home: Path | None = None) -> str | None:
    """One line when ``RAY_AUTH_MODE=token`` is set and no Ray auth token is here, else None.

    Checked before Ray is imported: given no token, ``ray.init`` writes a new random
    ``~/.ray/auth_token`` (which no head shares) and may start a local runtime.

    >>> missing_token("h:6379", {"RAY_AUTH_MODE": "token"}, home=Path("/nonexistent"))[:60]
    '--cluster h:6379: RAY_AUTH_MODE=token is set, but no Ray aut'
    >>> missing_token("h:6379", {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "x"}) is None
    True
    """
    if environ.get("RAY_AUTH_MODE", "").lower() != "token" or environ.get("RAY_AUTH_TOKEN"):
        return None
    named = environ.get("RAY_AUTH_TOKEN_PATH")
    path = Path(named) if named else (home or Path.home()) / ".ray" / "auth_token"
    if path.is_file():
        return None
    where = f"RAY_AUTH_TOKEN_PATH={named} does not exist" if named else f"{path} does not exist"
    return (
        f"--cluster {address}: RAY_AUTH_MODE=token is set, but no Ray auth token is here ({where}): "
        "copy the head's ~/.ray/auth_token to this machine (or point RAY_AUTH_TOKEN_PATH at it)"
    )


#: Set in the environment of a driver that ``ray job submit`` started.
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def results_root(out: Path, environ=os.environ, home: Path | None = None) -> tuple[Path, str | None]:
    """Where a sweep writes given ``--out``, and a warning when that is not ``out`` itself.

    Inside a ``ray job submit`` job the working directory is Ray's temporary copy of
    ``--working-dir`` on the head, which Ray replaces or deletes: a relative ``--out`` there is
    taken under the home folder instead, and said so; an absolute one is kept.

    >>> results_root(Path("results"), {})
    (PosixPath('results'), None)
    >>> results_root(Path("results"), {RAY_JOB_ENV: "{}"}, home=Path("/home/u"))[0]
    PosixPath('/home/u/results')
    """
    if RAY_JOB_ENV not in environ or out.is_absolute():
        return out, None
    moved = (home or Path.home()) / out
    return moved, (
        f"--out {out} is relative, and this sweep runs inside a Ray job, whose working directory is "
        f"Ray's temporary copy: results go to {moved} (give an absolute --out to choose)"
    )


@contextlib.contextmanager
def _stderr_to(file) -> Iterator[None]:
    """Send file descriptor 2 (where Ray's C++ core writes) to ``file`` for a while."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(file.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


class ClusterDispatch(Dispatch):
    """Runs a sweep's runs on the nodes of the Ray cluster at ``address``, one at a time per node.

    ``settings``: the sweep's ``ExecutorSettings``, passed whole to every node's runner.
    ``max_nodes`` caps the nodes used. ``open`` connects (``ClusterError`` when it cannot);
    ``emit`` hears ``NodeJoined``, ``NodeLost`` and ``Warned``; ``close`` stops the node
    runners (also early: fail-fast, Ctrl-C).

    >>> with_cluster = ClusterDispatch("auto", ExecutorSettings("cpu", "s"))  # doctest: +SKIP
    """

    def __init__(self, address: str, settings: ExecutorSettings, max_nodes: int | None = None):
        self.address, self.max_nodes, self.settings = address, max_nodes, settings
        self.emit: EventHandler = events.ignore
        self.ray = None
        self.nodes: Nodes | None = None
        self._connected_here = False
        self.busy: dict[object, tuple[str, Run, int, list[int]]] = {}  # ref -> (node, run, attempt, cores)
        self.pool = CorePool(settings.affinity_mode)
        self.measured_total_s = 0.0  # summed over nodes
        self.inside_total_s = 0.0  # the runs' own windows in it (their rows'), summed likewise
        self._unhush = None  # gives Ray's error channel its printer back (see _hush_error_channel)

    @property
    def measured_s(self) -> float:
        # Nodes run side by side: their trial time, shared out over them, is what the wall time covers.
        return self.measured_total_s / max(self.nodes.used if self.nodes else 0, 1)

    @property
    def inside_s(self) -> float:
        return self.inside_total_s / max(self.nodes.used if self.nodes else 0, 1)

    def open(self, trials: list[Trial], emit: EventHandler) -> dict[str, tuple[str, str]]:
        started = time.perf_counter()
        why = unreachable(self.address)
        if why is not None:  # ray.init would retry for minutes, then may join another cluster
            raise ClusterError(f"--cluster {self.address}: {why}")
        try:
            ray = import_ray(self.address)
        except ImportError as exc:
            raise ClusterError(
                f"--cluster {self.address}: needs ray, which cannot be imported ({exc})"
            ) from None
        self._connected_here = not ray.is_initialized()
        if self._connected_here:
            _connect(ray, self.address)
        self._unhush = _hush_error_channel()
        self.attach(ray, ray.remote(num_cpus=0, max_restarts=0, max_concurrency=1)(NodeRunner), emit)
        self.setup_s = time.perf_counter() - started
        return {}

    def attach(self, ray, runner_cls, emit: EventHandler) -> None:
        """Run through ``ray`` (the module, connected), placing ``runner_cls`` actors on the nodes."""
        self.ray, self.emit = ray, emit
        self.nodes = Nodes(ray, runner_cls, (self.settings,), self.max_nodes, emit)

    def results(self, runs: Iterable[Run], skip: Skip) -> Iterator[tuple[Run, RunResult]]:
        pending: deque[tuple[Run, int]] = deque((run, 0) for run in runs)
        last_poll, no_node_since = -1e9, None
        nodes = self.nodes
        while pending or self.busy:
            now = time.monotonic()
            if now - last_poll >= NODE_POLL_S or not nodes.actors:
                nodes.refresh()
                last_poll = now
            if not nodes.actors:
                refused = nodes.refusal()
                if refused is not None:  # another conc_lab on every node: waiting cannot help
                    raise ClusterError(f"--cluster {self.address}: no node can run this sweep: {refused}")
                no_node_since = no_node_since or now
                if now - no_node_since > NO_NODE_TIMEOUT_S:
                    raise ClusterError(
                        f"--cluster {self.address}: no live node to run on for {NO_NODE_TIMEOUT_S:g} s"
                    )
                time.sleep(0.5)
                continue
            no_node_since = None
            yield from self._send(pending, skip)
            if self.busy or nodes.probing:
                yield from self._collect(pending)

    def _send(self, pending: deque, skip: Skip) -> Iterator[tuple[Run, RunResult]]:
        """Give every idle node, longest idle first, the first queued run whose cores are free;
        yield skipped runs."""
        for nid in self.nodes.idle({entry[0] for entry in self.busy.values()}):
            machine, allowed = self.nodes.where[nid]
            i = 0
            while i < min(len(pending), LOOKAHEAD):
                run, attempt = pending[i]
                said = skip(run.trial)
                if said is not None:
                    del pending[i]
                    yield run, self._not_run(run, *said)
                    continue
                cores = self.pool.take(machine, allowed, run.trial.workers)
                if cores is None:  # held by trials on nodes beside this one: try a smaller trial
                    i += 1
                    continue
                del pending[i]
                ref = self.nodes.actors[nid].execute.remote(run.trial.params(), run.repeat, run.warmup, cores)
                self.busy[ref] = (nid, run, attempt, cores)
                break

    def _collect(self, pending: deque) -> Iterator[tuple[Run, RunResult]]:
        """Wait a while for a finished call; yield its result, or requeue its run if its node was lost."""
        nodes = self.nodes
        done, _ = self.ray.wait([*self.busy, *nodes.probing], num_returns=1, timeout=NODE_POLL_S)
        for ref in done:
            if ref in nodes.probing:
                nodes.placed(ref)
                continue
            nid, run, attempt, cores = self.busy.pop(ref)
            self.pool.give(nodes.where[nid][0], cores)
            nodes.idle_since[nid] = time.monotonic()
            try:
                result, measured = self.ray.get(ref)
            except self.ray.exceptions.RayActorError as exc:
                why = first_line(exc)
                nodes.lose(nid, why)
                if attempt + 1 >= MAX_ATTEMPTS:
                    error = f"its node was lost {attempt + 1} times (last: {why})"
                    yield run, self._not_run(run, schema.FAILED, error, skipped=False)
                else:
                    self.emit(events.Warned(f"node {nid[:8]} lost ({why}); its run goes to another node"))
                    pending.appendleft((run, attempt + 1))
                continue
            self.measured_total_s += measured
            self.inside_total_s += sum(
                row.get(k) or 0.0 for row in (result.row, *result.redone) for k in protocol.INSIDE_DURATIONS
            )
            yield run, result

    def _not_run(self, run: Run, status: str, why: str, skipped: bool = True) -> RunResult:
        """The result of a run that never reached a trial host: skipped, or its node lost too often."""
        row = trial_row(run.trial, run.repeat, self.settings.sweep_id, self.settings.sweep_name, status, why)
        return RunResult(row, skipped=skipped)

    def close(self) -> None:
        if self.ray is None:
            return
        started = time.perf_counter()
        if self.nodes is not None:
            self.nodes.close()
        if self._connected_here:
            self.ray.shutdown()
        if self._unhush is not None:
            self._unhush()
            self._unhush = None
        self.ray = None
        self.teardown_s += time.perf_counter() - started


def _hush_error_channel() -> Callable[[], None]:
    """Keep what Ray's driver thread prints from its error channel out of the sweep's output.

    When a node dies, Ray publishes "Raylet is terminated ... Last 20 lines of the Raylet logs"
    to every driver, and the driver's listener thread prints it to *stdout* (30-45 lines, at any
    time, even minutes later). The sweep tells a lost node itself (``NodeLost``) and a lost call
    is rerun, so these lines say nothing the user needs. Ray has no switch for that thread: its
    printer is swapped for one that drops those messages (``pid`` "raylet"), until ``close``.
    Returns what puts the printer back.
    """
    worker = sys.modules.get("ray._private.worker")
    printer = getattr(worker, "print_to_stdstream", None)
    if printer is None:  # another Ray: nothing known to hush
        return lambda: None

    def printed(data, ignore_prefix):
        if data.get("pid") != "raylet":
            printer(data, ignore_prefix)

    worker.print_to_stdstream = printed

    def unhush() -> None:
        worker.print_to_stdstream = printer

    return unhush


def _connect(ray, address: str) -> None:
    """``ray.init(address)``; Ray's own lines while connecting (a score of retries) are read for
    the cause, not shown. ``ClusterError`` with one line when it fails."""
    with tempfile.TemporaryFile() as said, _stderr_to(said), keep_signal_handlers():
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            said.seek(0)
            raise ClusterError(connect_error(address, exc, said.read().decode(errors="replace"))) from None


def unreachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why nothing answers at a ``HOST:PORT`` cluster address, or None when something listens.

    One TCP connection, so a wrong address fails in seconds with its likely cause; ``auto``
    and ``ray://`` addresses are left to Ray.

    >>> unreachable("127.0.0.1:1")
    'connection refused: no Ray head listens there (is `ray start --head` running on that machine, on that port?)'
    """
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return None
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return None
    except ConnectionRefusedError:
        return "connection refused: no Ray head listens there (is `ray start --head` running on that machine, on that port?)"
    except TimeoutError:
        return f"no answer within {timeout_s:.0f} s (a firewall, or the wrong host?)"
    except OSError as exc:  # unknown host name, unreachable network
        return f"cannot reach it ({exc.strerror or exc})"

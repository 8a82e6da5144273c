"""A cluster sweep's nodes as the driver sees them (``Nodes``), and the cores they share (``CorePool``).

``Nodes`` places one ``NodeRunner`` on each live node (up to ``max_nodes``), learns where it
runs (its machine and cores), and forgets a node whose runner died: dropped when Ray says it
is dead, else held back for ``SUSPECT_S`` (Ray lists a killed node alive for some seconds),
so one dead node costs its run one attempt, not two. Ray is reached only through the ``ray``
module it is given, so the driver's rules can be tested with an in-process stand-in.
"""

from __future__ import annotations

import time

import conc_lab
from conc_lab import events, schema
from conc_lab.events import EventHandler
from conc_lab.host import affinity, protocol

#: Actors that die on a node that still looks alive (a broken install there) before it is dropped.
MAX_NODE_FAILURES = 3
#: How long a node whose actor died, but that Ray still lists alive, gets no new actor. Ray
#: notices a dead node after its health checks fail (about 15 s by default).
SUSPECT_S = 30.0


def first_line(exc: BaseException) -> str:
    """
    >>> first_line(RuntimeError("a\\nb")), first_line(KeyError())
    ('a', 'KeyError')
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def version_mismatch(place) -> str | None:
    """Why a node whose runner said ``place`` (``node_runner.NodePlace``) cannot run this sweep, or None.

    Its trial protocol or row schema differs from this driver's: another conc_lab is installed
    there. A runner from before nodes said their versions answers a bare (machine, cores).

    >>> from types import SimpleNamespace as Place
    >>> version_mismatch(Place(protocol=protocol.PROTOCOL_VERSION, schema=schema.SCHEMA_VERSION)) is None
    True
    >>> print(version_mismatch(("boot:x", [0]))[:57])
    refused: its conc_lab is older than this driver's (0.1.0)
    """
    theirs = (getattr(place, "protocol", None), getattr(place, "schema", None))
    ours = (protocol.PROTOCOL_VERSION, schema.SCHEMA_VERSION)
    if theirs == ours:
        return None
    if theirs == (None, None):
        said = f"its conc_lab is older than this driver's ({conc_lab.__version__}) and says no versions"
    else:
        said = (
            f"its conc_lab ({getattr(place, 'conclab', '?')}) speaks trial protocol {theirs[0]} and row "
            f"schema {theirs[1]}, this driver's ({conc_lab.__version__}) {ours[0]} and {ours[1]}"
        )
    return f"refused: {said}; install the same conc_lab on every node"


class Nodes:
    """The node runners of one sweep: placed, probed, and lost.

    ``runner_cls`` is the Ray actor class (``ray.remote(NodeRunner)``); each runner is made with
    ``runner_args``. ``emit`` hears ``NodeJoined`` and ``NodeLost``.
    """

    def __init__(self, ray, runner_cls, runner_args: tuple, max_nodes: int | None, emit: EventHandler):
        self.ray, self.runner_cls, self.runner_args = ray, runner_cls, runner_args
        self.max_nodes, self.emit = max_nodes, emit
        self.actors: dict[str, object] = {}  # node id -> its NodeRunner
        self.hostnames: dict[str, str] = {}
        self.probing: dict[object, str] = {}  # ObjectRef of NodeRunner.where -> node id
        self.where: dict[str, tuple[str, list[int]]] = {}  # node id -> (machine, allowed cores)
        self.failures: dict[str, int] = {}
        self.dropped: set[str] = set()
        self.suspect: dict[str, float] = {}  # node id -> when its actor died while Ray listed it alive
        self.idle_since: dict[str, float] = {}  # node id -> when its runner last became free
        self.refused: dict[str, str] = {}  # node id -> why it is not used (another conc_lab there)
        self.used = 0

    def refresh(self) -> None:
        """Place a runner on every live node that has none (nodes that joined, or came back)."""
        now = time.monotonic()
        for node in self.ray.nodes():
            nid = node["NodeID"]
            if not node["Alive"]:
                if self.suspect.pop(nid, None) is not None:
                    self.dropped.add(nid)
                continue
            if nid in self.actors or nid in self.dropped or now - self.suspect.get(nid, -1e9) < SUSPECT_S:
                continue
            if self.max_nodes is not None and len(self.actors) >= self.max_nodes:
                break
            strategies = self.ray.util.scheduling_strategies
            strategy = strategies.NodeAffinitySchedulingStrategy(node_id=nid, soft=False)
            actor = self.runner_cls.options(scheduling_strategy=strategy).remote(*self.runner_args)
            self.actors[nid] = actor
            self.probing[actor.where.remote()] = nid  # runs are sent once its machine and cores are known
            self.hostnames[nid] = node.get("NodeManagerHostname") or node.get("NodeManagerAddress") or "?"
            self.used += 1
            self.emit(events.NodeJoined(nid, self.hostnames[nid]))

    def placed(self, ref) -> None:
        """A new node runner said where it runs: its node can take runs now."""
        nid = self.probing.pop(ref)
        try:
            place = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            self.lose(nid, first_line(exc))
            return
        why = version_mismatch(place)
        if why is not None:
            self.refuse(nid, why)
            return
        self.where[nid] = (place.machine, list(place.allowed))
        self.idle_since[nid] = time.monotonic()

    def refuse(self, nid: str, why: str) -> None:
        """Use a node no more, for the whole sweep: its conc_lab is not this driver's."""
        self.lose(nid, why)
        self.suspect.pop(nid, None)
        self.dropped.add(nid)
        self.refused[nid] = why

    def refusal(self) -> str | None:
        """Why no node can run the sweep, when every live node was refused (``refuse``); else None."""
        alive = [n["NodeID"] for n in self.ray.nodes() if n["Alive"]]
        if not alive or any(nid not in self.refused for nid in alive):
            return None
        return f"node {self.hostnames.get(alive[0], '?')} {alive[0][:8]}: {self.refused[alive[0]]}"

    def idle(self, busy: set[str]) -> list[str]:
        """Nodes ready for a run and not in ``busy``, the one idle longest first."""
        ready = [n for n in self.actors if n not in busy and n in self.where]
        return sorted(ready, key=lambda n: self.idle_since.get(n, 0.0))

    def lose(self, nid: str, why: str) -> None:
        actor = self.actors.pop(nid, None)
        if actor is not None:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:
                pass
        self.failures[nid] = self.failures.get(nid, 0) + 1
        self.where.pop(nid, None)
        for ref in [r for r, n in self.probing.items() if n == nid]:
            del self.probing[ref]
        alive = any(n["NodeID"] == nid and n["Alive"] for n in self.ray.nodes())
        if not alive or self.failures[nid] >= MAX_NODE_FAILURES:
            self.dropped.add(nid)
        else:  # most likely dead and not yet noticed by Ray: no new actor there for a while
            self.suspect[nid] = time.monotonic()
        self.emit(events.NodeLost(nid, self.hostnames.get(nid, "?"), why))

    def close(self) -> None:
        """Stop every runner: its trial hosts exit cleanly first; the kills then take what is left."""
        try:
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


class CorePool:
    """The cores that running trials hold on each machine, so that nodes sharing one never share a core.

    ``take`` gives a trial the cores it pins to (``workers`` of them, at most the node's), chosen
    among the node's ``allowed`` cores that no running trial on that machine holds, or None
    while too few are free; ``give`` hands them back. An unpinned trial (affinity ``none``)
    holds all of its node's cores: its threads may run on any.

    >>> pool = CorePool("compact")
    >>> pool.take("m", [0, 1], 1), pool.take("m", [0, 1], 1), pool.take("m", [0, 1], 1)
    ([0], [1], None)
    >>> pool.give("m", [0]); pool.take("m", [0, 1], 2), pool.take("m", [0, 1], 1)
    (None, [0])
    """

    def __init__(self, mode):
        self.mode = list(mode) if isinstance(mode, tuple) else mode
        self.held: dict[str, set[int]] = {}

    def take(self, machine: str, allowed: list[int], workers: int) -> list[int] | None:
        held = self.held.setdefault(machine, set())
        if self.mode == "none":
            want = list(allowed)
        elif isinstance(self.mode, list):  # explicit cores: those, whatever the node allows
            want = sorted(set(affinity.plan(self.mode, workers)))
        else:
            free = [c for c in allowed if c not in held]
            k = min(max(workers, 1), len(allowed))
            if len(free) < k:
                return None
            want = affinity.plan(self.mode, k, free)
        if held.intersection(want):
            return None
        held.update(want)
        return want

    def give(self, machine: str, cores: list[int]) -> None:
        self.held.get(machine, set()).difference_update(cores)

"""What runs on each node of a cluster sweep: ``NodeRunner``, the Ray actor ``ClusterDispatch`` places there.

Kept apart from ``cluster`` (the driver's side), and light: every node imports this module when
its runner starts, once per sweep, so it imports the executor and nothing of the driver's
(planning, the store, pandas): on a node that is about a second less before its first trial.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import conc_lab
from conc_lab import schema
from conc_lab.host import affinity, protocol
from conc_lab.plan.matrix import Trial
from conc_lab.run.executor import ExecutorSettings, RunResult, TrialExecutor

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def machine_id() -> str:
    """Which machine this process runs on: the kernel's boot id, else the hostname.

    Ray nodes in pods or containers on one host have hostnames of their own but share the
    kernel, and with it the cores; a boot id is new at every boot of every machine.

    >>> machine_id() == machine_id()
    True
    """
    try:
        return "boot:" + BOOT_ID.read_text().strip()
    except OSError:
        return "host:" + socket.gethostname()


@dataclass(frozen=True)
class NodePlace:
    """What a node runner tells the driver before its first run: where it runs, and what it speaks.

    The driver refuses a node whose conc_lab speaks another trial protocol or row schema
    (``nodes.Nodes.placed``): its rows would not be this sweep's rows.
    """

    machine: str  # ``machine_id``: nodes on one machine share its cores
    allowed: list[int]  # the cores this node may use there
    protocol: int = protocol.PROTOCOL_VERSION
    schema: int = schema.SCHEMA_VERSION
    conclab: str = conc_lab.__version__


class NodeRunner:
    """Runs trial runs on its node with the local executor; one per node, one call at a time.

    ``settings``: the sweep's one ``ExecutorSettings``, the same the local path uses; this
    node's working directory is added to its search path.
    """

    def __init__(self, settings: ExecutorSettings):
        import ray

        context = ray.get_runtime_context()
        self.node_id = context.get_node_id()
        # The node's ray trials join this cluster and stay on this node (see ray_backend).
        os.environ[protocol.RAY_ADDRESS_ENV] = context.gcs_address
        os.environ[protocol.RAY_NODE_ENV] = self.node_id
        self.executor = TrialExecutor(settings.on_node([os.getcwd()]), node_id=self.node_id)
        self.allowed = affinity.available_cores()

    def where(self) -> NodePlace:
        """This node's machine (``machine_id``), the cores it may use there, and its versions."""
        return NodePlace(machine_id(), self.allowed)

    def execute(
        self, params: dict, repeat: int, warmup: bool = False, cores: list[int] | None = None
    ) -> tuple[RunResult, float]:
        """The run's result, and the seconds this node spent inside its trial host for it.

        ``cores``: the cores the driver gave this run (no trial running beside it on this
        machine holds them); the executor pins the trial's workers inside them, this run only.
        """
        within = [c for c in cores or () if c in self.allowed] or None  # explicit cores: the executor's
        before = self.executor.measured_s
        result = self.executor.execute(Trial(**params), repeat, warmup, within)
        return result, self.executor.measured_s - before

    def close(self) -> None:
        self.executor.close()

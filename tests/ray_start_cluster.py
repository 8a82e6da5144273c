"""A real Ray cluster of 2 nodes started with the README's own ``ray start`` lines, on 127.0.0.1.

Not ``ray.cluster_utils``: the head and the second node are each a ``ray start ... --block``
process, as an HPC user runs them, taken from the README's cluster block with HEAD, the ports
and the config put in. What the README's lines do not say and one machine shared with other
work needs is added, and only that: ``--block`` (so each node is one process of ours, stopped
by its PID: SIGTERM makes it take its node's processes down; never ``ray stop``), a private
``--temp-dir`` and private ports. HEAD is this machine's address as Ray sees it, as for a user
(Ray refuses ``ray start --address`` on a loopback-only head), and the dashboard stays on
127.0.0.1, where the README's ``ray job submit`` line, run on the head, reaches it.

``HOME`` is a temporary folder, so ``~/.ray/auth_token`` is this cluster's own: with
``auth=True`` a token is written there before the head starts (Ray then turns token
authentication on, as it does for a user who has the file) and ``RAY_AUTH_MODE=token`` is
exported to every command, as the README says; a real ``~/.ray`` is never read or touched.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from needs import free_port

REPO = Path(__file__).resolve().parent.parent
STARTED = "Ray runtime started"


def readme_cluster_block() -> list[str]:
    """The command lines of the README's cluster block (comments dropped)."""
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    (block,) = [b for b in blocks if "ray start --head" in b and "#SBATCH" not in b]  # not the SLURM job
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line]


def why_not() -> str | None:
    if not sys.platform.startswith("linux"):
        return "ray start tests run on Linux only"
    if not shutil.which("ray", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"):
        return "ray start tests need the `ray` command (pip install 'conc_lab[cluster]')"
    try:
        import aiohttp  # noqa: F401 -- the dashboard's, which `ray job submit` talks to
    except ImportError:
        return "ray start tests need ray[default] for the dashboard (pip install 'conc_lab[cluster]')"
    return None


def _node_ip() -> str:
    """This machine's address as Ray picks it (the route out), without importing Ray here."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("8.8.8.8", 80))  # UDP: no packet is sent
            return s.getsockname()[0]
        except OSError:
            return socket.gethostbyname(socket.gethostname())


class RayStartCluster:
    """Head + one more node, each ``ray start --num-cpus 1``; ``env`` is what commands run with."""

    def __init__(self, auth: bool = False):
        self.auth = auth
        # Short: Ray's Unix socket paths live under the temp dir and must stay under 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="crs-", dir="/tmp"))
        self.home = self.root / "home"
        self.home.mkdir()
        self.port, self.dashboard_port = free_port(), free_port()
        self.ip = _node_ip()
        self.address = f"{self.ip}:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.nodes: list[subprocess.Popen] = []
        self.manager_ports: dict[int, int] = {}  # ray start pid -> its node's node-manager port
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(
            HOME=str(self.home),
            PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])]),
            RAY_USAGE_STATS_ENABLED="0",
        )
        if auth:
            token = self.home / ".ray" / "auth_token"
            token.parent.mkdir()
            token.write_text(secrets.token_hex(32))
            env["RAY_AUTH_MODE"] = "token"
        self.env = env

    def readme_line(self, line: str, config: str | os.PathLike | None = None) -> list[str]:
        """A README line as argv, with HEAD, the ports and (if given) the config put in."""
        line = line.replace("HEAD:6379", self.address).replace("--port 6379", f"--port {self.port}")
        line = line.replace("http://127.0.0.1:8265", self.dashboard)
        if config is not None:
            line = line.replace("configs/cpu.yaml", str(config))
        return shlex.split(line)

    def start(self, timeout_s: float = 240.0, nodes: int = 2) -> RayStartCluster:
        head, join = [line for line in readme_cluster_block() if line.startswith("ray start")]
        for attempt in range(3):
            try:
                self._start_node(head, "head", timeout_s, self._head_extra)
                for n in range(2, nodes + 1):
                    self._start_node(join, f"node{n}", timeout_s, self._node_extra)
                self.wait_nodes(nodes, timeout_s)
                return self
            except RuntimeError:
                # On a loaded machine a head process can miss one of Ray's fixed start-up deadlines,
                # and `ray start --block` then takes the whole node down: start again, fresh ports.
                self._stop_nodes()
                if attempt == 2:
                    self.stop()
                    raise
                self._fresh_head_ports()
            except BaseException:
                self.stop()
                raise
        return self

    def _fresh_head_ports(self) -> None:
        self.port, self.dashboard_port = free_port(), free_port()
        self.address = f"{self.ip}:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"

    def _head_extra(self) -> list[str]:
        return [  # (fresh ports for each try, the dashboard's too: a failed head may still hold them)
            f"--temp-dir={self.root / 't'}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
        ]

    def _node_extra(self) -> list[str]:
        return [f"--dashboard-agent-listen-port={free_port()}", f"--node-manager-port={free_port()}"]

    def _start_node(self, line: str, name: str, timeout_s: float, extra) -> None:
        """Start a node from README ``line``; ``extra()`` gives the added flags."""
        for attempt in range(3):
            try:
                return self._start_node_once(self.readme_line(line), name, timeout_s, extra())
            except RuntimeError as exc:
                # Ray gives a raylet 30 s (fixed) to register; on a loaded 2-core machine that can
                # pass. A user would run the line again; so does this, up to 3 times.
                if "timed out during startup" not in str(exc) or attempt == 2:
                    raise
                self.nodes.pop()
                if name == "head":  # its ports may still be held by what is left of the last try
                    self._fresh_head_ports()

    def _start_node_once(self, argv: list[str], name: str, timeout_s: float, extra: list[str]) -> None:
        log = self.root / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [*argv, "--block", *extra],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,  # a Ctrl-C at the test's terminal is the test's, not the node's
            )
        self.nodes.append(proc)
        for arg in extra:
            if arg.startswith("--node-manager-port="):
                self.manager_ports[proc.pid] = int(arg.split("=", 1)[1])
        deadline = time.monotonic() + timeout_s
        while STARTED not in log.read_text(errors="replace"):
            head_died = name != "head" and self.nodes[0].poll() is not None
            if proc.poll() is not None or head_died or time.monotonic() > deadline:
                head = f"\n--- head:\n{self.tail('head', 15)}" if name != "head" else ""
                raise RuntimeError(f"{' '.join(argv)}: did not start:\n{self.tail(name)}{head}")
            time.sleep(0.5)

    def add_node(self, timeout_s: float = 240.0) -> subprocess.Popen:
        """One more node (the README's join line); its ``ray start --block`` process."""
        join = [line for line in readme_cluster_block() if line.startswith("ray start --address")][0]
        self._start_node(join, f"node{len(self.nodes) + 1}", timeout_s, self._node_extra)
        return self.nodes[-1]

    def remove_node(self, node: subprocess.Popen) -> None:
        """Stop a node ``add_node`` started (SIGTERM to its ``ray start --block``, by PID)."""
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
        try:
            node.wait(60)
        except subprocess.TimeoutExpired:  # its own process group: only what it started
            os.killpg(node.pid, signal.SIGKILL)
            node.wait(10)
        self.nodes.remove(node)

    def raylet_pid(self, node: subprocess.Popen) -> int:
        """The raylet this node's ``ray start`` started (its child, found by PID, not by name)."""
        for child in Path("/proc").glob("[0-9]*"):
            try:
                stat = (child / "stat").read_text()
                cmd = (child / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == node.pid and cmd.endswith(b"/raylet"):
                return int(child.name)
        raise LookupError(f"no raylet under ray start pid {node.pid}")

    def node_id(self, node: subprocess.Popen) -> str:
        """The Ray node id of a node this cluster started (found by its private node-manager port)."""
        port = self.manager_ports[node.pid]
        code = f"""
import json, ray
ray.init(address={self.address!r}, log_to_driver=False, configure_logging=False)
print(json.dumps([n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeManagerPort"] == {port}]))
"""
        result = self.python(code)
        ids = json.loads(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else []
        if len(ids) != 1:
            raise LookupError(f"no live Ray node with node-manager port {port}:\n{result.stderr[-2000:]}")
        return ids[0]

    def python(self, code: str, timeout: float = 120, **env) -> subprocess.CompletedProcess:
        """Run ``code`` in a fresh interpreter with this cluster's environment."""
        return subprocess.run(
            [sys.executable, "-c", code],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def wait_nodes(self, count: int, timeout_s: float = 120.0) -> None:
        code = f"""
import time, ray
ray.init(address={self.address!r}, log_to_driver=False, configure_logging=False)
deadline = time.monotonic() + {timeout_s}
while sum(n["Alive"] for n in ray.nodes()) < {count}:
    assert time.monotonic() < deadline, ray.nodes()
    time.sleep(0.5)
"""
        result = self.python(code, timeout=timeout_s + 60)
        if result.returncode != 0:
            raise RuntimeError(f"cluster: not {count} live nodes:\n{result.stderr[-3000:]}")

    def run(self, argv: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            argv, env=kwargs.pop("env", self.env), capture_output=True, text=True, timeout=timeout, **kwargs
        )

    def tail(self, name: str, lines: int = 30) -> str:
        log = self.root / f"{name}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop every node (``_stop_nodes``) and remove the temporary folder."""
        self._stop_nodes()
        shutil.rmtree(self.root, ignore_errors=True)

    def _stop_nodes(self) -> None:
        """SIGTERM each node's ``ray start --block`` (it takes its processes down), newest first."""
        for proc in reversed(self.nodes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.nodes):
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:  # its own process group: only what it started
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.nodes.clear()

"""A real single-node SLURM (Debian's ``slurm-wlm`` + ``munge``) for the tests, on 127.0.0.1 only.

``SlurmCluster.start()`` brings up ``munged`` (as user munge, with its own key and socket),
``slurmctld`` and ``slurmd -N localhost``, each in the foreground as a child of this process,
with a private ``slurm.conf``, private ports and all state under one temporary folder.
``stop()`` cancels the jobs of this private cluster, then stops exactly the daemons it started,
by PID. ``why_not()`` says why this machine cannot run it (not root, not Debian, a package
missing), for the tests to skip with.

The settings are the ones that made a working single-node cluster with SLURM 22.05 here: a
node of 2 CPUs at 127.0.0.1, ``proctrack/linuxproc`` (no cgroup set-up needed), CPU binding by
``task/affinity``, ``select/cons_tres`` with ``CR_Core_Memory`` (so ``--cpus-per-task=1`` gives each
job one core), no accounting database. Memory is a resource as on most clusters: the node offers
80% of this machine's, a job without ``--mem`` gets its CPUs' share of it, and a job past what it
was given is killed (``jobacct_gather/linux`` with ``OverMemoryKill``, no cgroups needed). The
partition ``TINY_MEM`` gives a job without ``--mem`` only 64 MiB a CPU, as some sites' defaults do.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from needs import free_port

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
PACKAGES = "apt-get install slurm-wlm munge"
TINY_MEM = "tinymem"  # a partition whose default memory per CPU is tiny
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"}


def why_not() -> str | None:
    """Why a real SLURM cannot be started here, or None when it can."""
    if not sys.platform.startswith("linux") or not Path("/etc/debian_version").exists():
        return "real SLURM tests need Debian's slurm-wlm and munge packages (not a Debian system)"
    if os.geteuid() != 0:
        return "real SLURM tests start slurmd, which must run as root (not root here)"
    missing = [p for p in DAEMONS + CLIENTS if not _which(p)]
    if missing:
        return f"real SLURM tests: {', '.join(missing)} not installed ({PACKAGES}; .ci/run does)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return f"real SLURM tests: no 'munge' user (the munge package makes it: {PACKAGES})"
    return None


def _memory_mb() -> int:
    """This machine's memory, in MiB (``MemTotal``)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


class SlurmCluster:
    """One private single-node SLURM; ``env`` is the environment its commands run with."""

    def __init__(self, cpus: int = 2):
        self.cpus = cpus
        self.root = Path(tempfile.mkdtemp(prefix="conclab-slurm-"))
        # munged refuses a socket folder that other users cannot traverse; /tmp's default is 0700.
        self.root.chmod(0o755)
        self.conf = self.root / "slurm.conf"
        self.procs: dict[str, subprocess.Popen] = {}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
        env["SLURM_CONF"] = str(self.conf)
        # Jobs inherit this environment (sbatch --export=ALL): this interpreter's conclab, this tree.
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}:/usr/sbin"
        self.env = env

    # -- start / stop --------------------------------------------------------------------------

    def start(self, timeout_s: float = 60.0) -> SlurmCluster:
        try:
            self._start_munge()
            self._write_conf()
            self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
            self._wait(lambda: self._ok(["scontrol", "ping"], "UP"), "slurmctld answering", timeout_s)
            self._spawn("slurmd", ["slurmd", "-D", "-N", "localhost", "-f", str(self.conf)])
            self._wait(self._node_ready, "node localhost idle", timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Cancel this cluster's jobs, then stop the daemons started here, by PID, newest first."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            jobs = self.run(["squeue", "-h", "-o", "%A"], check=False).stdout.split()
            if jobs:
                self.run(["scancel", *jobs], check=False)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and self.run(["squeue", "-h"], check=False).stdout.strip():
                    time.sleep(0.3)
        for name in reversed(list(self.procs)):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)

    def _start_munge(self) -> None:
        munge = pwd.getpwnam("munge")
        mdir = self.root / "munge"
        mdir.mkdir(mode=0o755)
        key = mdir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        for p in (mdir, key):
            os.chown(p, munge.pw_uid, munge.pw_gid)
        self.munge_socket = mdir / "munge.socket"
        args = ["munged", "-F", f"--socket={self.munge_socket}", f"--key-file={key}"]
        args += [f"--pid-file={mdir}/munged.pid", f"--log-file={mdir}/munged.log", f"--seed-file={mdir}/seed"]
        self._spawn("munged", args, user=munge.pw_uid, group=munge.pw_gid)
        self._wait(self.munge_socket.exists, "munged's socket", 20)

    def _write_conf(self) -> None:
        r = self.root
        memory_mb = _memory_mb() * 4 // 5  # slurmd drains a node that has less than it is said to
        for sub in ("state", "spool", "log"):
            (r / sub).mkdir()
        self.conf.write_text(
            f"""\
ClusterName=conclab
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerParameters=sched_interval=1
MinJobAge=600
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP DefMemPerCPU={memory_mb // self.cpus}
PartitionName={TINY_MEM} Nodes=localhost MaxTime=INFINITE State=UP DefMemPerCPU=64
"""
        )

    def _spawn(self, name: str, args: list[str], **kwargs) -> None:
        log = open(self.root / f"{name}.out", "wb")  # noqa: SIM115 -- the daemon's, closed with it
        args = [_which(args[0]) or args[0], *args[1:]]
        self.procs[name] = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env, **kwargs
        )
        log.close()

    def _wait(self, ready, what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"SLURM: {dead[0]} exited while waiting for {what}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"SLURM: no {what} after {timeout_s:g} s:\n{self.logs()}")

    def _ok(self, args: list[str], needle: str) -> bool:
        result = self.run(args, check=False)
        return result.returncode == 0 and needle in result.stdout

    def _node_ready(self) -> bool:
        states = set(self.run(["sinfo", "-h", "-N", "-o", "%T"], check=False).stdout.split())
        return bool(states) and states <= {"idle", "mixed", "allocated"}  # one line per partition

    def logs(self, lines: int = 15) -> str:
        out = []
        for f in sorted(self.root.glob("*.out")) + sorted(self.root.glob("*/*.log")):
            tail = f.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {f.name}\n" + "\n".join(tail))
        return "\n".join(out)

    # -- using it ------------------------------------------------------------------------------

    def run(self, args: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """A SLURM client command against this cluster (SLURM_CONF set), its output as text."""
        result = subprocess.run(
            [_which(args[0]) or args[0], *args[1:]],
            capture_output=True,
            text=True,
            env=kwargs.pop("env", self.env),
            timeout=kwargs.pop("timeout", 60),
            **kwargs,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: exit {result.returncode}: {result.stderr.strip()}")
        return result

    def sbatch(self, *args: str, cwd: str | os.PathLike | None = None) -> str:
        """Submit; the job id (of the array, for an array job)."""
        out = self.run(["sbatch", "--parsable", *args], cwd=cwd).stdout.strip()
        return out.split(";")[0]

    def jobs(self, job_id: str) -> list[dict[str, str]]:
        """``scontrol show job`` of ``job_id`` (every task of an array), one dict per job."""
        result = self.run(["scontrol", "show", "job", "-o", job_id], check=False)
        jobs = []
        for line in result.stdout.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if fields:
                jobs.append(fields)
        return jobs

    def wait(self, job_id: str, timeout_s: float = 300.0) -> list[dict[str, str]]:
        """Wait until every task of ``job_id`` ended; their ``scontrol`` records."""
        deadline = time.monotonic() + timeout_s
        while True:
            jobs = self.jobs(job_id)
            if jobs and all(j.get("JobState") in TERMINAL for j in jobs):
                return jobs
            if time.monotonic() > deadline:
                states = [(j.get("JobId"), j.get("JobState"), j.get("Reason")) for j in jobs]
                raise TimeoutError(
                    f"SLURM job {job_id} not done after {timeout_s:g} s: {states}\n{self.logs()}"
                )
            time.sleep(0.5)

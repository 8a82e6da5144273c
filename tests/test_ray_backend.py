"""The ray backend on a real Ray cluster (the session's, see conftest): answers, pinning, faults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import conc_lab
from conc_lab.events import RayStarted
from conc_lab.host import affinity
from conc_lab.host.backends.ray_backend import _RayWorker, is_loopback
from conc_lab.plan.matrix import Trial
from conc_lab.run import runner
from conc_lab.run.executor import ExecutorSettings, TrialExecutor
from conc_lab.run.ray_runtime import RayRuntime

pytestmark = pytest.mark.ray

TESTS = str(Path(__file__).resolve().parent)
REPO = Path(TESTS).parent
pinning = pytest.mark.skipif(not affinity.SUPPORTED, reason="no CPU affinity on this platform")

RAY_VS_SEQUENTIAL = """
name: rayvs
repeats: 2
warmup: 0
timeout_s: 60
matrix:
  workload: [experiments.cpu:sum_squares]
  backend: [sequential, ray]
  workers: [1, 2]
  tasks: [6]
  size: [5000]
"""


@pinning
def test_ray_answers_match_sequential_and_tasks_run_on_the_pinned_cores(ray_cluster, tmp_path, write_config):
    events = []
    result = runner.sweep(
        write_config(RAY_VS_SEQUENTIAL),
        tmp_path / "out",
        ray_address=ray_cluster.address,
        on_event=events.append,
    )
    assert result.ok and result.recorded == 3 * 2
    assert (ray_cluster.address, False) in [
        (e.address, e.started) for e in events if isinstance(e, RayStarted)
    ]
    df = conc_lab.load(tmp_path / "out" / "rayvs")
    ray_rows = df[df.backend == "ray"]
    assert len(ray_rows) == 4 and ray_rows["correct"].all()  # same checksum as sequential
    assert (ray_rows["setup_s"] > 0).all() and (ray_rows["run_s"] > 0).all()
    cluster_nodes = {n.node_id for n in ray_cluster.list_all_nodes()}
    for _, row in ray_rows.iterrows():
        records = list(row["task_records"])
        assert sorted(r["task"] for r in records) == list(range(6))
        cores = list(row["cores"])
        for r in records:
            assert r["core"] == cores[r["worker"]]  # worker i is pinned to the trial's i-th core
            assert r["cpu"] == r["core"]  # and the kernel ran the task there
            assert r["node"] in cluster_nodes
        # one Ray worker process per worker slot
        assert len({r["pid"] for r in records}) == row["workers"]
        assert len({r["node"] for r in records}) == 1  # all on the host's own node


@pinning
def test_a_ray_worker_pins_each_task_and_gives_its_process_its_affinity_back(tmp_path):
    before = os.sched_getaffinity(0)
    target = max(before)
    worker = _RayWorker(0, target, "experiments.cpu:sum_squares", 100, [str(REPO)], "node-x")
    messages = worker.run(3)
    assert os.sched_getaffinity(0) == before  # restored, not left pinned
    (kind, task, result, record) = messages[0]
    assert (kind, task, result) == ("done", 3, sum(i * i for i in range(300, 400)))
    assert record[2] == target and record[3] == target and record[5] == "node-x"
    exit_msg = worker.finish()
    assert exit_msg[0] == "exit" and exit_msg[4] > 0  # peak RSS of the worker process


@pytest.mark.parametrize(
    ("workload", "expected"),
    [("raises", "ValueError"), ("exits", "died")],
)
def test_a_failing_ray_task_fails_the_trial_with_the_reason(ray_cluster, workload, expected):
    with (
        RayRuntime(ray_cluster.address),
        TrialExecutor(ExecutorSettings("faults", "t", "compact", timeout_s=60, search_path=[TESTS])) as ex,
    ):
        row = ex.execute(Trial(f"workloads_faulty:{workload}", "ray", 2, tasks=4, size=2000), repeat=0).row
        assert row["status"] == "failed" and expected in row["error"]
        # the host survives a failed ray trial and runs the next one correctly
        good = ex.execute(Trial("workloads_faulty:good", "ray", 2, tasks=4, size=2000), repeat=0).row
        assert good["status"] == "ok" and good["correct"] is True


def test_loopback_addresses_are_recognised():
    assert is_loopback("127.0.0.1:6379") and is_loopback("localhost:1")
    assert not is_loopback("10.0.0.5:6379") and not is_loopback("auto")


def test_without_an_address_a_sweep_starts_a_loopback_runtime_and_stops_it(tmp_path, write_config):
    """The CLI end to end: a local runtime on 127.0.0.1 for the sweep, gone when it ends."""
    config = write_config(RAY_VS_SEQUENTIAL.replace("workers: [1, 2]", "workers: [1]"))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "CONCLAB_RAY_ADDRESS")}
    proc = subprocess.run(
        [sys.executable, "-m", "conc_lab.cli", "sweep", str(config), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stderr.splitlines() if x.startswith("ray: started a local runtime at"))
    address = line.split(" at ", 1)[1].split()[0]
    assert address.startswith("127.0.0.1:")
    # Its processes (GCS, raylet, workers) name that address on their command lines; none remain.
    leftovers = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if address.encode() in cmdline:
            leftovers.append(pid)
    assert not leftovers
    df = conc_lab.load(tmp_path / "out" / "rayvs")
    assert df["correct"].all() and len(df) == 4


def test_a_runtime_the_sweep_starts_is_its_own_in_the_foreign_cpu_share(monkeypatch):
    """#15 item 1: the hosts count the Ray runtime the runner started (GCS, raylet, its workers) as
    the sweep's own, not as other processes taking CPU; the runner's other children stay foreign."""
    from conc_lab.host import hygiene, noise, protocol

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(protocol.SWEEP_PIDS_ENV, raising=False)
    with RayRuntime() as runtime:
        if not runtime.started:
            pytest.skip("this process was already a Ray driver: no runtime was started")
        pids = [int(p) for p in os.environ[protocol.SWEEP_PIDS_ENV].split(",")]
        names = {Path(f"/proc/{p}/comm").read_text().strip() for p in pids if Path(f"/proc/{p}").exists()}
        assert {"gcs_server", "raylet"} <= names, names
        ray_cpu = sum(int(x) for pid in pids for x in hygiene.stat_fields(pid)[11:13])
        assert ray_cpu > 0  # starting Ray took CPU: seen by the hosts as the sweep's, not as noise
        # as a trial host (a child of this runner) sees it: with the runtime, and without it
        code = "from conc_lab.host import noise; print(noise.own_cpu_s(), noise.own_cpu_s({}))"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
        )
        with_ray, without = map(float, out.stdout.split())
        assert with_ray - without >= ray_cpu * noise._TICK_S * 0.99
    assert protocol.SWEEP_PIDS_ENV not in os.environ


def _python_without_ray() -> str | None:
    from conc_lab.machine.interpreters import InterpreterError, resolve

    for version in ("3.8", "3.9", "3.10", "3.12"):
        try:
            exe = resolve(version)
        except InterpreterError:
            continue
        if subprocess.run([exe, "-c", "import ray"], capture_output=True).returncode != 0:
            return version
    return None


def test_a_ray_trial_under_an_interpreter_without_ray_is_skipped_not_failed():
    version = _python_without_ray()
    if version is None:
        pytest.skip("no interpreter without Ray on this machine")
    with TrialExecutor(ExecutorSettings("x", "t", "compact", timeout_s=60)) as ex:
        row = ex.execute(
            Trial("experiments.io:sleep", "ray", 1, tasks=2, size=1, python=version), repeat=0
        ).row
    assert row["status"] == "skipped" and row["error"].startswith("needs ray, which ")
    assert row["python_version"].startswith(version)

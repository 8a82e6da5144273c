"""Co-located nodes, a node killed mid-sweep, and SIGTERM, on the real ``ray start`` cluster.

The two nodes of conftest's ``ray_start`` run on this one machine (the same kernel boot id),
as pods or several ``ray start`` on one host do: their trials must never share a core.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_cluster import SLOW  # the same 16 sleeps, so the added node still has work queued

import conc_lab
from conc_lab.store.layout import sweep_dirs
from conc_lab.store.manifest import read_manifest

pytestmark = [pytest.mark.ray_start, pytest.mark.parametrize("ray_start", ["token-off"], indirect=True)]

CPU = """\
name: colocated
repeats: 1
warmup: 0
timeout_s: 60
affinity: compact
matrix:
  # enough work that every node's runner is up (seconds on a loaded machine) while runs remain;
  # 1- and 2-worker trials mixed, so a node gets grants of one core and of both
  workload: [{workload: experiments.cpu:sum_squares, size: [600000, 600001, 600002, 600003, 600004,
                                                            600005, 600006, 600007]}]
  backend: [sequential, threading]
  workers: [1, 2]
  tasks: [4]
"""
RUNS = 8 * 3  # sequential (1 worker), threading 1 and 2 workers


def _intervals_overlap(a, b) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_three_colocated_nodes_on_two_cores_never_run_two_trials_on_one_core(ray_start, tmp_path):
    """3 nodes, 2 cores, mixed worker counts: from the task records, no two overlapping runs share a
    core. Before, a node planned its cores once per worker count and kept them for the sweep,
    whatever the driver granted later: overlapping runs pinned to one core, 6 in every sweep."""
    third = ray_start.add_node()
    try:
        ray_start.wait_nodes(3)
        (tmp_path / "colocated.yaml").write_text(CPU)
        result = ray_start.run(
            ["conclab", "sweep", "colocated.yaml", "--cluster", ray_start.address, "-q"], cwd=tmp_path
        )
    finally:
        ray_start.remove_node(third)  # the session's cluster goes back to its 2 nodes
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    df = conc_lab.load(tmp_path / "results" / "colocated")
    assert len(df) == RUNS and df["pinned"].all() and df["node_id"].nunique() == 3
    spans = []
    for _, row in df.iterrows():
        start = row["started_at"].timestamp()
        used = {rec["core"] for rec in row["task_records"]}
        assert used == set(row["cores"]) and {rec["cpu"] for rec in row["task_records"]} <= used
        spans.append((start, start + row["run_s"] + (row["setup_s"] or 0), used, row["node_id"]))
    overlapping, shared = 0, []
    for i, a in enumerate(spans):
        for b in spans[i + 1 :]:
            if _intervals_overlap(a, b):
                overlapping += 1
                if a[2] & b[2]:
                    shared.append((a, b))
    assert not shared, f"{len(shared)} overlapping runs share a core: {shared[:3]}"
    assert overlapping  # the nodes did run side by side


DRIVER = """
import json, sys
from conc_lab import events
from conc_lab.run import runner
def show(event):
    if isinstance(event, events.RunFinished):
        print(json.dumps({"row_node": event.row["node_id"]}), flush=True)
    elif isinstance(event, (events.NodeLost, events.NodeJoined)):
        print(json.dumps({type(event).__name__: event.node_id}), flush=True)
result = runner.sweep(sys.argv[1], sys.argv[2], cluster=sys.argv[3], on_event=show)
print(json.dumps({"ok": result.ok, "recorded": result.recorded, "dir": str(result.sweep_dir)}), flush=True)
"""


def test_a_killed_node_costs_its_run_one_attempt_and_its_logs_stay_out(ray_start, tmp_path):
    doomed = ray_start.add_node()
    ray_start.wait_nodes(3)
    doomed_id = ray_start.node_id(doomed)
    (tmp_path / "slow.yaml").write_text(SLOW)
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, "slow.yaml", "results", ray_start.address],
        cwd=tmp_path,
        env=ray_start.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen, killed, other = [], False, []
    for line in proc.stdout:
        if not line.startswith("{"):  # the driver prints only its event lines: anything else is Ray's
            other.append(line)
            continue
        seen.append(json.loads(line))
        if not killed and seen[-1].get("row_node") == doomed_id:
            # Three nodes share 2 cores: the node is running its next trial or waiting for a core
            # (it gets the next freed one); either way the call it gets next is lost with it.
            os.kill(ray_start.raylet_pid(doomed), signal.SIGKILL)
            killed = True
    stderr = proc.stderr.read()
    assert proc.wait(120) == 0, stderr[-3000:]
    assert killed, seen
    final = seen[-1]
    assert final["ok"] and final["recorded"] == 16
    df = conc_lab.load(tmp_path / final["dir"])  # the driver's cwd
    assert len(set(zip(df["trial_id"], df["repeat"]))) == 16 and (df["status"] == "ok").all()
    lost = [e["NodeLost"] for e in seen if "NodeLost" in e]
    assert lost == [doomed_id]  # one dead node, one loss: no second actor placed on it
    joined = [e["NodeJoined"] for e in seen if "NodeJoined" in e]
    assert joined.count(doomed_id) == 1
    ray_lines = [line for line in stderr.splitlines() if ".cc:" in line or "raylet" in line.lower()]
    assert not ray_lines, ray_lines[:5]
    # Ray's driver prints "Raylet is terminated ... Last 20 lines of the Raylet logs" to stdout
    assert not other, other[:5]


SIGTERMED = """\
name: sigtermed
repeats: 1
warmup: 0
timeout_s: 60
matrix:
  workload: [{workload: experiments.io:sleep, size: [400, 401, 402, 403, 404, 405, 406, 407, 408, 409]}]
  backend: [sequential, ray]
  workers: [1]
  tasks: [1]
"""


@pytest.mark.parametrize("where", ["cluster", "local"])
def test_sigterm_on_a_sweep_with_ray_trials_saves_and_says_how_to_resume(ray_start, tmp_path, where):
    (tmp_path / "sigtermed.yaml").write_text(SIGTERMED)
    argv = ["conclab", "sweep", "sigtermed.yaml", "-q"]
    argv += ["--cluster", ray_start.address] if where == "cluster" else []
    proc = subprocess.Popen(
        argv, cwd=tmp_path, env=ray_start.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    results = tmp_path / "results" / "sigtermed"
    deadline = time.monotonic() + 240
    while not any(f.stat().st_size for f in results.glob("*/*-0*")):  # a first row is in (journal or part)
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.2)
    time.sleep(0.3)  # Ray is up in the sweep (it starts or joins before the first run)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out[-3000:]
    assert "SIGTERM received" not in out and "Resume with: conclab sweep sigtermed.yaml --resume" in out
    (sweep_dir,) = sweep_dirs(results)
    assert read_manifest(sweep_dir).state != "running"

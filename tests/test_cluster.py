"""Cluster sweeps on a real 2-node Ray cluster (conftest's ``ray_cluster``), and shards + merge."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
from typer.testing import CliRunner

import conc_lab
from conc_lab.cli import app
from conc_lab.config.document import load_config
from conc_lab.events import NodeJoined, NodeLost, RunFinished, Warned
from conc_lab.plan.matrix import expand
from conc_lab.plan.runs import parse_shard, shard_trials
from conc_lab.run import runner
from conc_lab.store.layout import sweep_dirs
from conc_lab.store.manifest import read_manifest

pytestmark = pytest.mark.ray

SPREAD = """
name: spread
repeats: 2
warmup: 1
timeout_s: 60
matrix:
  workload: [{workload: experiments.io:sleep, size: [60, 61, 62]}]
  backend: [sequential, threading, ray]
  workers: [1, 2]
  tasks: [2]
"""


def _assert_each_run_once(df, planned: int) -> None:
    keys = list(zip(df["trial_id"], df["repeat"]))
    assert len(keys) == len(set(keys)) == planned


def test_a_cluster_sweep_lands_rows_from_both_nodes_each_run_once(ray_cluster, tmp_path, write_config):
    events = []
    result = runner.sweep(
        write_config(SPREAD),
        tmp_path / "out",
        cluster=ray_cluster.address,
        on_event=events.append,
    )
    assert result.ok and result.planned == result.recorded == 15 * 2
    df = conc_lab.load(result.sweep_dir)
    _assert_each_run_once(df, 30)
    assert df["correct"].all() and (df["status"] == "ok").all()
    nodes = {n.node_id for n in ray_cluster.list_all_nodes()}
    assert set(df["node_id"]) == nodes  # both nodes ran trials
    assert df["hostname"].notna().all()
    joined = {e.node_id for e in events if isinstance(e, NodeJoined)}
    assert joined == nodes
    # a node's ray trials ran their tasks on that node
    for _, row in df[df.backend == "ray"].iterrows():
        assert {r["node"] for r in row["task_records"]} == {row["node_id"]}
    # the cluster run is the same local runner: rows are pinned like a local sweep's
    assert df["pinned"].all()


SLOW = """
name: slow
repeats: 1
warmup: 0
timeout_s: 60
matrix:
  # 16 trials: enough that the added node still has work queued after its first row, even when
  # its actor starts late on a loaded machine (with 8 the queue could be empty by then: a flake).
  workload: [{workload: experiments.io:sleep, size: [700, 701, 702, 703, 704, 705, 706, 707,
                                                     708, 709, 710, 711, 712, 713, 714, 715]}]
  backend: [sequential]
  tasks: [1]
"""


@pytest.mark.flaky(reruns=2)  # Ray notices a killed node on its own clock
def test_a_node_killed_mid_sweep_loses_and_doubles_nothing(ray_cluster, tmp_path, write_config):
    doomed = ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    first_row_there = threading.Event()
    events = []

    def on_event(event):
        events.append(event)
        if isinstance(event, RunFinished) and event.row["node_id"] == doomed.node_id:
            first_row_there.set()

    def kill_when_busy():
        # After its first row the node runs its next trial or, three nodes sharing 2 cores, waits
        # for the next freed core (it gets it: longest idle first); either way that call is lost.
        if first_row_there.wait(120):
            time.sleep(0.3)
            ray_cluster.remove_node(doomed, allow_graceful=False)

    killer = threading.Thread(target=kill_when_busy, daemon=True)
    killer.start()
    result = runner.sweep(
        write_config(SLOW), tmp_path / "out", cluster=ray_cluster.address, on_event=on_event
    )
    killer.join(5)
    assert first_row_there.is_set()
    assert result.ok and result.planned == result.recorded == 16
    df = conc_lab.load(result.sweep_dir)
    _assert_each_run_once(df, 16)
    assert (df["status"] == "ok").all()
    lost = [e for e in events if isinstance(e, NodeLost)]
    # Only the killed node is lost. It may be reported more than once: until Ray's control store
    # notices the node is gone it still looks alive, so the driver may try an actor there again.
    assert lost and {e.node_id for e in lost} == {doomed.node_id}
    assert any(isinstance(e, Warned) and "goes to another node" in e.text for e in events)
    survivors = df[df.node_id != doomed.node_id]
    assert len(survivors) >= 1  # the requeued run finished elsewhere


SHARDED = """
name: sharded
repeats: 2
warmup: 0
timeout_s: 30
matrix:
  workload: [{workload: experiments.io:sleep, size: [1, 2, 3]}]
  backend: [sequential, threading]
  workers: [1, 2]
  tasks: [2]
"""


def test_shards_are_disjoint_complete_and_deterministic(write_config):
    trials = list(expand(load_config(write_config(SHARDED))))
    slices = [shard_trials(trials, (k, 4)) for k in range(1, 5)]
    ids = [t.trial_id for s in slices for t in s]
    assert sorted(ids) == sorted(t.trial_id for t in trials) and len(ids) == len(set(ids))
    assert [t.trial_id for t in shard_trials(list(expand(load_config(write_config(SHARDED)))), (2, 4))] == [
        t.trial_id for t in slices[1]
    ]
    assert max(map(len, slices)) - min(map(len, slices)) <= 1
    assert parse_shard("3/10") == (3, 10)
    for bad in ("0/3", "4/3", "3", "a/b", "1/0"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


def test_shard_sweeps_merge_into_one_sweep_with_every_run_once(tmp_path, write_config):
    config = write_config(SHARDED)
    out = tmp_path / "results"
    planned = sum(runner.sweep(config, out, shard=f"{k}/3").planned for k in (1, 2, 3))
    assert planned == 9 * 2
    shard_dirs = sweep_dirs(out / "sharded")
    assert len(shard_dirs) == 3
    result = CliRunner().invoke(app, ["merge", str(out / "sharded")])
    assert result.exit_code == 0, result.output
    assert "merged 3 shards (1/3, 2/3, 3/3), 18 runs" in result.output
    assert "different times" not in result.output  # one after another, seconds apart: one sitting
    (merged,) = sweep_dirs(out / "sharded")  # the shards were replaced
    assert not any(d.exists() for d in shard_dirs)
    manifest = read_manifest(merged)
    assert manifest.state == "complete" and len(manifest.merged_from) == 3
    df = conc_lab.load(out / "sharded")
    _assert_each_run_once(df, 18)
    assert set(df["sweep_id"]) == {manifest.sweep_id} and df["cpu_model"].notna().all()


def test_merge_refuses_a_doubled_shard_and_reports_a_missing_one(tmp_path, write_config):
    config = write_config(SHARDED)
    out = tmp_path / "results"
    first = runner.sweep(config, out, shard="1/3")
    # copied in again (a shard run to the end twice would hide its earlier run: see test_store_integrity)
    shutil.copytree(first.sweep_dir, out / "sharded" / "copied")
    result = CliRunner().invoke(app, ["merge", str(out / "sharded")])
    assert result.exit_code == 2 and "shard 1/3 is there twice" in result.output
    assert len(sweep_dirs(out / "sharded")) == 2  # nothing written, nothing removed
    elsewhere = tmp_path / "merged"
    for d in sweep_dirs(out / "sharded")[1:]:
        for f in d.iterdir():
            f.unlink()
        d.rmdir()
    result = CliRunner().invoke(app, ["merge", str(out / "sharded"), "--out", str(elsewhere)])
    assert result.exit_code == 3 and "shards missing: 2/3, 3/3" in result.output  # partial: not afterok
    assert read_manifest(sweep_dirs(elsewhere)[0]).state == "partial"
    assert len(sweep_dirs(out / "sharded")) == 1  # with --out the shard is kept


def test_a_bad_shard_is_one_line_and_exit_2(write_config):
    result = CliRunner().invoke(app, ["sweep", str(write_config(SHARDED)), "--shard", "5/3"])
    assert result.exit_code == 2
    assert "--shard: must be K/N" in result.output and "Traceback" not in result.output


def test_ray_address_with_cluster_is_refused(write_config):
    result = CliRunner().invoke(
        app, ["sweep", str(write_config(SHARDED)), "--cluster", "auto", "--ray-address", "auto"]
    )
    assert result.exit_code == 2 and "--ray-address:" in result.output


def test_resuming_a_shard_continues_that_shard_not_the_latest_sweep(tmp_path, write_config):
    config = write_config(SHARDED)
    out = tmp_path / "results"
    first = runner.sweep(config, out, shard="1/2")
    runner.sweep(config, out, shard="2/2")  # the latest sweep under results/sharded
    again = runner.sweep(config, out, shard="1/2", resume=True)
    assert again.sweep_dir == first.sweep_dir and again.recorded == 0
    assert read_manifest(first.sweep_dir).shard == "1/2"

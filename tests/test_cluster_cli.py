"""What a cluster user reads, without a cluster: the token refusal, and the summary table of a
sweep whose rows came from Ray nodes (56-character node ids)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import conc_lab
from conc_lab.analysis.summary import summarize
from conc_lab.present.tables import summary_table
from conc_lab.run import runner

pytestmark = pytest.mark.host

SMALL = """
name: small
repeats: 2
warmup: 0
timeout_s: 30
matrix:
  workload: [experiments.io:sleep]
  backend: [sequential, threading]
  workers: [1, 2]
  tasks: [2]
  size: [1]
"""


@pytest.mark.slow
def test_token_mode_without_a_token_is_one_line_exit_2_and_writes_nothing(tmp_path, write_config):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), RAY_AUTH_MODE="token", RAY_TMPDIR=str(tmp_path / "raytmp"))
    result = subprocess.run(
        [sys.executable, "-m", "conc_lab.cli", "sweep", str(write_config(SMALL)), "--cluster", "127.0.0.1:1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = (result.stdout + result.stderr).strip()
    assert result.returncode == 2 and len(out.splitlines()) == 1, out
    assert "RAY_AUTH_MODE=token" in out and f"{home}/.ray/auth_token does not exist" in out
    assert not (home / ".ray").exists() and not (tmp_path / "raytmp").exists()
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_a_cluster_sweeps_summary_fits_120_columns_one_line_a_row(tmp_path, write_config):
    result = runner.sweep(write_config(SMALL), tmp_path / "out")
    df = conc_lab.load(result.sweep_dir)
    nodes = ["5d4f" + "a1" * 26, "c07e" + "b2" * 26]  # Ray node ids are 56 hex digits
    df["node_id"] = [nodes[r] for r in df["repeat"]]
    summary = summarize(df)
    lines = summary_table(summary, width=120).splitlines()
    assert all(len(line) <= 120 for line in lines), lines
    # table rows only, not the per-workload answer under the table (one per node here)
    rows = [line for line in lines if ("5d4fa1a1" in line or "c07eb2b2" in line) and ": fastest" not in line]
    assert sum(": fastest" in line for line in lines) == 2  # ... which names each node short too
    assert len(rows) == len(summary)  # before: each row wrapped to 5 lines around its node id
    assert not any(nodes[0] in line for line in lines)


@pytest.mark.slow
def test_expand_shard_previews_exactly_what_each_shard_runs(write_config):
    import json

    from typer.testing import CliRunner

    from conc_lab.cli import app
    from conc_lab.config.document import load_config
    from conc_lab.plan.runs import select_trials

    path = write_config(SMALL)
    ids = []
    for k in (1, 2, 3):
        shown = CliRunner().invoke(app, ["expand", str(path), "--shard", f"{k}/3", "-f", "json"])
        assert shown.exit_code == 0, shown.output
        ids.append([t["trial_id"] for t in json.loads(shown.output)])
        assert ids[-1] == [t.trial_id for t in select_trials(load_config(path), f"{k}/3")]
        counted = CliRunner().invoke(app, ["expand", str(path), "--shard", f"{k}/3", "--count"])
        assert counted.output.strip() == str(len(ids[-1]))
    everything = CliRunner().invoke(app, ["expand", str(path), "-f", "json"])
    assert sorted(sum(ids, [])) == sorted(t["trial_id"] for t in json.loads(everything.output))
    table = CliRunner().invoke(app, ["expand", str(path), "--shard", "2/3"])
    assert "shard 2/3" in table.output and f"{len(ids[1])} of 3 trials" in table.output
    bad = CliRunner().invoke(app, ["expand", str(path), "--shard", "4/3"])
    assert bad.exit_code == 2 and "--shard: must be K/N" in bad.output


@pytest.mark.slow
def test_a_node_slower_on_the_same_trials_is_named_with_its_ratio(tmp_path, write_config):
    from conc_lab.analysis.nodes import slow_nodes

    config = SMALL.replace("repeats: 2", "repeats: 4").replace("size: [1]", "size: [40]")  # 40 ms a task
    result = runner.sweep(write_config(config), tmp_path / "out")
    df = conc_lab.load(result.sweep_dir)
    nodes = ["5d4f" + "a1" * 26, "c07e" + "b2" * 26, "9e11" + "c3" * 26]
    df["node_id"] = [nodes[r % 3] for r in df["repeat"]]
    # One run time per trial, whichever node ran it (this busy machine's own noise is not the point)
    df["run_s"] = df.groupby("trial_id", observed=True)["run_s"].transform("median")
    assert slow_nodes(df) == []  # the same speed everywhere: nothing to say
    slow = df["node_id"] == nodes[2]
    df.loc[slow, "run_s"] = df.loc[slow, "run_s"] * 1.3  # as a throttled machine would
    (found,) = slow_nodes(df)
    assert found.node == nodes[2] and found.trials == 3 and round(found.ratio, 6) == 1.3
    assert found.text().startswith("node 9e11c3c3 (") and "x1.3" in found.text()

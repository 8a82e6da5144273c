"""The README's Ray cluster commands, as written, on a real 2-node ``ray start`` cluster.

conftest's ``ray_start`` starts the head and a second node from the README's own lines (with
token authentication off, then on); these tests run the README's ``conclab sweep --cluster``
and ``ray job submit`` lines against it from a user's working directory.
"""

from __future__ import annotations

from pathlib import Path

import conc_lab
from conc_lab import store

# Named cpu, as the README's configs/cpu.yaml, so its lines run unchanged; small enough for CI.
CPU = """\
name: cpu
repeats: 1
warmup: 0
timeout_s: 60
matrix:
  workload: [{workload: experiments.io:sleep, size: [40, 41, 42]}]
  backend: [sequential, threading]
  workers: [1]
  tasks: [2]
"""
RUNS = 6


def _workdir(tmp_path: Path) -> Path:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "cpu.yaml").write_text(CPU)
    return tmp_path


def _readme(prefix: str) -> str:
    from ray_start_cluster import readme_cluster_block

    (line,) = [line for line in readme_cluster_block() if line.startswith(prefix)]
    return line


def _each_run_once_on_both_nodes(results: Path) -> None:
    (sweep_dir,) = store.sweep_dirs(results)
    assert store.read_manifest(sweep_dir)["state"] == "complete"
    df = conc_lab.load(sweep_dir)
    keys = list(zip(df["trial_id"], df["repeat"]))
    assert len(keys) == len(set(keys)) == RUNS
    assert (df["status"] == "ok").all() and df["correct"].all()
    assert df["node_id"].nunique() == 2  # both nodes ran trials


def test_readme_cluster_sweep_as_written(ray_start, tmp_path):
    workdir = _workdir(tmp_path)
    argv = ray_start.readme_line(_readme("conclab sweep"))
    result = ray_start.run(argv, cwd=workdir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    _each_run_once_on_both_nodes(workdir / "results" / "cpu")

"""The README's Ray cluster commands, as written, on a real 2-node ``ray start`` cluster.

conftest's ``ray_start`` starts the head and a second node from the README's own lines (with
token authentication off, then on); these tests run the README's ``conclab sweep --cluster``
and ``ray job submit`` lines against it from a user's working directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import conc_lab
from conc_lab.store.layout import sweep_dirs
from conc_lab.store.manifest import read_manifest

pytestmark = pytest.mark.ray_start

# Named cpu, as the README's configs/cpu.yaml, so its lines run unchanged; small enough for CI.
# Long enough for both nodes: Ray prestarts workers for a new job on the driver's node only, so
# the other node's runner starts a fresh worker (Python, Ray, conc_lab: 2-4 s here), and with
# 6 x 0.8 s of work the head had sometimes done it all by then (seen: 1 node in the rows).
CPU = """\
name: cpu
repeats: 1
warmup: 0
timeout_s: 60
matrix:
  workload: [{workload: experiments.io:sleep, size: [800, 801, 802]}]  # 2 tasks: 1.6 s a run
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
    (sweep_dir,) = sweep_dirs(results)
    assert read_manifest(sweep_dir).state == "complete"
    df = conc_lab.load(sweep_dir)
    keys = list(zip(df["trial_id"], df["repeat"]))
    assert len(keys) == len(set(keys)) == RUNS
    assert (df["status"] == "ok").all() and df["correct"].all()
    assert df["node_id"].nunique() == 2  # both nodes ran trials


@pytest.mark.flaky(reruns=2)  # a real cluster: the second node's actor may start late
def test_readme_cluster_sweep_as_written(ray_start, tmp_path):
    workdir = _workdir(tmp_path)
    argv = ray_start.readme_line(_readme("conclab sweep"))
    result = ray_start.run(argv, cwd=workdir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    _each_run_once_on_both_nodes(workdir / "results" / "cpu")


@pytest.mark.flaky(reruns=2)
def test_readme_job_submit_as_written_puts_results_where_it_says(ray_start, tmp_path):
    workdir = _workdir(tmp_path)
    result = ray_start.run(ray_start.readme_line(_readme("ray job submit")), cwd=workdir)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    # The job runs in Ray's temporary copy of the working dir: the relative default --out is
    # taken under the home folder of the head (here the cluster's own HOME), and said so.
    results = ray_start.home / "results" / "cpu"
    assert f"results go to {ray_start.home / 'results'}" in " ".join(out.split()), out[-3000:]
    _each_run_once_on_both_nodes(results)
    assert not (workdir / "results").exists()


@pytest.mark.parametrize("ray_start", ["token-on"], indirect=True)
def test_token_auth_refusal_names_the_cause_and_the_fix_in_one_line(ray_start, tmp_path):
    workdir = _workdir(tmp_path)
    env = {k: v for k, v in ray_start.env.items() if k != "RAY_AUTH_MODE"}  # as a user who missed it
    # Where a Ray runtime started by this sweep would put its files (before: after the refusal,
    # ray.wait in the clean-up auto-connected: it started a local runtime, or hung for minutes
    # joining whichever runtime on this machine ran last).
    env["RAY_TMPDIR"] = str(tmp_path / "raytmp")
    argv = ray_start.readme_line(_readme("conclab sweep"))
    result = ray_start.run(argv, cwd=workdir, env=env, timeout=300)
    out = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "RAY_AUTH_MODE=token" in errors[0], out[-3000:]
    assert "token authentication is on" in errors[0]
    assert "gcs_client" not in out and "Traceback" not in out  # Ray's retry lines are not dumped
    assert not (workdir / "results").exists()  # nothing written
    assert "results/cpu" not in out  # before: the sweep folder was named, and never made
    assert not list((tmp_path / "raytmp").glob("**/session_*"))  # no Ray runtime started


@pytest.mark.parametrize("ray_start", ["token-on"], indirect=True)
def test_token_mode_without_a_token_file_is_one_line_and_starts_and_writes_nothing(ray_start, tmp_path):
    workdir = _workdir(tmp_path)
    home = tmp_path / "home"  # a user who exported RAY_AUTH_MODE=token but did not copy the head's token
    home.mkdir()
    env = dict(ray_start.env, HOME=str(home), RAY_TMPDIR=str(tmp_path / "raytmp"))
    assert env["RAY_AUTH_MODE"] == "token"
    result = ray_start.run(ray_start.readme_line(_readme("conclab sweep")), cwd=workdir, env=env, timeout=300)
    out = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, out[-3000:]
    assert len(out.splitlines()) == 1 and out.startswith("error:"), out[-3000:]
    assert "RAY_AUTH_MODE=token" in out and "auth_token" in out
    # Before: a traceback, exit 1, a local Ray runtime started, and a new random ~/.ray/auth_token.
    assert not (home / ".ray").exists()
    assert not list((tmp_path / "raytmp").glob("**/session_*"))
    assert not (workdir / "results").exists()

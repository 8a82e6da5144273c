"""The pipeline end to end: honest times, and a sweep on a machine without Ray."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import conc_lab
from conc_lab.config.document import load_config
from conc_lab.events import RayStarted
from conc_lab.plan.matrix import expand
from conc_lab.run import runner

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "conc_lab"

NO_RAY = """
import sys


class _NoRay:
    \"\"\"Ray hidden from the import system, as on a machine without it.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError("No module named %r" % name, name=name)
        return None


sys.meta_path.insert(0, _NoRay())
"""


def test_wall_time_is_the_whole_sweep_and_ray_start_up_is_apart(tmp_path, write_config, ray_cluster):
    config = write_config(
        """
        name: walls
        repeats: 1
        warmup: 0
        matrix: {workload: [experiments.io:sleep], backend: [sequential, ray], tasks: [2], size: [1]}
        """
    )
    seen = []
    began = time.perf_counter()
    result = runner.sweep(config, tmp_path, ray_address=ray_cluster.address, on_event=seen.append)
    outside = time.perf_counter() - began
    assert result.ok and result.recorded == 2
    (ray,) = [e for e in seen if isinstance(e, RayStarted)]
    assert result.ray_start_s == ray.start_s
    # the wall time is the call's, everything included; the overhead's window is inside it
    assert result.ray_start_s + result.loop_s <= result.wall_s <= outside
    # the overhead is the call's wall time less Ray's start-up and the runs' own windows, per run
    paid = result.wall_s - result.ray_start_s - result.inside_s
    assert result.executed == 2 and result.overhead_per_run_s * 2 == pytest.approx(paid)


@pytest.mark.slow
def test_without_ray_a_smoke_sweep_records_its_ray_trials_as_skipped(tmp_path):
    hide = tmp_path / "no_ray"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(NO_RAY)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hide), str(REPO)]))
    probe = subprocess.run([sys.executable, "-c", "import ray"], env=env, capture_output=True, text=True)
    assert probe.returncode == 1 and "No module named 'ray'" in probe.stderr  # hidden for real
    out = tmp_path / "results"
    cmd = [
        sys.executable,
        "-m",
        "conc_lab.cli",
        "sweep",
        "configs/smoke.yaml",
        "--out",
        str(out),
    ]  # warnings shown
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    config = load_config(REPO / "configs" / "smoke.yaml")
    trials = list(expand(config))
    n_ray = sum(t.backend == "ray" for t in trials)
    assert n_ray and f"ray trials ({n_ray}) are skipped: needs ray, which CPython" in " ".join(
        proc.stderr.split()
    )
    (sweep_dir,) = (out / "smoke").iterdir()  # one folder, and it holds every planned row
    df = conc_lab.load(sweep_dir)
    assert len(df) == len(trials) * config.repeats
    ray_rows = df[df.backend == "ray"]
    assert len(ray_rows) == n_ray * config.repeats and (ray_rows["status"] == "skipped").all()
    assert ray_rows["error"].str.match(r"needs ray, which .* lacks").all()
    assert (df.loc[df.backend != "ray", "status"] == "ok").all()


@pytest.mark.slow
def test_a_ray_runtime_that_does_not_start_fails_the_ray_trials_and_the_sweep_goes_on(tmp_path, write_config):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=str(REPO), RAY_TMPDIR=str(blocker / "ray"))  # Ray cannot make its folder there
    config = write_config(
        """
        name: noray
        repeats: 2
        warmup: 1
        matrix: {workload: [experiments.io:sleep], backend: [sequential, ray], tasks: [2], size: [1]}
        """
    )
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "conc_lab.cli", "sweep", str(config), "--out", str(out)]  # warnings shown
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]  # failed runs: a batch scheduler must see it
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "ray trials (1) fail: the Ray runtime did not start" in " ".join(proc.stderr.split())
    df = conc_lab.load(out / "noray")
    assert len(df) == 4 and set(df.loc[df.backend == "sequential", "status"]) == {"ok"}
    ray_rows = df[df.backend == "ray"]
    assert set(ray_rows["status"]) == {"failed"}
    assert ray_rows["error"].str.startswith("the Ray runtime did not start: NotADirectoryError").all()

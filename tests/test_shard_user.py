"""Shards as an HPC user meets them: the real `conclab` CLI in subprocesses, on real files.

What a user reads in a shard's own output (a job's ``slurm-*.out``) and what ``conclab merge``
tells them when the shards do not fit together.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "conc_lab.cli"]

# Two trials: shard 1/2 takes the sequential one, shard 2/2 the threading one.
CONFIG = """\
name: cpu
repeats: 2
warmup: 0
timeout_s: 60
matrix:
  workload: [experiments.cpu:sum_squares]
  backend: [sequential, threading]
  workers: [1]
  tasks: [2]
  size: [2000]
"""


def conclab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def _config(tmp_path: Path, text: str = CONFIG) -> Path:
    (tmp_path / "configs").mkdir(exist_ok=True)
    config = tmp_path / "configs" / "cpu.yaml"
    config.write_text(text)
    return config


def test_a_shard_without_sequential_runs_says_where_its_speedups_come_not_a_python_warning(tmp_path):
    _config(tmp_path)
    proc = conclab("sweep", "configs/cpu.yaml", "--shard", "2/2", "--out", "results", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    said = proc.stdout + proc.stderr
    assert "UserWarning" not in said and "emit(" not in said, said  # no Python warning, no source line
    assert "conc_lab.load(path" not in said, said  # the API's advice is not the shard user's
    assert "note: shard 2/2 holds no sequential runs, so no speedups here" in said, said
    assert "conclab merge results/cpu" in said, said


def test_merge_of_shards_run_with_different_configs_names_the_odd_shard_and_the_difference(tmp_path):
    config = _config(tmp_path)
    shard = ("sweep", "configs/cpu.yaml", "--out", "results", "-q", "--shard")
    assert conclab(*shard, "1/2", cwd=tmp_path).returncode == 0
    config.write_text(CONFIG.replace("repeats: 2", "repeats: 3"))  # edited between two array tasks
    assert conclab(*shard, "2/2", cwd=tmp_path).returncode == 0
    config.write_text(CONFIG)
    assert conclab(*shard, "2/2", cwd=tmp_path).returncode == 0  # the user runs 2/2 again, as 1/2 ran
    odd = [
        d.name
        for d in (tmp_path / "results" / "cpu").iterdir()
        if "repeats: 3" in (d / "_manifest.json").read_text()
    ]
    proc = conclab("merge", "results/cpu", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "results/cpu: shards of different configs" in line, line
    assert f"2/2 ({odd[0]})" in line, line  # the shard that differs, by its folder
    assert "'repeats: 2' against 'repeats: 3'" in line, line  # and how
    assert "move" in line and "then merge" in line, line


# Four trials, so that a split of 4 and one of 2 both fit.
FOUR = CONFIG.replace("workers: [1]", "workers: [1, 2]").replace("tasks: [2]", "tasks: [2, 4]")


def test_a_task_resubmitted_as_a_smaller_array_is_refused_not_run_as_another_split(tmp_path):
    _config(tmp_path, FOUR)
    shard = ("sweep", "configs/cpu.yaml", "--out", "results", "-q", "--shard")
    for k in (1, 4):
        assert conclab(*shard, f"{k}/4", cwd=tmp_path).returncode == 0
    before = sorted(p.name for p in (tmp_path / "results" / "cpu").iterdir())
    # Tasks 2 and 3 of `--array=1-4` failed; the user resubmits them: sbatch --array=2-3 sweep.sh
    array = {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "2", "SLURM_ARRAY_TASK_MAX": "3"}
    array |= {"SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_STEP": "1"}
    env = dict(os.environ, PYTHONPATH=str(REPO), **array)
    proc = subprocess.run(
        [*CLI, *shard, "auto"], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "1/2" in line and "1/4, 4/4" in line and "split 4 ways" in line, line
    assert "--shard 2/4" in line and "--array" in line, line  # how to run the slice that failed
    assert sorted(p.name for p in (tmp_path / "results" / "cpu").iterdir()) == before  # nothing written
    # given as K/N, another split of the same config is refused alike
    proc = conclab(*shard, "2/2", cwd=tmp_path)
    assert proc.returncode == 2 and "split 4 ways" in proc.stderr, proc.stderr
    assert conclab(*shard, "2/4", cwd=tmp_path).returncode == 0  # the slice itself runs


def test_conclab_slurm_gives_a_shard_time_for_every_round_precision_and_redo_can_add(tmp_path):
    # 2 trials; shard 1/2 takes one: up to 10 rounds (precision) of a run that may be redone twice
    text = CONFIG.replace("repeats: 2\n", "repeats: 2\nprecision: {target: 0.05, max_repeats: 10}\n")
    _config(tmp_path, text + "noise: {redo: 2}\n")
    proc = conclab("slurm", "configs/cpu.yaml", "--shards", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # the most: 1 trial x 10 rounds x 3 tries x timeout_s 60 s = 30 min, + 5 min of start-up
    assert "#SBATCH --time=0:35:00" in (tmp_path / "cpu-array.sh").read_text()
    said = " ".join((proc.stdout + proc.stderr).split())
    assert "the most 30 runs can take" in said and "max_repeats 10" in said and "redo 2" in said, said


def test_conclab_slurm_asks_memory_of_every_job_the_merge_more_for_many_runs(tmp_path):
    # was: no --mem in any script; a site whose default is tiny killed the merge and calibration
    scripts = ("cpu-array.sh", "cpu-merge.sh")
    _config(tmp_path, CONFIG.replace("repeats: 2\n", "repeats: 200000\n"))
    proc = conclab("slurm", "configs/cpu.yaml", "--shards", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    array, merge = (re.search(r"^#SBATCH --mem=(\S+)$", (tmp_path / s).read_text(), re.M)[1] for s in scripts)
    assert array == "1536M" and merge.endswith("M") and int(merge[:-1]) > 1536, (array, merge)
    said = " ".join(proc.stderr.split())
    assert "--mem=1536M: 1024 MiB for conclab + 512 MiB a CPU" in said, said
    assert f"the merge: as much, or what its 400000 runs need) and cpu-merge.sh (--mem={merge})" in said, said
    # --mem: every job's, as given
    assert conclab("slurm", "configs/cpu.yaml", "--shards", "2", "--mem", "8G", cwd=tmp_path).returncode == 0
    for s in scripts:
        assert "#SBATCH --mem=8G\n" in (tmp_path / s).read_text()


def test_merge_of_two_splits_names_each_splits_shards_and_what_to_do(tmp_path):
    _config(tmp_path, FOUR)
    shard = ("sweep", "configs/cpu.yaml", "--out", "results", "-q", "--shard")
    assert conclab(*shard, "1/2", cwd=tmp_path).returncode == 0
    # another split beside it, as a conc_lab before check_split let it be (or a copy brought in)
    assert conclab(*shard, "1/4", "--out", "elsewhere", cwd=tmp_path).returncode == 0
    (quarter,) = (tmp_path / "elsewhere" / "cpu").iterdir()
    quarter.rename(tmp_path / "results" / "cpu" / quarter.name)
    proc = conclab("merge", "results/cpu", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "results/cpu: shards of different splits" in line, line
    assert f"1/4 ({quarter.name})" in line and "split 4 ways" in line and "split 2 ways" in line, line
    assert "move the shards of one split out" in line, line


def test_merge_given_the_out_folder_merges_beside_the_shards_so_resume_and_load_find_it(tmp_path):
    # `sweep --out results` wrote results/cpu/<id>; the user merges what they named: results.
    # Before: the merged sweep landed in results/merged-2-…, outside results/cpu, so load of
    # results/cpu found nothing and `--resume` of a shard ran it all again.
    _config(tmp_path)
    shard = ("sweep", "configs/cpu.yaml", "--out", "results", "-q", "--shard")
    for k in (1, 2):
        assert conclab(*shard, f"{k}/2", cwd=tmp_path).returncode == 0
    proc = conclab("merge", "results", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["cpu"]
    (merged,) = (tmp_path / "results" / "cpu").iterdir()
    assert merged.name.startswith("merged-2-") and f"→ results/cpu/{merged.name}" in proc.stderr
    again = conclab(*shard, "1/2", "--resume", cwd=tmp_path)  # the merged shard is not run again
    assert again.returncode == 0 and "already in merged sweep" in again.stderr, again.stderr
    assert [p.name for p in (tmp_path / "results" / "cpu").iterdir()] == [merged.name]


def test_merge_of_an_out_folder_with_two_configs_names_each_configs_folder(tmp_path):
    _config(tmp_path)
    (tmp_path / "configs" / "io.yaml").write_text(CONFIG.replace("name: cpu", "name: io"))
    for name in ("cpu", "io"):
        ran = conclab("sweep", f"configs/{name}.yaml", "-o", "results", "-q", "--shard", "1/2", cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr
    proc = conclab("merge", "results", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "results: holds the shards of 2 configs (results/cpu, results/io)" in line, line
    assert "conclab merge results/cpu" in line, line
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["cpu", "io"]  # nothing written


def test_a_shard_run_again_after_its_merge_is_refused_before_running_saying_how_to_measure_again(tmp_path):
    # The whole array resubmitted to measure again, after the first one's merge. Before: every task
    # ran and exited 0, load and summarize left the new runs out ("not counted"), check called
    # them damaged and the afterok merge failed (exit 2: "already merged ...; remove one").
    _config(tmp_path)
    shard = ("sweep", "configs/cpu.yaml", "--out", "results", "-q", "--shard")
    for k in (1, 2):
        assert conclab(*shard, f"{k}/2", cwd=tmp_path).returncode == 0
    assert conclab("merge", "results/cpu", cwd=tmp_path).returncode == 0
    (merged,) = (tmp_path / "results" / "cpu").iterdir()
    proc = conclab(*shard, "1/2", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert f"shard 1/2 of cpu is measured already, in merged sweep results/cpu/{merged.name}" in line, line
    assert f"mv results/cpu/{merged.name} SOMEWHERE" in line and "another --out" in line, line
    assert [p.name for p in (tmp_path / "results" / "cpu").iterdir()] == [merged.name]  # nothing written
    check = conclab("check", "results", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    # moved away as it says, the shards run and merge again
    merged.rename(tmp_path / "before")
    for k in (1, 2):
        assert conclab(*shard, f"{k}/2", cwd=tmp_path).returncode == 0
    assert conclab("merge", "results/cpu", cwd=tmp_path).returncode == 0

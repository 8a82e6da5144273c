"""The README's SLURM job array, run as written on a real single-node SLURM (conftest's ``slurm``).

The array script and the ``afterany`` merge job are taken from the README's own code blocks, so
the README cannot drift from what works. Each test checks what a SLURM user relies on: every
(trial, repeat) exactly once after the merge, every worker inside its job's CPU mask, and the
exit codes the scheduler sees (``afterany`` runs the merge once every array task has ended).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import conc_lab
from conc_lab.cli import app
from conc_lab.config.document import load_config
from conc_lab.plan.matrix import expand
from conc_lab.plan.runs import parse_shard, shard_trials
from conc_lab.store.layout import journal_files, sweep_dirs
from conc_lab.store.manifest import read_manifest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parent.parent

# Named cpu, as the README's configs/cpu.yaml, so its commands run unchanged; small enough for CI.
CPU = """\
name: cpu
repeats: 2
warmup: 0
timeout_s: 60
matrix:
  workload: [experiments.cpu:sum_squares]
  backend: [sequential, threading, multiprocessing]
  workers: [1, 2]
  tasks: [4]
  size: [20000]
backend_options:
  multiprocessing: {start_method: [fork]}
affinity: compact
"""


def _readme_blocks() -> tuple[str, str]:
    """The README's SLURM array script and its afterany merge submission."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    (script,) = [b for b in blocks if "#SBATCH --array" in b]
    (submit,) = [b for b in blocks if "--dependency=afterany" in b]
    return script, submit


def _readme_ray_job() -> str:
    """The README's job that runs Ray inside its SLURM allocation."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    (script,) = [b for b in blocks if "#SBATCH --nodes" in b and "ray start --head" in b]
    return script


def _processes_mentioning(folder: str) -> list[int]:
    """PIDs whose command line names ``folder`` (read from /proc; nothing is signalled)."""
    found = []
    named = re.compile(re.escape(folder.encode()) + rb"(/|\x00|$)")
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if named.search((proc / "cmdline").read_bytes()):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _workdir(tmp_path: Path, script: str, config: str = CPU) -> Path:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "cpu.yaml").write_text(config)
    (tmp_path / "sweep.sh").write_text(script)
    return tmp_path


def _login_env(slurm) -> dict[str, str]:
    """A fresh login shell's environment: SLURM's clients on PATH, but not this venv's conclab."""
    env = dict(slurm.env, PATH="/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
    env.pop("VIRTUAL_ENV", None)
    return env


def _submit(slurm, workdir: Path, submit: str, *sbatch_args: str, env=None) -> tuple[str, str]:
    """Run the README's submission lines in ``workdir`` (in ``env``, else the cluster's); (array
    job id, merge job id)."""
    if sbatch_args:  # options given to the array's sbatch, as a user would type them
        submit = submit.replace(
            "sbatch --parsable sweep.sh", f"sbatch --parsable {' '.join(sbatch_args)} sweep.sh"
        )
    shell = subprocess.run(
        ["bash", "-euc", submit + 'echo "array=$array"\n'],
        cwd=workdir,
        env=env or slurm.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shell.returncode == 0, shell.stderr
    array = re.search(r"^array=(\d+)$", shell.stdout, re.M).group(1)
    merge = re.search(r"Submitted batch job (\d+)", shell.stdout).group(1)
    return array, merge


def _check_array_and_merge(slurm, workdir: Path, array: str, merge: str) -> list[dict]:
    tasks = slurm.wait(array)
    (merged,) = slurm.wait(merge)
    logs = {p.name: p.read_text() for p in workdir.glob("slurm-*.out")}
    assert len(tasks) == 4, logs
    for task in tasks:  # what afterok looks at: every task completed with exit 0
        assert (task["JobState"], task["ExitCode"]) == ("COMPLETED", "0:0"), (task, logs)
    assert (merged["JobState"], merged["ExitCode"]) == ("COMPLETED", "0:0"), (merged, logs)
    merge_log = (workdir / f"slurm-{merge}.out").read_text()
    assert "merged 4 shards (1/4, 2/4, 3/4, 4/4)" in merge_log, merge_log

    trials = list(expand(load_config(workdir / "configs" / "cpu.yaml")))
    (sweep_dir,) = sweep_dirs(workdir / "results" / "cpu")  # the shards became one sweep
    assert read_manifest(sweep_dir).state == "complete"
    df = conc_lab.load(workdir / "results" / "cpu")
    keys = list(zip(df["trial_id"], df["repeat"]))
    assert len(keys) == len(set(keys)) == len(trials) * 2  # every (trial, repeat) exactly once
    assert (df["status"] == "ok").all() and df["correct"].all()
    return tasks


def test_readme_array_with_k_of_n_then_afterok_merge(slurm, tmp_path):
    script, submit = _readme_blocks()
    assert "--shard ${SLURM_ARRAY_TASK_ID}/4" in script
    workdir = _workdir(tmp_path, script)
    array, merge = _submit(slurm, workdir, submit)
    _check_array_and_merge(slurm, workdir, array, merge)
    df = conc_lab.load(workdir / "results" / "cpu")
    assert df["pinned"].all()


def test_readme_array_with_shard_auto_pins_inside_each_jobs_cpus(slurm, tmp_path):
    script, submit = _readme_blocks()
    # The README's `# or: --shard auto` form; each task first notes the CPUs SLURM gave it (before
    # conclab, whose exit code stays the script's).
    auto = script.replace("${SLURM_ARRAY_TASK_ID}/4", "auto").replace(
        "\nconclab", "\ngrep Cpus_allowed_list /proc/self/status > mask-$SLURM_ARRAY_TASK_ID.txt\nconclab"
    )
    # One worker per trial: with one CPU a 2-worker trial is refused (exit 2), not oversubscribed.
    workdir = _workdir(
        tmp_path, auto, CPU.replace("workers: [1, 2]", "workers: [1]").replace("[20000]", "[20000, 30000]")
    )
    # One CPU per task, indices from 0: two tasks run at once on the 2-CPU node, on different CPUs.
    array, merge = _submit(slurm, workdir, submit, "--cpus-per-task=1", "--array=0-3")
    tasks = _check_array_and_merge(slurm, workdir, array, merge)
    assert sorted(int(t["ArrayTaskId"]) for t in tasks) == [0, 1, 2, 3]

    trials = list(expand(load_config(workdir / "configs" / "cpu.yaml")))
    df = conc_lab.load(workdir / "results" / "cpu")
    masks = set()
    for index in range(4):
        text = (workdir / f"mask-{index}.txt").read_text().split(":")[1].strip()
        mask = set(_cpu_list(text))
        masks.add(frozenset(mask))
        assert len(mask) == 1, text  # --cpus-per-task=1 under CR_Core: one core per task
        mine = {t.trial_id for t in shard_trials(trials, (index + 1, 4))}
        rows = df[df["trial_id"].isin(mine)]
        assert len(rows) == len(mine) * 2
        for _, row in rows.iterrows():
            assert set(row["cores"]) <= mask, (index, mask, row["cores"])
            for rec in row["task_records"]:
                assert rec["cpu"] in mask and rec["core"] in mask, (index, mask, rec)
    assert len(masks) == 2  # both of the node's CPUs were used, each by its own tasks


def _cpu_list(text: str) -> list[int]:
    cpus = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def test_shard_auto_reads_the_slurm_array_variables():
    def env(**kw):
        return {f"SLURM_ARRAY_TASK_{k}": str(v) for k, v in kw.items()}

    assert parse_shard("auto", env(ID=1, MIN=1, MAX=4, COUNT=4)) == (1, 4)
    assert parse_shard("auto", env(ID=3, MIN=0, MAX=3, COUNT=4)) == (4, 4)
    assert parse_shard("auto", env(ID=4, MIN=1, MAX=4)) == (4, 4)  # no _COUNT: from _MAX
    assert parse_shard("auto", env(ID=5, MIN=1, MAX=9, STEP=2, COUNT=5)) == (3, 5)  # --array=1-9:2
    for bad, says in [
        ({}, "not a SLURM array task"),
        (env(ID=1), "must be set"),
        (env(ID=5, MIN=1, MAX=7, COUNT=3), "evenly spaced"),  # --array=1,5,7
        (env(ID=2, MIN=2, MAX=2, COUNT=1), "one task"),  # one task resubmitted: not the whole sweep
    ]:
        with pytest.raises(ValueError, match=says):
            parse_shard("auto", bad)


def test_shard_auto_outside_an_array_is_one_line_and_exit_2(tmp_path, monkeypatch):
    for var in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "cpu.yaml").write_text(CPU)
    result = CliRunner().invoke(
        app, ["sweep", str(tmp_path / "cpu.yaml"), "--shard", "auto", "-o", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    assert "--shard auto: not a SLURM array task" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "cpu").exists()  # nothing written


SLEEPY = """\
name: cpu
repeats: 2
warmup: 0
timeout_s: 60
matrix:
  workload: [{workload: experiments.io:sleep, size: [600, 601, 602, 603, 604, 605, 606, 607]}]
  backend: [sequential]
  tasks: [1]
"""


@pytest.mark.flaky(reruns=2)  # the cancel must land mid-shard
def test_scancel_mid_shard_merge_exits_3_naming_it_and_resume_completes(slurm, tmp_path):
    script, submit = _readme_blocks()
    workdir = _workdir(tmp_path, script, SLEEPY)
    array, merge = _submit(slurm, workdir, submit, "--cpus-per-task=1")
    shard_dir = workdir / "results" / "cpu"
    deadline = time.monotonic() + 240
    while not _has_rows(shard_dir, "2/4"):  # shard 2 is under way: cancel it, as a user or a limit would
        assert time.monotonic() < deadline, slurm.logs()
        time.sleep(0.2)
    slurm.run(["scancel", f"{array}_2"])
    tasks = {t["ArrayTaskId"]: t for t in slurm.wait(array)}
    assert tasks["2"]["JobState"] == "CANCELLED" and all(
        (tasks[k]["JobState"], tasks[k]["ExitCode"]) == ("COMPLETED", "0:0") for k in ("1", "3", "4")
    ), tasks
    cancelled_log = (workdir / f"slurm-{array}_2.out").read_text()
    # conc_lab's SIGTERM handling, not a kill: the runs so far are saved and the way on is printed
    # ... with every flag the array line gave (--out too), so the printed line resumes this shard
    assert "Resume with: conclab sweep configs/cpu.yaml --resume --out results --shard 2/4" in " ".join(
        cancelled_log.split()
    )
    # afterany: the merge runs once the array has ended, takes in the three complete shards and
    # names the cancelled one, exit 3 (with afterok it waited for ever: DependencyNeverSatisfied)
    (merged,) = slurm.wait(merge)
    merge_log = " ".join((workdir / f"slurm-{merge}.out").read_text().split())
    assert (merged["JobState"], merged["ExitCode"]) == ("FAILED", "3:0"), (merged, merge_log)
    assert "shard 2/4 is not complete" in merge_log, merge_log

    partial = slurm.run(["conclab", "merge", "results/cpu"], check=False, cwd=workdir)
    assert partial.returncode == 3, partial.stdout + partial.stderr  # what afterok would see
    assert "shard 2/4 is not complete" in " ".join((partial.stdout + partial.stderr).split())

    again = slurm.sbatch(
        "--wrap", "conclab sweep configs/cpu.yaml --shard 2/4 --resume --out results", cwd=workdir
    )
    (resumed,) = slurm.wait(again)
    assert (resumed["JobState"], resumed["ExitCode"]) == ("COMPLETED", "0:0"), (
        workdir / f"slurm-{again}.out"
    ).read_text()
    full = slurm.run(["conclab", "merge", "results/cpu"], check=False, cwd=workdir)
    assert full.returncode == 0, full.stdout + full.stderr
    df = conc_lab.load(workdir / "results" / "cpu")
    keys = list(zip(df["trial_id"], df["repeat"]))
    assert len(keys) == len(set(keys)) == 8 * 2 and (df["status"] == "ok").all()


def _has_rows(results: Path, shard: str) -> bool:
    for d in sweep_dirs(results) if results.exists() else []:
        if read_manifest(d).shard == shard:
            return any(f.stat().st_size for f in journal_files(d))  # the old and new names
    return False


def _generate(slurm, workdir: Path, shards: int = 4) -> tuple[str, str]:
    """`conclab slurm` in ``workdir``; its files must exist and its printed lines submit them."""
    made = slurm.run(["conclab", "slurm", "configs/cpu.yaml", "--shards", str(shards)], cwd=workdir)
    assert (workdir / "cpu-array.sh").exists() and (workdir / "cpu-merge.sh").exists()
    assert "wrote cpu-array.sh" in made.stderr, made.stderr
    return made.stdout, " ".join(made.stderr.split())


def test_conclab_slurm_writes_an_array_and_merge_that_run_as_printed(slurm, tmp_path):
    workdir = _workdir(tmp_path, "")
    submit, said = _generate(slurm, workdir)
    assert "--cpus-per-task=2" in said  # the largest worker count pinned
    array_script = (workdir / "cpu-array.sh").read_text()
    assert "#SBATCH --array=1-4" in array_script and "#SBATCH --cpus-per-task=2" in array_script
    # a site that requires --time of every job takes the merge too (it had none)
    assert "#SBATCH --time=" in (workdir / "cpu-merge.sh").read_text()
    # --time: the most a shard's runs can take: 2 trials x 2 runs x timeout_s 60 s, + 5 min = 9 min
    assert "#SBATCH --time=0:09:00" in array_script and "the most 4 runs can take" in said
    assert "--shard K/4 --resume" in array_script and "sbatch --array=K cpu-array.sh --resume" in said
    # Submitted, as printed, from a login shell where conclab's venv is not active: the jobs still
    # run the conclab that wrote them (before: FAILED 127:0, "conclab: command not found").
    login = _login_env(slurm)
    assert subprocess.run(["bash", "-c", "command -v conclab"], env=login).returncode != 0
    array, merge = _submit(slurm, workdir, submit, env=login)
    _check_array_and_merge(slurm, workdir, array, merge)


def test_readme_ray_inside_a_slurm_allocation_runs_the_sweep_and_leaves_no_ray(slurm, tmp_path):
    workdir = _workdir(tmp_path, _readme_ray_job())
    job = slurm.sbatch("sweep.sh", cwd=workdir)
    (done,) = slurm.wait(job, timeout_s=600)
    head_log = workdir / f"ray-head-{job}.log"
    logs = (workdir / f"slurm-{job}.out").read_text() + (head_log.read_text() if head_log.exists() else "")
    assert (done["JobState"], done["ExitCode"]) == ("COMPLETED", "0:0"), logs[-3000:]
    df = conc_lab.load(workdir / "results" / "cpu")
    keys = list(zip(df["trial_id"], df["repeat"]))
    trials = list(expand(load_config(workdir / "configs" / "cpu.yaml")))
    assert len(keys) == len(set(keys)) == len(trials) * 2 and (df["status"] == "ok").all()
    assert df["node_id"].notna().all() and df["node_id"].nunique() == 1  # run by the job's Ray node
    deadline = time.monotonic() + 60  # the head's processes end after the job's own
    while _processes_mentioning(f"/tmp/ray-{job}") and time.monotonic() < deadline:
        time.sleep(1)
    assert _processes_mentioning(f"/tmp/ray-{job}") == [], "a Ray process of the job outlived it"


def test_with_size_auto_the_generated_jobs_calibrate_once_and_every_shard_measures_that_size(slurm, tmp_path):
    config = CPU.replace("size: [20000]", "size: [auto]") + "calibration: {target_s: 0.01, budget_s: 20}\n"
    workdir = _workdir(tmp_path, "", config)
    submit, said = _generate(slurm, workdir)
    assert (workdir / "cpu-calibrate.sh").exists() and "cpu-calibrate.sh (size: auto" in said
    assert "afterok:${sizes%%;*} cpu-array.sh" in submit  # the array waits for the calibration
    array, merge = _submit(slurm, workdir, submit)  # the printed lines, as printed
    _check_array_and_merge(slurm, workdir, array, merge)
    sizes = json.loads((workdir / "results" / "cpu" / "_sizes.json").read_text())["sizes"]
    (sweep_dir,) = sweep_dirs(workdir / "results" / "cpu")
    assert dict(read_manifest(sweep_dir).calibrated_sizes) == sizes  # one size, the shards' and the merge's
    assert set(conc_lab.load(sweep_dir)["size"]) == set(sizes.values())
    for task in range(1, 5):  # no shard calibrated on its own
        assert "size auto:" not in (workdir / f"slurm-{array}_{task}.out").read_text()


@pytest.mark.flaky(reruns=2)  # the cancel must land mid-shard
def test_a_cancelled_task_of_the_generated_array_records_130_and_how_to_resume(slurm, tmp_path):
    workdir = _workdir(tmp_path, "", SLEEPY)
    submit, _ = _generate(slurm, workdir)
    array, merge = _submit(slurm, workdir, submit)
    shard_dir = workdir / "results" / "cpu"
    deadline = time.monotonic() + 240
    running_log = workdir / f"slurm-{array}_2.out"
    while not (running_log.exists() and _has_rows(shard_dir, "2/4") and "/4 runs" in running_log.read_text()):
        # `tail -f` of the running shard's log: a progress line per tenth of its runs (here each)
        assert time.monotonic() < deadline, slurm.logs()
        time.sleep(0.2)
    assert re.search(r"^[123]/4 runs, .* elapsed, about .* left$", running_log.read_text(), re.M)
    slurm.run(["scancel", f"{array}_2"])
    tasks = {t["ArrayTaskId"]: t for t in slurm.wait(array)}
    log = " ".join((workdir / f"slurm-{array}_2.out").read_text().split())
    # The trap: the sweep's own exit code, not the signal (before: CANCELLED 0:15)
    assert (tasks["2"]["JobState"], tasks["2"]["ExitCode"]) == ("CANCELLED", "130:0"), (tasks["2"], log)
    assert "Resume with: conclab sweep configs/cpu.yaml --resume --out results --shard 2/4" in log
    # and, in the task's own log, how to resume it as a job (was only the line above: the login node)
    assert "as a job of this array: sbatch --array=2 cpu-array.sh --resume; then sbatch cpu-merge.sh" in log
    slurm.run(["scancel", merge])
    # Resumed as `conclab slurm` says, as a job of the array (its CPUs, not the login node's), then merged
    assert "sbatch --array=K cpu-array.sh --resume" in (workdir / "cpu-array.sh").read_text()
    again = slurm.sbatch("--array=2", "cpu-array.sh", "--resume", cwd=workdir)
    (resumed,) = slurm.wait(again)
    resumed_log = (workdir / f"slurm-{again}_2.out").read_text()
    assert (resumed["JobState"], resumed["ExitCode"]) == ("COMPLETED", "0:0"), resumed_log
    assert "nothing to resume" not in resumed_log, resumed_log  # the cancelled sweep went on
    merged = slurm.run(["conclab", "merge", "results/cpu"], check=False, cwd=workdir)
    assert merged.returncode == 0, merged.stdout + merged.stderr
    df = conc_lab.load(workdir / "results" / "cpu")
    keys = list(zip(df["trial_id"], df["repeat"]))
    assert len(keys) == len(set(keys)) == 8 * 2 and (df["status"] == "ok").all()


FAILING = """\
name: cpu
repeats: 1
warmup: 0
timeout_s: 60
matrix:
  workload: [mywork:good, mywork:broken]
  backend: [sequential]
  tasks: [1]
  size: [1]
"""


def test_a_shard_whose_run_failed_is_merged_not_left_waiting(slurm, tmp_path):
    # was: the task whose run failed exited 1 (the failure recorded, as every run is) and the afterok
    # merge sat in DependencyNeverSatisfied for ever; the shard's log did not say so
    workdir = _workdir(tmp_path, "", FAILING)
    (workdir / "mywork.py").write_text(
        "def good(task, size):\n    return task\n\n\ndef broken(task, size):\n    raise ValueError('broken')\n"
    )
    submit, _ = _generate(slurm, workdir, shards=2)
    array, merge = _submit(slurm, workdir, submit)
    codes = sorted(t["ExitCode"] for t in slurm.wait(array))
    (merged,) = slurm.wait(merge, timeout_s=120)
    merge_log = (workdir / f"slurm-{merge}.out").read_text()
    assert codes == ["0:0", "1:0"], codes
    assert (merged["JobState"], merged["ExitCode"]) == ("COMPLETED", "0:0"), (merged, merge_log)
    df = conc_lab.load(workdir / "results" / "cpu")
    assert sorted(df["status"].astype(str)) == ["failed", "ok"]


def _jobs_in(slurm, workdir: Path) -> dict[str, dict[str, str]]:
    """Every job of this cluster run from ``workdir``, by name (an array's tasks as NAME_K)."""
    jobs = {}
    for line in slurm.run(["scontrol", "show", "job", "-o"]).stdout.splitlines():
        job = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if job.get("WorkDir") == str(workdir):
            task = f"_{job['ArrayTaskId']}" if "ArrayTaskId" in job else ""
            jobs[job["JobName"] + task] = job
    return jobs


def test_where_the_default_memory_is_tiny_every_generated_job_asks_its_own(slurm, tmp_path):
    # was: the calibration and the merge set no --mem (nor did the array): on a partition whose
    # default is 64 MiB a CPU, each was killed ('exceeded memory limit') and the merge never ran
    from slurm_cluster import TINY_MEM

    config = CPU.replace("size: [20000]", "size: [auto]") + "calibration: {target_s: 0.01, budget_s: 20}\n"
    workdir = _workdir(tmp_path, "", config)
    submit, said = _generate(slurm, workdir)
    scripts = {n: (workdir / f"cpu-{n}.sh").read_text() for n in ("calibrate", "array", "merge")}
    asked = {n: re.search(r"^#SBATCH --mem=(\S+)$", text, re.M).group(1) for n, text in scripts.items()}
    assert asked["calibrate"] == asked["array"] == asked["merge"] == "2G", asked  # 1 GiB + 512 MiB a CPU
    assert "--mem=2G: 1024 MiB for conclab + 512 MiB a CPU" in said, said
    # submitted as printed, to the partition with the tiny default (the site's, not the script's)
    array, merge = _submit(slurm, workdir, submit, env=dict(slurm.env, SBATCH_PARTITION=TINY_MEM))
    _check_array_and_merge(slurm, workdir, array, merge)
    jobs = _jobs_in(slurm, workdir)
    assert sorted(jobs) == ["cpu-calibrate", "cpu-merge", "cpu_1", "cpu_2", "cpu_3", "cpu_4"], sorted(jobs)
    for name, job in jobs.items():
        assert (job["Partition"], job["MinMemoryNode"]) == (TINY_MEM, "2G"), (name, job)
        assert (job["JobState"], job["ExitCode"]) == ("COMPLETED", "0:0"), (name, job)
    logs = " ".join(p.read_text() for p in workdir.glob("slurm-*.out"))
    assert "exceeded memory limit" not in logs, logs


QUICK = """\
name: cpu
repeats: 2
warmup: 0
timeout_s: 30
matrix:
  workload: [{workload: experiments.io:sleep, size: [50, 60]}]
  backend: [sequential]
  tasks: [1]
"""

# Loaded into each `conclab sweep` of the array (PYTHONPATH): once every run is stored, the step
# after it outlasts the job's --time, as a Ray runtime's teardown or a large shard's summary table
# on a loaded node can. Task 1: closing the trial hosts; task 2: the summary table.
SLOW_AFTER_THE_RUNS = """\
import os, sys, time
if os.path.basename(sys.argv[0]) == "conclab" and sys.argv[1:2] == ["sweep"]:
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    if task == "1":
        from conc_lab.run import dispatch
        close = dispatch.LocalDispatch.close
        def slow_close(self):
            dispatch.LocalDispatch.close = close
            print("runs done; closing the hosts", file=sys.stderr, flush=True)
            time.sleep(600)
            close(self)
        dispatch.LocalDispatch.close = slow_close
    elif task == "2":
        from conc_lab.cli import sweep
        summary = sweep._print_summary
        def slow_summary(*args, **kwargs):
            print("runs done; the summary table", file=sys.stderr, flush=True)
            time.sleep(600)
            summary(*args, **kwargs)
        sweep._print_summary = slow_summary
"""


def test_a_shard_that_stored_every_run_before_its_time_limit_is_complete_and_merged(slurm, tmp_path):
    # was: SLURM's SIGTERM at the time limit, once every run was stored, marked the shard
    # interrupted (it came while the hosts closed: merge exit 3, 'shard 1/2 is not complete') or
    # exited 130 (it cut the table short), and each task's log said to resume what had nothing to run
    workdir = _workdir(tmp_path, "", QUICK)
    (workdir / "hooks").mkdir()
    (workdir / "hooks" / "sitecustomize.py").write_text(SLOW_AFTER_THE_RUNS)
    made = slurm.run(["conclab", "slurm", "configs/cpu.yaml", "--shards", "2", "--time", "1"], cwd=workdir)
    path = f"{workdir / 'hooks'}:{slurm.env.get('PYTHONPATH', '')}".rstrip(":")
    array, merge = _submit(slurm, workdir, made.stdout, env=dict(slurm.env, PYTHONPATH=path))
    tasks = {t["ArrayTaskId"]: t for t in slurm.wait(array, timeout_s=240)}
    (merged,) = slurm.wait(merge)
    logs = {k: " ".join((workdir / f"slurm-{array}_{k}.out").read_text().split()) for k in tasks}
    for k, task in tasks.items():  # SLURM ended each at its time limit; the sweep's own exit code is 0
        assert "runs done" in logs[k] and "DUE TO TIME LIMIT" in logs[k], logs[k]
        assert (task["JobState"], task["ExitCode"]) == ("TIMEOUT", "0:0"), (task, logs[k])
        assert "once every run was stored: the sweep is complete; nothing to resume" in logs[k], logs[k]
        assert "--resume" not in logs[k], logs[k]
    assert "table cut short (SIGTERM)" in logs["2"], logs["2"]
    merge_log = (workdir / f"slurm-{merge}.out").read_text()
    assert (merged["JobState"], merged["ExitCode"]) == ("COMPLETED", "0:0"), (merged, merge_log)
    assert "merged 2 shards (1/2, 2/2), 4 runs" in merge_log, merge_log
    (sweep_dir,) = sweep_dirs(workdir / "results" / "cpu")
    assert read_manifest(sweep_dir).state == "complete"
    df = conc_lab.load(workdir / "results" / "cpu")
    keys = list(zip(df["trial_id"], df["repeat"]))
    assert len(keys) == len(set(keys)) == 4 and (df["status"] == "ok").all()

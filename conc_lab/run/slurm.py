"""SLURM job scripts for a sharded sweep: an array of ``conclab sweep --shard K/N`` and its ``afterany`` merge.

``job_scripts`` writes nothing: it returns the two scripts and the lines that submit them, so the
CLI (``conclab slurm``) shows and writes them, and a test can run them on a real SLURM.
What each script holds, and why:

* ``--cpus-per-task``: the largest worker count of the matrix, so each shard pins its workers
  inside CPUs of its own (a shard asking for more cores than its job has is refused);
* ``--time``: the forecast for one shard: the most its runs can take (each is ended by
  ``timeout_s``), plus start-up; or as given;
* ``--mem``, in every job (the array's tasks, the calibration, the merge): a site's default can be
  tiny (``DefMemPerCPU``), and a job past it is killed. A shard's and the calibration's: conclab
  itself plus room for each CPU's workers (and Ray's runtime for ``ray`` trials); the merge's: the
  same, more where the runs it holds at once need it; or as given (``--mem``), for every job;
* with ``size: auto``, a calibration job first (``conclab calibrate``): the array waits for it
  (``afterok``) and every shard reads its sizes, so all measure one size per workload;
* a SIGTERM trap: ``scancel`` or a time limit sends SIGTERM; the sweep saves what ran and exits
  130, and the trap makes that the task's exit code (without it SLURM records ``0:15``); one that
  came once every run was stored leaves the shard complete, its exit code 0 or 1 (``TIMEOUT 0:0``);
* the resume line for a task that did not finish (``sbatch --array=K NAME-array.sh --resume``:
  the script passes its arguments on to ``conclab sweep``, so the slice resumes as a job with the
  array's CPUs, not on a login node), and an ``afterany`` merge that runs when every task has ended:
  a task whose runs failed (exit 1, recorded) kept an ``afterok`` merge waiting for ever
  (DependencyNeverSatisfied); merge itself names a shard that did not finish (exit 3, partial);
* the folder of the ``conclab`` that wrote them put first on ``PATH``: a job submitted from a shell
  where its environment is not active still runs it (else ``conclab: command not found``, exit 127).
"""

from __future__ import annotations

import math
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from conc_lab.config.model import AUTO, Config
from conc_lab.host.protocol import RAY
from conc_lab.plan import matrix

#: Added to every shard's --time: interpreter and host start-up, a Ray-free sweep's setup, the store's seal.
START_S = 300.0
#: A job's memory (MiB): conclab itself (the interpreter, pandas, pyarrow: about 150 MiB measured), with room.
BASE_MB = 1024
#: And for each CPU of a shard: the workers its trials start there (processes, threads) and their data.
PER_CPU_MB = 512
#: And for a Ray runtime, where the matrix has ``ray`` trials (its GCS, raylet and workers).
RAY_MB = 2048
#: The merge holds every shard's runs at once (read, written, read back): bytes per run, and per task of it.
RUN_BYTES, TASK_BYTES = 3 * 1024, 3 * 64
#: A shard's --time is at most this (SLURM's own upper bounds are per site; 7 days is common).
MOST_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class JobScripts:
    """The array script, the merge script, and how to submit them."""

    name: str  # the sweep's name: files are <name>-array.sh and <name>-merge.sh
    shards: int
    cpus: int  # --cpus-per-task
    time: str  # --time, in SLURM's format
    time_why: str  # where --time came from, in words
    mem: str  # --mem of the array's tasks and the calibration job, in SLURM's format
    merge_mem: str  # --mem of the merge job
    mem_why: str  # where --mem came from, in words
    runs_per_shard: int  # measured and warm-up runs of the largest shard
    array: str
    merge: str
    calibrate: str | None = None  # size: auto: one job calibrates before the array, for every shard

    @property
    def calibrate_file(self) -> str:
        return f"{self.name}-calibrate.sh"

    @property
    def array_file(self) -> str:
        return f"{self.name}-array.sh"

    @property
    def merge_file(self) -> str:
        return f"{self.name}-merge.sh"

    @property
    def resume(self) -> str:
        """The line that resumes task K of the array as a job like the others."""
        return f"sbatch --array=K {self.array_file} --resume"

    @property
    def submit(self) -> str:
        """The lines that submit the array and, once every task ended, the merge (after the
        calibration job, once it exited 0, when the config has ``size: auto``)."""
        first = ""
        after = ""
        if self.calibrate is not None:
            first = f"sizes=$(sbatch --parsable {self.calibrate_file})\n"
            after = " --dependency=afterok:${sizes%%;*}"
        return (
            f"{first}array=$(sbatch --parsable{after} {self.array_file})\n"
            f"sbatch --dependency=afterany:${{array%%;*}} {self.merge_file}\n"
        )


def _most_runs(config, trials: int) -> tuple[int, str]:
    """The most runs ``trials`` of ``config`` can make, and what beyond ``repeats`` adds to them, in
    words: every round up to ``precision``'s ``max_repeats``, each measured run redone ``noise.redo`` times.

    >>> from conc_lab.config.document import parse_config
    >>> cfg = parse_config({"name": "p", "repeats": 3, "warmup": 1, "precision": {"target": 0.05, "max_repeats": 10},
    ...     "noise": {"redo": 2}, "matrix": {"workload": ["experiments.io:sleep"], "backend": ["sequential"]}})
    >>> _most_runs(cfg, 2)
    (62, 'up to max_repeats 10 rounds, each run redone up to redo 2 times if noisy; ')
    """
    measured = config.precision.max_repeats if config.precision else config.repeats
    redo = config.noise.redo
    words = f"up to max_repeats {measured} rounds, " if config.precision else ""
    words += f"each run redone up to redo {redo} times if noisy; " if redo else ""
    return trials * (config.warmup + measured * (1 + redo)), words


def slurm_time(seconds: float) -> str:
    """SLURM's ``--time`` format, rounded up to the minute.

    >>> slurm_time(59), slurm_time(3661), slurm_time(2 * 86400 + 60)
    ('0:01:00', '1:02:00', '2-00:01:00')
    """
    minutes = max(1, math.ceil(seconds / 60))
    days, rest = divmod(minutes, 24 * 60)
    text = f"{rest // 60}:{rest % 60:02d}:00"
    return f"{days}-{rest // 60:02d}:{rest % 60:02d}:00" if days else text


def slurm_mem(mb: float) -> str:
    """SLURM's ``--mem`` format, rounded up to the MiB (whole GiB as ``G``).

    >>> slurm_mem(1536), slurm_mem(2048), slurm_mem(100.2)
    ('1536M', '2G', '101M')
    """
    mb = max(1, math.ceil(mb))
    return f"{mb // 1024}G" if mb % 1024 == 0 else f"{mb}M"


def memory(config: Config, cpus: int) -> tuple[str, str, str]:
    """The ``--mem`` forecasts: (a shard's and the calibration's, the merge's, why, in words).

    >>> from conc_lab.config.document import parse_config
    >>> cfg = parse_config({"name": "m", "repeats": 2, "matrix": {"workload": ["experiments.io:sleep"],
    ...     "backend": ["sequential", "threading"], "workers": [1, 2], "tasks": [8]}})
    >>> memory(cfg, 2)
    ('2G', '2G', '1024 MiB for conclab + 512 MiB a CPU; the merge: as much, or what its 9 runs need')
    """
    ray = RAY in config.axes["backend"]
    shard = BASE_MB + PER_CPU_MB * cpus + RAY_MB * ray
    runs, _ = _most_runs(config, matrix.count(config))
    axes = config.axes
    tasks = max(axes["tasks"]) if "tasks" in axes else max(axes["tasks_per_worker"]) * cpus
    merge = max(shard, BASE_MB + runs * (RUN_BYTES + TASK_BYTES * tasks) / 2**20)
    why = (
        f"{BASE_MB} MiB for conclab + {PER_CPU_MB} MiB a CPU{f' + {RAY_MB} MiB for Ray' if ray else ''}; "
        f"the merge: as much, or what its {runs} runs need"
    )
    return slurm_mem(shard), slurm_mem(merge), why


def conclab_dir() -> str | None:
    """The folder of the ``conclab`` command this interpreter runs (its venv's ``bin``), or None."""
    beside = Path(sys.executable).parent
    if (beside / "conclab").is_file():
        return str(beside)
    found = shutil.which("conclab")
    return str(Path(found).resolve().parent) if found else None


def _path_line(bindir: str | None) -> str:
    """Put ``bindir`` first on PATH in a job, then stop with exit 2 (refused) where no conclab is found."""
    line = f'export PATH={shlex.quote(bindir)}:"$PATH"\n' if bindir else ""
    return (
        "# The conclab that wrote this script, whether or not its environment is active in the job:\n"
        f'{line}command -v conclab >/dev/null || {{ echo "conclab not found on $(hostname): activate '
        'its environment in this script or install conc_lab there" >&2; exit 2; }\n'
    )


def _time(config: Config, shards: int, time: str | None) -> tuple[int, str, str]:
    """The most runs a shard makes, its ``--time`` (``time``, else the forecast) and why, in words."""
    runs, more = _most_runs(config, math.ceil(matrix.count(config) / shards))
    if time is not None:
        return runs, time, "as given (--time)"
    time_s = runs * config.timeout_s + START_S
    why = f"the most {runs} runs can take ({more}each ends by timeout_s {config.timeout_s:g} s), + {START_S / 60:g} min"
    return runs, slurm_time(min(time_s, MOST_S)), why


def job_scripts(
    config: Config,
    config_arg: str,
    shards: int,
    out: str,
    workdir: Path,
    time: str | None = None,
    bindir: str | None = None,
    mem: str | None = None,
) -> JobScripts:
    """The job scripts for ``config`` in ``shards`` shards, run from ``workdir`` with ``--out out``.

    ``config_arg``: the config as the user named it (relative to ``workdir``), so the printed
    resume line is what they would type. ``time`` (SLURM's format) overrides the forecast;
    ``mem`` (SLURM's format) every job's memory forecast (``memory``).
    ``bindir``: the folder of the ``conclab`` the jobs run (default: this one's, ``conclab_dir``).
    """
    runs, time, why = _time(config, shards, time)
    cpus = max(config.axes["workers"]) if config.axes.get("workers") else 1
    shard_mem, merge_mem, mem_why = memory(config, cpus) if mem is None else (mem, mem, "as given (--mem)")
    common = {
        "name": config.name,
        "workdir": shlex.quote(str(workdir)),
        "path": _path_line(bindir or conclab_dir()),
    }
    cmd = f"conclab sweep {shlex.quote(config_arg)} --out {shlex.quote(out)}"
    array = _ARRAY.format(
        **common,
        shards=shards,
        cpus=cpus,
        time=time,
        mem=shard_mem,
        sweep=f'{cmd} --shard ${{SLURM_ARRAY_TASK_ID}}/{shards} "$@"',
        resume=f"{cmd} --shard K/{shards} --resume",
        array_file=f"{config.name}-array.sh",
        merge_file=f"{config.name}-merge.sh",
    )
    merge = _MERGE.format(
        **common, mem=merge_mem, merge=f"conclab merge {shlex.quote(str(Path(out) / config.name))}"
    )
    autos = sum(AUTO in config.workload_sizes.get(w, config.axes["size"]) for w in config.axes["workload"])
    calibrate = None
    if autos:  # one job calibrates, within its budget a workload, and every shard reads its sizes
        calibrate = _CALIBRATE.format(
            **common,
            cpus=cpus,
            mem=shard_mem,
            time=slurm_time(config.calibration.budget_s * autos + START_S),
            calibrate=f"conclab calibrate {shlex.quote(config_arg)} --out {shlex.quote(out)}",
        )
    return JobScripts(
        config.name, shards, cpus, time, why, shard_mem, merge_mem, mem_why, runs, array, merge, calibrate
    )


_ARRAY = """\
#!/bin/bash
# Written by `conclab slurm`: sweep {name} in {shards} shards, one array task each.
#SBATCH --job-name={name}
#SBATCH --array=1-{shards}
#SBATCH --cpus-per-task={cpus}
#SBATCH --mem={mem}
#SBATCH --time={time}
#SBATCH --output=slurm-%A_%a.out
#
# Exit codes (scontrol/sacct ExitCode): 0 every run ok and correct; 1 some run failed, timed out
# or was wrong (recorded); 2 bad config or arguments (nothing written); 130 cancelled (scancel)
# or out of time: what ran is saved (a time limit once every run was stored: TIMEOUT with 0 or 1,
# the shard complete, nothing to resume). Resume a task that did not finish as a job like this one
# (K is its array index; arguments given after the script are passed on to conclab sweep):
#   sbatch --array=K {array_file} --resume
# (it runs: {resume}), then merge: sbatch {merge_file}
cd {workdir} || exit 2
{path}# scancel and the time limit send SIGTERM: conclab saves what ran and exits 130. Without this
# trap bash dies of the signal and SLURM records 0:15 instead of the sweep's own 130.
trap 'kill -TERM "$child" 2>/dev/null' TERM
{sweep} &
child=$!
wait "$child"
status=$?
while [ "$status" -gt 128 ] && kill -0 "$child" 2>/dev/null; do  # the trap cut the wait short
    wait "$child"
    status=$?
done
if [ "$status" -eq 130 ]; then  # the sweep's own resume line runs it here; as a job it keeps its CPUs
    echo "or, as a job of this array: sbatch --array=$SLURM_ARRAY_TASK_ID {array_file} --resume; then sbatch {merge_file}" >&2
fi
exit "$status"
"""

_CALIBRATE = """\
#!/bin/bash
# Written by `conclab slurm`: size: auto calibrated once, on a node like the array's, so that every
# shard measures one size per workload (shards calibrating on their own may not agree, and merge
# refuses them). The array is submitted with --dependency=afterok on this job.
#SBATCH --job-name={name}-calibrate
#SBATCH --cpus-per-task={cpus}
#SBATCH --mem={mem}
#SBATCH --time={time}
#SBATCH --output=slurm-%j.out
cd {workdir} || exit 2
{path}exec {calibrate}
"""

_MERGE = """\
#!/bin/bash
# Written by `conclab slurm`: merges the shards of {name}; submitted with --dependency=afterany,
# so it runs when every array task has ended, failed runs or not (they are recorded). Exit 0
# complete, 3 partial (a shard cancelled or out of time is named: resume it, then merge again),
# 2 refused.
#SBATCH --job-name={name}-merge
#SBATCH --cpus-per-task=1
#SBATCH --mem={mem}
#SBATCH --time=1:00:00
#SBATCH --output=slurm-%j.out
cd {workdir} || exit 2
{path}exec {merge}
"""

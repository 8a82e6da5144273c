"""``conclab slurm CONFIG --shards N``: write a SLURM array script and its afterany merge, and say how to submit them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import typer

from conc_lab.cli.common import app, console, die, example, load, out_console

#: SLURM's --time forms: minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
_TIME = re.compile(r"\d+(:\d{1,2}){0,2}|\d+-\d+(:\d{1,2}){0,2}")
#: SLURM's --mem forms: MiB, or a number with K, M, G or T.
_MEM = re.compile(r"\d+[KMGT]?", re.I)


@app.command(
    epilog=example(
        "conclab slurm configs/cpu.yaml --shards 4",
        "conclab slurm configs/cpu.yaml -n 8 --time 2:00:00 --mem 8G",
    )
)
def slurm(
    config: Path = typer.Argument(..., help="The experiment matrix to run as a SLURM job array."),
    shards: int = typer.Option(..., "--shards", "-n", help="Array tasks: one shard of the trials each."),
    out: Path = typer.Option(Path("results"), "--out", "-o", help="Results folder the shards write to."),
    time: str = typer.Option(
        None, "--time", help="Each task's --time (SLURM's format); default: the most a shard's runs can take."
    ),
    mem: str = typer.Option(
        None,
        "--mem",
        help="Every job's --mem (SLURM's format, e.g. 8G): the array's tasks, the calibration and the merge; "
        "default: conclab's own + 512 MiB a CPU, the merge more where its runs need it.",
    ),
):
    """Write a SLURM array script and its afterany merge script here, and print how to submit them.

    NAME-array.sh runs one `conclab sweep --shard K/N` per array task; NAME-merge.sh merges the
    shards once every task has ended (a shard that did not finish is named: exit 3, partial). With size: auto, NAME-calibrate.sh calibrates once first and
    every shard reads its sizes. Nothing is submitted.
    """
    from conc_lab.run.slurm import job_scripts

    cfg = load(config)
    _check(cfg, shards, time, mem)
    scripts = job_scripts(cfg, str(config), shards, str(out), Path.cwd(), time=time, mem=mem)
    files = [(scripts.array_file, scripts.array), (scripts.merge_file, scripts.merge)]
    if scripts.calibrate is not None:
        files.insert(0, (scripts.calibrate_file, scripts.calibrate))
    for name, text in files:
        path = Path(name)
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o755)
        os.replace(tmp, path)  # whole or not at all
    console.print(
        f"wrote {scripts.array_file} ({shards} tasks, --cpus-per-task={scripts.cpus}, "
        f"--time={scripts.time}: {scripts.time_why}; --mem={scripts.mem}: {scripts.mem_why}) "
        f"and {scripts.merge_file} (--mem={scripts.merge_mem})"
        + (
            f", and {scripts.calibrate_file} (size: auto, calibrated once for every shard)"
            if scripts.calibrate is not None
            else ""
        ),
        highlight=False,
        soft_wrap=True,
    )
    console.print("submit with:", highlight=False)
    out_console.print(scripts.submit, end="", highlight=False, markup=False, soft_wrap=True)
    console.print(
        f"a task that did not finish (exit 130 after scancel or its time limit): resume it as a job, "
        f"`{scripts.resume}` (K: its array index), then `sbatch {scripts.merge_file}` "
        "(scancel the first merge job: it waits for the array forever)",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def _check(cfg, shards: int, time: str | None, mem: str | None) -> None:
    """Exit 2, one line, for an option the jobs could not run with."""
    from conc_lab.plan import matrix
    from conc_lab.plan.runs import too_many_shards

    if shards < 1:
        die(f"--shards: must be 1 or more, not {shards}")
    problem = too_many_shards(shards, matrix.count(cfg))
    if problem:  # else every task of the array would refuse its empty shard
        die(f"--shards: {problem}")
    if time is not None and not _TIME.fullmatch(time):
        die(f"--time: {time!r} is not a SLURM time (MINUTES, H:MM:SS or D-HH:MM:SS)")
    if mem is not None and not _MEM.fullmatch(mem):
        die(f"--mem: {mem!r} is not a SLURM memory size (MiB, or a number with K, M, G or T: 8G)")

"""``conclab slurm CONFIG --shards N``: write a SLURM array script and its afterany merge, and say how to submit them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import typer

from conc_lab.cli.common import app, console, die, example, load, out_console

#: SLURM's --time forms: minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
_TIME = re.compile(r"\d+(:\d{1,2}){0,2}|\d+-\d+(:\d{1,2}){0,2}")


@app.command(
    epilog=example(
        "conclab slurm configs/cpu.yaml --shards 4", "conclab slurm configs/cpu.yaml -n 8 --time 2:00:00"
    )
)
def slurm(
    config: Path = typer.Argument(..., help="The experiment matrix to run as a SLURM job array."),
    shards: int = typer.Option(..., "--shards", "-n", help="Array tasks: one shard of the trials each."),
    out: Path = typer.Option(Path("results"), "--out", "-o", help="Results folder the shards write to."),
    time: str = typer.Option(
        None, "--time", help="Each task's --time (SLURM's format); default: the most a shard's runs can take."
    ),
):
    """Write a SLURM array script and its afterany merge script here, and print how to submit them.

    NAME-array.sh runs one `conclab sweep --shard K/N` per array task; NAME-merge.sh merges the
    shards once every task has ended (a shard that did not finish is named: exit 3, partial). With size: auto, NAME-calibrate.sh calibrates once first and
    every shard reads its sizes. Nothing is submitted.
    """
    from conc_lab.run.slurm import job_scripts

    cfg = load(config)
    if shards < 1:
        die(f"--shards: must be 1 or more, not {shards}")
    from conc_lab.plan import matrix
    from conc_lab.plan.runs import too_many_shards

    problem = too_many_shards(shards, matrix.count(cfg))
    if problem:  # else every task of the array would refuse its empty shard
        die(f"--shards: {problem}")
    if time is not None and not _TIME.fullmatch(time):
        die(f"--time: {time!r} is not a SLURM time (MINUTES, H:MM:SS or D-HH:MM:SS)")
    scripts = job_scripts(cfg, str(config), shards, str(out), Path.cwd(), time=time)
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
        f"--time={scripts.time}: {scripts.time_why}) and {scripts.merge_file}"
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

"""``conclab merge`` and ``conclab check``: joining shard sweeps, and reading a store for damage."""

from __future__ import annotations

from pathlib import Path

import typer

from conc_lab.cli.common import app, console, die, example


@app.command(
    epilog=example(
        "conclab merge results/cpu", "sbatch --dependency=afterok:$JOB --wrap 'conclab merge results/cpu'"
    )
)
def merge(
    results: Path = typer.Argument(
        ...,
        help="A config's results folder holding --shard sweeps, e.g. results/cpu (or the --out folder above it).",
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Write the merged sweep under OUT/<name>/ (as sweep --out does) and keep the shards.",
    ),
):
    """Combine the shard sweeps (conclab sweep --shard K/N) of one config into one sweep.

    In place, the shards taken in are replaced by the merged sweep once it reads back whole.
    A shard still running or stopped early (killed) is named and left for --resume; merging
    again later completes the same sweep. Exit code 0 when the merged sweep is complete, 3
    when shards are missing, running or incomplete (so `--dependency=afterok` sees it), 2 when
    refused: shards of different configs, a shard there twice, a run in two shards, damage.
    """
    from conc_lab.store import merge as merging
    from conc_lab.store.layout import StoreError

    try:
        result = merging.merge(results, out)
    except StoreError as exc:
        die(str(exc))
    n = len(result.shards) + len(result.missing) + len(result.unfinished)
    held = f"{len(result.shards)} shards" if result.complete else f"{len(result.shards)} of {n} shards"
    console.print(
        f"merged {held} ({', '.join(result.shards)}), {result.rows} runs → {result.sweep_dir}",
        highlight=False,
        soft_wrap=True,
    )
    for line in result.unfinished:
        console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    if result.missing:
        console.print(
            f"[yellow]warning:[/] shards missing: {', '.join(result.missing)}; the sweep is partial "
            "until they are run and merged",
            highlight=False,
            soft_wrap=True,
        )
    if result.timing:
        console.print(f"note: {result.timing}", highlight=False, soft_wrap=True)
    if not result.complete:
        raise typer.Exit(merging.PARTIAL_EXIT)


@app.command(epilog=example("conclab check results"))
def check(
    paths: list[Path] = typer.Argument(..., help="Results folders or sweep folders to check."),
):
    """Read every file under PATHS; report damaged files and runs stored twice, one line each.

    Exit code 0 when all is whole, 1 when anything is damaged or doubled, 2 when a path is
    missing, a file, or a folder with no sweep in it (nothing there to call whole).
    """
    from conc_lab.store.check import check as check_store
    from conc_lab.store.layout import MANIFEST

    report = check_store(paths)
    if report.missing:  # nothing there to call damaged: a mistyped path
        die(f"{report.missing[0]}: no such file or folder")
    if report.not_folders:
        die(f"{report.not_folders[0]}: a file, not a results folder or a sweep folder")
    if report.empty:  # "0 sweeps: ok" would pass a copy that failed, or a wrong path, as whole
        die(f"{report.empty[0]}: no sweep there (no {MANIFEST} in it or below it)")
    for line in report.problems:
        console.print(f"[bold red]damaged:[/] {line}", highlight=False, soft_wrap=True)
    for line in report.notes:
        console.print(f"note: {line}", highlight=False, soft_wrap=True)
    verdict = "ok" if report.ok else _counted(len(report.problems), "problem")
    console.print(
        f"{_counted(report.sweeps, 'sweep')}, {_counted(report.runs, 'run')}: {verdict}", highlight=False
    )
    if not report.ok:
        raise typer.Exit(1)


def _counted(n: int, noun: str) -> str:
    """``n`` and its noun, singular for one: "1 problem", "2 runs".

    >>> _counted(1, "problem"), _counted(0, "run")
    ('1 problem', '0 runs')
    """
    return f"{n:,} {noun}" + ("" if n == 1 else "s")

"""``conclab expand``: the trials a config would run, listed or counted; nothing is run or written.

Neither this module nor ``--count`` or ``-f json|csv`` imports pandas or pyarrow (the table
does, for its layout): a dry run starts as fast as the command itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from conc_lab.cli.common import app, die, example, load, out_console

EXPAND_FORMATS = ("table", "json", "csv")


@app.command(epilog=example("conclab expand configs/smoke.yaml", "conclab expand configs/cpu.yaml --count"))
def expand(
    config: Path = typer.Argument(..., help="The experiment matrix to expand."),
    count: bool = typer.Option(False, "--count", help="Print only the number of trials."),
    limit: int = typer.Option(200, "--limit", help="Show at most this many trials in the table."),
    fmt: str = typer.Option(
        "table", "--format", "-f", help="table; or json / csv: every trial, streamed as it is expanded."
    ),
    shard: str = typer.Option(
        None, "--shard", help="Only the trials of shard K/N: what `sweep --shard K/N` runs (or auto)."
    ),
):
    """Dry run: list the trials CONFIG would run (nothing is executed or written)."""
    from conc_lab.plan import matrix

    if fmt not in EXPAND_FORMATS:
        die(f"--format: unknown format {fmt!r}; use one of {', '.join(EXPAND_FORMATS)}")
    if limit < 0:
        die(f"--limit: must be 0 or more, got {limit}")
    cfg = load(config)
    sliced = None
    if shard is not None:
        from conc_lab.plan.runs import parse_shard, shard_trials  # (with pandas: only for --shard)

        try:
            sliced = shard_trials(matrix.expand(cfg), parse_shard(shard))
        except ValueError as exc:
            die(str(exc))
    if count:
        print(matrix.count(cfg) if sliced is None else len(sliced))
    elif fmt == "table":
        _expand_table(cfg, limit, sliced, shard)
    else:
        _expand_stream(cfg, fmt, sliced)


def _expand_table(cfg, limit: int, sliced: list | None = None, shard: str | None = None) -> None:
    """The first ``limit`` trials at once, then the total (counted, not walked, where it can be);
    ``sliced``: only these trials (shard ``shard``)."""
    import itertools

    from conc_lab.plan import matrix
    from conc_lab.present import tables

    # a limit past sys.maxsize (--limit 99999999999999999999) is no limit: islice refuses it
    shown = list(itertools.islice(matrix.expand(cfg) if sliced is None else sliced, min(limit, sys.maxsize)))
    table, constant = tables.trials_table(shown)
    which = "trials" if sliced is None else f"shard {shard}: trials"
    title = f"{cfg.name}: {which} (each runs {cfg.warmup} warm-up + {cfg.repeats} measured)"
    out_console.print(title + (f"; {constant}" if constant else ""), markup=False, highlight=False)
    out_console.print(table, markup=False, highlight=False)
    n = matrix.count(cfg) if sliced is None else len(sliced)
    of = "" if sliced is None else f" of {matrix.count(cfg):,}"
    out_console.print(
        f"{n:,}{of} trials" + (f" (first {limit:,} shown)" if n > limit else ""), highlight=False
    )


def _expand_stream(cfg, fmt: str, sliced: list | None = None) -> None:
    """Every trial (of ``sliced``, if given) with all its parameters, one line each as it is
    expanded: a JSON array or CSV."""
    import csv
    import json

    from conc_lab.plan import matrix

    writer = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
    first = True
    for n, trial in enumerate(matrix.expand(cfg) if sliced is None else sliced):
        record = {"trial_id": trial.trial_id, **trial.params()}
        if writer is not None:
            if first:
                writer.writerow(record)
            writer.writerow(["" if v is None else v for v in record.values()])
        else:
            sys.stdout.write(("[\n" if first else ",\n") + json.dumps(record))
        if first or n % 1000 == 0:
            sys.stdout.flush()  # a pipe sees the first trials at once, however large the matrix
        first = False
    if writer is None:
        sys.stdout.write("[]\n" if first else "\n]\n")
    sys.stdout.flush()

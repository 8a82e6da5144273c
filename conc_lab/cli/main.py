"""The ``conclab`` command: parses arguments, calls the library, prints. Nothing else lives here."""

from __future__ import annotations

import logging
import signal
import sys
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table
from rich.text import Text

import conc_lab
from conc_lab import events, schema
from conc_lab.cli import selftest
from conc_lab.config.document import load_config
from conc_lab.config.errors import ConfigError
from conc_lab.plan import matrix

app = typer.Typer(
    help="conc_lab: threads or processes (or Ray), and how much faster, for your work? "
    "Run a YAML experiment matrix as core-pinned trials and analyse the Parquet results.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# Both consoles take their width from the terminal, else from COLUMNS, else 80: a table piped
# into `head` or a file is as wide as the person's terminal, not 200 columns.
console = Console(stderr=True)
out_console = Console()

_display_type_rich = typer.core.TyperOption.display_type_rich


def _no_flag_type(self, ctx):
    # typer labels every on/off flag "<bool>" in --help, as if it took a value; a flag takes none
    return None if self.is_flag else _display_type_rich(self, ctx)


typer.core.TyperOption.display_type_rich = _no_flag_type


def _quiet_ray_banner() -> None:
    """Keep Ray's token-authentication notice off the screen: it prints at every ray.init.

    The runtime conc_lab starts listens on 127.0.0.1 only; the notice says nothing about the
    measurements, and a sweep with Ray trials would print it every time, even under -q.
    Ray's other warnings still show.
    """
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)


def _version(value: bool) -> None:
    if value:
        print(f"conclab {conc_lab.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    pass  # the options common to every command; the help text is app's


_WIDE_HELP = "Every column of the summary table, however wide (default: what fits the terminal)."


_format_warning = warnings.formatwarning


def _warning_line(message, category, filename, lineno, line=None) -> str:
    # The store's warnings (a run stored twice, counted once) are for a person: one line, no source.
    if category.__name__ == "StoreWarning":
        return f"warning: {message}\n"
    return _format_warning(message, category, filename, lineno, line)


warnings.formatwarning = _warning_line


def _noise_counts(result) -> str:
    """ ", 2 redone, 1 still noisy" for the final line; empty when no run was noisy."""
    parts = [
        f"{result.redone} redone" if result.redone else "",
        f"{result.noisy} still noisy" if result.noisy else "",
    ]
    return "".join(f", {p}" for p in parts if p)


def _noise_line(df) -> str:
    """How many runs were redone as noisy and how many are still noisy: those the medians cannot vouch for."""
    redone = int((df["status"].astype(object) == schema.REDONE).sum()) if "status" in df else 0
    noisy = 0
    if "noisy" in df and "status" in df:
        flagged = df["noisy"].astype(object).fillna(False).astype(bool)
        noisy = int(((df["status"].astype(object) == schema.OK) & flagged).sum())
    parts = [
        f"{redone} runs were redone as noisy" if redone else "",
        f"{noisy} runs are still noisy" if noisy else "",
    ]
    text = "; ".join(p for p in parts if p)
    return text and text + " (other processes took CPU, or the speed canary moved: see noisy, noise_note)"


def _die(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _load(path: Path):
    try:
        return load_config(path)
    except ConfigError as exc:
        _die(str(exc))


@app.command()
def sweep(
    config: Path = typer.Argument(..., help="The experiment matrix, e.g. configs/cpu.yaml."),
    out: Path = typer.Option(
        Path("results"), "--out", "-o", help="Results root; rows go to OUT/<name>/<sweep_id>/."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the latest sweep of this config: run only what is missing."
    ),
    fail_fast: bool = typer.Option(
        False, "--fail-fast", help="Stop at the first failed, hung or wrong trial run."
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Print only errors and the final line (no progress, no table)."
    ),
    wide: bool = typer.Option(False, "--wide", help=_WIDE_HELP),
    shard: str = typer.Option(
        None,
        "--shard",
        help="Run only slice K of N of the trials, e.g. 3/10, or auto in a SLURM job array; see merge.",
    ),
    cluster: str = typer.Option(
        None, "--cluster", help="Spread the trials over the nodes of this Ray cluster (HOST:PORT or auto)."
    ),
    ray_address: str = typer.Option(
        None,
        "--ray-address",
        help="Ray runtime for ray trials (default: config ray.address, RAY_ADDRESS, or a local one).",
    ),
):
    """Run every trial of CONFIG, pinned to cores, and write one Parquet row per measured run.

    Prints progress, failures as they happen, and a summary table at the end. Exit code 0 when
    every run succeeded with the sequential answer, 1 when any failed, timed out or was wrong,
    2 for a bad config, 130 when interrupted (resume with --resume).
    """
    from conc_lab.run import runner  # pandas and pyarrow load only for commands that need them
    from conc_lab.store.core import StoreError

    cfg = _load(config)
    _check_sweep_flags(cluster, ray_address, shard)
    from conc_lab.run.cluster import results_root  # no Ray import: a relative --out inside a Ray job

    out, moved = results_root(out)
    if moved:
        console.print(f"[yellow]warning:[/] {moved}", highlight=False)
    progress = _sweep_progress(quiet)
    render = _SweepRenderer(progress, cfg.name, quiet)
    # A batch scheduler's SIGTERM stops the sweep the way Ctrl-C does: after saving.
    signal.signal(signal.SIGTERM, _interrupt)
    _quiet_ray_banner()
    try:
        with progress:
            result = runner.sweep(
                cfg,
                out,
                resume=resume,
                fail_fast=fail_fast,
                on_event=render,
                shard=shard,
                cluster=cluster,
                ray_address=ray_address,
            )
    except (ConfigError, StoreError) as exc:
        _die(str(exc))
    except RuntimeError as exc:  # a cluster that cannot be reached or lost every node
        from conc_lab.run.cluster import ClusterError

        if not isinstance(exc, ClusterError):
            raise
        _die(str(exc))
    stopped_table = False
    if not quiet:
        try:
            _print_summary(result.sweep_dir, wide)
        except KeyboardInterrupt:  # every run is saved: Ctrl-C only cuts the table short
            stopped_table = True
            console.print("\n[yellow]table cut short[/] (Ctrl-C); every run is saved", highlight=False)
    _print_outcome(result, config, out, resume, shard=shard, cluster=cluster, ray_address=ray_address)
    if stopped_table:
        raise typer.Exit(130)


def _check_sweep_flags(cluster: str | None, ray_address: str | None, shard: str | None) -> None:
    if cluster is not None and ray_address is not None:
        _die(
            "--ray-address: a cluster sweep's ray trials run on the --cluster cluster; give one or the other"
        )
    if shard is not None:
        from conc_lab.plan.runs import parse_shard

        try:
            parse_shard(shard)
        except ValueError as exc:
            _die(str(exc))


def _print_outcome(result, config: Path, out: Path, resume: bool, **flags: str | None) -> None:
    """The sweep's last line (its honest wall time, the runner's own overhead) and its exit code."""
    console.print(_final_line(result, resume), highlight=False, soft_wrap=True)
    if result.interrupted:
        again = _resume_command(config, out, **flags)
        console.print(
            f"[yellow]interrupted[/]; what ran is saved. Resume with: {again}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130)
    if not result.ok:
        raise typer.Exit(1)


def _sweep_progress(quiet: bool) -> Progress:
    """The sweep's progress bar, its width steady: the trial label has a column of fixed width."""
    label_width = max(12, min(32, console.width - 60))
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=None),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn(
            "{task.fields[last]}",
            table_column=Column(width=label_width, no_wrap=True, overflow="ellipsis"),
        ),
        console=console,
        disable=quiet,
        transient=False,
        expand=True,
    )


class _SweepRenderer:
    """Prints a sweep's events (``conc_lab.events``) as they come: one method per event type.

    ``quiet`` keeps only what went wrong (failed, hung or wrong runs, lost nodes).
    """

    def __init__(self, progress: Progress, name: str, quiet: bool = False):
        self.progress, self.name, self.quiet = progress, name, quiet
        self.bar = None
        self.per_node: dict[str, object] = {}  # cluster sweeps: a progress line of runs done per node
        self.calibration_said: dict[str, float] = {}  # size auto: when the last step line was printed

    def __call__(self, event: events.Event) -> None:
        handler = getattr(self, "_" + type(event).__name__, None)
        if handler is not None:
            handler(event)

    def _say(self, text: str) -> None:
        if not self.quiet:
            self.progress.console.print(text, highlight=False, soft_wrap=True)

    def _node_line(self, node_id: str, hostname: str | None) -> object:
        if node_id not in self.per_node:
            self.per_node[node_id] = self.progress.add_task(
                f"  node {hostname or '?'} {node_id[:8]}", total=None, last=""
            )
        return self.per_node[node_id]

    def _Planned(self, e: events.Planned) -> None:
        if e.total:  # nothing to run (a complete sweep resumed): no empty 0/0 bar
            self.bar = self.progress.add_task(self.name, total=e.total, last="")
        # the bar counts every run it waits for: warm-ups too, so the header names them
        warmups = e.total - e.measured
        runs = f"{e.measured} measured runs" + (f" + {warmups} warm-up" if warmups else "")
        self._say(f"{e.trials} trials, {runs} → {e.sweep_dir}")

    def _RunFinished(self, e: events.RunFinished) -> None:
        from conc_lab import schema  # loaded by the sweep already; pyarrow stays out of other commands

        row = e.row
        label = f"{row['backend']} w={row['workers']} {row['workload'].rsplit(':', 1)[-1]}"
        self.progress.update(self.bar, advance=1, last=label)
        if row.get("node_id"):
            self.progress.update(self._node_line(row["node_id"], row.get("hostname")), advance=1, last=label)
        if row["status"] not in (schema.OK, schema.SKIPPED) or row["correct"] is False:
            what = "WRONG ANSWER" if row["status"] == schema.OK else row["status"].upper()
            err = (row["error"] or "differs from the sequential answer").strip().splitlines()
            when = f"repeat {row['repeat']}" if e.measured else "warm-up"
            self.progress.console.print(
                f"[red]{what}[/] {label} {when}: {err[-1] if err else ''}", highlight=False
            )

    def _Warned(self, e: events.Warned) -> None:
        self._say(f"[yellow]warning:[/] {e.text}")

    def _RayStarted(self, e: events.RayStarted) -> None:
        how = "started a local runtime at" if e.started else "joined"
        self._say(f"ray: {how} {e.address} ({e.start_s:.1f} s)")

    def _NodeJoined(self, e: events.NodeJoined) -> None:
        self._node_line(e.node_id, e.hostname)

    def _NodeLost(self, e: events.NodeLost) -> None:
        self._node_line(e.node_id, e.hostname)
        self.progress.console.print(f"[yellow]node lost:[/] {e.hostname} {e.node_id[:8]}: {e.error}")

    def _Calibrating(self, e: events.Calibrating) -> None:
        from conc_lab.host.units import duration

        # Steps of microseconds fly by; a line for each step worth waiting for, and one every 2 s.
        said = self.calibration_said.get(e.workload)
        if said is None:
            self._say(f"size auto: calibrating {e.workload} (size: time of one task)")
        if said is None or e.task_s >= 1e-3 or e.elapsed_s - said >= 2.0:
            self._say(f"  size {e.size:,}: {duration(e.task_s)}")
            self.calibration_said[e.workload] = e.elapsed_s

    def _Calibrated(self, e: events.Calibrated) -> None:
        from conc_lab.host.units import duration

        self._say(f"size auto: {e.workload} → {e.size} ({duration(e.task_s)} per task)")


def _final_line(result, resumed: bool = False) -> str:
    """The sweep's last line: what it recorded, and where; also under -q."""
    if resumed and result.planned == 0 and not result.interrupted:
        return f"sweep {result.sweep_id} is complete: nothing to run → {result.sweep_dir}"
    line = (
        f"{result.recorded} runs recorded ({result.failed} failed, {result.wrong} wrong, "
        f"{result.skipped} skipped{_noise_counts(result)}"
    )
    if result.warmup_failed:  # not recorded, but a failure all the same (and exit code 1)
        line += f"; {result.warmup_failed} failed warm-up run{'s' * (result.warmup_failed > 1)}"
    line += f") in {result.wall_s:.1f} s"
    if result.recorded:  # a per-run figure over no runs would be the sweep's set-up, mislabelled
        line += f"; runner overhead {result.overhead_per_run_s * 1e3:.2f} ms per run"
    return f"{line} → {result.sweep_dir}"


def _resume_command(config: Path, out: Path, **options: str | None) -> str:
    """The command that continues this sweep: every flag that chose where and what it runs.

    >>> _resume_command(Path("c.yaml"), Path("my out"), shard="2/3", cluster=None)
    "conclab sweep c.yaml --resume --out 'my out' --shard 2/3"
    """
    import shlex

    words = ["conclab", "sweep", str(config), "--resume", "--out", str(out)]
    for name, value in options.items():
        if value is not None:
            words += [f"--{name.replace('_', '-')}", value]
    return shlex.join(words)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _print_summary(sweep_dir: Path, wide: bool) -> None:
    from conc_lab.analysis.summary import summarize
    from conc_lab.store import core as store

    df = store.load(sweep_dir)
    if df.empty:
        return
    _emit(_table(summarize(df), wide))
    if not wide:
        console.print(
            f"[dim]every column: conclab summarize {sweep_dir} --wide (or -f csv|markdown|json)[/]",
            highlight=False,
            soft_wrap=True,
        )


def _table(summary, wide: bool) -> str:
    """The summary for people: fitted to the terminal, or every column with ``wide``."""
    from conc_lab.present import render, tables

    if wide:  # as wide as it needs: the reader asked for every column and will scroll
        return render.render(summary, "table", width=10_000)
    return tables.summary_table(summary, out_console.width, color=out_console.is_terminal)


@app.command()
def expand(
    config: Path = typer.Argument(..., help="The experiment matrix to expand."),
    count: bool = typer.Option(False, "--count", help="Print only the number of trials."),
    limit: int = typer.Option(200, "--limit", help="Show at most this many trials in the table."),
    fmt: str = typer.Option(
        "table", "--format", "-f", help="table; or json / csv: every trial, streamed as it is expanded."
    ),
):
    """Dry run: list the trials CONFIG would run (nothing is executed or written)."""
    if fmt not in EXPAND_FORMATS:
        _die(f"--format: unknown format {fmt!r}; use one of {', '.join(EXPAND_FORMATS)}")
    cfg = _load(config)
    if count:
        print(matrix.count(cfg))
    elif fmt == "table":
        _expand_table(cfg, limit)
    else:
        _expand_stream(cfg, fmt)


EXPAND_FORMATS = ("table", "json", "csv")
_EXPAND_COLUMNS = ("workload", "backend", "workers", "tasks", "size", "start_method", "python")


def _expand_table(cfg, limit: int) -> None:
    """The first ``limit`` trials at once, then the total (counted, not walked, where it can be)."""
    import itertools

    from conc_lab.present import tables

    shown = list(itertools.islice(matrix.expand(cfg), max(limit, 0)))
    table, constant = tables.trials_table(shown)
    title = f"{cfg.name}: trials (each runs {cfg.warmup} warm-up + {cfg.repeats} measured)"
    out_console.print(title + (f"; {constant}" if constant else ""), markup=False, highlight=False)
    out_console.print(table, markup=False, highlight=False)
    n = matrix.count(cfg)
    out_console.print(f"{n:,} trials" + (f" (first {limit:,} shown)" if n > limit else ""), highlight=False)


def _expand_stream(cfg, fmt: str) -> None:
    """Every trial with all its parameters, one line each as it is expanded: a JSON array or CSV."""
    import csv
    import json

    writer = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
    first = True
    for n, trial in enumerate(matrix.expand(cfg)):
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


def _load_runs(paths: list[Path], filters: dict, what: str | None = None):
    from conc_lab.store import core as store

    pushed = {k: v for k, v in filters.items() if v and k != "workers"}  # workers: see summarize
    try:
        df = store.load(paths, **pushed)
    except (store.StoreError, ValueError) as exc:
        _die(str(exc))
    if df.empty:
        where = what or ", ".join(map(str, paths))
        _die(f"{where}: no trial runs recorded there" + (" that match every filter" if pushed else ""))
    for note in df.attrs.get("notes", []):  # e.g. merged shards that ran at different times
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    return df


def _check_format(fmt: str) -> None:
    from conc_lab.present.render import FORMATS

    if fmt not in FORMATS:
        _die(f"--format: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _width() -> int:
    return out_console.width


def _emit(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


_PATHS_HELP = "Results: a sweep directory, a sweep name's folder or a results root."
_FILTER_HELP = "Only these (repeatable); filtered while reading, so a large store is not read whole."


@app.command()
def summarize(
    paths: list[Path] = typer.Argument(..., help=_PATHS_HELP),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv, markdown or json."),
    workload: list[str] = typer.Option(
        None, "--workload", help=_FILTER_HELP + " A unique function name will do: --workload sleep."
    ),
    backend: list[str] = typer.Option(None, "--backend", help=_FILTER_HELP),
    workers: list[int] = typer.Option(None, "--workers", help=_FILTER_HELP),
    size: list[int] = typer.Option(None, "--size", help=_FILTER_HELP),
    sweep_ids: list[str] = typer.Option(
        None, "--sweep", help="Only this sweep: its id, or the start of one (repeatable)."
    ),
    latest: bool = typer.Option(False, "--latest", help="Only the most recent sweep of each config."),
    wide: bool = typer.Option(False, "--wide", help=_WIDE_HELP),
):
    """Median, 95% interval, speedup over sequential, efficiency and flags per trial parameter set.

    The table fits the terminal (short workload names, backend/start method, speedup with its
    interval); --wide shows every column, -f csv|markdown|json gives them to other tools.
    Every sweep under PATHS is pooled unless --sweep or --latest says which. A filter keeps the
    sequential runs each speedup is measured against; a value that matches no run is an error.
    """
    from conc_lab.analysis import summary as summaries
    from conc_lab.present import render

    _check_format(fmt)
    wanted = {"workload": workload, "backend": backend, "workers": workers, "size": size}
    dirs, filters = _select(paths, sweep_ids, latest, {k: v for k, v in wanted.items() if v})
    df = _load_runs(dirs, filters, what=", ".join(map(str, paths)))
    if workers:  # the baseline ran with one worker: keep it beside the counts asked for
        df = df[df["workers"].isin(filters.pop("workers")) | (df["backend"] == "sequential")]
    summary = summaries.summarize(df, min_effect=_floor(*paths))
    _emit(_table(summary, wide) if fmt == "table" else render.render(summary, fmt))
    if fmt in ("table", "markdown") and _noise_line(df):
        _emit(f"\n{_noise_line(df)}\n")
    if fmt in ("table", "markdown") and len(summaries.interpreter_labels(df)) > 1:
        side = summaries.by_interpreter(df, summary).round(2)
        title = "speedup over each interpreter's own sequential baseline, side by side"
        _emit(f"\n{title}:\n" if fmt == "table" else f"\n**{title}**\n\n")
        _emit(render.render(side, fmt, width=_width()))


def _floor(*paths: Path) -> float:
    """The A/A floor of ``conclab selftest`` found at or above ``paths`` (0 where none), told once."""
    from conc_lab.analysis.selftest import machine_floor

    floor = machine_floor(*paths)
    if floor is not None:
        console.print(f"note: no change under ±{100 * floor:.1f}% is called (A/A self-test)", highlight=False)
    return floor or 0.0


def _select(paths: list[Path], sweep_ids: list[str], latest: bool, wanted: dict) -> tuple[list[Path], dict]:
    """The sweep folders and the exact filter values a person's names stand for; exit 2 if none."""
    from conc_lab.analysis import selection
    from conc_lab.store import core as store

    try:
        dirs = selection.sweeps(paths, sweep_ids or (), latest)
        filters = {}
        for column, values in wanted.items():
            present = store.load(dirs, columns=[column], env=False)[column].unique() if dirs else []
            filters[column] = selection.resolve(column, values, present)
    except (selection.SelectError, store.StoreError) as exc:
        _die(str(exc))
    if "backend" in filters:
        filters["backend"] = selection.keep_baseline(filters["backend"])
    return dirs, filters


@app.command()
def compare(
    a: Path = typer.Argument(..., help="The results to compare against (before, machine A, Python X)."),
    b: Path = typer.Argument(..., help="The results to compare (after, machine B, Python Y)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv, markdown or json."),
    alpha: float = typer.Option(0.05, "--alpha", help="False discovery rate for a significant change."),
):
    """Ratio b/a of the median run time per trial, with its interval and a Mann–Whitney test."""
    from conc_lab.analysis import compare as comparing
    from conc_lab.analysis.sizes import align_sizes
    from conc_lab.present import comparison
    from conc_lab.present.render import render

    _check_format(fmt)
    if not 0 < alpha < 1:
        _die(f"--alpha: must be between 0 and 1, got {alpha}")
    runs_a, runs_b, notes = align_sizes(_load_runs([a], {}), _load_runs([b], {}))
    result = comparing.compare(runs_a, runs_b, alpha=alpha, min_effect=_floor(a, b))
    if comparison.unrelated(result):
        _die(comparison.unrelated_line(result, a, b))
    for note in notes:  # wrapped between words: a terminal would cut them anywhere
        console.print(f"note: {note}", highlight=False, markup=False)
    _emit(render(result, fmt, width=_width()))


@app.command()
def report(
    paths: list[Path] = typer.Argument(..., help=_PATHS_HELP),
    out: Path = typer.Option(Path("report"), "--out", "-o", help="Where to write the PNGs and index.html."),
    title: str = typer.Option(None, "--title", help="Page title (default: the sweeps' names)."),
):
    """Write PNG plots and one self-contained HTML page (speedup, run times, task timelines, tables)."""
    import time

    from conc_lab.present.report import write_report

    t0 = time.perf_counter()
    df = _load_runs(paths, {})
    try:
        page = write_report(df, out, title=title, sources=paths)
    except OSError as exc:
        _die(f"{out}: cannot write the report ({exc.strerror or exc})")
    elapsed = time.perf_counter() - t0
    console.print(f"report of {len(df):,} runs written in {elapsed:.1f} s → {page}", highlight=False)


@app.command()
def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when any finding can spoil measurements."),
):
    """What on this machine could spoil a measurement, each with a plain recommendation.

    Checks SMT siblings, CPU governor and turbo, load, isolated CPUs, cgroup CPU quota,
    affinity, timer, the GIL, a hypervisor and Ray. `conclab sweep` stores the same findings.
    Then lists the Python interpreters found (PATH, pyenv, common places) and which can host
    trials, with the value to name each by in `matrix.python`.
    """
    import json

    from conc_lab.machine import doctor as checks

    findings = checks.diagnose() + checks.interpreters()
    if as_json:
        out_console.print_json(json.dumps([f.to_dict() for f in findings]))
    else:
        colour = {"ok": "green", "info": "blue", "warn": "yellow", "bad": "bold red"}
        table = Table("check", "status", "seen", "advice", show_lines=False)
        for f in findings:
            # details hold paths and YAML snippets: text, not rich markup
            table.add_row(f.name, f"[{colour[f.status]}]{f.status}[/]", Text(f.detail), Text(f.advice))
        out_console.print(table)
    if strict and any(f.spoils for f in findings):
        raise typer.Exit(1)


@app.command()
def merge(
    results: Path = typer.Argument(
        ..., help="A config's results folder holding --shard sweeps, e.g. results/cpu."
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
    from conc_lab.store.core import StoreError

    try:
        result = merging.merge(results, out)
    except StoreError as exc:
        _die(str(exc))
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


@app.command()
def check(
    paths: list[Path] = typer.Argument(..., help="Results folders or sweep folders to check."),
):
    """Read every file under PATHS; report damaged files and runs stored twice, one line each.

    Exit code 0 when all is whole, 1 when anything is damaged or doubled.
    """
    from conc_lab.store.check import check as check_store

    report = check_store(paths)
    for line in report.problems:
        console.print(f"[bold red]damaged:[/] {line}", highlight=False, soft_wrap=True)
    for line in report.notes:
        console.print(f"note: {line}", highlight=False, soft_wrap=True)
    verdict = "ok" if report.ok else f"{len(report.problems)} problems"
    console.print(f"{report.sweeps} sweeps, {report.runs} runs: {verdict}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


app.command()(selftest.selftest)


def main() -> None:  # pragma: no cover - console entry point
    try:
        app()
    except BrokenPipeError:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()


from conc_lab.cli.advise import advise  # noqa: E402  (its own module: one command, one file)

app.command()(advise)

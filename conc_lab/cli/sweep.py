"""``conclab sweep``: run a matrix, show its progress, print the summary and one honest last line."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import time
from pathlib import Path

import typer

from conc_lab.cli.common import WIDE_HELP, app, console, die, emit, example, load, out_console, say, together
from conc_lab.host.units import duration

_CONFIG = typer.Argument(..., help="The experiment matrix, e.g. configs/cpu.yaml.")
_OUT = typer.Option(Path("results"), "--out", "-o", help="Results root; rows go to OUT/<name>/<sweep_id>/.")
_RESUME = typer.Option(
    False, "--resume", help="Continue the latest sweep of this config: run only what is missing."
)
_FAIL_FAST = typer.Option(False, "--fail-fast", help="Stop at the first failed, hung or wrong trial run.")
_QUIET = typer.Option(
    False, "--quiet", "-q", help="Print only errors and the final line (no progress, no table)."
)
_WIDE = typer.Option(False, "--wide", help=WIDE_HELP)
_VERBOSE = typer.Option(
    False,
    "--verbose",
    "-v",
    help="Also say where the overhead per run goes: start-up, the runner, the trial host's guards.",
)
_SHARD = typer.Option(
    None,
    "--shard",
    help="Run only slice K of N of the trials, e.g. 3/10, or auto in a SLURM job array; see merge.",
)
_CLUSTER = typer.Option(
    None, "--cluster", help="Spread the trials over the nodes of this Ray cluster (HOST:PORT or auto)."
)
_RAY_ADDRESS = typer.Option(
    None,
    "--ray-address",
    help="Ray runtime for ray trials (default: config ray.address, RAY_ADDRESS, or a local one).",
)
_REPEATS = typer.Option(
    None,
    "--repeats",
    min=1,
    help="Measured runs per trial, instead of the config's repeats (recorded in the sweep; "
    "a --resume must give the same).",
)
_WARMUP = typer.Option(
    None,
    "--warmup",
    min=0,
    help="Warm-up runs per trial, instead of the config's warmup (recorded; a --resume must give the same).",
)
_PRECISION = typer.Option(
    None,
    "--precision",
    help="Add rounds after the repeats while a speedup's 95% interval is wider than ±this share "
    "of it (0.05: ±5%), up to the config's precision.max_repeats (else 6 × repeats); as precision: "
    "in the file (recorded; a --resume must give the same). A run flagged noisy is also run again "
    "(noise.redo: 2 unless the file sets it); the run it replaces is kept with status redone and "
    "the last line counts it as redone.",
)
_EXAMPLES = example(
    "conclab sweep configs/smoke.yaml",
    "conclab sweep configs/cpu.yaml -o results --repeats 3 --warmup 0",
    "conclab sweep configs/smoke.yaml --precision 0.1",
    "conclab sweep configs/cpu.yaml --resume",
)


@app.command(epilog=_EXAMPLES)
def sweep(
    config: Path = _CONFIG,
    out: Path = _OUT,
    resume: bool = _RESUME,
    fail_fast: bool = _FAIL_FAST,
    quiet: bool = _QUIET,
    wide: bool = _WIDE,
    shard: str = _SHARD,
    cluster: str = _CLUSTER,
    ray_address: str = _RAY_ADDRESS,
    repeats: int = _REPEATS,
    warmup: int = _WARMUP,
    precision: float = _PRECISION,
    verbose: bool = _VERBOSE,
):
    """Run every trial of CONFIG, pinned to cores, and write one Parquet row per measured run.

    Prints progress, failures as they happen, and a summary table at the end. Exit code 0 when
    every run succeeded with the sequential answer, 1 when any failed, timed out or was wrong,
    2 for a bad config, 130 when interrupted (resume with --resume).
    """
    cfg = _overridden(load(config), repeats, warmup, precision)
    _check_sweep_flags(cluster, ray_address, shard)
    from conc_lab.run.cluster import results_root  # no Ray import: a relative --out inside a Ray job

    out, moved = results_root(out)
    if moved:
        console.print(f"[yellow]warning:[/] {moved}", highlight=False)
    flags = {
        "shard": shard,
        "cluster": cluster,
        "ray_address": ray_address,
        "repeats": repeats,
        "warmup": warmup,
        "precision": precision,
    }
    result, spent = _run(cfg, out, resume, fail_fast, quiet, flags)
    whole_s = command_s()  # the command so far: the summary table below is not a cost of the runs
    # A stop came: the ones after it (SLURM signals every process of the job, and the job script's
    # trap passes its own on) must not cut the outcome short; the first one was enough.
    with _sigterm_ignored(result.interrupted or result.stopped_late):
        _report(result, spent, whole_s, config, out, resume, quiet, wide, verbose, flags)


def _report(result, spent, whole_s, config, out, resume, quiet, wide, verbose, flags) -> None:
    """What the sweep did: its table, its last line, its exit code."""
    stopped_table, late = False, result.stopped_late  # late: stopped once every run was stored
    in_sweep = None  # runs the table above holds: a resumed sweep's earlier ones too
    # A batch scheduler that stopped the sweep kills it KillWait seconds later (30 s by default, 5
    # on some sites): the resume line comes first, and the table, which can take seconds, is left out.
    if not quiet and not late and not (result.interrupted and "SLURM_JOB_ID" in os.environ):
        try:
            in_sweep = _print_summary(result.sweep_dir, wide, result if result.interrupted else None, spent)
        except KeyboardInterrupt as exc:  # every run is saved: a stop only cuts the table short
            stopped_table, late = True, isinstance(exc, Terminated)
            how = "SIGTERM" if late else "Ctrl-C"
            console.print(f"\n[yellow]table cut short[/] ({how}); every run is saved", highlight=False)
    if verbose and result.recorded:
        say(overhead_line(result, whole_s))
    _print_outcome(result, config, out, resume, whole_s, in_sweep if resume else None, late=late, **flags)
    if stopped_table and not late:  # Ctrl-C at the table: 130, as a shell expects
        raise typer.Exit(130)


@contextlib.contextmanager
def _sigterm_ignored(active: bool):
    """SIGTERM ignored for the duration, where ``active``; its handler put back after."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN) if active else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _overridden(cfg, repeats: int | None, warmup: int | None, precision: float | None = None):
    """``cfg`` with the command line's --repeats / --warmup / --precision in place of the file's;
    exit 2 if refused."""
    from conc_lab.config.document import override
    from conc_lab.config.errors import ConfigError

    try:
        return override(cfg, repeats=repeats, warmup=warmup, precision=precision)
    except ConfigError as exc:
        die(str(exc))


def _run(cfg, out: Path, resume: bool, fail_fast: bool, quiet: bool, flags: dict):
    """The sweep itself, under its progress bar, and the rounds after which ``precision:`` ran out
    of max_repeats with speedups still wide (else None); a bad config, store or cluster exits 2."""
    from conc_lab.cli.progress import SweepRenderer, sweep_progress  # rich.progress: for this command only
    from conc_lab.config.errors import ConfigError
    from conc_lab.plan.runs import AlreadyMerged
    from conc_lab.run import runner  # pandas and pyarrow load here, for this command only
    from conc_lab.run.cluster import ClusterError
    from conc_lab.store.layout import StoreError

    progress = sweep_progress(console, quiet)
    render = SweepRenderer(progress, cfg.name, quiet)
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
                shard=flags["shard"],
                cluster=flags["cluster"],
                ray_address=flags["ray_address"],
            )
        return result, None if result.interrupted else render.rounds_spent
    except (ConfigError, StoreError, ClusterError) as exc:  # ClusterError: unreachable, or every node lost
        die(str(exc))
    except AlreadyMerged as done:  # a SLURM step resuming each shard, then merging, after its merge
        say(f"{done}: nothing to run")
        raise typer.Exit(0) from None


def _quiet_ray_banner() -> None:
    """Keep Ray's token-authentication notice off the screen: it prints at every ray.init.

    The runtime conc_lab starts listens on 127.0.0.1 only; the notice says nothing about the
    measurements, and a sweep with Ray trials would print it every time, even under -q.
    Ray's other warnings still show.
    """
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)


def _check_sweep_flags(cluster: str | None, ray_address: str | None, shard: str | None) -> None:
    for flag, value in (("--cluster", cluster), ("--ray-address", ray_address)):
        if value is not None and not value.strip():  # "$RAY_ADDRESS" unset: not "here, locally"
            die(f"{flag}: empty ({value!r}); give an address (HOST:PORT) or leave {flag} out")
    if cluster is not None and ray_address is not None:
        die("--ray-address: a cluster sweep's ray trials run on the --cluster cluster; give one or the other")
    if shard is not None:
        from conc_lab.plan.runs import parse_shard

        try:
            parse_shard(shard)
        except ValueError as exc:
            die(str(exc))


def _print_outcome(
    result,
    config: Path,
    out: Path,
    resume: bool,
    whole_s: float | None,
    in_sweep: int | None = None,
    late: bool = False,
    **flags,
) -> None:
    """The sweep's last line (its honest wall time, the overhead per run) and its exit code.

    ``late``: a stop (SIGTERM: a SLURM job's time limit, scancel) came once every run was stored:
    the sweep is complete, and exits with its own code, not 130, which asks for a resume.
    ``in_sweep``: the runs the table above holds, where a resume shows earlier runs too."""
    complete = resume and result.planned == 0 and not result.interrupted
    stored_failures = _stored_failures(result.sweep_dir) if complete else ""
    say(final_line(result, resume, whole_s, stored_failures, in_sweep), markup=True)
    if late and not result.interrupted:
        say(
            "stopped (Ctrl-C or SIGTERM: in a job, its time limit or scancel) once every run was "
            "stored: the sweep is complete; nothing to resume"
        )
    if result.interrupted:
        again = resume_command(config, out, **flags)
        head = "interrupted; what ran is saved. Resume with: "
        # in a terminal too narrow for both, the command starts its own line, so that the terminal
        # does not break it mid-word (a log keeps the one line that scripts and greps expect)
        gap = "\n  " if console.is_terminal and len(head) + len(again) > console.width else ""
        console.print(
            f"[yellow]interrupted[/]; what ran is saved. Resume with: {gap}{again}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130)
    if not result.ok or stored_failures:
        raise typer.Exit(1)


def _stored_failures(sweep_dir: Path) -> str:
    """`` (2 of 12 runs failed, 1 wrong)`` for a complete sweep that recorded failures, else empty: a
    resume that runs nothing still exits as the sweep did (1), or a script reads success."""
    from conc_lab import schema
    from conc_lab.store.load import load

    df = load([sweep_dir], columns=["status", "correct"], env=False)
    kept = df[df["status"].astype(str) != schema.REDONE]
    failed = int(kept["status"].astype(str).isin(schema.FAILURES).sum())
    wrong = int((kept["correct"] == False).sum())  # noqa: E712 - null: not checkable
    if not failed and not wrong:
        return ""
    parts = [f"{failed} of {len(kept)} runs failed" if failed else "", f"{wrong} wrong" if wrong else ""]
    return f" ({', '.join(p for p in parts if p)})"


def _noise_counts(result) -> str:
    """ ", 2 redone, 1 still noisy" for the final line; empty when no run was noisy."""
    parts = [
        f"{result.redone} redone" if result.redone else "",
        f"{result.noisy} {'still ' if result.redone else ''}noisy" if result.noisy else "",
    ]
    return "".join(f", {p}" for p in parts if p)


def command_s() -> float | None:
    """Seconds since this process started, the interpreter's own start-up included; None where unknown."""
    try:
        with open("/proc/self/stat", "rb") as f:
            started = int(f.read().rsplit(b")", 1)[1].split()[19])  # starttime: clock ticks after boot
        # The kernel counts in ticks (10 ms) and truncates: the process began within the tick after
        # ``started``. Its end is taken, so the age (and the overhead shared out of it) never claims
        # more than the command took; read from the tick's start, a 0.41 s sweep read 1 ms too long.
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - (started + 1) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return age if age > 0 else None


def overhead_line(result, whole_s: float | None) -> str:
    """Under -v: where the overhead per run goes (``runner.Overhead``), and over how many runs."""
    split = result.overhead(whole_s)
    runs = result.executed or result.recorded
    return (
        f"{own_overhead(split.total_s)} (the {'command' if whole_s else 'sweep'}'s wall time less "
        f"the runs' setup, run and teardown, over {runs} run{'s' * (runs != 1)}): start-up "
        f"{duration(split.startup_s)} (interpreter, imports, config, hosts), runner {duration(split.runner_s)} "
        f"(rows, journal, progress), trial host {duration(split.host_s)} (each run's fresh process, its "
        "guards, the pipes)"
    )


def own_overhead(seconds: float) -> str:
    r"""The overhead per run as the last line and ``-v`` both name it: whose it is, in 3 figures,
    the figure and "a run" one unit that ``say`` never breaks (it read "… overhead 60.4" / "ms a run").

    >>> own_overhead(0.34681)
    "conc_lab's own overhead 347\xa0ms\xa0a\xa0run"
    """
    return f"conc_lab's own overhead {together(f'{duration(seconds)} a run')}"


def final_line(
    result,
    resumed: bool = False,
    whole_s: float | None = None,
    stored_failures: str = "",
    in_sweep: int | None = None,
) -> str:
    """The sweep's last line: what it recorded, and where; also under -q.

    ``whole_s``: the command's whole time so far, for the overhead that a user pays per run.
    ``stored_failures``: what a complete sweep resumed had recorded as failed (``_stored_failures``).
    ``in_sweep``: the runs of the table above; where a resume's table holds more than it recorded,
    the line says "more" and the sweep's total (under a table of 75 runs, "66 runs are noisy",
    it read "62 runs recorded (…, 55 noisy)").
    """
    # a resume that ran only rounds a precision goal added has runs to tell: not "nothing to run"
    if resumed and result.planned == 0 and not result.recorded and not result.interrupted:
        return f"sweep {result.sweep_id} is complete: nothing to run{stored_failures} → {result.sweep_dir}"
    earlier = in_sweep is not None and in_sweep > result.recorded
    line = (
        f"{result.recorded}{' more' * earlier} run{'s' * (result.recorded != 1)} recorded "
        f"({result.failed} failed, {result.wrong} wrong, {result.skipped} skipped{_noise_counts(result)}"
    )
    if result.warmup_failed:  # not recorded, but a failure all the same (and exit code 1)
        line += f"; {result.warmup_failed} failed warm-up run{'s' * (result.warmup_failed > 1)}"
    line += f") in {result.wall_s:.1f} s"
    if whole_s is not None and whole_s - result.wall_s >= 0.05:  # else "in 0.1 s; … overhead 1.3 s a run"
        line += f" ({whole_s:.1f} s with start-up)"
    if result.recorded:  # a per-run figure over no runs would be the sweep's set-up, mislabelled
        line += f"; {own_overhead(result.overhead(whole_s).total_s)}"
    if earlier:
        line += f"; {in_sweep} in the sweep"
    return f"{line} → {result.sweep_dir}"


def resume_command(config: Path, out: Path, **options: str | int | None) -> str:
    """The command that continues this sweep: every flag that chose where and what it runs.

    >>> resume_command(Path("c.yaml"), Path("my out"), shard="2/3", cluster=None, repeats=3)
    "conclab sweep c.yaml --resume --out 'my out' --shard 2/3 --repeats 3"
    """
    words = ["conclab", "sweep", str(config), "--resume", "--out", str(out)]
    for name, value in options.items():
        if value is not None:
            words += [f"--{name.replace('_', '-')}", str(value)]
    return shlex.join(words)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's time limit or scancel), told apart from Ctrl-C where it matters."""


def _interrupt(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stops the sweep; SLURM's others are the same stop
    raise Terminated


def partial_line(df, result) -> str:
    """The line above an interrupted sweep's table: without it the table of the runs that ran
    looked like the whole sweep's. ``df``: every run stored in the sweep (an earlier invocation's
    too, when resumed); ``result.planned`` counts only what this invocation set out to run."""
    from conc_lab import schema

    stored = int((df["status"].astype(str) != schema.REDONE).sum())  # a redone run was replaced
    whole = stored - result.recorded + result.planned
    if stored > whole:  # a precision goal's rounds ran past the plan: "partial: 65 of 65 runs" read as done
        added = f"{stored - whole} of them in rounds added for precision"
        return f"partial: {stored} runs, {added}; interrupted (the table holds only the runs that ran)"
    return f"partial: {stored} of {whole} runs; interrupted (the table holds only the runs that ran)"


def _print_summary(sweep_dir: Path, wide: bool, interrupted=None, rounds_spent: int | None = None) -> int:
    """The summary table of the sweep's stored runs; ``interrupted``: the result of a sweep that
    was, whose table is headed by what part of the sweep it holds; ``rounds_spent``: see ``_run``.
    Returns how many runs the table holds (a redone run was replaced: not counted)."""
    from conc_lab import schema
    from conc_lab.cli.results import noise_note, slow_node_notes, summarize_noting, summary_table
    from conc_lab.store.load import load
    from conc_lab.store.manifest import read_manifest

    df = load(sweep_dir)
    if df.empty:
        return 0
    if interrupted is not None:
        say(f"[yellow]{partial_line(df, interrupted)}[/]", markup=True, to=out_console)
    shard = read_manifest(sweep_dir).shard
    emit(summary_table(summarize_noting(df, shard, sweep_dir.parent), wide, rounds_spent))
    noise_note(df)
    slow_node_notes(df)
    if not wide:
        say(
            f"[dim]every column: conclab summarize {sweep_dir} --wide (or -f csv|markdown|json)[/]",
            markup=True,
        )
    return int((df["status"].astype(str) != schema.REDONE).sum())

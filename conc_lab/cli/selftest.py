"""``conclab selftest``: the instrument's own A/A noise floor on this machine (#20).

Registered on the app by ``cli.main``. Parses and renders only: ``run.selftest.run_arms`` runs and records the two identical arms,
``analysis.selftest.aa_spread`` measures how far apart they read, and the floor goes into the
self-test's manifest, where ``summarize`` and ``compare`` find it (``machine_floor``).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True, emoji=False)
out_console = Console(emoji=False)


def _die(message: str, code: int = 2) -> None:
    from conc_lab.cli.common import die

    die(message, code, to=console)


#: Each fact one line where stderr is piped (for grep); in a terminal, wrapped between words: a
#: line the terminal cut itself split its words and the sweep's path ("recorded in r" / "esults/…").
_one_line = not console.is_terminal


def _load_line(before, after) -> str:
    """``load average 0.50 before, 0.62 after (over 1 min on 2 CPUs)``, from the doctor's two load
    findings (their detail: ``load average 0.50 over 1 min on 2 CPUs``); each as it was read."""
    prefix = "load average "
    if not (before.detail.startswith(prefix) and after.detail.startswith(prefix)):
        return f"load: {before.detail} before, {after.detail} after"
    b, _, over = before.detail[len(prefix) :].partition(" ")
    a = after.detail[len(prefix) :].partition(" ")[0]
    return f"{prefix}{b} before, {a} after ({over})"


def selftest(
    out: Path = typer.Option(
        Path("results"), "--out", "-o", help="Results root; recorded under OUT/selftest/."
    ),
    repeats: int = typer.Option(20, "--repeats", help="Rounds; each runs both arms in a random order."),
    size: int = typer.Option(
        100_000, "--size", help="Work size of the trial (sum_squares: ~4 ms at 100000 on a 2-core VM)."
    ),
    workload: str = typer.Option("experiments.cpu:sum_squares", "--workload", help="The trial's workload."),
):
    """Measure how far two identical arms differ here: the smallest effect worth calling.

    Runs one trial as two arms, interleaved in a fresh random order each round, and prints one
    line, e.g. "on this machine, two identical arms differ by up to ±2.1% (95%)". summarize and
    compare read the latest such floor under the same results root and call no smaller change.
    """
    import conc_lab
    from conc_lab.analysis.selftest import FLOOR_FIELD, aa_spread
    from conc_lab.run.selftest import record_floor, run_arms, workload_problem
    from conc_lab.store.layout import StoreError

    if repeats < 3:
        _die(f"--repeats: at least 3 rounds are needed for an interval, got {repeats}")
    if size < 1:
        _die(f"--size: must be a positive integer, got {size}")
    from conc_lab.config.model import INT64_MAX, Limits

    if size > INT64_MAX:  # the store's size column
        _die(f"--size: must be at most {INT64_MAX}, got {size}")
    if 2 * repeats + 1 > Limits().runs:  # as a sweep is refused: a warm-up and two runs a round
        _die(
            f"--repeats: {repeats:,} rounds of two runs is more than limits.runs ({Limits().runs:,}), more than it can finish"
        )
    problem = workload_problem(workload)
    if problem:  # before the load's warning and any run: nothing is written
        _die(f"--workload: {problem}")
    from conc_lab.machine import doctor

    before = doctor.load()
    if before.spoils:  # as a sweep warns: a floor measured under load is the load's floor
        console.print(
            f"[yellow]warning:[/] {doctor.summary_line([before])}", highlight=False, soft_wrap=_one_line
        )
    try:
        with console.status(f"A/A self-test: {repeats} rounds of two arms of {workload} ..."):
            arms = run_arms(out, workload=workload, size=size, repeats=repeats)
        spread = aa_spread(conc_lab.load(arms.sweep_dir))
    except (StoreError, ValueError, OSError) as exc:
        _die(str(exc))
    record_floor(arms.sweep_dir, FLOOR_FIELD, spread.floor)
    out_console.print(spread.line(), highlight=False)
    console.print(
        f"{spread.pairs} pairs of {workload} at size {size} (median run {spread.median_run_s * 1e3:.1f} ms), "
        f"ratio b/a {spread.ratio:.3f} ({spread.low:.3f}–{spread.high:.3f}); recorded in {arms.sweep_dir}",
        highlight=False,
        soft_wrap=_one_line,
    )
    console.print(_load_line(before, doctor.load()), highlight=False, soft_wrap=_one_line)
    if arms.failed:
        _die(f"{arms.failed} of {arms.runs} runs failed: the floor stands on the others", code=1)

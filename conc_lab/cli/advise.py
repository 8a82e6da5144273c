"""``conclab advise module:function``: threads or processes for this function, measured, verdict first.

Parses, calls ``conc_lab.advise``, prints: the verdict line first (a transient status line
shows progress meanwhile, so nothing stands above the verdict), then the evidence, then
where the runs are and the one command that reruns or extends them as a sweep.
"""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from conc_lab import events

# Both consoles take their width from the terminal, else COLUMNS, else 80 (as the other commands').
# No emoji codes: the function's name is printed everywhere, and "mywork:sleepy" read as one
# (":sleepy:") came out "mywork😪".
console = Console(stderr=True, emoji=False)
out_console = Console(emoji=False)

_STOPPED = {
    "settled": "settled",
    "budget": "no time left in the budget for another round",
    "complete": "every planned round ran",
    "interrupted": "interrupted",
}


def advise(
    function: str = typer.Argument(
        ...,
        help="The function, called as fn(task, size) for tasks 0, 1, …, the size calibrated unless "
        "given: module:function or path/to/file.py:function.",
    ),
    budget: float = typer.Option(120.0, "--budget", help="Seconds the whole advice may take (default 120)."),
    size: int = typer.Option(
        None, "--size", help="The size to call it with (default: calibrated, as size: auto)."
    ),
    ray: bool = typer.Option(False, "--ray", help="Also measure Ray (off by default: it is slow to start)."),
    out: Path = typer.Option(
        Path("results"), "--out", "-o", help="Results root; runs go to OUT/advise-<module>.<function>/."
    ),
    fmt: str = typer.Option("table", "--format", "-f", help="table, or json for scripts."),
):
    """Threads or processes (or asyncio, …) for FUNCTION on this machine: a verdict, measured.

    Plans a matrix from the function (every backend this machine can run, 1 … the cores
    workers, further for work that waits), runs it in shuffled, interleaved rounds (a round runs
    each backend once at each worker count) until the verdict settles, after 5 rounds at least (5
    runs a side, as a precise speedup needs), or the budget is spent, and prints the verdict
    first, then the evidence.
    The runs are an ordinary sweep (summarize, report and compare read it); its YAML is saved
    beside them as advise.yaml. Exit code 0; 2 when the function cannot be run; 130 when
    interrupted (what ran is saved, and the command to resume is printed).
    """
    if fmt not in ("table", "json"):
        _die(f"--format: unknown format {fmt!r}; use table or json")
    from conc_lab.advice import AdviceInterrupted, AdviseError
    from conc_lab.advice import advise as run_advice
    from conc_lab.config.errors import ConfigError
    from conc_lab.store.layout import StoreError

    signal.signal(signal.SIGTERM, _interrupt)
    status = _Status(console, function, budget)
    try:
        # Text, not a string: a status string is read as markup and emoji codes whatever the console
        with console.status(Text(f"advise {function}: checking the function"), spinner="dots") as live:
            status.live = live
            advice = run_advice(function, budget_s=budget, size=size, ray=ray, out=out, on_event=status)
    except (AdviseError, ConfigError, StoreError) as exc:
        _die(str(exc))
    except AdviceInterrupted as stop:  # after the runs, while the verdict was drawn from them
        _command(console, "[yellow]interrupted[/]; what ran is saved. Resume with:", stop.rerun)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        console.print("interrupted before any run: nothing was saved", highlight=False)
        raise typer.Exit(130) from None
    if fmt == "json":
        print(json.dumps(_json(advice), indent=2, ensure_ascii=False))
    elif advice.verdict.rounds or not advice.interrupted:  # stopped in the warm-up: no verdict to show
        _print(advice, out_console)
    if advice.interrupted:
        _command(console, "[yellow]interrupted[/]; what ran is saved. Resume with:", advice.rerun)
        raise typer.Exit(130)


def _die(message: str) -> None:
    """``error: message`` on stderr, exit 2. The message as Text: it holds what the user typed, and
    "[...]" in a path is not markup. One line in a log or a pipe; in a terminal wrapped between
    words, as common.say does: the terminal folds anywhere ("ValueError: … (runs kep" / "t in")."""
    line = Text.assemble(("error:", "bold red"), " ", message)
    if console.is_terminal:
        line.overflow = "ignore"  # a word wider than the terminal is left whole
        console.print(line, highlight=False, crop=False)
    else:
        console.print(line, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _json(advice) -> dict:
    return {
        **advice.verdict.to_dict(),
        "size": advice.plan.probe.size,  # calibrated unless --size: the size its break-evens are told against
        "tasks": advice.plan.tasks,
        "stopped": advice.stopped,
        "wall_s": round(advice.wall_s, 3),
        "sweep_dir": str(advice.sweep_dir),
        "advise_yaml": str(advice.yaml_path),
        "rerun": advice.rerun,
    }


def _print(advice, console: Console) -> None:
    lines = advice.verdict.lines()
    # folded to the terminal's width in a terminal; a log or a pipe keeps each line whole, as
    # common.say does, for grep (the folder of the runs came on a line of its own after "→ ")
    fold = console.is_terminal
    console.print(lines[0], style="bold", highlight=False, markup=False, soft_wrap=not fold)
    for line in lines[1:]:
        console.print(
            _hanging(line, console.width) if fold else line, highlight=False, markup=False, soft_wrap=True
        )
    how = _STOPPED.get(advice.stopped, advice.stopped)
    console.print(
        f"{advice.verdict.rounds} round{'s' * (advice.verdict.rounds != 1)} in {advice.wall_s:.0f} s ({how}) → {advice.sweep_dir}",
        highlight=False,
        markup=False,
        soft_wrap=not fold,
    )
    # interrupted, "Resume with:" follows with this command: it read twice, one line under the other
    if advice.interrupted:
        return
    verb = "run it longer" if not advice.verdict.settled else "rerun or extend it"
    _command(console, f"to {verb}:", advice.rerun)


def _command(console: Console, head: str, command: str) -> None:
    """``head command``, the command never broken by a newline of ours: at 80 columns the last line
    was wrapped between its words ("… advise.yaml" / "--resume --out results"), and a command copied
    from two lines runs as two. Where both do not fit a terminal, the command starts its own line and
    the terminal folds it if it must (a copy joins what a terminal folded); a log keeps one line."""
    plain = Text.from_markup(head).plain
    gap = "\n  " if console.is_terminal and cell_len(plain) + 1 + cell_len(command) > console.width else " "
    console.print(Text.from_markup(head) + Text(gap + command), highlight=False, soft_wrap=True)


def _hanging(line: str, width: int) -> str:
    """``line`` wrapped to ``width`` with its continuation lines indented past its own indent, so an
    evidence line's second half does not read as a line of its own at column 0.

    >>> print(_hanging("  threading 0.99× (0.97–1.01) with 2 workers: GIL-bound", 40))
      threading 0.99× (0.97–1.01) with 2
          workers: GIL-bound
    """
    indent = line[: len(line) - len(line.lstrip())]
    return textwrap.fill(
        line,
        width=max(width, 40),
        subsequent_indent=indent + "    ",
        break_long_words=False,  # a path or a command stays whole, to be copied
        break_on_hyphens=False,
    )


class _Status:
    """Tells progress on one transient status line (the sweep's warnings come with the verdict's notes)."""

    def __init__(self, console: Console, function: str, budget: float):
        self.console, self.function, self.budget = console, function, budget
        self.live = None
        self.round = 0
        self.runs = 0

    def __call__(self, event: events.Event) -> None:
        from conc_lab.advice.loop import AdvicePlanned, RoundDone

        if isinstance(event, AdvicePlanned):
            p = event.plan
            self._show(
                f"{len(p.arms)} backends × workers {', '.join(map(str, p.workers))}, size {p.probe.size:,}: warming up"
            )
        elif isinstance(event, RoundDone):
            self.round = event.round
            self._show(f"round {event.round} done, {event.elapsed_s:.0f} s of {self.budget:.0f} s")
        elif isinstance(event, events.RunFinished) and event.measured:
            self.runs += 1
            row = event.row
            self._show(f"round {self.round + 1}: {row['backend']} w={row['workers']} ({self.runs} runs)")

    def _show(self, text: str) -> None:
        if self.live is not None:
            self.live.update(Text(f"advise {self.function}: {text}"))


def _interrupt(signum, frame):
    raise KeyboardInterrupt

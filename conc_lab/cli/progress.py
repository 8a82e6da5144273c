"""A sweep's progress on the terminal: the bar, and one line for each event worth a line.

``SweepRenderer`` is the sweep's ``on_event`` handler. It picks a method by the event's class
from ``HANDLERS``, an explicit map; tests/test_cli_events.py fails when an event in
``conc_lab.events`` has no entry, so a new or renamed event cannot lose its output silently.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column

from conc_lab import events
from conc_lab.cli.common import say
from conc_lab.run.progress import BatchLines, planned_runs, precision_line, round_added_line


class _Progress(Progress):
    """A bar two columns short of the terminal's width.

    A line that fills the last column leaves the cursor waiting to wrap: the ``^C`` a terminal
    echoes on Ctrl-C then starts a new line, the redraw clears only that one, and the bar shows
    twice. With two columns free the echo lands on the bar's own line and is redrawn over.
    """

    def make_tasks_table(self, tasks):
        table = super().make_tasks_table(tasks)
        live = getattr(self, "live", None)  # Progress.__init__ builds a table before its Live exists
        if live is not None:
            table.width = max(1, live.console.width - 2)  # room for the 2 characters of "^C"
        return table


def sweep_progress(console: Console, quiet: bool) -> Progress:
    """The sweep's progress bar, its width steady: the trial label has a column of fixed width."""
    label_width = max(12, min(32, console.width - 60))
    return _Progress(
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
        # Not a terminal (a pipe, a log): the renderer's plain lines tell the progress there, and a
        # bar would be drawn once more at the end beside them.
        disable=quiet or not console.is_terminal,
        transient=False,
        expand=True,
    )


class SweepRenderer:
    """Prints a sweep's events (``conc_lab.events``) as they come: one method per event class.

    ``quiet`` keeps only what went wrong (failed, hung or wrong runs, lost nodes).
    """

    def __init__(self, progress: Progress, name: str, quiet: bool = False):
        self.progress, self.name, self.quiet = progress, name, quiet
        self.bar = None
        self.total = 0  # runs the bar waits for: rounds ``precision:`` adds raise it
        self.per_node: dict[str, object] = {}  # cluster sweeps: a progress line of runs done per node
        self.calibration_said: dict[str, float] = {}  # size auto: when the last step line was printed
        self.calibration_sizes: dict[str, int] = {}  # size auto: the size each workload last timed
        # precision: the rounds after which max_repeats stopped the sweep with speedups still wide
        # (None: it reached its target, or had none): the table's "next:" then asks for no more rounds
        self.rounds_spent: int | None = None
        # Not a terminal (a batch job's log): no bar is drawn there, so plain lines tell progress.
        self.batch = None if progress.console.is_terminal or quiet else BatchLines(self._say)

    def __call__(self, event: events.Event) -> None:
        handler = HANDLERS.get(type(event))
        if handler is not None:  # every event of conc_lab.events has one (a test says so)
            handler(self, event)

    def _say(self, text: str, prose: bool = False) -> None:
        """A line above the bar, wrapped between words in a terminal (``common.say``: a path stays
        whole); ``prose``, with nothing to copy, is wrapped in a log too."""
        if self.quiet:
            return
        if prose:
            self.progress.console.print(text, highlight=False)
        else:
            say(text, markup=True, to=self.progress.console)

    def _node_line(self, node_id: str, hostname: str | None) -> object:
        if node_id not in self.per_node:
            self.per_node[node_id] = self.progress.add_task(
                f"  node {hostname or '?'} {node_id[:8]}", total=None, last=""
            )
        return self.per_node[node_id]

    def planned(self, e: events.Planned) -> None:
        self.total = e.total
        if e.total:  # nothing to run (a complete sweep resumed): no empty 0/0 bar
            self.bar = self.progress.add_task(self.name, total=e.total, last="")
        # the bar counts every run it waits for: warm-ups too, so the header names them
        self._say(f"{e.trials} trials, {planned_runs(e)} → {e.sweep_dir}")
        if self.batch is not None:
            self.batch.planned(e.total)

    def run_finished(self, e: events.RunFinished) -> None:
        from conc_lab import schema  # the sweep has loaded it (and pyarrow) already

        row = e.row
        label = f"{row['backend']} w={row['workers']} {row['workload'].rsplit(':', 1)[-1]}"
        self.progress.update(self.bar, advance=1, last=label)
        if self.batch is not None:
            self.batch.ran(row["status"] in schema.FAILURES, row["correct"] is False)
        if row.get("node_id"):
            self.progress.update(self._node_line(row["node_id"], row.get("hostname")), advance=1, last=label)
        if row["status"] not in (schema.OK, schema.SKIPPED) or row["correct"] is False:
            what = "WRONG ANSWER" if row["status"] == schema.OK else row["status"].upper()
            err = (row["error"] or "differs from the sequential answer").strip().splitlines()
            when = f"repeat {row['repeat']}" if e.measured else "warm-up"
            self.progress.console.print(
                f"[red]{what}[/] {label} {when}: {err[-1] if err else ''}", highlight=False
            )

    def warned(self, e: events.Warned) -> None:
        self._say(f"[yellow]warning:[/] {e.text}")

    def ray_started(self, e: events.RayStarted) -> None:
        how = "started a local runtime at" if e.started else "joined"
        self._say(f"ray: {how} {e.address} ({e.start_s:.1f} s)")

    def node_joined(self, e: events.NodeJoined) -> None:
        self._node_line(e.node_id, e.hostname)
        if self.batch is not None:  # no bar (nor its per-node lines) in a log: a line of its own
            self._say(f"node {e.hostname or '?'} {e.node_id[:8]} joined")

    def node_lost(self, e: events.NodeLost) -> None:
        self._node_line(e.node_id, e.hostname)
        self.progress.console.print(f"[yellow]node lost:[/] {e.hostname} {e.node_id[:8]}: {e.error}")

    def calibrating(self, e: events.Calibrating) -> None:
        from conc_lab.host.units import duration

        # Steps of microseconds fly by; a line for each step worth waiting for, and one every 2 s.
        said = self.calibration_said.get(e.workload)
        if said is None:
            self._say(f"size auto: calibrating {e.workload} (size: time of one task)")
        # the size that reached the target is timed twice, and the second line did not say so ("size
        # 16,384: 59.7 ms" / "size 16,384: 58.9 ms" read as a slip), so it says "again" now
        again = self.calibration_sizes.get(e.workload) == e.size
        self.calibration_sizes[e.workload] = e.size
        if said is None or e.task_s >= 1e-3 or e.elapsed_s - said >= 2.0:
            self._say(f"  size {e.size:,}{' again, to confirm' if again else ''}: {duration(e.task_s)}")
            self.calibration_said[e.workload] = e.elapsed_s

    def calibrated(self, e: events.Calibrated) -> None:
        from conc_lab.host.units import duration

        self._say(f"size auto: {e.workload} → {e.size} ({duration(e.task_s)} per task)")

    def round_added(self, e: events.RoundAdded) -> None:
        self.total += e.runs
        if self.bar is not None:
            self.progress.update(self.bar, total=self.total)
        else:  # a resume whose planned runs were all done: the added rounds are all it runs (it crashed)
            self.bar = self.progress.add_task(self.name, total=self.total, last="")
        if self.batch is not None:
            self.batch.added(e.runs)
        self._say(round_added_line(e), prose=True)

    def precision_reached(self, e: events.PrecisionReached) -> None:
        self.rounds_spent = e.rounds if e.wide else None
        self._say(precision_line(e), prose=True)


#: Which method renders which event: looked up by class, never by name.
HANDLERS: dict[type[events.Event], Callable[[SweepRenderer, events.Event], None]] = {
    events.Planned: SweepRenderer.planned,
    events.RunFinished: SweepRenderer.run_finished,
    events.Warned: SweepRenderer.warned,
    events.RayStarted: SweepRenderer.ray_started,
    events.NodeJoined: SweepRenderer.node_joined,
    events.NodeLost: SweepRenderer.node_lost,
    events.Calibrating: SweepRenderer.calibrating,
    events.Calibrated: SweepRenderer.calibrated,
    events.RoundAdded: SweepRenderer.round_added,
    events.PrecisionReached: SweepRenderer.precision_reached,
}

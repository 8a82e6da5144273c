"""``conclab summarize``, ``compare`` and ``report``: reading stored runs and showing them."""

from __future__ import annotations

import contextlib
import textwrap
import warnings
from pathlib import Path

import typer

from conc_lab.cli.common import PATHS_HELP, WIDE_HELP, app, console, die, emit, example, out_console, width

_FILTER_HELP = "Only these (repeatable); filtered while reading, so a large store is not read whole."


def load_runs(paths: list[Path], filters: dict, what: str | None = None):
    """The runs stored under ``paths`` that pass ``filters``; exit 2 if there are none or a store is bad."""
    from conc_lab.store.layout import StoreError
    from conc_lab.store.load import load

    pushed = {k: v for k, v in filters.items() if v and k != "workers"}  # workers: see summarize
    try:
        df = load(paths, **pushed)
    except (StoreError, ValueError) as exc:
        die(str(exc))
    if df.empty:
        where = what or ", ".join(map(str, paths))
        die(f"{where}: no trial runs recorded there" + (" that match every filter" if pushed else ""))
    for note in df.attrs.get("notes", []):  # e.g. merged shards that ran at different times
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    return df


_WIDE = typer.Option(False, "--wide", help=WIDE_HELP + " In a narrower terminal through less -S (q quits).")


def summary_table(summary, wide: bool, rounds_spent: int | None = None) -> str:
    """The summary for people: fitted to the terminal, or every column with ``wide``; ``rounds_spent``:
    the rounds after which a sweep's ``precision:`` ran out of max_repeats (``tables.note_meanings``)."""
    from conc_lab.present import render, tables

    if wide:  # as wide as it needs: the reader asked for every column and will scroll
        return render.render(summary, "table", width=10_000)
    return tables.summary_table(
        summary, out_console.width, color=out_console.is_terminal, rounds_spent=rounds_spent
    )


def summarize_noting(df, shard: str | None = None, results: Path | None = None, **kwargs):
    """``summarize(df, **kwargs)``, its warning of no sequential runs said as one note, not a Python
    warning (with its source line); for ``shard`` K/N, where its speedups come: the merge of ``results``."""
    from conc_lab.analysis import summary as summaries

    with _baseline_note(shard, results):
        return summaries.summarize(df, **kwargs)


def _show(summary, wide: bool, fmt: str) -> None:
    """The summary in ``fmt``; a wide table through ``_page``."""
    from conc_lab.present import render

    if fmt != "table":
        emit(render.render(summary, fmt))
    else:
        (_page if wide else emit)(summary_table(summary, wide))


def _page(text: str) -> None:
    """The wide table: in a terminal narrower than it, through ``less -S`` (lines kept whole, the
    arrow keys scroll sideways; q ends it), as git shows a long diff. Printed as it was, a terminal
    folded each of its rows over several screen lines and its columns could no longer be read."""
    import shutil
    import subprocess

    widest = max((len(line) for line in text.splitlines()), default=0)
    if not (out_console.is_terminal and widest > out_console.width and shutil.which("less")):
        emit(text)
        return
    try:
        subprocess.run(["less", "-S", "-R", "-X"], input=text, text=True, check=False)
    except (OSError, KeyboardInterrupt):
        emit(text)


def _check_format(fmt: str) -> None:
    from conc_lab.present.render import FORMATS

    if fmt not in FORMATS:
        die(f"--format: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def slow_node_notes(df) -> None:
    """A note per cluster node whose runs are slower than the other nodes' on the same trials."""
    from conc_lab.analysis.nodes import slow_nodes

    for slow in slow_nodes(df):
        console.print(f"[yellow]note:[/] {slow.text()}", highlight=False, soft_wrap=True)


def noise_note(df) -> None:
    """The paragraph under a summary table that says how many runs are noisy, why, and what next:
    after ``summarize`` and after a sweep's own table alike (the sweep's said ``N noisy`` unexplained)."""
    line = _noise_line(df)
    if line:
        emit("\n" + "\n".join(textwrap.wrap(line, width())) + "\n")  # between words


def _noise_line(df) -> str:
    """How many runs were redone as noisy and how many are still noisy: those the medians cannot vouch for."""
    from conc_lab import schema

    redone = int((df["status"].astype(object) == schema.REDONE).sum()) if "status" in df else 0
    noisy = 0
    if "noisy" in df and "status" in df:
        flagged = df["noisy"].astype(object).fillna(False).astype(bool)
        noisy = int(((df["status"].astype(object) == schema.OK) & flagged).sum())
    parts = [
        (f"{redone} runs were" if redone != 1 else "1 run was") + " redone as noisy" if redone else "",
        # "still" only where something was redone: else nothing was tried that they could still be
        (f"{noisy} runs are " if noisy != 1 else "1 run is ") + ("still " if redone else "") + "noisy"
        if noisy
        else "",
    ]
    text = "; ".join(p for p in parts if p)
    if not text:
        return ""
    why = "other processes took CPU, or the speed canary moved: -f csv has per row how many (noisy) and why (noise_note)"
    step = (
        "" if redone else "; next: `noise: {redo: 3}` in the config reruns a noisy run, or `conclab doctor`"
    )
    return f"{text} ({why}){step}"


_SUMMARIZE_EXAMPLES = example(
    "conclab summarize results/smoke --latest",
    "conclab summarize results --workload sleep --backend threading -f csv",
)


@app.command(epilog=_SUMMARIZE_EXAMPLES)
def summarize(
    paths: list[Path] = typer.Argument(..., help=PATHS_HELP),
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
    wide: bool = _WIDE,
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
    df = load_runs(dirs, filters, what=", ".join(map(str, paths)))
    # The one filter path, as the API's: rows are selected after the baseline is joined (what was
    # pushed down to the read only spared reading runs no selected row is measured against).
    summary = summarize_noting(df, min_effect=_floor(*paths), **filters)
    if wide or fmt != "table":  # every column: the noisy runs behind each row too
        from conc_lab.present.noise import with_noise_columns

        summary = with_noise_columns(df, summary)
    pooled = df["sweep_id"].nunique() if "sweep_id" in df.columns else 0  # a copy not counted: not pooled
    if pooled > 1 and not latest and not sweep_ids:
        _pooled_note(pooled, df)
    _show(summary, wide, fmt)
    if fmt in ("table", "markdown"):
        noise_note(df)
    slow_node_notes(df)
    if fmt in ("table", "markdown") and len(summaries.interpreter_labels(df)) > 1:
        side = summaries.by_interpreter(df, summary).round(2)
        title = "speedup over each interpreter's own sequential baseline, side by side"
        emit(f"\n{title}:\n" if fmt == "table" else f"\n**{title}**\n\n")
        emit(render.render(side, fmt, width=width()))


def _floor(*paths: Path) -> float:
    """The A/A floor of ``conclab selftest`` found at or above ``paths`` (0 where none), told once."""
    from conc_lab.analysis.selftest import machine_floor

    floor = machine_floor(*paths)
    if floor is not None:
        console.print(f"note: no change under ±{100 * floor:.1f}% is called (A/A self-test)", highlight=False)
    return floor or 0.0


def _calibrated(path: Path) -> set[str]:
    """The workloads whose size a sweep at or under ``path`` calibrated (``size: auto``)."""
    from conc_lab.analysis import selection
    from conc_lab.store.layout import StoreError
    from conc_lab.store.manifest import read_manifest

    try:
        return {w for d in selection.sweeps([path], (), False) for w in read_manifest(d).calibrated_sizes}
    except (selection.SelectError, StoreError):
        return set()  # load_runs says what is wrong with the path


def _without_selftests(dirs: list[Path]) -> list[Path]:
    """``dirs`` less the A/A self-tests among a person's sweeps (``selection.apart_from_selftests``), with a note."""
    from conc_lab.analysis import selection

    kept, left_out = selection.apart_from_selftests(dirs)
    if left_out:
        where = " ".join(sorted({str(d.parent) for d in left_out}))
        console.print(
            f"note: {len(left_out)} A/A self-test sweep{'s' * (len(left_out) > 1)} left out (conclab selftest: "
            f"two identical arms, not your trials); to read {'them' if len(left_out) > 1 else 'it'}: {where}",
            highlight=False,
            soft_wrap=True,
        )
    return kept


def _select(paths: list[Path], sweep_ids: list[str], latest: bool, wanted: dict) -> tuple[list[Path], dict]:
    """The sweep folders and the exact filter values a person's names stand for; exit 2 if none."""
    from conc_lab.analysis import selection
    from conc_lab.store.layout import StoreError
    from conc_lab.store.load import load

    try:
        dirs = selection.sweeps(paths, sweep_ids or (), latest)
        if not sweep_ids:  # a self-test named by its id is read as asked
            dirs = _without_selftests(dirs)
        filters = {}
        for column, values in wanted.items():
            present = load(dirs, columns=[column], env=False)[column].unique() if dirs else []
            filters[column] = selection.resolve(column, values, present)
    except (selection.SelectError, StoreError) as exc:
        die(str(exc))
    if "backend" in filters:
        filters["backend"] = selection.keep_baseline(filters["backend"])
    return dirs, filters


@app.command(epilog=example("conclab compare results/before results/after"))
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
        die(f"--alpha: must be between 0 and 1, got {alpha}")
    calibrated = _calibrated(a) & _calibrated(b)  # only `size: auto` sizes are scaled to match
    runs_a, runs_b, notes = align_sizes(load_runs([a], {}), load_runs([b], {}), calibrated)
    result = comparing.compare(runs_a, runs_b, alpha=alpha, min_effect=_floor(a, b))
    if comparison.unrelated(result):
        die(comparison.unrelated_line(result, a, b))
    for note in notes:  # wrapped between words: a terminal would cut them anywhere
        console.print(f"note: {note}", highlight=False, markup=False)
    emit(render(result, fmt, width=width()))


def _pooled_note(n: int, df) -> None:
    """Which rows pool runs of several sweeps: none where the sweeps ran different trials."""
    from conc_lab.analysis.frames import pooled_rows

    mixed, rows = pooled_rows(df)
    which = (
        "though no row mixes their runs"
        if mixed == 0
        else ("every row mixes their runs" if mixed == rows else f"{mixed} of {rows} rows mix their runs")
    )
    console.print(
        f"note: {n} sweeps pooled ({which}); --latest reads each config's newest sweep alone, --sweep ID one of them",
        highlight=False,
    )


@contextlib.contextmanager
def _baseline_note(shard: str | None = None, results: Path | None = None):
    """Summarize's warning of results without the sequential baseline, said as a note (its advice on
    the Python API's filters is no use here), not as a Python warning with its source line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        yield
    for w in caught:
        if "no sequential runs" not in str(w.message):  # any other warning goes on as it came
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not any("no sequential runs" in str(w.message) for w in caught):
        return
    if shard:  # the sequential runs are in another shard
        note = (
            f"note: shard {shard} holds no sequential runs, so no speedups here; they come once every "
            f"shard has run and `conclab merge {results}` joined them"
        )
    else:
        note = (
            "note: no sequential runs in these results, so no speedups: the plain loop is the baseline "
            "(backend: sequential in the config's matrix)"
        )
    console.print(note, highlight=False)


@app.command(epilog=example("conclab report results/cpu -o report && xdg-open report/index.html"))
def report(
    paths: list[Path] = typer.Argument(..., help=PATHS_HELP),
    out: Path = typer.Option(Path("report"), "--out", "-o", help="Where to write the PNGs and index.html."),
    title: str = typer.Option(None, "--title", help="Page title (default: the sweeps' names)."),
):
    """Write PNG plots and one self-contained HTML page (speedup, run times, task timelines, tables)."""
    import time

    from conc_lab.present.report import write_report

    t0 = time.perf_counter()
    dirs, _ = _select(paths, [], False, {})
    df = load_runs(dirs, {}, what=", ".join(map(str, paths)))
    try:
        with _baseline_note():
            page = write_report(df, out, title=title, sources=dirs)
    except OSError as exc:
        die(f"{out}: cannot write the report ({exc.strerror or exc})")
    elapsed = time.perf_counter() - t0
    console.print(f"report of {len(df):,} runs written in {elapsed:.1f} s → {page}", highlight=False)

"""The summary table people read in a terminal: what matters, fitted to 80–120 columns.

``summarize`` gives ~30 columns; a terminal shows about 100. This table keeps what answers
"how much faster?": the workload by its short name (the module prefix every workload
shares is dropped; where the table would not fit, the function name alone, if no two
workloads share it), backend and start method in one cell, workers, the median run time,
and the speedup with its 95% interval in one cell; parameters appear only where they vary
(the ones that do not are named once above the table). Notes are spelled out when they fit,
else shortened to marks with a legend below. Columns beyond these (``n``, ``eff``, ``setup``)
are added while they fit. Every column is ``conclab summarize --wide`` or ``-f csv|json``.

Nothing is cut short: a table that cannot fit even its essential columns wraps inside its
cells rather than truncating a name, between words where each column's longest word fits (a
speedup's interval on a line of its own, never a number split).

>>> short_workload_names(["experiments.cpu:sum_squares", "experiments.io:sleep"])
{'experiments.cpu:sum_squares': 'cpu:sum_squares', 'experiments.io:sleep': 'io:sleep'}
>>> short_workload_names(["experiments.cpu:sum_squares", "experiments.cpu:count_primes"])
{'experiments.cpu:sum_squares': 'sum_squares', 'experiments.cpu:count_primes': 'count_primes'}
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from conc_lab.analysis.selection import short_workload_names  # how a person names workloads
from conc_lab.analysis.summary import TOO_FEW_RUNS
from conc_lab.host.protocol import MULTIPROCESSING, SEQUENTIAL, THREADING
from conc_lab.host.units import duration
from conc_lab.present.legend import NOTE_MARKS, note_meanings
from conc_lab.present.panels import backend_label
from conc_lab.present.render import fmt_num, interval_cell

#: Parameters shown as a column only where they vary; a constant one is named in the caption.
VARYING_KEYS = ["tasks", "size", "python", "node", "affinity", "options"]
GAP = 2  # spaces between columns


def _float(x: object) -> float:
    return math.nan if x is None or x is pd.NA else float(x)


def _speedup(row) -> str:
    s, lo, hi = (_float(row[k]) for k in ("speedup", "speedup_ci_low", "speedup_ci_high"))
    if not math.isfinite(s):
        return "-"
    if lo == hi == s:  # the baseline itself (speedup 1 by definition)
        return f"{s:.2f}"
    return interval_cell(s, lo, hi)


def _plain_table() -> Table:
    """The one table style of the terminal: a rule under the header, no outer edge, one space apart."""
    return Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
        header_style="bold",
    )


def short_node_ids(values: list[str]) -> dict[str, str]:
    """Ray node ids (56 hex digits) cut to their first 8, as the progress lines show them, or to
    as many as tell them apart; host names stay whole.

    >>> short_node_ids(["3f" * 28, "3f" * 4 + "00" * 24, "box"]) == {
    ...     "3f" * 28: "3f3f3f3f3f3f", "3f" * 4 + "00" * 24: "3f3f3f3f0000", "box": "box"}
    True
    """
    ids = sorted({v for v in values if len(v) > 16 and all(c in "0123456789abcdef" for c in v)})
    n = 8
    while len({v[:n] for v in ids}) < len(ids):
        n += 4
    return {v: v[:n] if v in ids else v for v in values}


def _function_names(summary: pd.DataFrame) -> dict[str, str] | None:
    """{workload: its function's name}, where the function names tell every workload apart
    (``--workload sleep`` takes them too); None where two share one.

    >>> _function_names(pd.DataFrame({"workload": ["experiments.cpu:sum_squares", "mywork:flaky"]}))
    {'experiments.cpu:sum_squares': 'sum_squares', 'mywork:flaky': 'flaky'}
    """
    names = {str(w): str(w).rsplit(":", 1)[-1] for w in summary["workload"]}
    return names if len(set(names.values())) == len(names) else None


def _cells(
    summary: pd.DataFrame, short: dict[str, str] | None = None
) -> tuple[dict[str, list[str]], list[str]]:
    """Every essential column as text, and the caption naming parameters no column needs.

    A parameter that does not vary is named once; one that varies only with the workload
    (each workload's own ``size``) is named once per workload. ``short``: the workloads' names
    (default: the module prefix all of them share dropped).
    """
    rows = summary.astype(object).where(summary.notna(), None).to_dict(orient="records")
    short = short or short_workload_names(r["workload"] for r in rows)
    cols: dict[str, list[str]] = {
        "workload": [short[str(r["workload"])] for r in rows],
        "backend": [backend_label(r) for r in rows],
        "workers": [str(r["workers"]) for r in rows],
    }
    constant, caption = [], []
    for key in VARYING_KEYS:
        if key not in summary.columns:
            continue
        values = ["-" if r[key] is None else str(r[key]) for r in rows]
        if key == "node":  # 56-character ids would wrap every row at 120 columns
            short_ids = short_node_ids(values)
            values = [short_ids[v] for v in values]
        per_workload = dict(zip(cols["workload"], values))
        if len(set(values)) == 1:
            if values[0] != "-" and key != "node":
                constant.append(f"{key} {values[0]}")
        elif len(set(zip(cols["workload"], values))) == len(per_workload):
            caption.append(f"{key}: " + ", ".join(f"{w} {v}" for w, v in per_workload.items()))
        else:
            cols[key] = values
    cols["median"] = [duration(x) for x in summary["median_s"]]
    cols["speedup (95% CI)"] = [_speedup(r) for r in rows]
    cols["notes"] = [r.get("notes") or "" for r in rows]
    return cols, [", ".join(constant)] * bool(constant) + caption


#: Columns added, in this order, while the table still fits.
_EXTRAS = {
    "n": lambda s: [str(int(n)) for n in s["n"]],
    "failed": lambda s: [str(int(f)) for f in s["failures"]],
    "eff": lambda s: [fmt_num(x) for x in s["efficiency"]],
    "setup": lambda s: [duration(x) for x in s["setup_s"]],
}
_RIGHT = {"workers", "w", "tasks", "size", "median", "speedup (95% CI)", "n", "failed", "eff", "setup"}


def _width(name: str, values: list[str]) -> int:
    return max([cell_len(name)] + [cell_len(v) for v in values])


def _total(cols: dict[str, list[str]]) -> int:
    return sum(_width(k, v) for k, v in cols.items()) + GAP * (len(cols) - 1)


def _fit_notes(cols: dict[str, list[str]], width: int) -> list[str]:
    """Spell notes out if they fit, else mark them; returns the legend lines for marks used."""
    if not any(cols["notes"]):
        del cols["notes"]
        return []
    if _total(cols) <= width:
        return []
    used: dict[str, str] = {}
    marked = []
    for text in cols["notes"]:
        notes = [n.strip() for n in text.split(",") if n.strip()]
        for n in notes:
            used[NOTE_MARKS.get(n, n)] = n
        marked.append("".join(NOTE_MARKS.get(n, n) for n in notes))
    cols["notes"] = marked
    return ["notes: " + ", ".join(f"{mark} {name}" for mark, name in used.items())]


def _wrap_list(line: str, width: int) -> list[str]:
    """A ``key: a 1, b 2, ...`` caption cut between items, never inside one, continued under its first.

    >>> _wrap_list("size: count_primes 2000, sum_squares 750000, sleep 5", 40)
    ['size: count_primes 2000,', '      sum_squares 750000, sleep 5']
    """
    head, sep, rest = line.partition(": ")
    if not sep:
        return [line]
    items = rest.split(", ")
    pieces = [item + "," for item in items[:-1]] + items[-1:]
    lines, current = [], head + sep + pieces[0]
    for piece in pieces[1:]:
        if cell_len(current) + 1 + cell_len(piece) > width:
            lines.append(current)
            current = " " * len(head + sep) + piece
        else:
            current += " " + piece
    lines.append(current)
    return lines


def _columns(summary: pd.DataFrame, width: int) -> tuple[dict[str, list[str]], list[str], list[str]]:
    """The table's columns (extras added while they fit), the caption and the notes' legend."""
    cols, caption = _cells(summary)
    if _total(cols) > width:  # the header is the widest cell of the workers column
        cols = {("w" if k == "workers" else k): v for k, v in cols.items()}
    legend = _fit_notes(cols, width)
    functions = _function_names(summary)
    if _total(cols) > width and functions:  # modules that share no prefix: the function names will do
        names, caption = _cells(summary, functions)
        cols["workload"] = names["workload"]
    caption = _give_way(cols, caption, width)
    notes = cols.pop("notes", None)
    for name, make in _EXTRAS.items():
        if name == "failed" and not summary["failures"].any():
            continue
        trial = {**cols, name: make(summary)}
        if _total({**trial, **({"notes": notes} if notes else {})}) <= width:
            cols = trial
    if notes:
        cols["notes"] = notes
    return cols, caption, legend


def _give_way(cols: dict[str, list[str]], caption: list[str], width: int) -> list[str]:
    """Where the table is still too wide, columns give way before a speedup's interval wraps onto a
    line of its own ("1.90" over "(1.85–1.95)", as a size column and forkserver made it at 80
    columns): a workload that every row shares is named above the table, then the median (the speedup
    answers "how much faster?"; ``--wide`` has the times) is left out. Returns the caption."""
    if _total(cols) > width and len(set(cols.get("workload", []))) == 1:
        caption = [", ".join([f"workload {cols.pop('workload')[0]}", *caption[:1]]), *caption[1:]]
    if _total(cols) > width:
        cols.pop("median", None)
    return caption


#: Names a user copies or greps: never split over two lines, even when the table must wrap.
_WHOLE = {"workload", "backend"}


def _widest_words(cols: dict[str, list[str]], width: int) -> dict[str, int] | None:
    """Each column, in a table that must wrap, no narrower than its longest word, where that fits:
    a speedup may put its interval on a line of its own, but ``100000`` is never ``10000`` over
    ``0``. None where even that does not fit (every column then folds)."""
    least = {
        name: max(cell_len(word) for v in [name, *values] for word in v.split() or [""])
        for name, values in cols.items()
    }
    if sum(least.values()) + GAP * (len(cols) - 1) > width:
        return None
    return least


def summary_table(
    summary: pd.DataFrame, width: int = 100, *, color: bool = False, rounds_spent: int | None = None
) -> str:
    """The summary as a table of at most ``width`` columns (see the module docstring); text.
    ``rounds_spent``: see ``note_meanings``."""
    if summary.empty:
        return ""
    cols, caption, legend = _columns(summary, width)
    fits = _total(cols) <= width
    words = _widest_words(cols, width)
    table = _plain_table()
    for name, values in cols.items():
        table.add_column(
            name,
            justify="right" if name in _RIGHT else "left",
            no_wrap=fits or name in _WHOLE,
            overflow="fold",  # too narrow even for the essentials: wrap the numbers, never elide a name
            min_width=_width(name, values) if fits else (words or {}).get(name),
        )
    for row in zip(*cols.values()):
        table.add_row(*row)
    buf = io.StringIO()
    console = Console(
        file=buf, width=width, force_terminal=color, color_system="auto" if color else None, highlight=False
    )
    for line in caption:
        for part in _wrap_list(line, width):
            console.print(part, markup=False, soft_wrap=True)
    console.print(table, markup=False)
    for line in legend:
        console.print(line, markup=False)  # wrapped between words, never mid-word by the terminal
    after = note_meanings(summary, rounds_spent) + workload_lines(summary)
    if after:
        console.print()  # a blank line: the table ends where its rows end
    for line in after:
        console.print(line, markup=False)
    return buf.getvalue()


def workload_lines(summary: pd.DataFrame) -> list[str]:
    """Per workload, the answer in one line: its fastest backend, and threads against processes.

    >>> s = pd.DataFrame({"workload": ["m:f"] * 3, "backend": ["sequential", "threading", "multiprocessing"],
    ...     "start_method": [None, None, "fork"], "workers": [1, 2, 2], "median_s": [1.0, 0.98, 0.52],
    ...     "speedup": [1.0, 1.02, 1.92]})
    >>> workload_lines(s)
    ['f: fastest multiprocessing/fork, 2 workers (1.92x); threads (2 workers, 1.02x) take 1.88x the time of processes (fork, 2 workers, 1.92x)']

    The fastest is the highest speedup (the number beside it); its doubts and the arms whose
    interval reaches it are said, so noise is never read as a winner:

    >>> s = s.assign(speedup=[1.0, 1.6, 1.5], speedup_ci_low=[1.0, 1.1, 1.4], speedup_ci_high=[1.0, 1.9, 1.6],
    ...     notes=["", "unstable, noisy", ""])
    >>> workload_lines(s)[0].split("; ")[:2]
    ['f: fastest threading, 2 workers (1.60x) [unstable, noisy]', 'not told apart from multiprocessing/fork, 2 workers (1.50x)']
    """
    out = []
    ok = summary[np.isfinite(summary["median_s"].to_numpy(dtype=np.float64))]
    short = short_workload_names(ok["workload"].astype(str))
    # one line per parameter set: sizes (or tasks, interpreters) of one workload are separate questions
    extra = [
        k for k in ("tasks", "size", "python", "node") if k in ok.columns and ok[k].astype(str).nunique() > 1
    ]
    keyed = ok.assign(_key=ok[["workload", *extra]].astype(str).agg(" ".join, axis=1))
    nodes = short_node_ids(list(ok["node"].astype(str))) if "node" in extra else {}
    for _, rows in keyed.groupby("_key", sort=False):
        best_at = _fastest(rows)
        best = rows.loc[best_at].to_dict()
        name = short[str(best["workload"])] + "".join(
            f" {k} {nodes.get(str(best[k]), best[k]) if k == 'node' else best[k]}" for k in extra
        )
        line = f"{name}: fastest {_arm(best)}"
        if best["backend"] != SEQUENTIAL:
            line += _doubts(best) + _rivals(rows, best_at)
        line += _threads_against_processes(rows)
        out.append(line)
    return out


def _threads_against_processes(rows: pd.DataFrame) -> str:
    """``; threads (2 workers, 1.02x) take 1.88x the time of processes (fork, 2 workers, 1.92x)``:
    the fastest threading row against the fastest multiprocessing row, each named; empty without both.

    By speedup, as the table says them (paired: a slow spell cancels), both shown so that the ratio
    is read from them, not from the medians (a newcomer divided those); by median where none is
    known. By medians, a line once named spawn as the processes beside "fastest fork (1.95x)".
    """
    threads, procs = rows[rows["backend"] == THREADING], rows[rows["backend"] == MULTIPROCESSING]
    if not (len(threads) and len(procs)):
        return ""
    t, p = _fastest_of(threads), _fastest_of(procs)
    ts, ps = _float(t.get("speedup")), _float(p.get("speedup"))
    paired = math.isfinite(ts) and math.isfinite(ps) and ts > 0 and ps > 0
    ratio = ps / ts if paired else float(t["median_s"]) / float(p["median_s"])
    method = backend_label(p).partition("/")[2]
    t_at, p_at = (f", {ts:.2f}x", f", {ps:.2f}x") if paired else ("", "")
    return (
        f"; threads ({_n_workers(t)}{t_at}) take {ratio:.2f}x the time of "
        f"processes ({f'{method}, ' if method else ''}{_n_workers(p)}{p_at})"
    )


def _fastest_of(rows: pd.DataFrame) -> dict:
    """The row of ``rows`` with the highest speedup, or the least median where none has one."""
    speedups = pd.to_numeric(rows.get("speedup", pd.Series(np.nan, index=rows.index)), errors="coerce")
    at = speedups.idxmax() if speedups.notna().any() else rows["median_s"].idxmin()
    return rows.loc[at].to_dict()


def _n_workers(row: dict) -> str:
    return f"{row['workers']} worker" + ("s" if row["workers"] != 1 else "")


def _fastest(rows: pd.DataFrame):
    """The index of the row with the highest speedup (the number printed beside it), or of the least
    median where no speedup is known; the plain loop's where nothing beats it."""
    speedups = pd.to_numeric(rows.get("speedup", pd.Series(np.nan, index=rows.index)), errors="coerce")
    if speedups.notna().any() and speedups.max() > 1.0:
        return speedups.idxmax()
    seq = rows[rows["backend"] == SEQUENTIAL]
    return (seq if len(seq) and speedups.notna().any() else rows)["median_s"].idxmin()


def _arm(row: dict) -> str:
    """``multiprocessing/fork, 2 workers (1.92x)``"""
    text = f"{backend_label(row)}, {_n_workers(row)}"
    speedup = _float(row.get("speedup"))
    return text + (f" ({speedup:.2f}x)" if math.isfinite(speedup) and row["backend"] != SEQUENTIAL else "")


#: The notes that put a row's number in doubt: said beside the fastest, which a reader acts on.
_DOUBTFUL = (
    "unstable",
    "noisy",
    "baseline unstable",
    "baseline noisy",
    TOO_FEW_RUNS,
    "incorrect",
    "failures",
)


def _doubts(row: dict) -> str:
    notes = {n.strip() for n in str(row.get("notes") or "").split(",")}
    doubts = [n for n in _DOUBTFUL if n in notes]
    return f" [{', '.join(doubts)}]" if doubts else ""


def _rivals(rows: pd.DataFrame, best) -> str:
    """``; not told apart from spawn, 2 workers (1.54x)``: others whose interval reaches the best's."""
    if "speedup_ci_low" not in rows.columns or "speedup_ci_high" not in rows.columns:
        return ""
    low = _float(rows.loc[best, "speedup_ci_low"])
    if not math.isfinite(low):
        return ""
    highs = pd.to_numeric(rows["speedup_ci_high"], errors="coerce")
    reach = rows[(highs >= low) & (rows["backend"] != SEQUENTIAL)].drop(index=best, errors="ignore")
    near = [r.to_dict() for _, r in reach.iterrows()]
    if not near:
        return ""
    more = f" and {len(near) - 2} more" if len(near) > 2 else ""
    return f"; not told apart from {', '.join(_arm(r) for r in near[:2])}{more}"


def trials_table(trials: list) -> tuple[Table, str]:
    """The trials ``conclab expand`` lists, and a line naming the parameters that do not vary.

    Ids and names stay whole on one line (a user greps for them); the rest wrap, never elide.
    """
    params = [t.params() for t in trials]
    short = short_workload_names(p["workload"] for p in params)
    cols: dict[str, list[str]] = {
        "trial_id": [t.trial_id for t in trials],
        "workload": [short[p["workload"]] for p in params],
        "backend": [backend_label(p) for p in params],
    }
    constant = []
    for key in ("workers", "tasks", "size", "python", "affinity", "options"):
        values = ["-" if p.get(key) is None else str(p[key]) for p in params]
        if len(set(values)) > 1:
            cols[key] = values
        elif values and values[0] != "-":
            constant.append(f"{key} {values[0]}")
    table = _plain_table()
    for name in cols:
        table.add_column(name, no_wrap=name in ("trial_id", "workload", "backend"), overflow="fold")
    for row in zip(*cols.values()):
        table.add_row(*row)
    return table, ", ".join(constant)

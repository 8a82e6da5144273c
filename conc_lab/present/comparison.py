"""A ``compare`` result as people read it: one compact line per trial, one verdict at the end.

Modelled on pyperf's ``compare_to`` (``1.23x faster (significant)`` / ``not significant``) and
hyperfine's last line (``'b' ran 1.96 times faster than 'a'``). Trials are grouped under their
workload (short name, with the parameters that do not vary named once), so a line holds only
what tells trials apart and fits 80 columns; where it does not, the verdict goes on the next
line, indented, never cut. Every number comes from ``analysis.compare``; this module only words it.

>>> import pandas as pd
>>> r = pd.DataFrame({"workload": ["m:f"], "tasks": [8], "size": [100], "backend": ["threading"],
...     "workers": [4], "n_a": [5], "n_b": [5], "median_a": [0.02], "median_b": [0.01], "ratio": [0.5],
...     "ratio_ci_low": [0.45], "ratio_ci_high": [0.55], "change": ["faster"]})
>>> print(compare_text(r, width=80), end="")
f  (tasks 8, size 100)
  threading  4w  20 ms → 10 ms  2.00x faster (significant)
<BLANKLINE>
1 matched trial: 1 faster; geometric mean b/a 0.500: b ran 2.00x faster than a
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd
from rich.cells import cell_len

from conc_lab.analysis.compare import COMPARE_KEYS
from conc_lab.analysis.selection import short_workload_names
from conc_lab.analysis.stats import min_p_value
from conc_lab.host.units import duration
from conc_lab.present.panels import backend_label

#: Parameters named once above a workload's lines when they do not vary inside it.
_HEADING_KEYS = ("tasks", "size", "affinity", "options")
#: What each ``change`` value is called here: "inconclusive" is what a reader needs to hear as
#: "the data cannot say", not as a hint of a change.
_WORDS = {"inconclusive": "no answer", "same": "not significant"}


def integer_text(value: object) -> str:
    """A parameter value as a person writes it: ``8``, not ``8.0``; ``-`` for a missing one.

    >>> integer_text(8.0), integer_text(131072.0), integer_text(None), integer_text("x"), integer_text(0.5)
    ('8', '131072', '-', 'x', '0.5')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def factor(ratio: float) -> str:
    """``b/a`` as a pyperf user reads it: ``1.23x faster`` or ``1.23x slower``.

    >>> factor(0.5), factor(2.0), factor(1.0), factor(float("nan"))
    ('2.00x faster', '2.00x slower', '1.00x (same time)', '-')
    """
    if not np.isfinite(ratio) or ratio <= 0:
        return "-"
    if ratio < 1:
        return f"{1 / ratio:.2f}x faster"
    if ratio > 1:
        return f"{ratio:.2f}x slower"
    return "1.00x (same time)"


def verdict(row: dict) -> str:
    """What one trial's line ends with.

    >>> verdict({"change": "inconclusive", "ratio": 0.463, "ratio_ci_low": 0.236, "ratio_ci_high": 2.568})
    'no answer (b/a 0.24–2.57)'
    >>> verdict({"change": "slower", "ratio": 1.2, "ratio_ci_low": 1.1, "ratio_ci_high": 1.3})
    '1.20x slower (significant)'
    >>> verdict({"change": "only in b", "n_b": 5.0})
    'only in b (5 runs)'
    """
    change = str(row.get("change"))
    lo, hi = _float(row.get("ratio_ci_low")), _float(row.get("ratio_ci_high"))
    interval = f"(b/a {lo:.2f}–{hi:.2f})" if np.isfinite([lo, hi]).all() else "(b/a -)"
    if change in ("faster", "slower"):
        return f"{factor(_float(row.get('ratio')))} (significant)"
    if change.startswith("only in"):
        n = _float(row.get("n_" + change[-1]))
        return f"{change} ({integer_text(n if np.isfinite(n) else 0)} runs)"
    return f"{_WORDS.get(change, change)} {interval}"


def _float(x: object) -> float:
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _times(rows: list[dict]) -> list[str]:
    """Each row's ``a → b`` medians, both sides right-aligned, so the arrows stand in one column
    (the pair used to be aligned as one cell: ``  72.9 ms → 72.9 ms`` over ``    112 ms → 112 ms``)."""
    pairs = [(_float(r.get("median_a")), _float(r.get("median_b"))) for r in rows]
    texts = [(duration(a), duration(b)) for a, b in pairs]
    wa = max((cell_len(a) for a, _ in texts), default=0)
    wb = max((cell_len(b) for _, b in texts), default=0)
    return [
        "" if not np.isfinite(a) and not np.isfinite(b) else f"{ta.rjust(wa)} → {tb.rjust(wb)}"
        for (a, b), (ta, tb) in zip(pairs, texts, strict=True)
    ]


def _heading(short: str, rows: list[dict]) -> tuple[str, list[str]]:
    """The workload's heading and the parameters its lines must still show (those that vary in it)."""
    constant, varying = [], []
    for key in _HEADING_KEYS:
        values = {integer_text(r.get(key)) for r in rows}
        if len(values) > 1:
            varying.append(key)
        elif values != {"-"}:
            constant.append(f"{key} {values.pop()}")
    return short + (f"  ({', '.join(constant)})" if constant else ""), varying


def _lines(rows: list[dict], varying: list[str], width: int) -> list[str]:
    """One line per trial, columns aligned inside the workload; a verdict too long goes below."""
    cells = [
        [backend_label(r), f"{integer_text(r.get('workers'))}w"]
        + [f"{k} {integer_text(r.get(k))}" for k in varying]
        + [times]
        for r, times in zip(rows, _times(rows), strict=True)
    ]
    widths = [max(cell_len(c[i]) for c in cells) for i in range(len(cells[0]))]
    out = []
    for c, r in zip(cells, rows, strict=True):
        left = "  " + "  ".join(
            v.rjust(w) if i == len(c) - 1 else v.ljust(w)
            for i, (v, w) in enumerate(zip(c, widths, strict=True))
        )
        tail = verdict(r)
        if cell_len(left) + 2 + cell_len(tail) <= width:
            out.append(left.rstrip() + "  " + tail)
        else:
            out += [left.rstrip(), "      " + tail]
    return out


def ending(result: pd.DataFrame) -> str:
    """The last line, hyperfine-style: how b did against a over the matched trials.

    >>> print(ending(pd.DataFrame({"change": ["faster", "inconclusive"], "ratio": [0.5, 0.9],
    ...                            "ratio_ci_low": [0.45, 0.7], "ratio_ci_high": [0.55, 1.2]})))
    2 matched trials: 1 faster, 1 no answer; geometric mean b/a 0.671: b ran 1.49x faster than a
    no answer: the interval holds both faster and slower; more repeats narrow it
    >>> print(ending(pd.DataFrame({"change": ["not significant"] * 2, "ratio": [0.7, 0.88]})))
    2 matched trials: 2 not significant; geometric mean b/a 0.785, no trial changed
    """
    matched = result[~result["change"].astype(str).str.startswith("only in")]
    counts = matched["change"].astype(str).value_counts()
    known = ["faster", "slower", "same", "inconclusive"]
    order = known + [c for c in counts.index if c not in known]
    parts = [f"{counts[c]} {_WORDS.get(c, c)}" for c in order if c in counts.index]
    line = f"{len(matched)} matched trial{'' if len(matched) == 1 else 's'}: {', '.join(parts)}"
    ratio = matched["ratio"].to_numpy(dtype=np.float64)
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
    if len(ratio):
        mean = float(np.exp(np.log(ratio).mean()))
        ran = factor(mean) + " than a" if round(mean, 2) != 1 else "as fast as a"
        changed = counts.get("faster", 0) + counts.get("slower", 0)
        # No trial changed: the mean of their ratios is noise, never a claim that b ran faster.
        line += f"; geometric mean b/a {mean:#.3g}".rstrip(".") + (
            f": b ran {ran}" if changed else ", no trial changed"
        )
    only = result["change"].astype(str).value_counts()
    for side in ("only in a", "only in b"):
        if side in only.index:
            line += f"; {only[side]} trial(s) {side}"
    return line + "".join("\nno answer: " + note for note in _no_answer_notes(matched))


def _no_answer_notes(matched: pd.DataFrame) -> list[str]:
    """Why the ``inconclusive`` trials have no answer: their interval holds both faster and slower,
    a side has one run (no interval), or the interval is clear of 1 but the rank test cannot
    confirm it (too few runs, or many trials at once).

    >>> r = pd.DataFrame({"change": ["inconclusive"], "ratio_ci_low": [2.05], "ratio_ci_high": [2.36],
    ...                   "n_a": [3], "n_b": [3], "p_value": [0.1]})
    >>> _no_answer_notes(r)
    ['the interval says slower, but 3 runs against 3 cannot give a p below 0.1; more repeats decide']
    """
    rows = matched[matched["change"].astype(str) == "inconclusive"]
    nan = pd.Series(np.nan, index=rows.index)
    lo, hi = (rows.get(c, nan).to_numpy(dtype=np.float64) for c in ("ratio_ci_low", "ratio_ci_high"))
    slower, faster, none = lo > 1, hi < 1, ~(np.isfinite(lo) & np.isfinite(hi))
    notes = []
    if (~(slower | faster | none)).any():
        notes.append("the interval holds both faster and slower; more repeats narrow it")
    if none.any():
        notes.append("a side with one run has no interval; more repeats give one")
    if (slower | faster).any():
        way = "slower" if not faster.any() else "faster" if not slower.any() else "one way or the other"
        notes.append(
            f"the interval says {way}, but {_unconfirmed(rows[slower | faster])}; more repeats decide"
        )
    return notes


def _unconfirmed(clear: pd.DataFrame) -> str:
    """Why the rank test did not confirm what the interval says: the run counts allow no smaller p
    (said with them where every such trial has the same counts), or the correction for many trials."""
    nan = pd.Series(np.nan, index=clear.index)
    n_a, n_b = (clear.get(c, nan).to_numpy(dtype=float) for c in ("n_a", "n_b"))
    best = min_p_value(n_a, n_b)
    p = clear.get("p_value", nan).to_numpy(dtype=float)
    if len(set(zip(n_a, n_b, strict=True))) == 1 and np.all(p <= best * (1 + 1e-9)):
        return (
            f"{integer_text(n_a[0])} runs against {integer_text(n_b[0])} cannot give a p below {best[0]:.2g}"
        )
    return "the rank test does not confirm it (too few runs, or too many trials compared at once)"


def compare_text(result: pd.DataFrame, width: int = 100) -> str:
    """Every trial of a ``compare`` result as one line under its workload, then the verdict."""
    if len(result) == 0:
        return "nothing to compare\n"
    rows = result.astype(object).where(result.notna(), None).to_dict(orient="records")
    short = short_workload_names(str(r["workload"]) for r in rows)
    out: list[str] = []
    for name in dict.fromkeys(str(r["workload"]) for r in rows):
        mine = [r for r in rows if str(r["workload"]) == name]
        heading, varying = _heading(short[name], mine)
        out += [heading] + _lines(mine, varying, width)
    last = [wrapped for line in ending(result).splitlines() for wrapped in textwrap.wrap(line, width)]
    return "\n".join(out + [""] + last) + "\n"


def unrelated(result: pd.DataFrame) -> bool:
    """True when no trial is in both sets: two folders of unrelated sweeps, nothing to compare."""
    return len(result) > 0 and bool(result["change"].astype(str).str.startswith("only in").all())


def unrelated_line(result: pd.DataFrame, a: object, b: object) -> str:
    """The one line for two result sets that share no trial: the parameters whose values differ
    between them, each side's values (it named only the workloads, "a holds sum_squares; b holds
    sum_squares", where the sizes differed).

    >>> r = pd.DataFrame({"workload": ["m.x:f", "m.y:g"], "size": [10, 20], "change": ["only in a", "only in b"]})
    >>> unrelated_line(r, "results/one", "results/two")
    'results/one and results/two share no trial with the same parameters (a: workload x:f, size 10; b: workload y:g, size 20): nothing to compare'
    >>> unrelated_line(r.assign(workload="m:f"), "A", "B")
    'A and B share no trial with the same parameters (a: size 10; b: size 20): nothing to compare'
    """
    names = short_workload_names(result["workload"].astype(str))
    sides = {side: result[result["change"].astype(str) == f"only in {side}"] for side in ("a", "b")}

    def values(side: str, key: str) -> list[str]:
        column = sides[side][key].astype(object)
        found = {_value(v, names) for v in column}
        return sorted(found, key=lambda v: (len(v), v) if v.isdigit() else (0, v))

    keys = [k for k in COMPARE_KEYS if k in result.columns and values("a", k) != values("b", k)]

    def holds(side: str) -> str:
        said = []
        for key in keys:
            found = values(side, key)
            said.append(
                f"{key} {' and '.join(found[:4])}" + (f" and {len(found) - 4} more" if len(found) > 4 else "")
            )
        return ", ".join(said)

    why = (
        f"a: {holds('a')}; b: {holds('b')}" if keys else "each value is on both sides, in other combinations"
    )
    return f"{a} and {b} share no trial with the same parameters ({why}): nothing to compare"


def _value(v: object, names: dict[str, str]) -> str:
    """A parameter's value as the table shows it: a workload by its short name, ``100000`` never
    ``100000.0`` (a column with gaps is float), ``none`` for no value."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "none"
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return names.get(str(v), str(v))

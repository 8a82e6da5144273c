"""Summary and compare frames as text: a rich table for people, CSV, Markdown or JSON for scripts.

No statistics here: every figure comes from ``summary``/``compare``; this module only formats.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd

from conc_lab.analysis.compare import COMPARE_KEYS
from conc_lab.analysis.selection import short_workload_names
from conc_lab.analysis.summary import GROUP_KEYS
from conc_lab.host.protocol import DEFAULT_START_METHOD, MULTIPROCESSING
from conc_lab.host.units import duration
from conc_lab.present.comparison import compare_text

FORMATS = ("table", "csv", "markdown", "json")
#: Keys shown in the human table only where they vary.
OPTIONAL_KEYS = ["start_method", "python", "node", "affinity", "options"]
#: Columns of the human table that are right-aligned.
_NUMERIC = {
    "n",
    "fail",
    "median",
    "95% CI",
    "IQR",
    "speedup",
    "eff",
    "setup",
    "correct",
    "tasks",
    "size",
    "workers",
}


def fmt_num(x: float | None, spec: str = ".2f") -> str:
    """``x`` formatted with ``spec``; ``-`` for a missing value.

    Example::

        >>> fmt_num(1.2345), fmt_num(None)
        ('1.23', '-')
    """
    return "-" if x is None or not np.isfinite(x) else format(x, spec)


def _shown_keys(frame: pd.DataFrame, keys: list[str]) -> list[str]:
    always = [k for k in keys if k not in OPTIONAL_KEYS and k in frame.columns]
    varying = [
        k
        for k in keys
        if k in OPTIONAL_KEYS and k in frame.columns and frame[k].astype(object).nunique(dropna=False) > 1
    ]
    return always + varying


#: What an interval cell says for a value without an interval (too few runs for one).
NO_INTERVAL = "no CI"


def interval_cell(value: float, low: float, high: float, digits: int = 2) -> str:
    """``value (low–high)`` to ``digits`` decimals; where those would show two different ends as
    one number (``1.00 (1.00–1.00)`` reads as certainty), how far the farther end lies from the
    value instead, as a share: no wider than the cell it replaces. A value without an interval says
    so in words (it read ``0.87 (-–-)``); no value is ``-``.

    Example::

        >>> interval_cell(1.0, 0.9812, 1.034), interval_cell(1.0, 0.9981, 1.0042)
        ('1.00 (0.98–1.03)', '1.00 (±0.4%)')
        >>> interval_cell(1.9042, 1.90418, 1.90424), interval_cell(1.0, 1.0, 1.0)
        ('1.90 (±<0.1%)', '1.00 (1.00–1.00)')
        >>> interval_cell(0.87, float("nan"), float("nan")), interval_cell(float("nan"), 1.0, 1.0)
        ('0.87 (no CI)', '-')
    """
    spec = f".{digits}f"
    if fmt_num(value) == "-":
        return "-"
    if "-" in (fmt_num(low), fmt_num(high)):
        return f"{fmt_num(value, spec)} ({NO_INTERVAL})"
    if low != high and fmt_num(low, spec) == fmt_num(high, spec) and value:
        share = 100 * max(abs(high - value), abs(value - low)) / abs(value)
        return f"{fmt_num(value, spec)} (±{'<0.1' if share < 0.05 else format(share, '.1f')}%)"
    return f"{fmt_num(value, spec)} ({fmt_num(low, spec)}–{fmt_num(high, spec)})"


def _interval(values, lows, highs, digits: int = 2) -> list[str]:
    return [interval_cell(v, lo, hi, digits) for v, lo, hi in zip(values, lows, highs, strict=True)]


def display(frame: pd.DataFrame) -> pd.DataFrame:
    """A compact, human-formatted copy of a ``summarize`` (or ``compare``) result.

    Example::

        >>> s = pd.DataFrame({"workload": ["w"], "tasks": [1], "size": [1], "backend": ["threading"],
        ...     "workers": [2], "n": [3], "failures": [0], "median_s": [0.5], "ci_low_s": [0.4],
        ...     "ci_high_s": [0.6], "iqr_s": [0.1], "speedup": [2.0], "speedup_ci_low": [1.5],
        ...     "speedup_ci_high": [2.5], "efficiency": [1.0], "setup_s": [0.01], "correct_share": [1.0],
        ...     "notes": [""]})
        >>> display(s).loc[0, ["median", "speedup", "correct"]].tolist()
        ['500 ms', '2.00 (1.50–2.50)', '100%']
    """
    if "ratio" in frame.columns:
        return _display_compare(frame)
    frame = _with_default_method(frame)
    keys = _shown_keys(frame, GROUP_KEYS)
    out = frame[keys].astype(object).where(frame[keys].notna(), "-").copy()
    out["n"] = frame["n"]
    out["fail"] = frame["failures"]
    out["median"] = [duration(x) for x in frame["median_s"]]
    out["95% CI"] = [
        f"{duration(lo)} – {duration(hi)}"
        for lo, hi in zip(frame["ci_low_s"], frame["ci_high_s"], strict=True)
    ]
    out["IQR"] = [duration(x) for x in frame["iqr_s"]]
    out["speedup"] = _interval(frame["speedup"], frame["speedup_ci_low"], frame["speedup_ci_high"])
    if "e2e_speedup" in frame.columns:
        out["e2e speedup"] = _interval(
            frame["e2e_speedup"], frame["e2e_speedup_ci_low"], frame["e2e_speedup_ci_high"]
        )
    out["eff"] = [fmt_num(x) for x in frame["efficiency"]]
    out["setup"] = [duration(x) for x in frame["setup_s"]]
    out["correct"] = [
        fmt_num(x * 100, ".0f") + ("%" if np.isfinite(x) else "") for x in frame["correct_share"]
    ]
    if "break_even" in frame.columns:
        out["break-even"] = frame["break_even"]
    if "why" in frame.columns:
        out["why"] = frame["why"].astype(object).where(frame["why"].notna(), "")
    out["notes"] = frame["notes"]
    if "noisy" in frame.columns:  # summarize --wide: which rows rest on disturbed runs, and why
        out["noisy"] = frame["noisy"]
        out["noise"] = frame["noise_note"]
    return out.reset_index(drop=True)


def _with_default_method(frame: pd.DataFrame) -> pd.DataFrame:
    """A multiprocessing row that named no start method shows the one it ran with, not ``-``."""
    if "start_method" not in frame.columns or "backend" not in frame.columns:
        return frame
    unnamed = (frame["backend"].astype(object) == MULTIPROCESSING) & frame["start_method"].isna()
    if not unnamed.any():
        return frame
    method = frame["start_method"].astype(object).where(~unnamed, DEFAULT_START_METHOD)
    return frame.assign(start_method=method)


def _display_compare(cmp: pd.DataFrame) -> pd.DataFrame:
    cmp = _with_default_method(cmp)
    keys = _shown_keys(cmp, COMPARE_KEYS)
    out = cmp[keys].astype(object).where(cmp[keys].notna(), "-").copy()
    out["n a/b"] = [f"{a}/{b}" for a, b in zip(cmp["n_a"], cmp["n_b"], strict=True)]
    out["median a"] = [duration(x) for x in cmp["median_a"]]
    out["median b"] = [duration(x) for x in cmp["median_b"]]
    out["b/a"] = _interval(cmp["ratio"], cmp["ratio_ci_low"], cmp["ratio_ci_high"], digits=3)
    out["p"] = [fmt_num(x, ".3g") for x in cmp["p_value"]]
    out["q"] = [fmt_num(x, ".3g") for x in cmp["q_value"]]
    out["change"] = cmp["change"]
    return out.reset_index(drop=True)


def _plain(v: object) -> object:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def _jsonable(frame: pd.DataFrame) -> list[dict]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.astype(object).to_dict(orient="records")]


def _markdown(shown: pd.DataFrame) -> str:
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = [str(c) for c in shown.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _rich_table(shown: pd.DataFrame, color: bool, width: int | None) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False, header_style="bold")
    for col in shown.columns:
        table.add_column(str(col), justify="right" if col in _NUMERIC else "left")
    for row in shown.itertuples(index=False):
        table.add_row(*(str(v) for v in row))
    buf = io.StringIO()
    Console(file=buf, width=width or 200, force_terminal=color, color_system="auto" if color else None).print(
        table
    )
    text = buf.getvalue()
    return text if text.endswith("\n") else text + "\n"


def render(frame: pd.DataFrame, fmt: str = "table", *, color: bool = False, width: int | None = None) -> str:
    """Render a ``summarize`` or ``compare`` result as text: ``table``, ``csv``, ``markdown`` or ``json``.

    ``table`` is a rich table for people (optional keys shown only where they vary, times
    with units); ``csv`` and ``json`` carry every column, unformatted, for scripts;
    ``markdown`` is the people's table as a GitHub-flavoured Markdown table.

    Example::

        >>> print(render(pd.DataFrame({"a": [1]}), "csv"), end="")
        a
        1
    """
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        return json.dumps(_jsonable(frame), indent=1, default=str) + "\n"
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use table, csv, markdown or json")
    if fmt == "table" and "ratio" in frame.columns:
        return compare_text(frame, width or 100)  # a line per trial reads better than a wide grid
    is_result = "ratio" in frame.columns or "median_s" in frame.columns
    shown = display(frame) if is_result else frame.astype(object).where(frame.notna(), "-")
    if not is_result and "workload" in shown.columns and fmt == "table":
        # e.g. the per-interpreter table: the module prefix every row shares says nothing
        shown = shown.assign(
            workload=shown["workload"].astype(str).map(short_workload_names(shown["workload"].astype(str)))
        )
    return _markdown(shown) if fmt == "markdown" else _rich_table(shown, color, width)

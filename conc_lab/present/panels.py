"""Which parameter sets the report draws, and how its curves are named and coloured.

A panel is one parameter set (``PANEL_KEYS``) whose backends and worker counts are compared;
a curve is one backend (with its start method, affinity, options) inside it. Colours come from
the curve's label alone, so a backend has the same colour in every report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from conc_lab.analysis.summary import BACKEND_ORDER, key_columns
from conc_lab.host.protocol import (
    ASYNCIO,
    DEFAULT_START_METHOD,
    MULTIPROCESSING,
    RAY,
    SEQUENTIAL,
    SUBINTERPRETERS,
    THREADING,
)

#: One panel = one parameter set whose backends and worker counts are compared.
PANEL_KEYS = ["workload", "tasks", "size", "python", "node"]
#: What tells two curves of one panel apart.
CURVE_KEYS = ["backend", "start_method", "affinity", "options"]


def backend_label(row) -> str:
    """``backend/start_method``; a multiprocessing trial that named no method shows the one it used.

    >>> backend_label({"backend": "multiprocessing", "start_method": None}), backend_label({"backend": "threading"})
    ('multiprocessing/fork', 'threading')
    """
    sm = row.get("start_method")
    if not (isinstance(sm, str) and sm) and row["backend"] == MULTIPROCESSING:
        sm = DEFAULT_START_METHOD  # stored as null before it was stored; "-" would hide what ran
    return f"{row['backend']}/{sm}" if isinstance(sm, str) and sm else str(row["backend"])


def panel_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[PANEL_KEYS].astype(object).where(frame[PANEL_KEYS].notna(), None)


def left_out(total: int, panels: int, timelines: int) -> str:
    """What the figures leave out, and how to get it, as a paragraph (empty when nothing is)."""
    parts = []
    if panels < total:
        parts.append(f"speedup and run-time panels for {panels} of the {total} parameter sets")
    if timelines < total:
        parts.append(f"timelines for {timelines} of them")
    if not parts:
        return ""
    return (
        f"<p class='warn'>Figures show {' and '.join(parts)} (those with the most points measured; "
        "every set is in the tables). <code>conc_lab.write_report(store, out)</code> without "
        "<code>max_panels</code> / <code>max_timelines</code> draws them all.</p>"
    )


def pick_panels(summary: pd.DataFrame) -> list[dict]:
    """The parameter sets with the most (backend, workers) points measured, then the longest runs,
    taking turns between workloads so that each is drawn."""
    ok = summary[summary["n"] > 0]
    if len(ok) == 0:
        return []
    keyed = panel_frame(ok).assign(_points=1, _median=ok["median_s"].to_numpy())
    grouped = keyed.groupby(PANEL_KEYS, dropna=False, sort=False).agg(
        points=("_points", "sum"), median=("_median", "max")
    )
    grouped = grouped.sort_values(["points", "median"], ascending=False).reset_index()
    # round-robin over workloads: the best set of each workload before the second best of any
    grouped["_turn"] = grouped.groupby("workload", sort=False, dropna=False).cumcount()
    grouped = grouped.sort_values("_turn", kind="stable").set_index(PANEL_KEYS)
    return [
        {k: (None if pd.isna(v) else v) for k, v in zip(PANEL_KEYS, idx, strict=True)}
        for idx in grouped.index
    ]


def in_panel(frame: pd.DataFrame, panel: dict) -> np.ndarray:
    keyed = key_columns(frame, PANEL_KEYS)
    mask = np.ones(len(frame), bool)
    for key, value in panel.items():
        col = keyed[key].astype(object)
        mask &= (col.isna() if value is None else col == value).to_numpy()
    return mask


def curve_label(frame: pd.DataFrame) -> pd.Series:
    """``backend[/start_method][ affinity][ options]`` per row."""
    keyed = key_columns(frame, CURVE_KEYS).astype(object)
    label = keyed["backend"].astype(str)
    method = keyed["start_method"].where(
        keyed["start_method"].notna() | (label != MULTIPROCESSING), DEFAULT_START_METHOD
    )  # a multiprocessing trial that named no method ran the default: say which
    label = label.where(method.isna(), label + "/" + method.astype(str))
    for key in ("affinity", "options"):
        # shown only where they vary, or every label would repeat "compact"
        if keyed[key].nunique(dropna=False) > 1:
            label = label + keyed[key].map(lambda v, k=key: "" if v is None or v != v else f" {k}={v}")
    return label


#: One colour per backend (and start method), the same in every report; other curves of a backend
#: (an affinity, an option) get a shade of it, and an unknown backend a colour from its name.
BACKEND_COLORS = {
    SEQUENTIAL: "#7f7f7f",
    THREADING: "#1f77b4",
    MULTIPROCESSING: "#ff7f0e",
    "multiprocessing/fork": "#ff7f0e",
    "multiprocessing/spawn": "#2ca02c",
    "multiprocessing/forkserver": "#d62728",
    RAY: "#9467bd",
    ASYNCIO: "#17becf",
    SUBINTERPRETERS: "#8c564b",
}
_SPARE = ["#e377c2", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]


def curve_color(label: str) -> tuple:
    """The colour of a curve, from its label alone: fixed across reports.

    Example::

        >>> curve_color("threading") == curve_color("threading") != curve_color("multiprocessing/spawn")
        True
    """
    import zlib

    from matplotlib.colors import to_rgb

    base, _, extra = label.partition(" ")
    color = BACKEND_COLORS.get(base) or BACKEND_COLORS.get(base.split("/")[0])
    if color is None:
        color = _SPARE[zlib.crc32(base.encode()) % len(_SPARE)]
    rgb = np.array(to_rgb(color))
    if extra:  # a shade of the backend's colour, the same for the same variant every time
        mix = 0.15 + 0.5 * (zlib.crc32(extra.encode()) % 100) / 100
        rgb = rgb * (1 - mix) + (0.0 if zlib.crc32(extra.encode()) % 2 else 1.0) * mix
    return tuple(float(c) for c in rgb)


def curve_colors(summary: pd.DataFrame) -> dict[str, tuple]:
    """Each curve label of the summary (in the order a reader expects) and its fixed colour."""
    labels = curve_label(summary)
    rank = summary["backend"].astype(object).map(BACKEND_ORDER).fillna(len(BACKEND_ORDER))
    frame = (
        pd.DataFrame({"label": labels, "rank": rank}).drop_duplicates("label").sort_values(["rank", "label"])
    )
    return {label: curve_color(label) for label in frame["label"]}


def panel_title(panel: dict) -> str:
    parts = [str(panel["workload"]), f"tasks={panel['tasks']}", f"size={panel['size']}"]
    if panel.get("python"):
        parts.append(f"python={panel['python']}")
    if panel.get("node"):
        parts.append(f"on {panel['node']}")
    return "  ".join(parts)


def workers_text(n: object) -> str:
    """``1 worker``, ``2 workers``.

    Example::

        >>> workers_text(1), workers_text(2)
        ('1 worker', '2 workers')
    """
    return f"{n} worker" + ("" if n == 1 else "s")

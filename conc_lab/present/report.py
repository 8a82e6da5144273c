"""Plots and one self-contained HTML page for a store of trial runs.

``write_report(store, out_dir)`` writes, for the parameter sets with the fullest scaling
curves (every set is in the page's table):

* ``speedup.png`` — speedup vs workers per backend, with its interval, the ideal line and
  the Amdahl fit (serial fraction in the legend);
* ``runtimes.png`` — every run's time per backend and worker count (dots; a bar at the
  median), failed runs counted under the axis, so the spread and outliers stay visible;
* ``timeline-N.png`` — a Gantt chart of one representative run (the median one) per backend
  at its most workers: one lane per worker, one bar per task. Threads on CPU-bound work
  take turns under the GIL (bars stretched, one running at a time); processes run side by side;
* ``index.html`` — all of the above embedded as base64, the summary and scaling tables,
  the failures with their errors, and where the numbers came from. It needs no network
  and no other file.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, no display),
so building a report never touches global GUI state.
"""

from __future__ import annotations

import base64
import html
import io
import time
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from conc_lab import schema
from conc_lab.analysis.attribution import PARTS, attribute, median_rows
from conc_lab.analysis.scaling import amdahl_speedup, fit_scaling, predict_scaling, usl_speedup
from conc_lab.analysis.stats import group_codes
from conc_lab.analysis.summary import (
    BACKEND_ORDER,
    GROUP_KEYS,
    SEQUENTIAL,
    as_frame,
    by_interpreter,
    interpreter_labels,
    key_columns,
    ordered,
    summarize,
)
from conc_lab.present.render import display, fmt_num, fmt_time

#: One panel = one parameter set whose backends and worker counts are compared.
PANEL_KEYS = ["workload", "tasks", "size", "python", "node"]
#: What tells two curves of one panel apart.
CURVE_KEYS = ["backend", "start_method", "affinity", "options"]
DPI = 110
LAYOUT = "constrained"


def write_report(
    data: pd.DataFrame | str | PathLike,
    out_dir: str | PathLike,
    *,
    title: str | None = None,
    max_panels: int | None = None,
    max_timelines: int | None = None,
) -> Path:
    """Write the PNG figures and a self-contained ``index.html`` into ``out_dir``; return the page's path.

    ``data`` is a store path (read with ``conc_lab.load``) or the DataFrame it returns. Every
    parameter set gets a speedup panel and a timeline; ``max_panels`` / ``max_timelines`` cap
    them (the sets with the most points first), and the page then says what it left out.

    Example::

        >>> write_report("results/smoke", "report/")  # doctest: +SKIP
        PosixPath('report/index.html')
    """
    t0 = time.perf_counter()
    df = as_frame(data)
    if len(df) == 0:
        raise ValueError("nothing to report: the store has no trial runs")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(df)
    fits = fit_scaling(summary)
    every_panel = _pick_panels(summary)
    panels = every_panel[:max_panels]
    colors = _curve_colors(summary)

    figures: list[tuple[str, str, bytes]] = []  # (file name, caption, png)
    if panels:
        figures.append(("speedup.png", _SPEEDUP_CAPTION, _speedup_figure(summary, fits, panels, colors)))
        figures.append(("runtimes.png", _RUNTIME_CAPTION, _runtime_figure(df, panels, colors)))
    for i, panel in enumerate(panels[:max_timelines]):
        png = _timeline_figure(df, panel, colors)
        if png is not None:
            figures.append((f"timeline-{i + 1}.png", _TIMELINE_CAPTION + " " + _panel_title(panel), png))
    png = _attribution_figure(df)
    if png is not None:
        figures.append(("attribution.png", _ATTRIBUTION_CAPTION, png))
    png = _python_figure(df, summary)
    if png is not None:
        figures.append(("python_speedup.png", _PYTHON_CAPTION, png))
    for name, _, png in figures:
        _write_atomic(out / name, png)

    left_out = _left_out(len(every_panel), len(panels), len(panels[:max_timelines]))
    page = _html(df, summary, fits, left_out, figures, title, time.perf_counter() - t0)
    _write_atomic(out / "index.html", page.encode())
    return out / "index.html"


def _write_atomic(path: Path, data: bytes) -> None:
    # a report opened while being rebuilt should show the old file or the new one, never half of one
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


# --- choosing what to draw ---------------------------------------------------------------------


def _panel_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[PANEL_KEYS].astype(object).where(frame[PANEL_KEYS].notna(), None)


def _left_out(total: int, panels: int, timelines: int) -> str:
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


def _pick_panels(summary: pd.DataFrame) -> list[dict]:
    """The parameter sets with the most (backend, workers) points measured, then the longest runs,
    taking turns between workloads so that each is drawn."""
    ok = summary[summary["n"] > 0]
    if len(ok) == 0:
        return []
    keyed = _panel_frame(ok).assign(_points=1, _median=ok["median_s"].to_numpy())
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


def _in_panel(frame: pd.DataFrame, panel: dict) -> np.ndarray:
    keyed = key_columns(frame, PANEL_KEYS)
    mask = np.ones(len(frame), bool)
    for key, value in panel.items():
        col = keyed[key].astype(object)
        mask &= (col.isna() if value is None else col == value).to_numpy()
    return mask


def _curve_label(frame: pd.DataFrame) -> pd.Series:
    """``backend[/start_method][ affinity][ options]`` per row."""
    keyed = key_columns(frame, CURVE_KEYS).astype(object)
    label = keyed["backend"].astype(str)
    method = keyed["start_method"]
    label = label.where(method.isna(), label + "/" + method.astype(str))
    for key in ("affinity", "options"):
        # shown only where they vary, or every label would repeat "compact"
        if keyed[key].nunique(dropna=False) > 1:
            label = label + keyed[key].map(lambda v, k=key: "" if v is None or v != v else f" {k}={v}")
    return label


#: One colour per backend (and start method), the same in every report; other curves of a backend
#: (an affinity, an option) get a shade of it, and an unknown backend a colour from its name.
BACKEND_COLORS = {
    "sequential": "#7f7f7f",
    "threading": "#1f77b4",
    "multiprocessing": "#ff7f0e",
    "multiprocessing/fork": "#ff7f0e",
    "multiprocessing/spawn": "#2ca02c",
    "multiprocessing/forkserver": "#d62728",
    "ray": "#9467bd",
    "asyncio": "#17becf",
    "subinterpreters": "#8c564b",
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


def _curve_colors(summary: pd.DataFrame) -> dict[str, tuple]:
    """Each curve label of the summary (in the order a reader expects) and its fixed colour."""
    labels = _curve_label(summary)
    rank = summary["backend"].astype(object).map(BACKEND_ORDER).fillna(len(BACKEND_ORDER))
    frame = (
        pd.DataFrame({"label": labels, "rank": rank}).drop_duplicates("label").sort_values(["rank", "label"])
    )
    return {label: curve_color(label) for label in frame["label"]}


def _panel_title(panel: dict) -> str:
    parts = [str(panel["workload"]), f"tasks={panel['tasks']}", f"size={panel['size']}"]
    if panel.get("python"):
        parts.append(f"python={panel['python']}")
    if panel.get("node"):
        parts.append(f"on {panel['node']}")
    return "  ".join(parts)


# --- figures -------------------------------------------------------------------------------------


def _grid(n: int, width: float = 5.2, height: float = 3.8):
    from matplotlib.figure import Figure

    cols = min(n, 2)
    rows = -(-n // cols)
    fig = Figure(figsize=(width * cols, height * rows), dpi=DPI, layout=LAYOUT)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


_SPEEDUP_CAPTION = (
    "Speedup over the sequential baseline (median run time ratio, bars: 95% interval) against workers. "
    "Grey dashes: ideal (speedup = workers). Per backend, the scaling law that fits better (see Scaling): "
    "dotted, Amdahl's law with its serial fraction f (0 ≤ f ≤ 1); dash-dot, the Universal Scalability Law "
    "with contention σ and coherency κ. No line: too few worker counts to fit. "
    "Circled in red: superlinear points (whole interval above the worker count)."
)


def _draw_fit(ax, fit: pd.Series, max_w: int, color) -> str:
    """Draw the law that fits the curve better over the measured range; return its legend text."""
    grid_w = np.linspace(1, max_w, 100)
    if fit["better"] == "usl":
        ax.plot(
            grid_w,
            usl_speedup(fit["usl_sigma"], fit["usl_kappa"], grid_w),
            color=color,
            linestyle="-.",
            lw=1.2,
        )
        return f" (USL σ={fit['usl_sigma']:.2f} κ={fit['usl_kappa']:.3f})"
    if fit["better"] == "amdahl":
        ax.plot(grid_w, amdahl_speedup(fit["amdahl_f"], grid_w), color=color, linestyle=":", linewidth=1.2)
        return f" (Amdahl f={fit['amdahl_f']:.2f})"
    return ""


def _speedup_figure(summary: pd.DataFrame, fits: pd.DataFrame, panels: list[dict], colors: dict) -> bytes:
    from matplotlib.ticker import MaxNLocator

    fig, axes = _grid(len(panels))
    labels = _curve_label(summary)
    fit_labels = _curve_label(fits) if len(fits) else pd.Series(dtype=object)
    for ax, panel in zip(axes, panels, strict=True):
        mask = _in_panel(summary, panel) & np.isfinite(summary["speedup"].to_numpy())
        part, part_labels = summary[mask], labels[mask]
        max_w = max(2, int(part["workers"].max())) if len(part) else 2
        ax.plot([1, max_w], [1, max_w], color="0.6", linestyle="--", linewidth=1, label="ideal")
        for label in sorted(set(part_labels), key=lambda lab: list(colors).index(lab)):
            curve = part[part_labels == label].sort_values("workers")
            if curve["backend"].iloc[0] == SEQUENTIAL:
                continue  # the baseline is 1 by definition
            w = curve["workers"].to_numpy(dtype=float)
            s = curve["speedup"].to_numpy()
            err = np.vstack([s - curve["speedup_ci_low"].to_numpy(), curve["speedup_ci_high"].to_numpy() - s])
            color = colors[label]
            text = label
            fit = fits[(_in_panel(fits, panel)) & (fit_labels == label).to_numpy()] if len(fits) else fits
            if len(fit) == 1:
                text += _draw_fit(ax, fit.iloc[0], max_w, color)
            ax.errorbar(
                w, s, yerr=np.clip(err, 0, None), color=color, marker="o", markersize=4, capsize=3, label=text
            )
            sup = curve["superlinear"].to_numpy(dtype=bool)
            if sup.any():
                ax.scatter(
                    w[sup], s[sup], s=140, facecolors="none", edgecolors="red", linewidths=1.5, zorder=5
                )
        ax.set_title(_panel_title(panel), fontsize=9)
        ax.set_xlabel("workers")
        ax.set_ylabel("speedup")
        ax.set_xlim(0.8, max_w * 1.05)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


_RUNTIME_CAPTION = (
    "Every run's time (dots, jittered sideways) per backend and worker count; the bar is the median. "
    "Failed or timed-out runs are counted under the axis: they are never dropped silently."
)


def _runtime_figure(df: pd.DataFrame, panels: list[dict], colors: dict) -> bytes:
    fig, axes = _grid(len(panels), width=6.2)
    labels = _curve_label(df)
    status = df["status"].astype(object).to_numpy() if "status" in df.columns else np.full(len(df), schema.OK)
    run = df["run_s"].to_numpy(dtype=np.float64, na_value=np.nan)
    rng = np.random.default_rng(0)  # fixed jitter: the same data draws the same picture
    for ax, panel in zip(axes, panels, strict=True):
        mask = _in_panel(df, panel)
        part = pd.DataFrame(
            {
                "label": labels[mask].to_numpy(),
                "workers": df["workers"].to_numpy()[mask],
                "ok": (status[mask] == schema.OK) & np.isfinite(run[mask]),
                "run_s": run[mask],
            }
        )
        order = sorted(
            part.groupby(["label", "workers"]).groups, key=lambda k: (list(colors).index(k[0]), k[1])
        )
        ticks = []
        for x, (label, workers) in enumerate(order):
            sel = part[(part["label"] == label) & (part["workers"] == workers)]
            times = sel.loc[sel["ok"], "run_s"].to_numpy()
            color = colors[label]
            if len(times):
                ax.scatter(x + rng.uniform(-0.18, 0.18, len(times)), times, s=9, color=color, alpha=0.7)
                ax.plot([x - 0.3, x + 0.3], [np.median(times)] * 2, color="black", linewidth=1.5)
            failed = int((~sel["ok"]).sum())
            ticks.append(f"{label}\n{workers}w" + (f"\n{failed} failed" if failed else ""))
        ax.set_xticks(range(len(ticks)), ticks, fontsize=6, rotation=90)
        ok_times = part.loc[part["ok"], "run_s"]
        if len(ok_times) and ok_times.min() > 0 and ok_times.max() / ok_times.min() > 20:
            ax.set_yscale("log")
        ax.set_ylabel("run time (s)")
        ax.set_title(_panel_title(panel), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    return _png(fig)


_TIMELINE_CAPTION = (
    "Task timeline of the median run per backend at its most workers: one lane per worker, one bar per "
    "task (label: task index; lane: worker and the core it was pinned to)."
)


def _records(value) -> pd.DataFrame | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    rec = pd.DataFrame(list(value))
    if len(rec) == 0 or not {"worker", "start_s", "end_s"} <= set(rec.columns):
        return None
    return rec


def _timeline_runs(df: pd.DataFrame, panel: dict, colors: dict) -> list[tuple]:
    """Per curve of the panel, its median run at its most workers: (label, workers, row, records)."""
    mask = _in_panel(df, panel) & (df["status"].astype(object).to_numpy() == schema.OK)
    part = df[mask]
    part = part.assign(_label=_curve_label(part).to_numpy())
    chosen = []
    for label, runs in part.groupby("_label", sort=False):
        runs = runs[runs["workers"] == runs["workers"].max()].sort_values("run_s")
        if len(runs) == 0:
            continue
        pick = runs.iloc[(len(runs) - 1) // 2]  # the median run, not the luckiest one
        rec = _records(pick["task_records"])
        if rec is not None:
            chosen.append((label, int(pick["workers"]), pick, rec))
    return sorted(chosen, key=lambda c: list(colors).index(c[0]))


def _timeline_figure(df: pd.DataFrame, panel: dict, colors: dict) -> bytes | None:
    from matplotlib.figure import Figure

    if "task_records" not in df.columns:
        return None
    chosen = _timeline_runs(df, panel, colors)
    if not chosen:
        return None
    lanes = [max(c[1], int(c[3]["worker"].max()) + 1) for c in chosen]
    fig = Figure(figsize=(10, 0.9 + sum(0.32 * n + 0.55 for n in lanes)), dpi=DPI, layout=LAYOUT)
    axes = fig.subplots(
        len(chosen), 1, sharex=True, squeeze=False, height_ratios=[n + 1.5 for n in lanes]
    ).ravel()
    end = max(float(c[3]["end_s"].max()) for c in chosen)
    for ax, (label, workers, pick, rec), n_lanes in zip(axes, chosen, lanes, strict=True):
        color = colors[label]
        rec = rec.sort_values("start_s")
        ax.barh(
            rec["worker"],
            rec["end_s"] - rec["start_s"],
            left=rec["start_s"],
            height=0.7,
            color=color,
            edgecolor="white",
            linewidth=0.6,
        )
        if len(rec) <= 64:  # a label per bar only where they can be read
            for _, r in rec.iterrows():
                mid = (r["start_s"] + r["end_s"]) / 2
                ax.text(mid, r["worker"], str(r.get("task", "")), ha="center", va="center", fontsize=6)
        cores = rec.groupby("worker")["core"].first() if "core" in rec.columns else pd.Series(dtype=int)
        ax.set_yticks(
            range(n_lanes),
            [
                f"w{w}" + (f" · core {cores[w]}" if w in cores.index and cores[w] >= 0 else "")
                for w in range(n_lanes)
            ],
            fontsize=7,
        )
        ax.set_ylim(n_lanes - 0.5, -0.5)
        ax.set_title(f"{label}, {_workers(workers)} — run {pick['run_s']:.3g} s", fontsize=8, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("seconds since the run started")
    axes[-1].set_xlim(0, end * 1.02 if end > 0 else 1)
    fig.suptitle(_panel_title(panel), fontsize=9)
    return _png(fig)


_PYTHON_CAPTION = (
    "Speedup over each interpreter's own sequential baseline, per Python version (oldest left), at the "
    "most workers measured; bars: 95% interval. Under the GIL, threads on CPU-bound Python code stay "
    "near 1; a free-threaded build (version ending in t) can reach the worker count, as processes do."
)
#: Most lines per panel of the per-version figure: the parameter sets with the longest baselines.
_PYTHON_MAX_LINES = 8


def _python_figure(df: pd.DataFrame, summary: pd.DataFrame) -> bytes | None:
    """Threading (and multiprocessing) speedup against the Python version, when more than one ran."""
    labels = interpreter_labels(df)
    if len(labels) < 2:
        return None
    from matplotlib import colormaps

    part = summary[
        np.isfinite(summary["speedup"].to_numpy()) & (summary["backend"].astype(object) != SEQUENTIAL)
    ]
    part = part.assign(_interp=part["python"].astype(object).map(lambda p: labels.get(None if p != p else p)))
    part = part[
        part["_interp"].notna() & part["backend"].astype(object).isin(["threading", "multiprocessing"])
    ]
    if len(part) == 0:
        return None
    line_keys = ["workload", "tasks", "size", "node", "start_method", "affinity", "options"]
    keyed = key_columns(part, line_keys).astype(object).fillna("-")
    part = part.assign(_line=[" ".join(map(str, r)) for r in keyed.itertuples(index=False)])
    most = part.groupby(["backend", "_line"], observed=True)["workers"].transform("max")
    part = part[part["workers"] == most]
    backends = [b for b in ("threading", "multiprocessing") if (part["backend"] == b).any()]
    fig, axes = _grid(len(backends), width=6.0)
    x_of = {label: i for i, label in enumerate(labels.values())}
    palette = colormaps["tab10"].colors
    for ax, backend in zip(axes, backends, strict=True):
        mine = part[part["backend"] == backend]
        longest = mine.groupby("_line")["baseline_s"].max().sort_values(ascending=False)
        for i, line in enumerate(longest.index[:_PYTHON_MAX_LINES]):
            pts = mine[mine["_line"] == line].assign(_x=lambda f: f["_interp"].map(x_of)).sort_values("_x")
            s = pts["speedup"].to_numpy()
            err = np.vstack([s - pts["speedup_ci_low"].to_numpy(), pts["speedup_ci_high"].to_numpy() - s])
            first = pts.iloc[0]
            text = f"{str(first['workload']).rsplit(':', 1)[-1]} size={first['size']} w={first['workers']}"
            if backend == "multiprocessing" and first["start_method"] == first["start_method"]:
                text += f" {first['start_method']}"
            ax.errorbar(
                pts["_x"],
                s,
                yerr=np.clip(np.nan_to_num(err), 0, None),
                marker="o",
                markersize=4,
                capsize=3,
                color=palette[i % len(palette)],
                label=text,
            )
        workers = int(mine["workers"].max())
        ax.axhline(1, color="0.6", linewidth=1)
        ax.axhline(workers, color="0.6", linestyle="--", linewidth=1, label=f"ideal ({workers} workers)")
        ax.set_xticks(range(len(x_of)), list(x_of), fontsize=8, rotation=30)
        ax.set_xlim(-0.4, len(x_of) - 0.6)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("Python")
        ax.set_ylabel("speedup over sequential")
        ax.set_title(f"{backend} speedup per Python version", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    return _png(fig)


_ATTRIBUTION_CAPTION = (
    "Where each trial's worker-time went, in its median run (100% = workers × (start-up + run + teardown)): "
    "on a CPU in tasks (work); in tasks off the CPU while the workers together used about one CPU "
    "(serialisation: the GIL's signature); in tasks off the CPU otherwise (waiting: sleep, I/O, locks); "
    "taken by other processes on the run's cores (others, where measured); idle after finishing early "
    "(imbalance); between tasks and collecting results (dispatch/IPC); starting and joining the workers. "
    "Right: the dominant cause, as in the summary's why column."
)
#: One fixed colour per part, the same in every report.
_PART_COLORS = {
    "work_s": "#4c72b0",
    "serialisation_s": "#c44e52",
    "waiting_s": "#dd8452",
    "others_s": "#bbbbbb",
    "imbalance_s": "#8172b3",
    "dispatch_s": "#937860",
    "startup_s": "#55a868",
    "teardown_s": "#64b5cd",
}


def _attribution_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Per trial (summary keys), its median run's parts as shares of its worker-time, with a label."""
    att = attribute(df)
    keyed = key_columns(df, GROUP_KEYS)
    codes, groups = group_codes(keyed, GROUP_KEYS)
    pick = median_rows(att, df, codes, len(groups))
    groups, pick = groups[pick >= 0].reset_index(drop=True), pick[pick >= 0]
    parts = att.iloc[pick].reset_index(drop=True)
    shares = parts[PARTS].div(parts["capacity_s"], axis=0)
    label = _curve_label(groups) + " · " + groups["workers"].map(_workers)
    label = groups["workload"].astype(str).str.rsplit(":", n=1).str[-1] + " · " + label
    return ordered(pd.concat([groups, shares], axis=1).assign(_label=label, _why=parts["why"]))


def _attribution_figure(df: pd.DataFrame) -> bytes | None:
    from matplotlib.figure import Figure

    if "task_records" not in df.columns:
        return None
    rows = _attribution_rows(df)
    if len(rows) == 0:
        return None
    fig = Figure(figsize=(11, 1.2 + 0.3 * len(rows)), dpi=DPI, layout=LAYOUT)
    ax = fig.subplots()
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    for part in PARTS:
        width = np.nan_to_num(rows[part].to_numpy(dtype=np.float64))
        ax.barh(y, width, left=left, color=_PART_COLORS[part], height=0.7, label=part.removesuffix("_s"))
        left += width
    for yi, why in zip(y, rows["_why"], strict=True):
        ax.text(1.01, yi, str(why), va="center", fontsize=7, clip_on=False)
    ax.set_yticks(y, rows["_label"], fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the trial's worker-time (median run)")
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.legend(fontsize=7, ncols=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    return _png(fig)


def _workers(n: object) -> str:
    """``1 worker``, ``2 workers``.

    Example::

        >>> _workers(1), _workers(2)
        ('1 worker', '2 workers')
    """
    return f"{n} worker" + ("" if n == 1 else "s")


# --- the page --------------------------------------------------------------------------------------

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1800px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 12px; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; position: sticky; top: 0; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #555; max-width: 70em; }
.scroll { max-height: 36em; overflow: auto; }
/* the summary is read whole: no scroll box; long cells wrap so that it fits a 1400 px window */
#summary { width: 100%; } #summary td, #summary th { white-space: normal; }
#summary td:first-child { overflow-wrap: anywhere; min-width: 8em; }
.wide { overflow-x: auto; }
.meta td { text-align: left; } .warn { color: #a40; }
"""


def _table(frame: pd.DataFrame, table_id: str) -> str:
    body = frame.astype(object).where(frame.notna(), "").to_html(index=False, escape=True, border=0)
    return body.replace("<table", f'<table id="{table_id}"', 1)


def _html(
    df: pd.DataFrame,
    summary: pd.DataFrame,
    fits: pd.DataFrame,
    left_out: str,
    figures: list[tuple[str, str, bytes]],
    title: str | None,
    elapsed: float,
) -> str:
    esc = html.escape
    names = sorted(df["sweep_name"].astype(object).dropna().unique()) if "sweep_name" in df.columns else []
    title = title or ("conc_lab report: " + ", ".join(map(str, names)) if names else "conc_lab report")
    meta = _meta_table(df)

    figs = "".join(
        f'<figure id="{esc(name)}"><img alt="{esc(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}"><figcaption>{esc(caption)}</figcaption></figure>'
        for name, caption, png in figures
    )
    karp = _karp_view(summary)
    failures = _failures(df)
    flagged = int((summary["notes"] != "").sum())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{esc(title)}</h1>
<table class="meta">{meta}</table>
<h2>Figures</h2>
{left_out}{figs or "<p>No successful runs to draw.</p>"}
<h2>Summary</h2>
<p>One row per parameter set, backend and worker count. Median and 95% interval of the run time
(exact bootstrap of the median); speedup over the sequential baseline of the same parameters, with its
interval; efficiency = speedup / workers; setup = median pool start-up, not in the run time.
{flagged} row(s) carry notes (unstable: CV &gt; 10% or interval wider than 20% of the median).</p>
<div>{_table(display(summary), "summary")}</div>
{_end_to_end_section(summary)}
{_interpreter_section(df, summary)}
<h2>Scaling</h2>
{_scaling_section(fits)}
<p>Karp–Flatt: the serial fraction each point implies; rising with workers means overhead that grows
with them, not serial work.</p>
<details><summary>Karp–Flatt per point</summary><div class="scroll">{_table(karp, "karp-flatt")}</div></details>
<h2>Failures</h2>
{failures}
<p style="color:#888;font-size:11px">Built by conc_lab in {elapsed:.1f} s.</p>
</body></html>
"""


def _meta_table(df: pd.DataFrame) -> str:
    """Where the numbers came from: runs by status, sweeps, hosts, CPU, Python, config."""
    esc = html.escape
    status = df["status"].astype(object).value_counts() if "status" in df.columns else pd.Series(dtype=int)
    meta_rows = [
        ("trial runs", f"{len(df):,}"),
        ("by status", ", ".join(f"{k}: {v:,}" for k, v in status.items())),
    ]
    for col, label in (
        ("sweep_id", "sweeps"),
        ("hostname", "hosts"),
        ("cpu_model", "CPU"),
        ("logical_cores", "logical cores"),
        ("python_version", "Python"),
        ("platform", "platform"),
        ("conclab_version", "conc_lab"),
        ("config_path", "config"),
    ):
        if col in df.columns:
            values = sorted(map(str, df[col].astype(object).dropna().unique()))
            if values:
                meta_rows.append(
                    (label, ", ".join(values[:8]) + (f" … ({len(values)} in all)" if len(values) > 8 else ""))
                )
    return "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in meta_rows)


def _varying(frame: pd.DataFrame, keys: list[str]) -> list[str]:
    """``keys`` without the optional ones that never vary (node, affinity, ...): noise in a table."""
    optional = ("start_method", "python", "node", "affinity", "options")
    return [
        k
        for k in keys
        if k in frame.columns and (k not in optional or frame[k].astype(object).nunique(dropna=False) > 1)
    ]


def _pm(value: float, se: float, spec: str) -> str:
    if not np.isfinite(value):
        return "–"
    return format(value, spec) + (f" ± {format(se, spec)}" if np.isfinite(se) else "")


def _fit_view(fits: pd.DataFrame) -> pd.DataFrame:
    """The fits table for people: both laws' parameters with standard errors, misfit, the better one."""
    keys = _varying(
        fits,
        ["workload", "tasks", "size", "backend", "start_method", "python", "node", "affinity", "options"],
    )
    view = fits[keys].astype(object).where(fits[keys].notna(), "-").copy()
    view["workers"] = [
        f"{a}–{b} ({n} counts)"
        for a, b, n in zip(fits["min_workers"], fits["max_workers"], fits["points"], strict=True)
    ]
    view["Amdahl f"] = [_pm(v, e, ".3f") for v, e in zip(fits["amdahl_f"], fits["amdahl_f_se"], strict=True)]
    view["Amdahl misfit"] = [f"{v:.2g}" if np.isfinite(v) else "–" for v in fits["amdahl_chi2"]]
    view["USL σ"] = [_pm(v, e, ".3f") for v, e in zip(fits["usl_sigma"], fits["usl_sigma_se"], strict=True)]
    view["USL κ"] = [_pm(v, e, ".4f") for v, e in zip(fits["usl_kappa"], fits["usl_kappa_se"], strict=True)]
    view["USL peak at"] = [_peak(v) for v in fits["usl_peak_workers"]]
    view["USL misfit"] = [f"{v:.2g}" if np.isfinite(v) else "–" for v in fits["usl_chi2"]]
    view["better"] = fits["better"].map({"usl": "USL", "amdahl": "Amdahl", "none": "–"})
    view["note"] = fits["note"]
    return view


def _speed(x: float) -> str:
    """A speedup for a table: 2 decimals, 3 significant digits past 1000, ∞ for an unbounded interval."""
    if not np.isfinite(x):
        return "∞" if x > 0 else "–"
    return f"{x:.2f}" if x < 1000 else f"{x:.3g}"


def _peak(x: float) -> str:
    if not np.isfinite(x):
        return "none" if x == np.inf else "–"
    return f"{x:.1f} workers" if x < 1000 else "beyond 1000 workers"


def _prediction_view(fits: pd.DataFrame) -> pd.DataFrame:
    """Per curve and law, the forecast speedup at 4, 8, 16, 64 workers; * marks an extrapolation."""
    pred = predict_scaling(fits)
    keys = _varying(
        pred,
        ["workload", "tasks", "size", "backend", "start_method", "python", "node", "affinity", "options"],
    )
    if len(pred) == 0:
        return pd.DataFrame(columns=keys + ["law"])
    pred = pred.assign(
        law=pred["law"].map({"usl": "USL", "amdahl": "Amdahl"}) + np.where(pred["better"], " (better)", ""),
        cell=[
            f"{_speed(sp)} ({_speed(lo)}–{_speed(hi)})" + ("*" if ex else "")
            for sp, lo, hi, ex in zip(
                pred["speedup"], pred["speedup_low"], pred["speedup_high"], pred["extrapolated"], strict=True
            )
        ],
    )
    index = keys + ["law"]
    flat = pred.assign(**{k: pred[k].astype(object).where(pred[k].notna(), "-") for k in index})
    wide = flat.pivot_table(index=index, columns="workers", values="cell", aggfunc="first", sort=False)
    wide.columns = [f"{w} workers" for w in wide.columns]
    return wide.reset_index()


_SCALING_TEXT = """<p>Two laws fitted per backend to the speedups (on the log scale, each point weighed by its
interval): Amdahl's S(N) = 1 / (f + (1 − f)/N), with the serial fraction f bounded to 0 ≤ f ≤ 1, and
Gunther's Universal Scalability Law S(N) = N / (1 + σ(N − 1) + κN(N − 1)): σ is contention (like f),
κ coherency, the cost of workers keeping each other in step, which makes the speedup <em>fall</em>
past N* = √((1 − σ)/κ) workers; Amdahl cannot express a slowdown. Misfit: weighted squared residuals
per degree of freedom (≈ 1: within the measured noise; lower is better). "Better": USL when its
extra parameter buys a significant drop in misfit (F-test, p &lt; 0.05), else the simpler Amdahl.
A law is never fitted with as many parameters as worker counts: measure more worker counts.</p>"""


def _scaling_section(fits: pd.DataFrame) -> str:
    if len(fits) == 0:
        return "<p>No parallel backend measured against a baseline.</p>"
    pred = _prediction_view(fits)
    pred_html = (
        "<p>Forecast speedup (95% interval) on more workers. <b>*</b> marks an extrapolation beyond the "
        "worker counts measured: a forecast of the law, not a measurement, and only as good as the law.</p>"
        f'<div class="wide">{_table(pred, "predictions")}</div>'
        if len(pred)
        else "<p>No forecasts: no law could be fitted.</p>"
    )
    return _SCALING_TEXT + f'<div class="wide">{_table(_fit_view(fits), "scaling")}</div>' + pred_html


def _karp_view(summary: pd.DataFrame) -> pd.DataFrame:
    karp = summary[np.isfinite(summary["karp_flatt"])][
        ["workload", "tasks", "size", "backend", "start_method", "workers", "speedup", "karp_flatt"]
    ].copy()
    karp["speedup"] = karp["speedup"].map(lambda v: f"{v:.2f}")
    karp["karp_flatt"] = karp["karp_flatt"].map(lambda v: f"{v:.3f}")
    karp = karp.drop(columns=[c for c in karp.columns if karp[c].isna().all()])
    return karp


def _end_to_end_section(summary: pd.DataFrame) -> str:
    """Run-only and end-to-end speedups side by side, with the break-even work size."""
    part = summary[(summary["backend"].astype(object) != SEQUENTIAL) & (summary["n"] > 0)]
    if len(part) == 0 or "e2e_speedup" not in part.columns:
        return ""
    keys = _varying(
        part,
        ["workload", "tasks", "size", "backend", "start_method", "python", "node", "affinity", "options"],
    )
    view = part[keys].astype(object).where(part[keys].notna(), "-").copy()
    view["workers"] = part["workers"]
    view["run-only speedup"] = [
        f"{fmt_num(s)} ({fmt_num(lo)}–{fmt_num(hi)})"
        for s, lo, hi in zip(part["speedup"], part["speedup_ci_low"], part["speedup_ci_high"], strict=True)
    ]
    view["end-to-end speedup"] = [
        f"{fmt_num(s)} ({fmt_num(lo)}–{fmt_num(hi)})"
        for s, lo, hi in zip(
            part["e2e_speedup"], part["e2e_speedup_ci_low"], part["e2e_speedup_ci_high"], strict=True
        )
    ]
    view["end to end"] = [fmt_time(x) for x in part["e2e_s"]]
    view["breaks even at"] = part["break_even"]
    return (
        "<h2>End to end</h2><p>What a program using the backend pays: start-up + run + teardown (joining "
        "the workers, where measured), against the sequential loop's own; beside the run-only speedup. "
        "Breaks even at: the work size above which the backend beats the plain loop end to end, from the "
        "start-up cost and the time per unit of work measured over sizes.</p>"
        f'<div class="wide">{_table(view.reset_index(drop=True), "end-to-end")}</div>'
    )


def _interpreter_section(df: pd.DataFrame, summary: pd.DataFrame) -> str:
    """Speedup per interpreter side by side, when the runs span more than one."""
    if len(interpreter_labels(df)) < 2:
        return ""
    wide = by_interpreter(df, summary).round(2)
    return (
        "<h2>Per interpreter</h2><p>Speedup over each interpreter's own sequential baseline, one column "
        "per Python version (oldest first; <i>t</i>: free-threaded build, <i>+GIL</i>: it ran with the "
        "GIL on).</p>" + f'<div class="scroll">{_table(wide, "interpreters")}</div>'
    )


def _failures(df: pd.DataFrame, limit: int = 50) -> str:
    if "status" not in df.columns:
        return "<p>No status recorded.</p>"
    bad = df[df["status"].astype(object).isin(schema.FAILURES)]
    if len(bad) == 0:
        return "<p>None: every run finished.</p>"
    cols = [
        c
        for c in (
            "workload",
            "tasks",
            "size",
            "backend",
            "start_method",
            "workers",
            "repeat",
            "status",
            "error",
        )
        if c in bad.columns
    ]
    view = bad[cols].head(limit).copy()
    if "error" in view.columns:
        view["error"] = (
            view["error"].astype(object).map(lambda e: "" if e is None or e != e else str(e)[:300])
        )
    more = f"<p class='warn'>… and {len(bad) - limit:,} more.</p>" if len(bad) > limit else ""
    return f"<p class='warn'>{len(bad):,} run(s) failed or timed out.</p>" + _table(view, "failures") + more

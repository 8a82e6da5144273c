"""The report's figures as PNG bytes: speedup, run times, task timelines, per interpreter, attribution.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display), so building a
report never touches global GUI state. Each ``*_CAPTION`` is the text the page prints under it.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from conc_lab import schema
from conc_lab.analysis.attribution import PARTS, attribute, median_rows
from conc_lab.analysis.scaling import amdahl_speedup, usl_speedup
from conc_lab.analysis.stats import group_codes
from conc_lab.analysis.summary import GROUP_KEYS, interpreter_labels, key_columns, ordered
from conc_lab.host.protocol import MULTIPROCESSING, SEQUENTIAL, THREADING
from conc_lab.host.units import duration
from conc_lab.present.panels import curve_label, in_panel, panel_title, workers_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110
LAYOUT = "constrained"


def _grid(n: int, width: float = 5.2, height: float = 3.8):
    from matplotlib.figure import Figure

    cols = min(n, 2)
    rows = -(-n // cols)
    fig = Figure(figsize=(width * cols, height * rows), dpi=DPI, layout=LAYOUT)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _legend_beside(ax, fontsize: float) -> None:
    """The axes' legend to the right of its data area, outside it: constrained layout makes room for
    it, so it covers no curve, point or interval (``loc="best"`` only picks the emptiest spot inside)."""
    ax.legend(
        fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False
    )


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


#: How a speedup was estimated (``summarize``'s ``speedup_method``), as the caption says it.
_PAIRED_HOW = (
    "paired: the median of per-pair ratios, each run against the sequential run nearest to it in its round"
)
_UNPAIRED_HOW = "the ratio of the median run times"


def speedup_caption(summary: pd.DataFrame) -> str:
    """The speedup figure's caption, saying how its speedups were computed: paired where the runs
    allow (``analysis.pairing``), else the ratio of the medians. A caption that said "median run
    time ratio" over paired speedups described a number the figure does not show.

    >>> s = pd.DataFrame({"speedup_method": ["", "paired", "paired"]})
    >>> speedup_caption(s).split(" against workers")[0]
    'Speedup over the sequential baseline (paired: the median of per-pair ratios, each run against the sequential run nearest to it in its round; bars: 95% interval)'
    >>> "else the ratio of the median run times" in speedup_caption(s.assign(speedup_method=["", "paired", "unpaired"]))
    True
    """
    from conc_lab.analysis.pairing import PAIRED, UNPAIRED

    methods = set(summary["speedup_method"].astype(object).dropna()) - {""} if len(summary) else set()
    if methods == {UNPAIRED}:
        how = _UNPAIRED_HOW
    elif methods <= {PAIRED}:
        how = _PAIRED_HOW
    else:  # some of each: the rows whose runs could not be paired (other nodes, shards, no start times)
        how = f"{_PAIRED_HOW} where the runs allow, else {_UNPAIRED_HOW}"
    return (
        f"Speedup over the sequential baseline ({how}; bars: 95% interval) against workers. {_SPEEDUP_REST}"
    )


_SPEEDUP_REST = (
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


def speedup_figure(summary: pd.DataFrame, fits: pd.DataFrame, panels: list[dict], colors: dict) -> bytes:
    """The speedup figure as PNG bytes (``draw_speedup``'s figure)."""
    return _png(draw_speedup(summary, fits, panels, colors))


def draw_speedup(summary: pd.DataFrame, fits: pd.DataFrame, panels: list[dict], colors: dict) -> Figure:
    """Speedup against workers, one panel per parameter set: a curve per backend with its interval,
    the ideal line and the scaling law that fits it better."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = _grid(len(panels), width=7.2)  # wider than the others: the legend is beside each panel
    labels = curve_label(summary)
    fit_labels = curve_label(fits) if len(fits) else pd.Series(dtype=object)
    for ax, panel in zip(axes, panels, strict=True):
        mask = in_panel(summary, panel) & np.isfinite(summary["speedup"].to_numpy())
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
            fit = fits[(in_panel(fits, panel)) & (fit_labels == label).to_numpy()] if len(fits) else fits
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
        ax.set_title(panel_title(panel), fontsize=9)
        ax.set_xlabel("workers")
        ax.set_ylabel("speedup")
        ax.set_xlim(0.8, max_w * 1.05)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        _legend_beside(ax, 7)
    return fig


RUNTIME_CAPTION = (
    "Every run's time (dots, jittered sideways) per backend and worker count; the bar is the median. "
    "Failed or timed-out runs are counted under the axis: they are never dropped silently."
)


def runtime_figure(df: pd.DataFrame, panels: list[dict], colors: dict) -> bytes:
    fig, axes = _grid(len(panels), width=6.2)
    labels = curve_label(df)
    status = df["status"].astype(object).to_numpy() if "status" in df.columns else np.full(len(df), schema.OK)
    run = df["run_s"].to_numpy(dtype=np.float64, na_value=np.nan)
    rng = np.random.default_rng(0)  # fixed jitter: the same data draws the same picture
    for ax, panel in zip(axes, panels, strict=True):
        mask = in_panel(df, panel)
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
        ax.set_title(panel_title(panel), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    return _png(fig)


TIMELINE_CAPTION = (
    "Task timeline of the median run per backend at its most workers: one lane per worker, one bar per "
    "task (label: task index; lane: worker and the core it was pinned to)."
)
#: A thread timeline whose speedup stays under this reads as turns under the GIL, not parallel work.
_GIL_BOUND_SPEEDUP = 1.5


def timeline_caption(df: pd.DataFrame, summary: pd.DataFrame, panel: dict) -> str:
    """The timeline's caption, saying why thread lanes can look parallel when they are not.

    Each thread's bar spans its task from start to end; under the GIL the threads take turns
    inside those spans, so lanes overlap in time while one runs Python code at a time. The
    caption says so for every threading timeline, firmly where the speedup (or the attribution)
    shows the threads were GIL-bound.
    """
    part = summary[in_panel(summary, panel) & (summary["backend"].astype(object) == THREADING).to_numpy()]
    if len(part) == 0:
        return TIMELINE_CAPTION
    part = part[part["workers"] == part["workers"].max()]
    speedup = (
        float(np.nanmax(part["speedup"].to_numpy(dtype=np.float64)))
        if part["speedup"].notna().any()
        else np.nan
    )
    why = " ".join(str(w) for w in part.get("why", pd.Series(dtype=object)).dropna())
    if "GIL-bound" in why or speedup < _GIL_BOUND_SPEEDUP:
        return TIMELINE_CAPTION + (
            f" The threading lanes only look parallel (speedup {speedup:.2f}): the threads take turns under "
            "the GIL, so inside each bar one thread runs at a time and each task takes about workers × its "
            "own time."
        )
    return TIMELINE_CAPTION + (
        f" Threads take turns under the GIL (a free-threaded build has none): their lanes ran at once only "
        f"while waiting (sleep, I/O) or in C code that releases it; the speedup here is {speedup:.2f}."
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
    mask = in_panel(df, panel) & (df["status"].astype(object).to_numpy() == schema.OK)
    part = df[mask]
    part = part.assign(_label=curve_label(part).to_numpy())
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


def timeline_figure(df: pd.DataFrame, panel: dict, colors: dict) -> bytes | None:
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
        ax.set_title(
            f"{label}, {workers_text(workers)} — run {duration(pick['run_s'])}", fontsize=8, loc="left"
        )
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("seconds since the run started")
    axes[-1].set_xlim(0, end * 1.02 if end > 0 else 1)
    fig.suptitle(panel_title(panel), fontsize=9)
    return _png(fig)


PYTHON_CAPTION = (
    "Speedup over each interpreter's own sequential baseline, per Python version (oldest left), at the "
    "most workers measured; bars: 95% interval. Under the GIL, threads on CPU-bound Python code stay "
    "near 1; a free-threaded build (version ending in t) can reach the worker count, as processes do."
)
#: Most lines per panel of the per-version figure: the parameter sets with the longest baselines.
_PYTHON_MAX_LINES = 8


def python_figure(df: pd.DataFrame, summary: pd.DataFrame) -> bytes | None:
    """The per-Python-version figure as PNG bytes, when more than one interpreter ran (``draw_python``)."""
    fig = draw_python(df, summary)
    return None if fig is None else _png(fig)


def draw_python(df: pd.DataFrame, summary: pd.DataFrame) -> Figure | None:
    """Threading (and multiprocessing) speedup against the Python version, when more than one ran."""
    labels = interpreter_labels(df)
    if len(labels) < 2:
        return None
    from matplotlib import colormaps

    part = summary[
        np.isfinite(summary["speedup"].to_numpy()) & (summary["backend"].astype(object) != SEQUENTIAL)
    ]
    part = part.assign(_interp=part["python"].astype(object).map(lambda p: labels.get(None if p != p else p)))
    part = part[part["_interp"].notna() & part["backend"].astype(object).isin([THREADING, MULTIPROCESSING])]
    if len(part) == 0:
        return None
    line_keys = ["workload", "tasks", "size", "node", "start_method", "affinity", "options"]
    keyed = key_columns(part, line_keys).astype(object).fillna("-")
    part = part.assign(_line=[" ".join(map(str, r)) for r in keyed.itertuples(index=False)])
    most = part.groupby(["backend", "_line"], observed=True)["workers"].transform("max")
    part = part[part["workers"] == most]
    backends = [b for b in (THREADING, MULTIPROCESSING) if (part["backend"] == b).any()]
    fig, axes = _grid(len(backends), width=7.6)  # the legend is beside each panel
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
            if backend == MULTIPROCESSING and first["start_method"] == first["start_method"]:
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
        _legend_beside(ax, 6)
    return fig


ATTRIBUTION_CAPTION = (
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
    if len(pick) == 0:  # no run to attribute (every run failed): no figure
        return groups
    parts = att.iloc[pick].reset_index(drop=True)
    shares = parts[PARTS].div(parts["capacity_s"], axis=0)
    label = curve_label(groups) + " · " + groups["workers"].map(workers_text)
    label = groups["workload"].astype(str).str.rsplit(":", n=1).str[-1] + " · " + label
    return ordered(pd.concat([groups, shares], axis=1).assign(_label=label, _why=parts["why"]))


def attribution_figure(df: pd.DataFrame) -> bytes | None:
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

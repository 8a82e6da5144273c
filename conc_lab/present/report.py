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

The parts: ``panels`` picks what to draw and names and colours the curves, ``figures`` draws,
``views`` turns analysis frames into tables for people, ``page`` writes the HTML. Files are
written with the store's atomic write (fsynced, renamed), so a page opened while it is being
rebuilt shows the old report or the new one.
"""

from __future__ import annotations

import time
from os import PathLike
from pathlib import Path

import pandas as pd

from conc_lab.analysis.scaling import fit_scaling
from conc_lab.analysis.summary import as_frame, summarize
from conc_lab.present import figures as fig
from conc_lab.present.page import html_page
from conc_lab.present.panels import curve_colors, left_out, panel_title, pick_panels
from conc_lab.store.layout import sweep_dirs, write_atomic
from conc_lab.store.manifest import Manifest, read_manifest


def write_report(
    data: pd.DataFrame | str | PathLike,
    out_dir: str | PathLike,
    *,
    title: str | None = None,
    max_panels: int | None = None,
    max_timelines: int | None = None,
    sources: str | PathLike | list | None = None,
) -> Path:
    """Write the PNG figures and a self-contained ``index.html`` into ``out_dir``; return the page's path.

    ``data`` is a store path (read with ``conc_lab.load``) or the DataFrame it returns. Every
    parameter set gets a speedup panel and a timeline; ``max_panels`` / ``max_timelines`` cap
    them (the sets with the most points first), and the page then says what it left out.
    ``sources`` are the folders ``data`` was read from (default: ``data`` itself when it is a
    path): their manifests give the noise section each sweep's machine check and start time.

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
    every_panel = pick_panels(summary)
    panels = every_panel[:max_panels]
    figures = _figures(df, summary, fits, panels, panels[:max_timelines])
    for name, _, png in figures:
        write_atomic(out / name, png)
    missing = left_out(len(every_panel), len(panels), len(panels[:max_timelines]))
    manifests = _manifests(
        sources if sources is not None else (None if isinstance(data, pd.DataFrame) else data)
    )
    page = html_page(df, summary, fits, missing, figures, title, time.perf_counter() - t0, manifests)
    write_atomic(out / "index.html", page.encode())
    return out / "index.html"


def _manifests(sources) -> list[Manifest]:
    """The manifest of every sweep under ``sources``, oldest first (none without sources)."""
    if sources is None:
        return []
    manifests = [read_manifest(d) for d in sweep_dirs(sources)]
    return sorted(manifests, key=lambda m: m.started_at or 0)


def _figures(df, summary, fits, panels: list[dict], timelines: list[dict]) -> list[tuple[str, str, bytes]]:
    """Every figure the data allows, as (file name, caption, png)."""
    colors = curve_colors(summary)
    figures = []
    if panels:
        figures.append(
            ("speedup.png", fig.speedup_caption(summary), fig.speedup_figure(summary, fits, panels, colors))
        )
        figures.append(("runtimes.png", fig.RUNTIME_CAPTION, fig.runtime_figure(df, panels, colors)))
    for i, panel in enumerate(timelines):
        png = fig.timeline_figure(df, panel, colors)
        if png is not None:
            caption = fig.timeline_caption(df, summary, panel) + " " + panel_title(panel)
            figures.append((f"timeline-{i + 1}.png", caption, png))
    png = fig.attribution_figure(df)
    if png is not None:
        figures.append(("attribution.png", fig.ATTRIBUTION_CAPTION, png))
    png = fig.python_figure(df, summary)
    if png is not None:
        figures.append(("python_speedup.png", fig.PYTHON_CAPTION, png))
    return figures

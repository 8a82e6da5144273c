"""The report's legends never cover what they explain: drawn from a real small sweep, measured on the canvas."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

import conc_lab
from conc_lab.analysis.scaling import fit_scaling
from conc_lab.present.figures import draw_python, draw_speedup
from conc_lab.present.panels import curve_colors, pick_panels
from tests.test_report import SWEEP

pytestmark = pytest.mark.host

# test_report's sweep: two workloads (one that scales, one that does not), three backends


@pytest.fixture(scope="module")
def summary(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("results")
    config = root / "legend-test.yaml"
    config.write_text(textwrap.dedent(SWEEP))
    result = conc_lab.sweep(config, out=root / "out")
    assert result.ok
    return conc_lab.summarize(conc_lab.load(result.sweep_dir))


def _overlap_px(a, b) -> float:
    """The area two window extents share, in square pixels (0 when they only touch or are apart)."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0) * max(h, 0)


def _legends_clear_of_data(fig) -> list[tuple]:
    """Per axes with a legend: (legend extent, axes extent, figure extent), after a real draw."""
    FigureCanvasAgg(fig).draw()
    out = []
    for ax in fig.axes:
        legend = ax.get_legend()
        if ax.get_visible() and legend is not None:
            out.append((legend.get_window_extent(), ax.get_window_extent(), fig.bbox))
    return out


def test_speedup_legend_sits_outside_every_panels_data_area(summary):
    # seen: the legend sat at the panel's upper left, over the curves and their intervals
    fits = fit_scaling(summary)
    panels = pick_panels(summary)
    fig = draw_speedup(summary, fits, panels, curve_colors(summary))
    found = _legends_clear_of_data(fig)
    assert len(found) == len(panels) == 2
    for legend, axes, page in found:
        assert _overlap_px(legend, axes) == 0, f"legend {legend} covers the data area {axes}"
        # and it is whole on the PNG, not pushed off the canvas
        assert page.x0 <= legend.x0 and legend.x1 <= page.x1 + 0.5
        assert page.y0 <= legend.y0 and legend.y1 <= page.y1 + 0.5


def test_per_python_legend_sits_outside_the_data_area():
    # the per-version figure placed its legend "best", which on a crowded panel is still on data
    rows = []  # two interpreters' rows as the store holds them (the figure needs two Pythons)
    for python, version in (("python3.11", "3.11.2"), ("python3.13", "3.13.0")):
        for backend, workers, t in (
            ("sequential", 1, 1.0),
            ("threading", 2, 0.9),
            ("multiprocessing", 2, 0.55),
        ):
            rows += [
                {
                    "workload": "mine:work",
                    "tasks": 4,
                    "size": 10,
                    "python": python,
                    "python_version": version,
                    "free_threaded": False,
                    "gil_enabled": True,
                    "backend": backend,
                    "workers": workers,
                    "start_method": "fork" if backend == "multiprocessing" else None,
                    "status": "ok",
                    "run_s": t * (1 + 0.01 * i),
                }
                for i in range(3)
            ]
    df = pd.DataFrame(rows)
    fig = draw_python(df, conc_lab.summarize(df))
    assert fig is not None
    found = _legends_clear_of_data(fig)
    assert len(found) == 2
    for legend, axes, page in found:
        assert _overlap_px(legend, axes) == 0, f"legend {legend} covers the data area {axes}"
        assert page.x0 <= legend.x0 and legend.x1 <= page.x1 + 0.5

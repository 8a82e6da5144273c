"""The report's one self-contained HTML page: figures embedded as base64, the tables, the provenance."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

import pandas as pd

from conc_lab.analysis.nodes import slow_nodes
from conc_lab.analysis.selection import short_workload_names
from conc_lab.analysis.summary import by_interpreter, interpreter_labels
from conc_lab.present import views
from conc_lab.present.noise import noise_section
from conc_lab.present.render import NO_INTERVAL, display
from conc_lab.store.manifest import Manifest

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1800px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 12px; margin: .5em 0; }
/* tables are read whole at 1400 px: cells wrap between words only, never inside a name or a number
   (intervals hold word joiners around their dash), and nothing sits in a box that clips it */
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; vertical-align: top;
         overflow-wrap: normal; word-break: normal; hyphens: none; }
th { background: #f4f4f4; position: sticky; top: 0; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #555; max-width: 70em; }
.scroll { max-height: 36em; overflow-y: auto; }
#summary { width: 100%; }
/* below the 1200 px the tables are made to fit whole, a table wider than the window scrolls
   sideways in its own box, and the page does not (at 900 px the summary ran the page to 1082 px,
   its rows squeezed to a word a line): the summary keeps the layout it has at 1200 px */
@media (max-width: 1199px) { .wide { overflow-x: auto; } #summary { min-width: 1170px; } }
.meta td { text-align: left; } .warn { color: #a40; }
"""


def _table(frame: pd.DataFrame, table_id: str) -> str:
    """``frame`` as an HTML table: workloads by their short names, intervals never split at their dash."""
    frame = frame.astype(object).where(frame.notna(), "")
    if "workload" in frame.columns:
        short = short_workload_names(frame["workload"].astype(str))
        frame["workload"] = frame["workload"].astype(str).map(short)
    frame = frame.map(lambda v: _unbroken(v) if isinstance(v, str) else v)
    body = frame.to_html(index=False, escape=True, border=0)
    return body.replace("<table", f'<table id="{table_id}"', 1)


def _unbroken(cell: str) -> str:
    """An interval held whole: word joiners around its dash, and "(no CI)" one word."""
    return cell.replace("–", "\u2060–\u2060").replace(NO_INTERVAL, NO_INTERVAL.replace(" ", "\xa0"))


def _summary_table(summary: pd.DataFrame) -> str:
    """The summary table as the report shows it, narrow enough for a 1200 px window (it was 1213 px
    for two backends at two worker counts): backend and start method in one cell
    ("multiprocessing/fork", as the terminal's table), and tasks or size that hold one value for
    every row said once above the table instead of in a column each."""
    view = display(summary)
    if "start_method" in view.columns:
        method = view.pop("start_method").astype(str)
        view["backend"] = [
            b if m in ("-", "") else f"{b}/{m}"
            for b, m in zip(view["backend"].astype(str), method, strict=True)
        ]
    same = [
        k for k in ("tasks", "size") if k in view.columns and len(view) and view[k].astype(str).nunique() == 1
    ]
    every = ", ".join(f"{k} {view[k].iloc[0]}" for k in same)
    head = f"<p>Every row: {html.escape(every)}.</p>" if same else ""
    body = _table(view.drop(columns=same), "summary")
    # "multiprocessing/forkserver" was the widest word of the table (the smoke's report ran 18 px
    # past a 1200 px window): a backend label may break after its slash, and nowhere else
    for label in {str(b) for b in view.get("backend", []) if "/" in str(b)}:
        first, rest = html.escape(label).split("/", 1)
        body = body.replace(f">{first}/{rest}<", f">{first}/<wbr>{rest}<")
    return f'{head}<div class="wide">{body}</div>'


def html_page(
    df: pd.DataFrame,
    summary: pd.DataFrame,
    fits: pd.DataFrame,
    left_out: str,
    figures: list[tuple[str, str, bytes]],
    title: str | None,
    elapsed: float,
    manifests: Sequence[Manifest] = (),
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
    karp = views.karp_view(summary)
    failures = _failures(df)
    flagged = int((summary["notes"] != "").sum())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{esc(title)}</h1>
<div class="wide"><table class="meta">{meta}</table></div>
{_slow_nodes_section(df)}
{noise_section(df, list(manifests))}
<h2>Figures</h2>
{left_out}{figs or "<p>No successful runs to draw.</p>"}
<h2>Summary</h2>
<p>One row per parameter set, backend and worker count. Median and 95% interval of the run time
(exact bootstrap of the median); speedup over the sequential baseline of the same parameters, with its
interval; efficiency = speedup / workers; setup = median pool start-up, not in the run time.
{flagged} row(s) carry notes (unstable: CV &gt; 10% or interval wider than 20% of the median).</p>
{_summary_table(summary)}
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


def _slow_nodes_section(df: pd.DataFrame) -> str:
    """Cluster nodes slower than the others on the same trials, each with its ratio; "" when none."""
    slow = slow_nodes(df)
    if not slow:
        return ""
    lines = "".join(f"<li>{html.escape(s.text())}</li>" for s in slow)
    return (
        '<div id="slow-nodes" class="warn"><p><b>Slow nodes.</b> A run time in these tables mixes the '
        "nodes that ran it; these nodes took longer than the others on the same trials (a throttled CPU, "
        f"a busy neighbour):</p><ul>{lines}</ul></div>"
    )


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
    pred = views.prediction_view(fits)
    pred_html = (
        "<p>Forecast speedup (95% interval) on more workers. <b>*</b> marks an extrapolation beyond the "
        "worker counts measured: a forecast of the law, not a measurement, and only as good as the law. "
        "Neither law forecasts more than the worker count, nor Amdahl's less than 1, so intervals stop there; "
        "<i>too uncertain</i>: "
        f"the interval spans {views.FORECAST_MAX_SPREAD:g}× or more (measure more worker counts).</p>"
        f'<div class="wide">{_table(pred, "predictions")}</div>'
        if len(pred)
        else "<p>No forecasts: no law could be fitted.</p>"
    )
    return _SCALING_TEXT + f'<div class="wide">{_table(views.fit_view(fits), "scaling")}</div>' + pred_html


def _end_to_end_section(summary: pd.DataFrame) -> str:
    view = views.end_to_end_view(summary)
    if len(view) == 0:
        return ""
    return (
        "<h2>End to end</h2><p>What a program using the backend pays: start-up + run + teardown (joining "
        "the workers, where measured), against the sequential loop's own; beside the run-only speedup. "
        "Breaks even at: the work size above which the backend beats the plain loop end to end, from the "
        "start-up cost and the time per unit of work measured over sizes.</p>"
        f'<div class="wide">{_table(view, "end-to-end")}</div>'
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
    view, failed = views.failures_view(df, limit)
    if failed == 0:
        return "<p>None: every run finished.</p>"
    more = f"<p class='warn'>… and {failed - limit:,} more.</p>" if failed > limit else ""
    table = f'<div class="wide">{_table(view, "failures")}</div>'
    return f"<p class='warn'>{failed:,} run(s) failed or timed out.</p>" + table + more

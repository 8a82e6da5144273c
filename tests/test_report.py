"""The report, built from a real small sweep and opened in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from needs import need
from typer.testing import CliRunner

import conc_lab
from conc_lab.cli import app
from conc_lab.present.report import write_report

pytestmark = pytest.mark.browser

SWEEP = """
name: report-test
repeats: 3
warmup: 0
timeout_s: 60
matrix:
  workload:
    - experiments.cpu:sum_squares
    - {workload: experiments.io:sleep, size: [10]}
  backend: [sequential, threading, multiprocessing]
  workers: [1, 2]
  tasks: [4]
  size: [20000]
backend_options:
  multiprocessing: {start_method: [fork]}
affinity: compact
"""


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    config = root / "report-test.yaml"
    config.write_text(textwrap.dedent(SWEEP))
    result = conc_lab.sweep(config, out=root / "out")
    assert result.ok and result.recorded == 30
    return result.sweep_dir


@pytest.fixture(scope="module")
def report_dir(sweep_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    write_report(sweep_dir, out)
    return out


def test_summary_of_a_real_sweep_is_complete_and_consistent(sweep_dir):
    s = conc_lab.summarize(conc_lab.load(sweep_dir))
    assert len(s) == 10 and (s.n == 3).all() and (s.failures == 0).all()
    assert (s.correct_share == 1.0).all()  # every backend's answer matched the sequential one
    seq = s[s.backend == "sequential"]
    assert (seq.speedup == 1.0).all()
    # the ratio of medians where runs could not be paired; else the median of the paired ratios
    unpaired = (s.speedup_method != "paired").to_numpy()
    assert np.allclose(s.speedup[unpaired], (s.baseline_s / s.median_s)[unpaired])
    paired = s[~unpaired]
    assert len(paired) and paired.speedup.between(paired.speedup_ci_low, paired.speedup_ci_high).all()
    assert ((s.ci_low_s <= s.median_s) & (s.median_s <= s.ci_high_s)).all()
    assert (s[s.backend != "sequential"].setup_s > 0).all()  # pools cost something to start


def test_report_writes_real_pngs_and_one_self_contained_page(report_dir):
    names = sorted(p.name for p in report_dir.iterdir())
    assert names == [
        "attribution.png",
        "index.html",
        "runtimes.png",
        "speedup.png",
        "timeline-1.png",
        "timeline-2.png",
    ]
    for png in report_dir.glob("*.png"):
        image = imread(png)
        assert image.shape[0] > 200 and image.shape[1] > 400
        assert image[..., :3].std() > 0.05  # not a blank canvas
    page = (report_dir / "index.html").read_text()
    # nothing fetched from elsewhere: every image is inline, no stylesheet or script links
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == 5 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in page and "http://" not in page and "https://" not in page
    for text in (
        'id="summary"',
        'id="scaling"',
        'id="predictions"',
        "sequential",
        "threading",
        "multiprocessing",
        "fork",
        "report-test",
    ):
        assert text in page
    assert "every run finished" in page


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({
    title: document.title, images: imgs.length, loaded: ok.length,
    summaryRows: document.querySelectorAll("#summary tbody tr").length,
    summaryHead: Array.prototype.map.call(document.querySelectorAll("#summary thead th"),
                                         function (th) { return th.textContent; })});
  document.body.appendChild(out);
});
</script>"""


def test_report_loads_in_headless_chromium_with_images_and_table(report_dir, tmp_path):
    need(None if chromium() else "no chromium on PATH (Debian: apt-get install chromium)")
    # The probe is added to a copy: the report itself carries no test hooks.
    probe_page = tmp_path / "probe.html"
    probe_page.write_text((report_dir / "index.html").read_text().replace("</body>", PROBE + "</body>"))
    proc = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probe_page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r'<pre id="probe">([^<]*)</pre>', proc.stdout)
    assert match, f"the page did not finish loading in chromium (rc {proc.returncode}): {proc.stderr[-2000:]}"
    seen = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert seen["title"].startswith("conc_lab report")
    assert seen["images"] == 5 and seen["loaded"] == 5
    assert seen["summaryRows"] == 10  # 2 workloads x (sequential + threading x2 + fork x2)
    assert {"backend", "median", "speedup", "95% CI"} <= set(seen["summaryHead"])


def test_report_lists_failures_with_their_errors(sweep_dir, tmp_path):
    df = conc_lab.load(sweep_dir)
    broken = df[df["backend"] == "threading"].head(2).copy()
    broken["status"] = "timeout"
    broken["run_s"] = np.nan
    broken["error"] = "trial exceeded timeout_s=60 <script>"
    page = write_report(pd.concat([df, broken], ignore_index=True), tmp_path).read_text()
    assert "2 run(s) failed or timed out" in page
    assert "trial exceeded timeout_s=60 &lt;script&gt;" in page  # escaped, not markup


def test_report_without_task_records_or_baseline_still_draws(tmp_path):
    df = pd.DataFrame(
        {
            "workload": "w",
            "tasks": 4,
            "size": 1,
            "backend": ["threading"] * 3 + ["ray"] * 3,
            "workers": 2,
            "status": "ok",
            "run_s": [1.0, 1.1, 0.9, 0.5, 0.6, 0.55],
        }
    )
    write_report(df, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html", "runtimes.png", "speedup.png"]
    assert "no baseline" in (tmp_path / "index.html").read_text()


def test_report_names_a_node_slower_than_the_others_on_the_same_trials(tmp_path):
    nodes = ["5d4f" + "a1" * 26, "c07e" + "b2" * 26, "9e11" + "c3" * 26]
    df = pd.DataFrame(
        {
            "workload": "w",
            "tasks": 4,
            "size": 1,
            "trial_id": [b for b in ("seq", "thr") for _ in range(6)],
            "backend": [b for b in ("sequential", "threading") for _ in range(6)],
            "workers": 1,
            "status": "ok",
            "node_id": nodes * 4,
            "hostname": "box",
            "run_s": [1.0, 1.0, 1.4] * 2 + [0.6, 0.6, 0.84] * 2,  # the third node: x1.4 on both trials
        }
    )
    page = write_report(df, tmp_path / "slow").read_text()
    (section,) = re.findall(r'<div id="slow-nodes".*?</div>', page, re.S)
    assert "node 9e11c3c3 (box) is slower than the other nodes on the same trials: x1.40" in section
    assert "5d4f" not in section and "c07e" not in section
    df["run_s"] = [1.0] * 6 + [0.6] * 6  # every node alike: nothing to flag
    assert 'id="slow-nodes"' not in write_report(df, tmp_path / "even").read_text()


def test_report_refuses_an_empty_store(tmp_path):
    with pytest.raises(ValueError, match="no trial runs"):
        write_report(pd.DataFrame(columns=["workload", "backend", "run_s"]), tmp_path)


def test_cli_summarize_compare_report(sweep_dir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["summarize", str(sweep_dir), "--format", "csv"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("workload,tasks,size,backend,workers") and len(lines) == 11
    res = runner.invoke(app, ["summarize", str(sweep_dir), "--backend", "threading", "--format", "json"])
    backends = {r["backend"] for r in json.loads(res.stdout)}
    assert backends == {"threading", "sequential"}  # the baseline comes along for the speedup
    res = runner.invoke(app, ["compare", str(sweep_dir), str(sweep_dir)])
    # 3 runs a side cannot show any change (smallest p 0.1): "inconclusive", not "same" (#12)
    assert res.exit_code == 0 and "10 no answer" in res.output
    res = runner.invoke(app, ["report", str(sweep_dir), "-o", str(tmp_path / "r")])
    assert res.exit_code == 0 and (tmp_path / "r" / "index.html").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["summarize", "/no/such/dir"], "/no/such/dir: no such results directory"),
        (["summarize", "{tmp}", "--format", "xml"], "--format: unknown format 'xml'"),
        (["summarize", "{tmp}"], "no trial runs recorded there"),
        (["compare", "/no/such/dir", "{tmp}"], "/no/such/dir: no such results directory"),
        (["report", "/no/such/dir"], "/no/such/dir: no such results directory"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    res = CliRunner().invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output


def test_report_scaling_never_shows_a_fraction_above_one_and_says_when_points_are_too_few(tmp_path):
    # #15: threads slower on 2 workers than on 1 gave "threading (f=1.75)" in the legend
    rows = []
    for backend, workers, t in (("sequential", 1, 1.0), ("threading", 1, 1.02), ("threading", 2, 1.75)):
        rows += [
            {
                "workload": "w:slow",
                "tasks": 4,
                "size": 9,
                "backend": backend,
                "workers": workers,
                "status": "ok",
                "run_s": t * (1 + 0.01 * i),
            }
            for i in range(5)
        ]
    page = write_report(pd.DataFrame(rows), tmp_path).read_text()
    scaling = page[page.index('id="scaling"') : page.index("</table>", page.index('id="scaling"'))]
    fractions = [float(f) for f in re.findall(r"<td>(\d+\.\d+) ± [\d.]+</td>", scaling)]
    assert fractions and all(0 <= f <= 1 for f in fractions)
    assert "USL: too few worker counts (2 for 2 parameters)" in scaling
    assert "Amdahl misfit" in scaling and "does not describe this curve" in scaling  # a slowdown
    predictions = page[page.index('id="predictions"') :]
    assert "64 workers" in predictions and "*" in predictions  # every forecast is an extrapolation here


FIT_PROBE = """<script>
window.addEventListener("load", function () {
  // the summary table alone at the top of the page, as a reader scrolled to it sees it
  var table = document.getElementById("summary");
  var keep = table;
  while (keep.parentNode !== document.body) { keep = keep.parentNode; }
  Array.prototype.forEach.call(document.body.children, function (el) {
    if (el !== keep) { el.style.display = "none"; }
  });
  window.scrollTo(0, 0);
  var clipped = [];
  for (var el = table.parentNode; el && el !== document.documentElement; el = el.parentNode) {
    if (el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1) {
      var style = getComputedStyle(el);
      if (style.overflowX !== "visible" || style.overflowY !== "visible") { clipped.push(el.tagName + "." + el.className); }
    }
  }
  var heads = table.querySelectorAll("thead th");
  var last = heads[heads.length - 1].getBoundingClientRect();
  var rect = table.getBoundingClientRect();
  var out = document.createElement("pre");
  out.id = "probe";
  out.style.cssText = "position:absolute; top:3000px; left:0";
  out.textContent = JSON.stringify({view: window.innerWidth, right: rect.right, bottom: rect.bottom,
    clipped: clipped, last: [last.left, last.top, last.right, last.bottom],
    lastText: heads[heads.length - 1].textContent});
  document.body.appendChild(out);
});
</script>"""


def _chromium(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=10000",
            "--window-size=1400,1000",
            *extra,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_summary_table_is_fully_visible_at_1400_px_in_a_screenshot(report_dir, tmp_path):
    need(None if chromium() else "no chromium on PATH (Debian: apt-get install chromium)")
    # #12: the HTML summary table was clipped inside a scroll box at 1400 px
    page = tmp_path / "probe.html"
    page.write_text((report_dir / "index.html").read_text().replace("</body>", FIT_PROBE + "</body>"))
    proc = _chromium(page, tmp_path, "--dump-dom")
    match = re.search(r'<pre id="probe"[^>]*>([^<]*)</pre>', proc.stdout)
    assert match, f"the page did not finish loading in chromium (rc {proc.returncode}): {proc.stderr[-2000:]}"
    seen = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert seen["lastText"] == "notes"
    assert seen["clipped"] == [], f"the table sits in a box that clips it: {seen['clipped']}"
    assert seen["right"] <= seen["view"], f"the table runs {seen['right'] - seen['view']:.0f} px past 1400 px"
    # the screenshot: the last column's heading is painted, inside the window
    shot = tmp_path / "shot.png"
    _chromium(page, tmp_path, f"--screenshot={shot}")
    image = imread(shot)
    assert image.shape[1] == 1400
    left, top, right, bottom = (int(round(v)) for v in seen["last"])
    assert bottom <= image.shape[0], "the heading row is below the window"
    cell = image[top + 2 : bottom - 2, left + 2 : right - 2, :3]
    assert cell.size and cell.min() < 0.5, "the last column's heading is not painted (clipped)"


def _many_workloads(n: int) -> pd.DataFrame:
    rows = []
    for w in range(n):
        for backend, workers, t in (
            ("sequential", 1, 1.0),
            ("threading", 2, 0.9),
            ("multiprocessing", 2, 0.6),
        ):
            rows += [
                {
                    "workload": f"mine:work{w}",
                    "tasks": 4,
                    "size": 10,
                    "backend": backend,
                    "workers": workers,
                    "start_method": "spawn" if backend == "multiprocessing" else None,
                    "status": "ok",
                    "run_s": t * (1 + 0.01 * i),
                    "task_records": [
                        {"task": k, "worker": k % workers, "core": k % workers, "start_s": 0.0, "end_s": t}
                        for k in range(4)
                    ],
                }
                for i in range(3)
            ]
    return pd.DataFrame(rows)


def test_report_draws_every_parameter_set_or_says_what_it_left_out(tmp_path):
    # #12: at most 6 panels were drawn, silently; a user's own workload had none
    df = _many_workloads(8)
    page = write_report(df, tmp_path / "all").read_text()
    assert "left out" not in page and "draws them all" not in page
    assert sorted(p.name for p in (tmp_path / "all").glob("timeline-*.png"))[-1] == "timeline-8.png"
    page = write_report(df, tmp_path / "some", max_panels=3, max_timelines=1).read_text()
    assert "panels for 3 of the 8 parameter sets and timelines for 1 of them" in page
    assert "draws them all" in page


def test_backend_colours_are_the_same_in_every_report():
    from conc_lab.present.panels import curve_colors

    one = curve_colors(summarize_frame(_many_workloads(1)))
    no_threads = _many_workloads(1)
    no_threads = no_threads[no_threads.backend != "threading"]
    other = curve_colors(summarize_frame(no_threads))
    # was: colours handed out in order, so spawn took threading's colour when threads were not measured
    assert one["multiprocessing/spawn"] == other["multiprocessing/spawn"]
    assert one["sequential"] == other["sequential"]
    assert len(set(one.values())) == len(one)  # and each curve its own


def summarize_frame(df: pd.DataFrame) -> pd.DataFrame:
    return conc_lab.summarize(df)


def test_python_summarize_of_a_store_by_backend_keeps_the_baseline(sweep_dir):
    # #12 item 9, as the README shows it: filtered after the baseline is joined, read from Parquet
    s = conc_lab.summarize(sweep_dir, backend="threading")
    assert set(s.backend) == {"sequential", "threading"}
    assert np.isfinite(s[s.backend == "threading"].speedup).all()
    s = conc_lab.summarize(sweep_dir, workload="sleep")  # experiments.io:sleep, by its function name
    assert set(s.workload) == {"experiments.io:sleep"} and len(s) == 5


WHOLE_PROBE = """<script>
window.addEventListener("load", function () {
  // every table, its details opened: its right edge, whether a box clips it, and any word split over lines
  var res = {view: window.innerWidth, tables: {}};
  document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  document.querySelectorAll("table[id]").forEach(function (t) {
    var broken = [];
    t.querySelectorAll("td, th").forEach(function (cell) {
      var walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT), node;
      while ((node = walker.nextNode())) {
        var re = /\\S+/g, m;
        while ((m = re.exec(node.data))) {
          var range = document.createRange();
          range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
          var tops = {};
          Array.prototype.forEach.call(range.getClientRects(), function (q) { if (q.width > 0) tops[Math.round(q.top)] = 1; });
          if (Object.keys(tops).length > 1) broken.push(m[0]);
        }
      }
    });
    var clipped = false;
    for (var el = t.parentNode; el && el !== document.documentElement; el = el.parentNode) {
      if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== "visible") clipped = true;
    }
    res.tables[t.id] = {right: t.getBoundingClientRect().right, broken: broken, clipped: clipped};
  });
  var out = document.createElement("pre"); out.id = "probe";
  out.textContent = JSON.stringify(res); document.body.appendChild(out);
});
</script>"""


def test_every_table_is_whole_at_1400_px_and_no_word_is_split(report_dir, tmp_path):
    need(None if chromium() else "no chromium on PATH (Debian: apt-get install chromium)")
    # #26: End-to-end and Scaling were cut at the right edge, summary cells wrapped mid-word
    page = tmp_path / "probe.html"
    page.write_text((report_dir / "index.html").read_text().replace("</body>", WHOLE_PROBE + "</body>"))
    proc = _chromium(page, tmp_path, "--dump-dom")
    match = re.search(r'<pre id="probe"[^>]*>([^<]*)</pre>', proc.stdout)
    assert match, f"the page did not finish loading in chromium (rc {proc.returncode}): {proc.stderr[-2000:]}"
    seen = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert {"summary", "end-to-end", "scaling", "predictions"} <= set(seen["tables"])
    for name, table in seen["tables"].items():
        assert table["right"] <= seen["view"], (
            f"{name} runs {table['right'] - seen['view']:.0f} px past 1400 px"
        )
        assert not table["clipped"], f"{name} sits in a box that clips it"
        assert table["broken"] == [], f"{name} splits words over lines: {table['broken'][:5]}"


def test_report_has_a_noise_section_with_the_machine_check(report_dir, sweep_dir):
    page = (report_dir / "index.html").read_text()
    # #26: 319 of 330 runs flagged noisy, bad load in every manifest, and the page never said so
    noise = page[page.index("id='noise'") : page.index("<h2>Figures")]
    assert re.search(r"\d+ of 30 runs \(\d+%\) were\s+flagged noisy", noise)
    assert "redo" in noise  # what to do about it
    from conc_lab.store.manifest import read_manifest

    load = next(f for f in read_manifest(sweep_dir).doctor if f["name"] == "load")
    assert (load["detail"] in noise) == (load["status"] in ("warn", "bad"))
    assert page.index("id='noise'") < page.index('id="summary"')  # read before any speedup


def test_forecasts_are_bounded_or_omitted():
    from conc_lab.present.views import forecast_cell

    # #26: "64.00 (0.00–4.38e+17)"
    assert forecast_cell(64.0, 0.0, 4.38e17, 64) == "too uncertain"
    assert forecast_cell(7.2, 6.9, 9.5, 8) == "7.20 (6.90–8.00)"  # neither law forecasts past the workers


def test_a_gil_bound_thread_timeline_says_why_its_lanes_look_parallel(report_dir):
    page = (report_dir / "index.html").read_text()
    captions = re.findall(r'<figure id="timeline-\d+\.png">.*?<figcaption>(.*?)</figcaption>', page, re.S)
    cpu = [c for c in captions if "sum_squares" in c]
    assert cpu and all("take turns under the GIL" in c for c in cpu)
    # the firm form where the threads did not speed up, which a real 2-core machine shows for this work
    assert any("only look parallel" in c for c in cpu) or "GIL-bound" not in page

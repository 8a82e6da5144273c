"""The USL and Amdahl fits of #15 item 2 on ``configs/cpu.yaml``'s work, with enough worker counts to fit.

``configs/cpu.yaml`` measures 1 and 2 workers: two points cannot fit the USL's two parameters
(conc_lab says "too few worker counts"), and Amdahl's one parameter from two points has no
degree of freedom left to judge it. This script sweeps the same workloads, backends and
sizes at 1, 2, 3 and 4 workers (``--workers``), 12 tasks so every count divides them evenly.
On a 2-core machine 3 and 4 workers oversubscribe the cores, so the sweep is unpinned
(``affinity: none``; conc_lab pins no more workers than cores): the plateau past the cores is what the USL's κ and Amdahl's f see there, so the
forecasts at 8-64 workers are this machine's curve extended, and marked as extrapolated.

    python benchmarks/bench_fits.py                     # all of cpu.yaml's workloads, 3 repeats
    python benchmarks/bench_fits.py --workloads sum_squares,sha256_blocks --repeats 5
    python benchmarks/bench_fits.py --results DIR       # fit a finished sweep again

``uptime`` is printed before and after: figures from a loaded machine say so.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from _common import ROOT, sweep_frame


def config(workers: list[int], repeats: int, workloads: list[str] | None, tasks: int = 12) -> dict:
    """configs/cpu.yaml with the workers axis (and tasks, to divide evenly) replaced."""
    doc = yaml.safe_load((ROOT / "configs" / "cpu.yaml").read_text())
    doc["name"] = "cpu-fits"
    doc["description"] = f"configs/cpu.yaml at {workers} workers (benchmarks/bench_fits.py)"
    doc["repeats"] = repeats
    doc["matrix"]["workers"] = workers
    doc["matrix"]["tasks"] = [tasks]
    if max(workers) > len(os.sched_getaffinity(0)):
        doc["affinity"] = "none"  # conc_lab pins no more workers than cores: oversubscribed on purpose
    if workloads:
        doc["matrix"]["workload"] = [
            w
            for w in doc["matrix"]["workload"]
            if (w if isinstance(w, str) else w["workload"]).rpartition(":")[2] in workloads
        ]
        if not doc["matrix"]["workload"]:
            raise SystemExit(f"--workloads {','.join(workloads)}: none of them is in configs/cpu.yaml")
    return doc


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except FileNotFoundError:  # a bare image without procps
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def table(frame: pd.DataFrame) -> str:
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.max_colwidth", 60):
        return frame.to_string(index=False)


def report(df: pd.DataFrame) -> None:
    from conc_lab.analysis.scaling import fit_scaling
    from conc_lab.analysis.summary import summarize
    from conc_lab.present.views import fit_view, prediction_view

    s = summarize(df)
    s = s.assign(method=s["start_method"].fillna("-"), workload=s["workload"].str.rpartition(":")[2])
    print("\n## measured speedups (median run_s; noisy: runs flagged)\n")
    speed = s.pivot_table(
        index=["workload", "backend", "method"],
        columns="workers",
        values="speedup",
        aggfunc="first",
        sort=False,
    )
    print(table(speed.round(2).reset_index()))
    fits = fit_scaling(summarize(df))
    print("\n## USL and Amdahl fits\n")
    print(table(fit_view(fits)))
    print("\n## forecasts (95% interval; * = extrapolated beyond the worker counts measured)\n")
    print(table(prediction_view(fits)))
    noisy = int(df["noisy"].fillna(False).sum()) if "noisy" in df.columns else 0
    print(f"\n{len(df)} runs, {noisy} flagged noisy")


def holdout(df: pd.DataFrame, upto: int) -> None:
    """Fit on the worker counts up to ``upto`` only, and set each forecast beside what was measured
    at the larger counts: does the forecast's interval hold the measured speedup?"""
    from conc_lab.analysis.scaling import fit_scaling, predict_scaling
    from conc_lab.analysis.summary import summarize

    s = summarize(df)
    s = s.assign(method=s["start_method"].fillna("-"))
    later = sorted(int(w) for w in s["workers"].unique() if w > upto)
    if not later:
        raise SystemExit(f"--holdout {upto}: no worker count above it was measured")
    pred = predict_scaling(fit_scaling(s[s["workers"] <= upto]), tuple(later))
    keys = ["workload", "backend", "start_method", "workers"]
    both = pred.merge(s[keys + ["speedup"]], on=keys, suffixes=("_forecast", "_measured"))
    both["held"] = both["speedup_low"].le(both["speedup_measured"]) & both["speedup_high"].ge(
        both["speedup_measured"]
    )
    both = both.assign(workload=both["workload"].str.rpartition(":")[2])
    cols = keys + [
        "law",
        "better",
        "speedup_forecast",
        "speedup_low",
        "speedup_high",
        "speedup_measured",
        "held",
    ]
    print(f"\n## forecasts from the worker counts up to {upto}, against what was measured beyond\n")
    print(table(both[cols].round(2)))
    best = both[both["better"]]
    print(
        f"\nthe better-fitting law's interval held {int(best['held'].sum())} of {len(best)} measured speedups"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2,3,4", help="worker counts (default %(default)s)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=12, help="tasks per trial (default %(default)s)")
    ap.add_argument(
        "--holdout", type=int, default=None, help="also fit on counts up to N and check the forecasts beyond"
    )
    ap.add_argument(
        "--workloads", default=None, help="comma-separated function names of cpu.yaml's workloads"
    )
    ap.add_argument("--out", default=None, help="where the sweep goes (default: a temporary folder)")
    ap.add_argument("--results", default=None, help="a finished sweep of this script to fit again")
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    workloads = args.workloads.split(",") if args.workloads else None
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-fits-"))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "cpu-fits.yaml"
    path.write_text(yaml.safe_dump(config(workers, args.repeats, workloads, args.tasks), sort_keys=False))
    print(f"uptime before: {uptime()}")
    df = sweep_frame(path, out / "results", reuse=args.results)
    report(df)
    if args.holdout is not None:
        holdout(df, args.holdout)
    print(f"\nuptime after: {uptime()}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""The figures of #15 items 2-4: scaling-law fits, break-even sizes, and why each backend is not faster.

Run: ``python benchmarks/bench_why.py [--only causes,break-even,workers,cpu] [--out DIR] [--cpu-results SWEEP_DIR]``

By default the break-even sizes and the attribution (``--only break-even,causes``); the fits
are ``benchmarks/bench_fits.py``'s (cpu.yaml's work at 1-4 workers), ``--only workers,cpu``
still runs the older pair here.

1. USL and bounded Amdahl fitted side by side on a ``configs/cpu.yaml`` sweep (or a finished one),
   with the forecasts at 4, 8, 16, 64 workers (* = extrapolated beyond the worker counts measured).
2. The break-even work size of ``experiments.cpu:sum_squares`` on 2 forked and 2 spawned processes:
   the size above which they beat the plain loop end to end (start-up + run + teardown), from the
   start-up cost and the time per unit of work measured over sizes.
3. The attribution of the four workloads whose cause is known by construction: pure-Python sum on
   threads (serialisation), two unequal tasks (imbalance), a 1 ms task on spawn (start-up), sha256
   on threads (none dominant).
``uptime`` is printed before and after: figures from a loaded machine say so.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pandas as pd
from _common import ROOT, sweep_frame

BREAK_EVEN = """
name: break-even
repeats: 5
warmup: 1
timeout_s: 300
matrix:
  workload: [experiments.cpu:sum_squares]
  backend: [sequential, multiprocessing]
  workers: [2]
  tasks: [2]
  size: [1000, 10000, 100000, 1000000]
backend_options:
  multiprocessing: {start_method: [fork, spawn]}
affinity: compact
"""

# cpu.yaml measures 1 and 2 workers: too few worker counts for the USL's two parameters. This one
# measures 1..4 workers on the same 2 cores (3 and 4 oversubscribe them: the retrograde part).
WORKERS = """
name: scaling-1-4
repeats: 5
warmup: 1
timeout_s: 300
matrix:
  workload:
    - experiments.cpu:sum_squares
    - {workload: experiments.cpu:sha256_blocks, size: [8]}
  backend: [sequential, threading, multiprocessing]
  workers: [1, 2, 3, 4]
  tasks: [12]
  size: [200000]
backend_options:
  multiprocessing: {start_method: [fork]}
affinity: none  # 3 and 4 workers oversubscribe the 2 cores on purpose
"""

CAUSES = """
name: causes
repeats: 5
warmup: 1
timeout_s: 300
matrix:
  workload: [experiments.cpu:sum_squares]
  backend: [threading]
  workers: [2]
  tasks: [2]
  size: [1000000]
include:
  - {workload: experiments.seed:square_and_quad, backend: multiprocessing, start_method: fork, workers: 2, tasks: 2, size: 1000000}
  - {workload: experiments.cpu:sum_squares, backend: multiprocessing, start_method: spawn, workers: 2, tasks: 2, size: 20000}
  - {workload: experiments.cpu:sha256_blocks, backend: threading, workers: 2, tasks: 2, size: 64}
affinity: compact
"""


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def table(frame: pd.DataFrame) -> str:
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.max_colwidth", 80):
        return frame.to_string(index=False)


def scaling(df: pd.DataFrame, what: str = "configs/cpu.yaml") -> None:
    from conc_lab.analysis.scaling import fit_scaling
    from conc_lab.analysis.summary import summarize
    from conc_lab.present.views import fit_view, prediction_view

    fits = fit_scaling(summarize(df))
    print(f"\n## USL and Amdahl fits ({what})\n")
    print(table(fit_view(fits)))
    print("\n## forecasts (95% interval; * = extrapolated)\n")
    print(table(prediction_view(fits)))


def break_even(df: pd.DataFrame) -> None:
    from conc_lab.analysis.summary import summarize

    s = summarize(df)
    s = s.assign(method=s["start_method"].fillna("-"))
    cols = [
        "size",
        "backend",
        "method",
        "median_s",
        "setup_s",
        "e2e_s",
        "speedup",
        "e2e_speedup",
        "break_even",
    ]
    print("\n## break-even work size, sum_squares on 2 workers\n")
    print(table(s[cols].round(4)))
    mp = s[s["backend"] == "multiprocessing"].groupby("method")["break_even_size"].first()
    for method, size in mp.items():
        print(f"break-even {method}: size {size:.3g} (units of sum_squares per task)")


def causes(df: pd.DataFrame) -> None:
    from conc_lab.analysis.attribution import PARTS, attribute

    att = attribute(df)
    both = pd.concat([df[["workload", "backend", "start_method", "size", "run_s"]], att], axis=1)
    shares = both[PARTS].div(both["capacity_s"], axis=0).round(3)
    view = pd.concat(
        [both[["workload", "backend", "start_method", "size", "run_s"]], shares, both[["why"]]], axis=1
    )
    print("\n## attribution per run (shares of workers x wall)\n")
    print(table(view))
    from conc_lab.analysis.summary import summarize

    print("\n## the dominant cause per trial (summarize's why)\n")
    print(table(summarize(df)[["workload", "backend", "start_method", "size", "median_s", "why"]]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="where the sweeps go (default: a temporary folder)")
    ap.add_argument("--cpu-results", default=None, help="a finished configs/cpu.yaml sweep to fit")
    ap.add_argument(
        "--only", default="break-even,causes", help="comma-separated parts: causes, break-even, workers, cpu"
    )
    args = ap.parse_args()
    parts = set(args.only.split(","))
    unknown = parts - {"causes", "break-even", "workers", "cpu"}
    if unknown:
        raise SystemExit(f"--only: unknown part {sorted(unknown)[0]!r} (causes, break-even, workers, cpu)")
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-why-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"uptime before: {uptime()}")
    configs = {}
    for name, text in (("break-even", BREAK_EVEN), ("causes", CAUSES), ("workers", WORKERS)):
        configs[name] = out / f"{name}.yaml"
        configs[name].write_text(textwrap.dedent(text))
    if "break-even" in parts:
        break_even(sweep_frame(configs["break-even"], out / "break-even"))
    if "causes" in parts:
        causes(sweep_frame(configs["causes"], out / "causes"))
    if "workers" in parts:
        scaling(sweep_frame(configs["workers"], out / "workers"), "1-4 workers on 2 cores")
    if "cpu" in parts:
        scaling(sweep_frame(ROOT / "configs" / "cpu.yaml", out / "cpu", reuse=args.cpu_results))
    print(f"\nuptime after: {uptime()}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

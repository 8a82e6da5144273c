"""How long ``summarize`` (and ``compare``) take on a large store, and how much memory they need.

Run: ``python benchmarks/bench_analysis.py [--rows 1000000] [--repeats 10]``

The frame is synthetic but shaped like ``conc_lab.load``'s output (schema columns, categoricals,
1% failed runs, nulls where a real sweep has them): 5 workloads x 4 task counts x sizes x
21 (backend, workers) points, ``--repeats`` runs each. Times are best/median of 3 calls;
peak memory is what ``tracemalloc`` sees numpy and pandas allocate during one more call,
beyond the input frame (the process's own peak RSS is printed at the end).
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
import tracemalloc

import numpy as np
import pandas as pd

from conc_lab.analysis.compare import compare
from conc_lab.analysis.scaling import fit_amdahl
from conc_lab.analysis.summary import summarize, tidy_dtypes

POINTS = [("sequential", None, 1)] + [
    (backend, method, w)
    for backend, method in [
        ("threading", None),
        ("multiprocessing", "fork"),
        ("multiprocessing", "spawn"),
        ("multiprocessing", "forkserver"),
        ("ray", None),
    ]
    for w in (1, 2, 4, 8)
]


def synthetic_runs(rows: int, repeats: int = 10, seed: int = 0) -> pd.DataFrame:
    """About ``rows`` trial runs: a grid of parameter points, ``repeats`` runs each."""
    rng = np.random.default_rng(seed)
    workloads = [f"experiments.cpu:w{i}" for i in range(5)]
    tasks_values = [8, 64, 256, 1024]
    per_size = len(workloads) * len(tasks_values) * len(POINTS) * repeats
    sizes = np.arange(1, -(-rows // per_size) + 1) * 1000
    grid = pd.MultiIndex.from_product(
        [workloads, tasks_values, sizes, range(len(POINTS)), range(repeats)],
        names=["workload", "tasks", "size", "point", "repeat"],
    ).to_frame(index=False)
    grid = grid.iloc[:rows]
    point = grid.pop("point").to_numpy()
    backend = np.array([p[0] for p in POINTS], dtype=object)[point]
    method = np.array([p[1] for p in POINTS], dtype=object)[point]
    workers = np.array([p[2] for p in POINTS], dtype=np.int32)[point]
    serial = 0.05 + 0.9 * (backend == "threading")  # threads: GIL-bound
    base = grid["size"].to_numpy() * grid["tasks"].to_numpy() * 1e-7
    run = base * (serial + (1 - serial) / workers) * rng.lognormal(0, 0.05, len(grid))
    status = np.where(rng.random(len(grid)) < 0.01, "failed", "ok").astype(object)
    n = len(grid)
    df = pd.DataFrame(
        {
            "sweep_id": "bench",
            "sweep_name": "bench",
            "trial_id": "t",
            "workload": grid["workload"],
            "backend": backend,
            "workers": workers,
            "tasks": grid["tasks"].astype(np.int32),
            "size": grid["size"].astype(np.int64),
            "start_method": method,
            "python": None,
            "affinity": "compact",
            "options": None,
            "repeat": grid["repeat"].astype(np.int32),
            "status": status,
            "run_s": np.where(status == "ok", run, np.nan),
            "setup_s": np.where(backend == "sequential", 0.0, 0.02 * workers),
            "correct": np.where(status == "ok", True, None),
            "hostname": "bench-host",
            "node_id": None,
        },
        index=pd.RangeIndex(n),
    )
    return tidy_dtypes(df)


def measure(label: str, fn, *args, runs: int = 3) -> object:
    """Best and median wall time of ``runs`` calls, then one more call under tracemalloc for the peak."""
    times = []
    for _ in range(runs):
        gc.collect()
        t0 = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t0)
    gc.collect()
    tracemalloc.start()  # slows allocation-heavy code several-fold, so it is not timed
    fn(*args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{label:<34} best {min(times):6.2f} s  median {sorted(times)[len(times) // 2]:6.2f} s  "
        f"peak {peak / 2**20:7.1f} MiB"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    df = synthetic_runs(args.rows, args.repeats)
    print(f"input: {len(df):,} rows, {df.memory_usage(deep=True).sum() / 2**20:.0f} MiB in memory")
    summary = measure("summarize", summarize, df)
    print(
        f"summary: {len(summary):,} rows, {int(summary.unstable.sum())} unstable, {int(summary.failures.sum())} failures"
    )
    measure("fit_amdahl", fit_amdahl, summary)
    other = df.assign(run_s=df["run_s"] * 1.02)
    measure("compare (same grid, 2% slower)", compare, df, other)
    print(f"process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")


if __name__ == "__main__":
    main()

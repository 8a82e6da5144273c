"""How long ``conclab report`` takes on a 10,000-row store (target: 10 s).

Run: ``python benchmarks/bench_report.py [--rows 10000] [--config configs/smoke.yaml]``

The store is grown from a real sweep of ``--config`` (real rows, real task records and
manifest): its runs are copied with the size scaled (many parameter sets) and more repeats
(run times and task times scaled to match, with 3% noise), and written through
``store.SweepWriter`` like any sweep. Timed: ``write_report(path)`` end to end, which reads the
store, summarises, fits, draws and writes the page; best and median of 3.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

import conc_lab
from conc_lab import schema
from conc_lab.present.report import write_report
from conc_lab.store.manifest import read_manifest
from conc_lab.store.writer import SweepWriter

SETS = 37  # size multipliers: parameter sets per workload


def grow_store(sweep_dir: Path, rows: int, out: Path) -> Path:
    df = conc_lab.load(sweep_dir, env=False)
    for col in df.columns:
        if isinstance(df[col].dtype, pd.CategoricalDtype):
            df[col] = df[col].astype(object)
    base = pa.Table.from_pandas(df[schema.COLUMNS], schema=schema.SCHEMA, preserve_index=False).to_pylist()
    rng = np.random.default_rng(0)
    manifest = read_manifest(sweep_dir).replace(sweep_id="bench-report")
    target = out / "bench-report" / "bench-report"
    writer = SweepWriter(target, manifest, flush_rows=5000)
    for k in range(rows):
        row = dict(base[k % len(base)])
        copy = k // len(base)
        mult = 1 + copy % SETS
        noise = float(rng.lognormal(0, 0.03))
        row["sweep_id"] = "bench-report"
        row["size"] = row["size"] * mult
        row["trial_id"] = f"{row['trial_id']}-{mult}"
        row["repeat"] = row["repeat"] + 1000 * (copy // SETS)
        row["started_at"] = int(row["started_at"].timestamp() * 1e6) if row["started_at"] else None
        if row["run_s"] is not None:
            row["run_s"] *= mult * noise
        if row["task_records"]:
            row["task_records"] = [
                dict(t, start_s=t["start_s"] * mult * noise, end_s=t["end_s"] * mult * noise)
                for t in row["task_records"]
            ]
        writer.append(row)
    writer.close("complete")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--config", default="configs/smoke.yaml")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        result = conc_lab.sweep(args.config, out=tmp / "seed")
        sweep = grow_store(result.sweep_dir, args.rows, tmp / "big")
        t0 = time.perf_counter()
        df = conc_lab.load(sweep)
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        summary = conc_lab.summarize(df)
        t_sum = time.perf_counter() - t0
        print(f"store: {len(df):,} rows from {result.recorded} real runs; {len(summary):,} summary rows")
        print(f"load {t_load:.2f} s, summarize {t_sum:.2f} s")
        times = []
        for i in range(3):
            t0 = time.perf_counter()
            page = write_report(sweep, tmp / f"report-{i}")
            times.append(time.perf_counter() - t0)
        files = sorted(p.name for p in page.parent.iterdir())
        print(f"write_report(path): best {min(times):.2f} s, median {sorted(times)[1]:.2f} s -> {files}")
        print(f"index.html {page.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()

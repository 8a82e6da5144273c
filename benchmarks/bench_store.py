"""The store's own costs: appending a row (checked, journaled) and loading a large sweep.

Rows are like a real run's (4 task records each), sealed in batches of ``--flush`` rows, so a
sweep of N rows has N / flush Parquet parts. Reported: microseconds per ``append`` (the part of
the per-run overhead the store adds; sealing included), seconds to ``load`` the whole sweep, and
the machine's load. Uses only ``SweepWriter`` and ``load``, so it runs against an older
conc_lab too (PYTHONPATH=OLD_TREE) for a before/after in one sitting.

    python benchmarks/bench_store.py                   # 100,000 rows in 100 parts
    python benchmarks/bench_store.py --rows 20000 --flush 200
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def make_row(i: int) -> dict:
    from conc_lab import schema

    row = schema.empty_row()
    row.update(
        sweep_id="bench",
        sweep_name="bench",
        trial_id=f"t{i % 50}",
        workload="experiments.cpu:sum_squares",
        backend="threading",
        workers=2,
        tasks=4,
        size=1000,
        affinity="compact",
        repeat=i // 50,
        status="ok",
        error=None,
        started_at=1_764_086_400_000_000 + i,
        run_s=0.01,
        pinned=True,
        cores=[0, 1],
        task_records=[
            {
                "task": t,
                "worker": t % 2,
                "core": t % 2,
                "cpu": t % 2,
                "pid": 42,
                "start_s": 0.0,
                "end_s": 0.01,
            }
            for t in range(4)
        ],
        checksum="0" * 64,
        correct=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--flush", type=int, default=1000)
    args = ap.parse_args()
    from conc_lab.store.load import load
    from conc_lab.store.manifest import Manifest
    from conc_lab.store.writer import SweepWriter

    print("load before:", os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix="bench_store-"))
    try:
        rows = [make_row(i) for i in range(args.rows)]
        writer = SweepWriter(
            work / "bench" / "bench", Manifest(sweep_id="bench"), flush_rows=args.flush, flush_s=1e9
        )
        began = time.perf_counter()
        for row in rows:
            writer.append(row)
        writer.close("complete")
        append_s = time.perf_counter() - began
        began = time.perf_counter()
        df = load(work / "bench")
        load_s = time.perf_counter() - began
        assert len(df) == args.rows
        parts = len(list((work / "bench" / "bench").glob("part-*.parquet")))
        print(
            f"append: {append_s / args.rows * 1e6:.1f} us per row ({args.rows} rows, {parts} parts, sealing included)"
        )
        print(f"load:   {load_s:.2f} s for {args.rows} rows")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("load after:", os.getloadavg())


if __name__ == "__main__":
    main()

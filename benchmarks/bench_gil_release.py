"""Where threads DO scale: threading speedup at 2 workers, GIL-releasing C work beside pure Python.

hashlib (sha256 over 1 MiB buffers) and zlib (deflate) release the GIL in C, so two threads
run them on two cores at once; pure-Python loops hold the GIL, so two threads take turns.
Each workload runs 8 tasks of about 50 ms (size auto); speedup = median sequential run_s / median
threading run_s at workers=2 (multiprocessing/fork shown beside it for reference).
Expect >= 1.7 for the GIL-releasing ones and about 1 (or below) for pure Python.

    python benchmarks/bench_gil_release.py          # about a minute
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import medians, sweep_frame

WORKLOADS = [
    "experiments.cpu:sha256_blocks",
    "experiments.cpu:zlib_compress",
    "experiments.cpu:sum_squares",
    "experiments.cpu:count_primes",
]
RELEASES_GIL = {"sha256_blocks", "zlib_compress"}


def config(repeats: int) -> dict:
    """Every workload at size auto (one task about 50 ms), 8 tasks, sequential vs threads vs fork."""
    return {
        "name": "gil_release",
        "repeats": repeats,
        "warmup": 1,
        "affinity": "compact",
        "matrix": {
            "workload": WORKLOADS,
            "backend": ["sequential", "threading", "multiprocessing"],
            "workers": [1, 2],
            "tasks": [8],
            "size": ["auto"],
        },
        "exclude": [{"backend": "multiprocessing", "workers": 1}],
        "backend_options": {"multiprocessing": {"start_method": ["fork"]}},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reuse", help="a finished sweep directory to tabulate instead of running one")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="conclab-gil-") as tmp:
        path = Path(tmp) / "gil_release.yaml"
        path.write_text(json.dumps(config(args.repeats)))
        df = sweep_frame(path, tmp, args.reuse)
    m = medians(df, ["workload", "size", "workers"])
    print(
        "| workload | releases GIL | sequential | threading w=1 | threading w=2 | speedup threads w=2 | speedup fork w=2 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for workload in WORKLOADS:
        g = m[m["workload"] == workload]
        size = int(g["size"].iloc[0])

        def med(variant: str, workers: int, g=g) -> float:
            return float(g[(g["variant"] == variant) & (g["workers"] == workers)]["run_s"].iloc[0])

        seq = med("sequential", 1)
        t1, t2, f2 = med("threading", 1), med("threading", 2), med("multiprocessing/fork", 2)
        name = workload.rsplit(":", 1)[-1]
        print(
            f"| {name} (size {size}) | {'yes' if name in RELEASES_GIL else 'no'} | {seq * 1e3:.0f} ms | "
            f"{t1 * 1e3:.0f} ms | {t2 * 1e3:.0f} ms | ×{seq / t2:.2f} | ×{seq / f2:.2f} |"
        )


if __name__ == "__main__":
    main()

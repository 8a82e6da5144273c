"""Cross-check conclab's timing against an independent instrument, pyperf, on the same workload.

Both time one call of ``experiments.cpu:sum_squares(0, SIZE)`` on core 0 of this machine:
pyperf with ``python -m pyperf timeit`` (its own worker processes, warm-ups, loop
calibration), conclab with a sequential sweep (one task per trial run, in its trial host).
To let drift (other load, thermal) hit both alike, the two alternate for ``--rounds``
rounds, and each side's median is over all its values. Target: medians within 3%.

    python benchmarks/bench_pyperf.py            # about 40 s
    python benchmarks/bench_pyperf.py --size 2000000 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKLOAD = "experiments.cpu:sum_squares"


def pyperf_values(size: int, processes: int, core: int, workdir: Path) -> list[float]:
    """Seconds per call from pyperf timeit (every value of every worker process, warm-ups excluded)."""
    out = workdir / "pyperf.json"
    out.unlink(missing_ok=True)
    module, func = WORKLOAD.split(":")
    cmd = [
        sys.executable,
        "-m",
        "pyperf",
        "timeit",
        "--quiet",
        "-p",
        str(processes),
        "--affinity",
        str(core),
        "-o",
        str(out),
        "-s",
        f"from {module} import {func}",
        f"{func}(0, {size})",
    ]
    subprocess.run(cmd, check=True, cwd=ROOT)
    import pyperf

    return list(pyperf.Benchmark.load(str(out)).get_values())


def conclab_values(size: int, repeats: int, core: int, workdir: Path) -> list[float]:
    """run_s of every measured run of a one-task sequential trial pinned to ``core``."""
    import conc_lab

    config = workdir / "pyperf_check.yaml"
    config.write_text(
        json.dumps(
            {
                "name": "pyperf_check",
                "repeats": repeats,
                "warmup": 1,
                "affinity": [core],
                "matrix": {"workload": [WORKLOAD], "backend": ["sequential"], "tasks": [1], "size": [size]},
            }
        )
    )
    result = conc_lab.sweep(str(config), out=str(workdir / "results"))
    if not result.ok:
        raise SystemExit(f"conclab sweep failed: {result}")
    df = conc_lab.load(str(result.sweep_dir))
    return df.loc[df["status"] == "ok", "run_s"].tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1_000_000, help="sum_squares size (1e6: about 55 ms here)")
    ap.add_argument("--rounds", type=int, default=8, help="alternating pyperf/conclab rounds")
    ap.add_argument(
        "--processes", type=int, default=3, help="pyperf worker processes per round (3 values each)"
    )
    ap.add_argument("--repeats", type=int, default=9, help="conclab measured runs per round")
    ap.add_argument("--core", type=int, default=0, help="the core both instruments are pinned to")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    pp: list[float] = []
    cl: list[float] = []
    with tempfile.TemporaryDirectory(prefix="conclab-pyperf-") as tmp:
        for r in range(args.rounds):
            pp += pyperf_values(args.size, args.processes, args.core, Path(tmp))
            cl += conclab_values(args.size, args.repeats, args.core, Path(tmp))
            print(
                f"round {r + 1}: pyperf median {statistics.median(pp) * 1e3:.2f} ms ({len(pp)} values), "
                f"conclab median {statistics.median(cl) * 1e3:.2f} ms ({len(cl)} runs)",
                flush=True,
            )
    mp, mc = statistics.median(pp), statistics.median(cl)
    ratio = mc / mp
    print(f"\nworkload {WORKLOAD}(0, {args.size}), pinned to core {args.core}")
    print(f"pyperf  median {mp * 1e3:8.3f} ms  (n={len(pp)}, stdev {statistics.stdev(pp) * 1e3:.2f} ms)")
    print(f"conclab median {mc * 1e3:8.3f} ms  (n={len(cl)}, stdev {statistics.stdev(cl) * 1e3:.2f} ms)")
    verdict = "within" if abs(ratio - 1) <= 0.03 else "OUTSIDE"
    print(f"ratio conclab/pyperf = {ratio:.4f}  ({(ratio - 1) * 100:+.2f}%, {verdict} the 3% target)")


if __name__ == "__main__":
    main()

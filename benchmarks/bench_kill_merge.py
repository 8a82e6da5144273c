"""Kill-inside-merge loop: SIGKILL the real `conclab merge` at random moments, then merge again.

Each round copies the same N finished shard sweeps into a fresh results folder, starts
`conclab merge`, sends SIGKILL (no handler, no cleanup) after a random delay drawn around
how long a whole merge takes, then reads the folder as a user would (``load``, ``check``,
plain ``pandas.read_parquet``), merges again to the end and reads it once more. Reported:
kills that landed inside the merge, and over all rounds, runs lost and runs counted twice
after the kill and after the second merge (goal: 0 and 0), merged sweeps beside each other
(goal: one), and what plain Parquet readers counted.

    python benchmarks/bench_kill_merge.py               # 50 kills, a few minutes
    python benchmarks/bench_kill_merge.py --kills 5     # a short look
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _common import ROOT

CLI = [sys.executable, "-m", "conc_lab.cli"]


def make_shards(root: Path, shards: int, trials: int, repeats: int) -> int:
    """Finished shard sweeps K/N of one config under ``root``, several parts each; the runs in all."""
    from conc_lab import schema
    from conc_lab.store.manifest import Manifest, SweepState
    from conc_lab.store.writer import SweepWriter

    runs = 0
    for k in range(1, shards + 1):
        sid = f"shard{k}"
        m = Manifest(sweep_id=sid, name="km", fingerprint="fp", shard=f"{k}/{shards}", started_at=time.time())
        w = SweepWriter(root / sid, m, flush_rows=max(1, trials * repeats // 4))
        for t in range(k - 1, trials * shards, shards):
            for r in range(repeats):
                row = schema.empty_row() | dict(
                    sweep_id=sid, sweep_name="km", trial_id=f"t{t}", workload="m:f", backend="threading",
                    workers=2, tasks=4, size=10, affinity="compact", repeat=r, status=schema.OK,
                    run_s=0.1 + t / 1000, started_at=1_764_086_400_000_000 + 1000 * t + r,
                )  # fmt: skip
                w.append(row)
                runs += 1
        w.close(SweepState.COMPLETE)
    return runs


def counted(root: Path) -> dict:
    """What each reader counts in ``root`` now."""
    import pandas as pd

    from conc_lab.store.check import check
    from conc_lab.store.layout import sweep_dirs
    from conc_lab.store.load import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not counted: shard ... already in merged sweep": expected here
        df = load(root, columns=["trial_id", "repeat"])
    keys = set(zip(df["trial_id"], df["repeat"]))
    return {
        "rows": len(df),
        "unique": len(keys),
        "check": check(root).runs,
        "plain": len(pd.read_parquet(root, columns=["trial_id"])),
        "merged": sum(1 for d in sweep_dirs(root) if d.name.startswith("merged-")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench_kill_merge-"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        template = work / "template" / "km"
        expected = make_shards(template, args.shards, args.trials, args.repeats)
        root = work / "r" / "km"
        shutil.copytree(template, root)
        t0 = time.perf_counter()
        assert subprocess.run([*CLI, "merge", str(root)], env=env, capture_output=True).returncode == 0
        whole_s = time.perf_counter() - t0
        kills = rounds = 0
        after_kill = {"lost": 0, "doubled": 0, "check_off": 0}
        after_merge = {"lost": 0, "doubled": 0, "check_off": 0, "plain_off": 0, "not_one": 0, "failed": 0}
        began = time.perf_counter()
        while kills < args.kills:
            rounds += 1
            shutil.rmtree(root)
            shutil.copytree(template, root)
            proc = subprocess.Popen(
                [*CLI, "merge", str(root)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(rng.uniform(0.3 * whole_s, 1.1 * whole_s))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
            now = counted(root)
            after_kill["lost"] += expected - now["unique"]
            after_kill["doubled"] += now["rows"] - now["unique"]
            after_kill["check_off"] += now["check"] != expected
            again = subprocess.run([*CLI, "merge", str(root)], env=env, capture_output=True, text=True)
            after_merge["failed"] += again.returncode != 0
            now = counted(root)
            after_merge["lost"] += expected - now["unique"]
            after_merge["doubled"] += now["rows"] - now["unique"]
            after_merge["check_off"] += now["check"] != expected
            after_merge["plain_off"] += now["plain"] != expected
            after_merge["not_one"] += now["merged"] != 1
        loop_s = time.perf_counter() - began
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"shards: {args.shards}, runs: {expected}; a whole merge took {whole_s:.2f} s (kills drawn around it)"
    )
    print(f"kills landed inside a merge: {kills} (in {rounds} rounds), loop {loop_s:.0f} s")
    print(f"after the kill, before merging again: {after_kill}")
    print(f"after merging again:                  {after_merge}")
    if any(after_kill.values()) or any(after_merge.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()

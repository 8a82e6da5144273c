"""Shared state, as measured: what the parent saw after each run of configs/memory.yaml.

Prints, per workload and backend, the parent's view after join (the ``observed`` column:
the post's ``result``, the counter and its lost updates, as medians over the runs) and
the payload transfer cost (pickle through a pipe vs shared memory) per size.

    python benchmarks/bench_memory.py                    # runs configs/memory.yaml (~1 minute)
    python benchmarks/bench_memory.py --reuse results/memory/<sweep_id>
"""

from __future__ import annotations

import argparse
import json
import tempfile

from _common import ROOT, label, ms, sweep_frame


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reuse", help="a finished memory sweep directory instead of a new sweep")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="conclab-memory-") as tmp:
        df = sweep_frame(ROOT / "configs" / "memory.yaml", tmp, args.reuse)
    df = df.assign(variant=df.apply(label, axis=1), name=df["workload"].astype(str).str.split(":").str[1])

    seen = df[df["observed"].notna()]
    print("| workload | backend | tasks x size | what the parent saw after join (each run) |")
    print("|---|---|---|---|")
    for (name, variant), g in seen.groupby(["name", "variant"], sort=False):
        views = [json.loads(o) for o in g["observed"]]
        if "lost" in views[0]:
            lost = sorted(v["lost"] for v in views)
            counter = sorted(v["counter"] for v in views)
            what = f"counter {counter[len(counter) // 2]} (median), lost updates per run {lost}"
        else:
            distinct = sorted({json.dumps(v, sort_keys=True) for v in views})
            what = "; ".join(distinct)
        row = g.iloc[0]
        print(f"| {name} | {variant} | {row['tasks']} x {row['size']} | {what} |")

    pay = df[df["name"].str.startswith("payload_")]
    if len(pay):
        med = pay.groupby(["name", "size"])["run_s"].median().unstack("name")
        print("\n| payload bytes | pickled through a pipe | shared memory | ratio |")
        print("|---:|---:|---:|---:|")
        for size, r in med.iterrows():
            tasks = int(pay["tasks"].iloc[0])
            p, s = r["payload_pickle"] / tasks, r["payload_shared_memory"] / tasks
            print(f"| {size:,} | {ms(p)} | {ms(s)} | ×{p / s:.1f} |")


if __name__ == "__main__":
    main()

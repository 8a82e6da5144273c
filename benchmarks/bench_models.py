"""Which concurrency model for which work: the README's table from configs/models.yaml (#16).

Runs ``configs/models.yaml`` (or reads a finished sweep with ``--reuse DIR``) and prints, per
interpreter and work, every model's median end-to-end time (``setup_s + run_s``, plus
``teardown_s`` where that column is filled) and its speedup over that interpreter's plain
loop of the plain function (asyncio runs the coroutine twin of the same work), marking the best model and every one that loses to the plain loop
(with by how much). Skipped trials (a model the interpreter lacks) are listed with the reason.

    python benchmarks/bench_models.py                      # runs the sweep (~10 min on 2 cores)
    python benchmarks/bench_models.py --reuse results/models/<sweep_id>
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import pandas as pd
from _common import ROOT, ms

ORDER = [
    "sequential",
    "threading",
    "multiprocessing/fork",
    "multiprocessing/spawn",
    "subinterpreters",
    "asyncio",
    "asyncio ×8",
    "ray",
]
SHORT = {
    "experiments.cpu:sum_squares": "sum_squares (pure Python)",
    "experiments.seed:calc_square": "calc_square (seed, pure Python)",
    "experiments.seed:calc_quad": "calc_quad (seed, pure Python)",
    "experiments.cpu:sha256_blocks": "sha256 (C, GIL released)",
    "experiments.io:sleep": "sleep 50 ms",
    "experiments.io:loopback_echo": "loopback TCP",
    "experiments.cpu:async_sum_squares": "sum_squares (pure Python)",
    "experiments.io:async_sleep": "sleep 50 ms",
    "experiments.io:async_loopback_echo": "loopback TCP",
}


def runnable_config(path: str):
    """The config at ``path`` without the interpreters this machine lacks, each named on one line.

    A free-threaded build (3.13t) is rare; without it the rest of the matrix still answers most of
    the question, so the missing interpreter is left out and said, not a traceback.
    """
    import re

    import yaml

    import conc_lab

    text = Path(path).read_text()
    doc = yaml.safe_load(text)
    while True:
        try:
            return conc_lab.parse_config(doc, path=path, source_text=text)
        except conc_lab.ConfigError as exc:
            found = re.search(r"matrix\.python\[(\d+)\]: no interpreter '([^']+)'", str(exc))
            pythons = doc["matrix"].get("python") or []
            if not found or len(pythons) < 2:
                raise SystemExit(f"error: {exc}") from None
            gone = pythons.pop(int(found.group(1)))
            # the trials added for it go with it
            doc["include"] = [i for i in doc.get("include") or [] if str(i.get("python")) != str(gone)]
            print(f"note: no interpreter {gone!r} here: running the rest without it ({exc})")


def load(reuse: str | None, config: str = "configs/models.yaml") -> pd.DataFrame:
    import conc_lab

    if reuse:
        return conc_lab.load(reuse)
    out = tempfile.mkdtemp(prefix="conclab-models-")
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        result = conc_lab.sweep(runnable_config(config), out=out)
    finally:
        os.chdir(cwd)
    print(f"sweep: {result.sweep_dir}")
    return conc_lab.load(str(result.sweep_dir))


def variant(row) -> str:
    if row["backend"] == "multiprocessing":
        return f"multiprocessing/{row['start_method']}"
    if row["backend"] == "asyncio" and row["workers"] > 2:
        return "asyncio ×8"
    return row["backend"]


def medians(df: pd.DataFrame) -> pd.DataFrame:
    parts = ["setup_s", "run_s"]
    if "teardown_s" in df.columns and df.loc[df["status"] == "ok", "teardown_s"].notna().all():
        parts.append("teardown_s")
    ok = df[df["status"] == "ok"].copy()
    bad = ok[ok["correct"] == False]  # noqa: E712 - null: not checkable
    if len(bad):
        raise SystemExit(f"{len(bad)} runs gave a wrong answer: no table from this sweep")
    ok["e2e"] = ok[parts].fillna(0).sum(axis=1)
    ok["variant"] = ok.apply(variant, axis=1)
    ok["work"] = ok["workload"].map(SHORT).fillna(ok["workload"])
    ok["python"] = ok["python_version"].astype(str) + ok["free_threaded"].map({True: "t", False: ""})
    g = ok.groupby(["python", "work", "workload", "variant"], observed=True)
    m = g.agg(e2e=("e2e", "median"), setup=("setup_s", "median"), n=("e2e", "size")).reset_index()
    m.attrs["parts"] = " + ".join(parts)
    return m


def table(m: pd.DataFrame) -> str:
    variants = [v for v in ORDER if v in set(m["variant"])]
    lines = [
        "| Python | work | " + " | ".join(variants) + " |",
        "|---|---|" + "---:|" * len(variants),
    ]
    for (python, work), grp in m.groupby(["python", "work"], sort=True, observed=True):
        cells = {}
        # Every model is compared with the plain function in a plain loop: what a user would otherwise
        # write. (The coroutine twin's own sequential run is its correctness reference, not the baseline.)
        grp = grp.sort_values("workload", key=lambda w: w.str.contains(":async_"), kind="stable")
        seq = grp[grp["variant"] == "sequential"]
        if seq.empty:
            continue
        base = seq["e2e"].iloc[0]
        for _, r in grp.iterrows():
            cells.setdefault(r["variant"], (r["e2e"], base / r["e2e"]))
        best = max((s for v, (_, s) in cells.items() if v != "sequential"), default=None)
        row = []
        for v in variants:
            if v not in cells:
                row.append("–")
                continue
            e2e, s = cells[v]
            text = f"{ms(e2e)} {s:.2f}×"
            if v != "sequential" and s == best:
                text = f"**{text}**"
            elif s < 0.95:
                text += f" (loses {(1 - s):.0%})"
            row.append(text)
        lines.append(f"| {python} | {work} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def skipped(df: pd.DataFrame) -> str:
    s = df[df["status"] == "skipped"].copy()
    if s.empty:
        return ""
    s["variant"] = s.apply(variant, axis=1)
    reasons = s.groupby(["variant", "python_version"], observed=True)["error"].first()
    return "\n".join(f"* skipped: {v} under {p}: {e.split(';')[0]}" for (v, p), e in reasons.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reuse", help="a finished sweep directory of configs/models.yaml")
    ap.add_argument("--config", default="configs/models.yaml", help="another matrix of the same shape")
    args = ap.parse_args()
    df = load(args.reuse, str(Path(args.config).resolve()))
    m = medians(df)
    print(
        f"End-to-end ({m.attrs['parts']}) median of {int(m['n'].min())}+ runs, speedup over the plain loop:\n"
    )
    print(table(m))
    print()
    print(skipped(df))
    failed = df[df["status"].isin(["failed", "timeout"])]
    for _, r in failed.drop_duplicates(["workload", "backend", "python"]).iterrows():
        print(f"* FAILED: {r['workload']} on {variant(r)} under {r['python']}: {str(r['error'])[:200]}")
    if "own_gil" in df.columns:
        sub = df[(df["backend"] == "subinterpreters") & (df["status"] == "ok")]
        if len(sub):
            print(f"* subinterpreters with their own GIL: {int(sub['own_gil'].sum())} of {len(sub)} runs")
    load_avg = os.getloadavg()
    print(
        f"\nload average after: {load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f} on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()

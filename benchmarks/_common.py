"""Shared by the benchmark scripts: run a config (or reuse a finished sweep) and take medians."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def sweep_frame(config: str | Path, out: str | Path, reuse: str | None = None) -> pd.DataFrame:
    """Rows of a fresh sweep of ``config`` under ``out``, or of the finished sweep dir ``reuse``.

    Exits non-zero when a run failed or gave a wrong answer: a figure from a broken sweep is no figure.
    """
    import conc_lab

    if reuse:
        df = conc_lab.load(reuse)
    else:
        result = conc_lab.sweep(str(config), out=str(out))
        df = conc_lab.load(str(result.sweep_dir))
        print(f"sweep {result.sweep_dir}: {result.recorded} runs in {result.wall_s:.1f} s", file=sys.stderr)
    bad = df[(df["status"] != "ok") | (df["correct"] == False)]  # noqa: E712 - null means not checkable
    if len(bad):
        print(
            bad[["workload", "backend", "workers", "status", "correct", "error"]].to_string(), file=sys.stderr
        )
        raise SystemExit(f"{len(bad)} runs failed or were wrong; no figures from this sweep")
    return df


def label(row) -> str:
    """Backend with its start method, e.g. ``multiprocessing/fork``."""
    sm = row.get("start_method")
    return f"{row['backend']}/{sm}" if isinstance(sm, str) and sm else row["backend"]


def medians(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Median run_s and setup_s (and run count) per group of ``keys`` plus the backend label."""
    df = df.assign(variant=df.apply(label, axis=1))
    g = df.groupby(keys + ["variant"], dropna=False)
    return g.agg(run_s=("run_s", "median"), setup_s=("setup_s", "median"), n=("run_s", "size")).reset_index()


def ms(seconds: float) -> str:
    """Milliseconds with sensible precision."""
    v = seconds * 1e3
    return f"{v:.3f} ms" if v < 1 else f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"

"""The report's noise section: how disturbed the runs were, what the machine check said, what to do.

A page that pools five sweeps, 319 of 330 runs flagged noisy and every manifest recording a
loaded machine, must say so before anyone reads a speedup off it. The numbers come from the
rows (``noisy``, ``noise_note``, ``foreign_cpu``, ``steal_cpu``, ``status``) and from each
sweep's manifest (its ``doctor`` findings, when it started).
"""

from __future__ import annotations

import html
import re
import time

import numpy as np
import pandas as pd

from conc_lab import schema
from conc_lab.analysis.frames import GROUP_KEYS, join_key, key_columns
from conc_lab.store.manifest import Manifest

#: Doctor statuses that can spoil a measurement (the rest are information).
_SPOILING = ("warn", "bad")


def noise_facts(df: pd.DataFrame) -> dict:
    """Counts a reader needs: runs, noisy runs, redone runs, the commonest reasons, foreign and stolen CPU.

    >>> df = pd.DataFrame({"status": ["ok", "ok", "redone"], "noisy": [True, False, True],
    ...     "noise_note": ["others used 45% of its cores", None, "others used 50% of its cores"]})
    >>> f = noise_facts(df)
    >>> f["runs"], f["noisy"], f["redone"]
    (2, 1, 1)
    """
    status = df["status"].astype(object) if "status" in df.columns else pd.Series("ok", index=df.index)
    redone = status == schema.REDONE
    counted = df[~redone.to_numpy()]  # a redone run is kept for the record, never as the result
    noisy = counted["noisy"].fillna(False).astype(bool) if "noisy" in counted.columns else None
    notes = (
        counted.loc[noisy.to_numpy(), "noise_note"].dropna().astype(str).str.split("; ").explode()
        if noisy is not None and "noise_note" in counted.columns
        else pd.Series(dtype=object)
    )
    return {
        "runs": len(counted),
        "noisy": int(noisy.sum()) if noisy is not None else 0,
        "redone": int(redone.sum()),
        "reasons": _reasons(notes),
        "foreign": _quantiles(counted, "foreign_cpu"),
        "steal": _quantiles(counted, "steal_cpu"),
    }


_PERCENT = re.compile(r"[+-]?\d+%")


def _reasons(notes: pd.Series, most: int = 3) -> dict[str, int]:
    """The commonest kinds of note, each with the range its figures took: ``others used 26–100% of
    its cores``, not ``others used N% of its cores`` (a placeholder the report printed as it was).

    >>> _reasons(pd.Series(["others used 41% of its cores", "others used 100% of its cores",
    ...     "speed canary moved +338% (on a CPU 99% of its time)"]))
    {'others used 41–100% of its cores': 2, 'speed canary moved +338% (on a CPU 99% of its time)': 1}
    """
    kinds = notes.str.replace(_PERCENT, "\0", regex=True)  # a kind: the note with its figures taken out
    out = {}
    for kind, n in kinds.value_counts().head(most).items():
        figures = zip(*(_PERCENT.findall(note) for note in notes[(kinds == kind).to_numpy()]))
        pieces = kind.split("\0")
        spans = [_span(list(values)) for values in figures] + [""]
        out["".join(p + spans[i] for i, p in enumerate(pieces))] = int(n)
    return out


def _span(values: list[str]) -> str:
    """``41–100%`` for the figures ``41%`` … ``100%`` of one place in a kind of note; one figure as it is."""
    lo, hi = min(values, key=lambda v: int(v[:-1])), max(values, key=lambda v: int(v[:-1]))
    return lo if lo == hi else f"{lo[:-1]}–{hi.lstrip('+') if lo.startswith('+') else hi}"  # +323–340%


def _quantiles(df: pd.DataFrame, col: str) -> tuple[float, float] | None:
    if col not in df.columns:
        return None
    values = df[col].to_numpy(dtype=np.float64, na_value=np.nan)
    values = values[np.isfinite(values)]
    return (float(np.median(values)), float(values.max())) if len(values) else None


def _findings(manifests: list[Manifest]) -> list[tuple[str, str, str, int]]:
    """Spoiling doctor findings across sweeps, one per check: (status, "name: details", advice, sweeps).

    >>> m = [Manifest("a", doctor=({"name": "load", "status": "bad", "detail": "load 8", "advice": "stop it"},)),
    ...      Manifest("b", doctor=({"name": "load", "status": "bad", "detail": "load 11", "advice": "stop it"},))]
    >>> _findings(m)
    [('bad', 'load: load 8; load 11', 'stop it', 2)]
    """
    seen: dict[tuple[str, str], dict] = {}
    for manifest in manifests:
        for f in manifest.doctor:
            if f.get("status") in _SPOILING:
                entry = seen.setdefault((str(f["status"]), str(f.get("name"))), {"details": {}, "n": 0})
                entry["details"][str(f.get("detail"))] = None
                entry["advice"] = str(f.get("advice") or "")
                entry["n"] += 1
    rows = [
        (status, f"{name}: " + "; ".join(e["details"]), e["advice"], e["n"])
        for (status, name), e in seen.items()
    ]
    return sorted(rows, key=lambda r: r[0] != "bad")


def _load_detail(manifest: Manifest) -> str:
    for f in manifest.doctor:
        if f.get("name") == "load":
            return f"{f.get('detail')} ({f.get('status')})"
    return "not recorded"


def _sweeps_table(df: pd.DataFrame, manifests: list[Manifest]) -> str:
    esc = html.escape
    rows = []
    for m in manifests:
        mine = df[df["sweep_id"].astype(object) == m.sweep_id] if "sweep_id" in df.columns else df
        facts = noise_facts(mine) if len(mine) else {"runs": 0, "noisy": 0}
        started = m.started_at
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)) if started else "-"
        rows.append(
            f"<tr><td>{esc(m.sweep_id)}</td><td>{esc(str(m.name))}</td><td>{esc(when)}</td>"
            f"<td>{facts['runs']:,}</td><td>{facts['noisy']:,}</td><td>{esc(_load_detail(m))}</td></tr>"
        )
    head = (
        "<tr><th>sweep</th><th>name</th><th>started</th><th>runs</th><th>noisy</th><th>machine load</th></tr>"
    )
    return f'<table id="sweeps"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _share(pair: tuple[float, float] | None, what: str) -> str:
    if pair is None:
        return ""
    return f"{what} a median {pair[0]:.0%} of a run's cores (at most {pair[1]:.0%}). "


def noise_section(df: pd.DataFrame, manifests: list[Manifest]) -> str:
    """The section as HTML: noisy runs and why, redone runs, the doctor's findings, the sweeps pooled, a next step."""
    esc = html.escape
    f = noise_facts(df)
    share = f["noisy"] / f["runs"] if f["runs"] else 0.0
    reasons = ", ".join(f"“{esc(r)}” ({n})" for r, n in f["reasons"].items())
    parts = [
        f"<p{' class=warn' if share > 0.1 else ''}>{f['noisy']:,} of {f['runs']:,} runs ({share:.0%}) were "
        f"flagged noisy"
        + (f", most often: {reasons}" if reasons else "")
        + ". "
        + (
            f"{f['redone']:,} noisy runs were redone (<code>noise.redo</code>: the config's, or 2 where "
            "<code>precision:</code> or <code>--precision</code> adds rounds); the table counts their reruns."
            if f["redone"]
            else "None was redone: <code>noise: {redo: 3}</code> in the config reruns a noisy run up to 3 times."
        )
        + "</p>",
        f"<p>{_share(f['foreign'], 'Other processes used')}{_share(f['steal'], 'The hypervisor stole')}</p>",
    ]
    findings = _findings(manifests)
    if findings:
        items = "".join(
            f"<li class='warn'><b>{esc(status)}</b> {esc(what)}"
            + (f" — {esc(advice)}" if advice else "")
            + (f" (in {n} of {len(manifests)} sweeps)" if len(manifests) > 1 else "")
            + "</li>"
            for status, what, advice, n in findings
        )
        parts.append(
            f"<p>What the machine check (<code>conclab doctor</code>) found as each sweep started:</p><ul>{items}</ul>"
        )
    if len(manifests) > 1:
        parts.append(
            f"<p class='warn'>This page pools {len(manifests)} sweeps: each row's numbers mix their runs. "
            "<code>conclab summarize DIR --latest</code> reads the newest sweep of each config alone, and "
            "<code>conclab report</code> on one sweep's folder reports it alone.</p>"
            + f'<div class="wide">{_sweeps_table(df, manifests)}</div>'
        )
    if share > 0.1 or any(status == "bad" for status, *_ in findings):
        parts.append(
            "<p><b>Next step:</b> run <code>conclab doctor</code>, stop the other work it names (load, "
            "other processes on the measured cores), then sweep again; speedups measured on a busy machine "
            "are lower than the same code reaches on a quiet one.</p>"
        )
    return "<h2 id='noise'>Noise</h2>" + "".join(parts)


def with_noise_columns(df: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with ``noisy`` (its runs flagged noisy) and ``noise_note`` (their commonest reason).

    >>> df = pd.DataFrame({"workload": ["w", "w", "w"], "backend": "threading", "workers": 2, "status": "ok",
    ...     "noisy": [True, True, False], "noise_note": ["others used 40% of its cores"] * 2 + [None]})
    >>> s = pd.DataFrame({"workload": ["w"], "backend": ["threading"], "workers": [2]})
    >>> with_noise_columns(df, s)[["noisy", "noise_note"]].values.tolist()
    [[2, 'others used 40% of its cores']]
    """
    if "noisy" not in df.columns or len(summary) == 0:
        return summary
    keys = [k for k in GROUP_KEYS if k in df.columns and k in summary.columns]
    run_key = join_key(key_columns(df, keys), keys)
    status = df["status"].astype(object) if "status" in df.columns else pd.Series(schema.OK, index=df.index)
    flagged = (df["noisy"].astype("boolean").fillna(False).astype(bool) & (status == schema.OK)).to_numpy()
    counts = pd.Series(flagged, index=run_key.to_numpy()).groupby(level=0).sum()
    notes = (
        df.loc[flagged, "noise_note"].astype(object)
        if "noise_note" in df.columns
        else pd.Series(dtype=object)
    )
    common = notes.groupby(run_key[flagged].to_numpy()).agg(
        lambda v: v.dropna().mode().iloc[0] if v.notna().any() else ""
    )
    row_key = join_key(key_columns(summary, keys), keys)
    return summary.assign(
        noisy=row_key.map(counts).fillna(0).astype(int).to_numpy(),
        noise_note=row_key.map(common).fillna("").to_numpy(),
    )

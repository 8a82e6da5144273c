"""``load``: every recorded run under some paths, as a pandas DataFrame, each run once."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from conc_lab import schema
from conc_lab.store.layout import StoreWarning, sweep_dirs
from conc_lab.store.manifest import Manifest, read_manifest, state_note
from conc_lab.store.reader import doubled_sweeps, lost_line, read_sweep


def load(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    columns: list[str] | None = None,
    env: bool = True,
    **filters,
) -> pd.DataFrame:
    """Every recorded run under ``paths`` (a sweep, a sweep name's folder, many), as a DataFrame.

    ``filters`` select rows before they are read (pushed down to Parquet): a value matches
    by equality, a list or tuple by membership. With ``env`` the sweep-level environment
    (``schema.ENV_COLUMNS``) is joined as columns. Each run counts once: damage is a
    ``StoreError`` naming the file, a run stored twice a ``StoreWarning``.

    >>> df = load("results/smoke", backend=["threading", "sequential"])  # doctest: +SKIP
    """
    where = _where(filters)
    wanted = list(columns) if columns else list(schema.COLUMNS)
    need = list(dict.fromkeys(wanted + list(filters)))
    dirs = sweep_dirs(paths)
    doubled = doubled_sweeps({d: read_manifest(d) for d in dirs}) if len(dirs) > 1 else {}
    for d, why in doubled.items():
        warnings.warn(
            f"{d}: not counted: {why} (load that folder alone to see it)", StoreWarning, stacklevel=2
        )
    reads = []
    for d in dirs:  # a loop, not a comprehension: read_sweep's warnings name the caller's line
        if d not in doubled:
            reads.append(read_sweep(d, need, where))
            for name, rows in reads[-1].lost.items():
                warnings.warn(lost_line(d, reads[-1].manifest, name, rows), StoreWarning, stacklevel=2)
    tables = [r.table for r in reads]
    table = pa.concat_tables(tables) if tables else schema.SCHEMA.empty_table()
    df = table.select(wanted).to_pandas()
    if env and "sweep_id" in wanted:
        df = _join_environment(df, [r.manifest for r in reads])
    df = _with_dtypes(df)
    # what a summary of these rows should say too (e.g. merged shards that ran at different times)
    df.attrs["notes"] = [
        f"sweep {r.dir.name}: {note}"
        for r in reads
        for note in [state_note(r.manifest, r.dir), timing_note(r.manifest)]
        if note
    ]
    return df


#: Shards that started within this many seconds of another's end ran in one sitting: an array's
#: tasks queued one after another on a busy cluster start minutes apart, under the same load.
SAME_SITTING_S = 600.0


def timing_note(manifest: Manifest) -> str | None:
    """A note when a merged sweep's shards ran hours, not minutes, apart: their load differed.

    >>> from conc_lab.store.manifest import MergedShard
    >>> timing_note(Manifest("m", merged_from=(MergedShard("a", "1/2", started_at=0, finished_at=60),
    ...                                        MergedShard("b", "2/2", started_at=120, finished_at=180)))) is None
    True
    >>> timing_note(Manifest("m", merged_from=(MergedShard("a", "1/2", started_at=0, finished_at=60),
    ...                                        MergedShard("b", "2/2", started_at=7200, finished_at=7260))))
    'shards ran at different times (1/2 at 00:00-00:01 UTC, 2/2 at 02:00-02:01 UTC): speedups across them compare runs made under different load'
    """
    spans = [
        (src.shard, src.started_at, src.finished_at)
        for src in manifest.merged_from
        if src.started_at is not None and src.finished_at is not None
    ]
    if len(spans) < 2 or max(s for _, s, _ in spans) - min(f for _, _, f in spans) <= SAME_SITTING_S:
        return None  # all ran in one sitting, or nothing to tell

    when = ", ".join(f"{label} at {_hm(s)}-{_hm(f)} UTC" for label, s, f in spans)
    return (
        f"shards ran at different times ({when}): speedups across them compare runs made under different load"
    )


def _hm(t: float) -> str:
    return time.strftime("%H:%M", time.gmtime(t))


def _where(filters: dict) -> ds.Expression | None:
    """Filters as a dataset expression: a value by equality, a list, tuple or set by membership."""
    unknown = set(filters) - set(schema.COLUMNS)
    if unknown:
        raise ValueError(f"cannot filter on unknown columns {sorted(unknown)}")
    where = None
    for col, value in filters.items():
        if isinstance(value, (list, tuple, set)):
            e = ds.field(col).isin(list(value))
        else:
            e = ds.field(col) == value
        where = e if where is None else where & e
    return where


def _join_environment(df: pd.DataFrame, manifests: list[Manifest]) -> pd.DataFrame:
    envs = [{"sweep_id": m.sweep_id, **m.environment} for m in manifests]
    if not envs:
        return df
    env_df = pd.DataFrame(envs)
    env_df = env_df[["sweep_id"] + [c for c in schema.ENV_COLUMNS if c in env_df]]
    return df.merge(env_df.drop_duplicates("sweep_id"), on="sweep_id", how="left")


def _with_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    """Categoricals for the few-valued text columns; nullable booleans, so ``df[df.correct]`` works with nulls."""
    for col in schema.CATEGORICAL_COLUMNS:
        if col in df:
            df[col] = df[col].astype("category")
    for col in schema.BOOLEAN_COLUMNS:
        if col in df:
            df[col] = df[col].astype("boolean")
    return df

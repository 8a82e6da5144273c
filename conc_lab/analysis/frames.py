"""The frame side of the analysis: which columns make a summary row, and helpers over them.

Everything here takes the DataFrame that ``conc_lab.load`` returns (one row per trial run,
columns from ``conc_lab.schema``): the group keys and the baseline's keys, reading a store into a
frame, key columns (``node`` derived from node id or hostname), ordering, matching rows on keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike

import numpy as np
import pandas as pd

from conc_lab import schema
from conc_lab.host.protocol import BACKENDS, DEFAULT_START_METHOD, MULTIPROCESSING
from conc_lab.host.protocol import SEQUENTIAL as SEQUENTIAL  # re-exported: analysis/ imports it from here

#: Trial parameters that define one summary row; the last ones are optional (filled with
#: null when a hand-built frame lacks them). ``node`` is ``node_id``, else ``hostname``.
GROUP_KEYS = [
    "workload",
    "tasks",
    "size",
    "backend",
    "workers",
    "start_method",
    "python",
    "node",
    "affinity",
    "options",
]
#: Keys on which a backend row finds its sequential baseline (first with affinity, then without).
BASELINE_KEYS = ["workload", "tasks", "size", "python", "node"]
#: Last resort, for cluster sweeps whose sequential trial ran on another node: pooled over nodes
#: and flagged "baseline from other nodes" (nodes of one cluster are usually, not surely, alike).
CROSS_NODE_KEYS = [k for k in BASELINE_KEYS if k != "node"]
#: Backends in the order a reader expects them: the baseline first.
BACKEND_ORDER = {backend: rank for rank, backend in enumerate(BACKENDS)}


def tidy_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with low-cardinality string columns as categoricals (copy; input untouched).

    Example::

        >>> list(tidy_dtypes(pd.DataFrame({"backend": ["threading", "sequential"]})).backend.cat.categories)
        ['sequential', 'threading']
    """
    out = df.copy()
    for col in schema.CATEGORICAL_COLUMNS:
        if col in out.columns and not isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype("category")
    return out


def as_frame(data: pd.DataFrame | str | PathLike | Sequence) -> pd.DataFrame:
    """``data`` itself if it is a DataFrame, else the store(s) it names, read with ``conc_lab.load``."""
    if isinstance(data, pd.DataFrame):
        return data
    from conc_lab.store.load import load  # lazily: analysis works on hand-built frames without the store

    return load(data)


def _null_column(df: pd.DataFrame) -> pd.Series:
    return pd.Series([None] * len(df), index=df.index, dtype=object)


def _node_column(df: pd.DataFrame) -> pd.Series:
    node = df["node_id"] if "node_id" in df.columns else None
    host = df["hostname"] if "hostname" in df.columns else None
    if node is None:
        return _null_column(df) if host is None else host
    if host is None:
        return node
    return node.astype(object).where(node.notna(), host.astype(object))


def _start_method_column(df: pd.DataFrame) -> pd.Series:
    """``start_method``, with the method a multiprocessing row ran with where it stored none (rows
    written before the executor stored it), so old and new sweeps of one config match."""
    method = df["start_method"]
    unnamed = method.isna() & (df["backend"].astype(object) == MULTIPROCESSING)
    return method.astype(object).where(~unnamed, DEFAULT_START_METHOD) if unnamed.any() else method


def key_columns(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The key columns of ``df`` (missing optional ones as null), ``node`` derived from node id or host.

    Example::

        >>> key_columns(pd.DataFrame({"hostname": ["box"], "node_id": [None]}), ["node", "python"]).values.tolist()
        [['box', None]]
        >>> df = pd.DataFrame({"backend": ["multiprocessing", "threading"], "start_method": [None, None]})
        >>> key_columns(df, ["start_method"])["start_method"].tolist()
        ['fork', None]
    """
    cols = {}
    for key in keys:
        if key == "node" and "node" not in df.columns:
            cols[key] = _node_column(df)
        elif key == "start_method" and key in df.columns and "backend" in df.columns:
            cols[key] = _start_method_column(df)
        elif key in df.columns:
            cols[key] = df[key]
        else:
            cols[key] = _null_column(df)
    return pd.DataFrame(cols, index=df.index)


def ordered(frame: pd.DataFrame, keys: Sequence[str] = GROUP_KEYS) -> pd.DataFrame:
    """Rows sorted by the keys, with the backends in ``BACKEND_ORDER``.

    Example::

        >>> ordered(pd.DataFrame({"backend": ["ray", "sequential", "threading"]}), ["backend"]).backend.tolist()
        ['sequential', 'threading', 'ray']
    """
    arrays = []  # np.lexsort: the last array is the primary key
    for key in reversed(keys):
        codes, _ = pd.factorize(frame[key].astype(object).fillna(""), sort=True)
        arrays.append(codes)
        if key == "backend":
            rank = frame[key].astype(object).map(BACKEND_ORDER).fillna(len(BACKEND_ORDER))
            arrays.append(rank.to_numpy())
    return frame.iloc[np.lexsort(arrays)].reset_index(drop=True)


def flag_text(conds: dict[str, np.ndarray]) -> np.ndarray:
    """Per row, the labels whose condition holds, joined by ", ".

    Example::

        >>> flag_text({"a": np.array([True, False]), "b": np.array([True, True])}).tolist()
        ['a, b', 'b']
    """
    n = len(next(iter(conds.values())))
    text = np.full(n, "", dtype=object)
    for label, cond in conds.items():
        sep = np.where(text == "", "", ", ")
        text = np.where(cond, text + sep + label, text)
    return text


def join_key(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    """One string per row from ``keys``: nulls and categoricals become plain strings that compare reliably."""
    parts = [frame[k].astype(object).where(frame[k].notna(), "\x00").astype(str) for k in keys]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + "\x1f" + part
    return joined


def match_rows(left: pd.DataFrame, right: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """For each row of ``left``, the row of ``right`` (unique keys) with equal ``keys``, else -1; nulls match nulls.

    Example::

        >>> match_rows(pd.DataFrame({"k": ["a", None, "c"]}), pd.DataFrame({"k": [None, "a"]}), ["k"]).tolist()
        [1, 0, -1]
    """
    both = pd.concat([left[keys].astype(object), right[keys].astype(object)], ignore_index=True)
    codes = both.groupby(keys, dropna=False, sort=False).ngroup().to_numpy()
    lookup = np.full(codes.max() + 1 if len(codes) else 0, -1, dtype=np.int64)
    lookup[codes[len(left) :]] = np.arange(len(right))
    return lookup[codes[: len(left)]]


def as_frame_filtered(data, **filters) -> pd.DataFrame:
    """The store(s) ``data`` names, read with only the rows ``filters`` select (pushed down to Parquet)."""
    from conc_lab.store.load import load

    return load(data, **filters)


def pooled_rows(df: pd.DataFrame) -> tuple[int, int]:
    """How many summary rows (``GROUP_KEYS``) hold runs of more than one sweep, and how many rows
    there are: sweeps of different configs read together share no row.

    Example::

        >>> df = pd.DataFrame({"workload": "w", "backend": ["sequential", "sequential", "threading"],
        ...                    "sweep_id": ["s1", "s2", "s2"]})
        >>> pooled_rows(df)
        (1, 2)
    """
    if "sweep_id" not in df.columns or len(df) == 0:
        return 0, 0
    key = join_key(key_columns(df, GROUP_KEYS), GROUP_KEYS)
    sweeps = df["sweep_id"].astype(object).groupby(key.to_numpy()).nunique()
    return int((sweeps > 1).sum()), len(sweeps)

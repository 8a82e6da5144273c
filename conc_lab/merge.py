"""Joining the shard sweeps of one config (``conclab sweep --shard K/N``) into one sweep.

Shards may run on one machine or many (their folders copied together). Merging checks that
they belong together (one config fingerprint, one split), that no run is there twice, writes
the merged sweep, reads it back, and only then removes the shards it replaced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from conc_lab import schema
from conc_lab.store import (
    StoreError,
    make_dirs,
    new_sweep_id,
    read_manifest,
    read_sweep,
    remove_sweep,
    sweep_dirs,
    write_manifest,
    write_part,
)


@dataclass(frozen=True)
class MergeResult:
    """What ``merge`` wrote: the merged sweep, its rows, and the shards it found or missed."""

    sweep_dir: Path
    rows: int
    shards: tuple[str, ...]  # e.g. ("1/3", "2/3")
    missing: tuple[str, ...]  # shards of the N that were not there
    removed: tuple[Path, ...]  # shard directories replaced by the merged sweep


def merge(results_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> MergeResult:
    """Combine the shard sweeps of one config under ``results_dir`` into one sweep.

    ``results_dir`` is a config's folder (``results/cpu``) holding sweeps run with
    ``--shard K/N``. Every shard must come from the same config (fingerprint) and no
    (trial, repeat) may appear twice. The merged sweep is written to ``out`` (default
    ``results_dir``) under a new sweep id, state ``complete`` only when all N shards were
    there and complete (else ``partial``). Written in place, the shard directories are
    removed once the merged part is on disk and reads back whole, so ``load`` does not count
    their rows twice; with another ``out`` they are kept.

    >>> merge("results/cpu").shards  # doctest: +SKIP
    ('1/2', '2/2')
    """
    root = Path(results_dir)
    shards, n = _shards(root)
    table = _joined_rows(root, shards)
    labels = tuple(m["shard"] for _, m in shards)
    missing = tuple(f"{k}/{n}" for k in range(1, n + 1) if f"{k}/{n}" not in labels)
    manifest = _merged_manifest(shards, complete=not missing)
    table = table.set_column(
        table.schema.get_field_index("sweep_id"),
        "sweep_id",
        pa.array([manifest["sweep_id"]] * len(table), pa.string()),
    )
    dest = Path(out) if out is not None else root
    merged_dir = _write_merged(dest / manifest["sweep_id"], table, manifest)
    removed = _remove_shards(shards) if dest.resolve() == root.resolve() else ()
    return MergeResult(merged_dir, len(table), labels, missing, removed)


def shard_of(label: str) -> tuple[int, int]:
    """``"2/3"`` as ``(2, 3)``."""
    k, n = label.split("/")
    return int(k), int(n)


def _shards(root: Path) -> tuple[list[tuple[Path, dict]], int]:
    """The shard sweeps under ``root`` in shard order, checked to belong together, and their N."""
    shards = [(d, m) for d in sweep_dirs(root) for m in [read_manifest(d)] if m.get("shard")]
    if not shards:
        raise StoreError(f"{root}: no shard sweeps to merge (run: conclab sweep CONFIG --shard K/N)")
    fingerprints = {m.get("fingerprint") for _, m in shards}
    if len(fingerprints) > 1:
        raise StoreError(
            f"{root}: shards of different configs (fingerprints {sorted(map(str, fingerprints))})"
        )
    counts = {shard_of(m["shard"])[1] for _, m in shards}
    if len(counts) > 1:
        raise StoreError(f"{root}: shards of different splits ({sorted(m['shard'] for _, m in shards)})")
    seen: dict[str, Path] = {}
    for d, m in shards:
        if m["shard"] in seen:
            raise StoreError(
                f"{root}: shard {m['shard']} is there twice ({seen[m['shard']]} and {d}); remove one"
            )
        seen[m["shard"]] = d
    shards.sort(key=lambda dm: shard_of(dm[1]["shard"])[0])
    return shards, counts.pop()


def _joined_rows(root: Path, shards: list[tuple[Path, dict]]) -> pa.Table:
    """Every row of the shards, each (trial, repeat) once or a ``StoreError``."""
    tables = [read_sweep(d).table.select(schema.COLUMNS) for d, _ in shards]
    table = pa.concat_tables(tables) if tables else schema.SCHEMA.empty_table()
    keys = set()
    for trial_id, repeat in zip(table["trial_id"].to_pylist(), table["repeat"].to_pylist()):
        if (trial_id, repeat) in keys:
            raise StoreError(f"{root}: trial {trial_id} repeat {repeat} is in more than one shard")
        keys.add((trial_id, repeat))
    return table


def _merged_manifest(shards: list[tuple[Path, dict]], complete: bool) -> dict:
    first = shards[0][1]
    complete = complete and all(m.get("state") == "complete" for _, m in shards)
    return dict(
        first,
        sweep_id=new_sweep_id(),
        shard=None,
        started_at=min(m.get("started_at") or 0 for _, m in shards),
        finished_at=max(m.get("finished_at") or 0 for _, m in shards),
        state="complete" if complete else "partial",
        schema_version=schema.SCHEMA_VERSION,
        merged_from=[
            {"sweep_id": m.get("sweep_id"), "shard": m["shard"], "state": m.get("state"), "dir": str(d)}
            for d, m in shards
        ],
    )


def _write_merged(merged_dir: Path, table: pa.Table, manifest: dict) -> Path:
    """Write the merged sweep and read it back: the shards go only once it reads back whole."""
    make_dirs(merged_dir)
    write_part(merged_dir / "part-000000.parquet", table, manifest)
    write_manifest(merged_dir, manifest)
    if len(read_sweep(merged_dir, ["trial_id"]).table) != len(table):
        raise StoreError(f"{merged_dir}: the merged sweep does not read back whole; shards left in place")
    return merged_dir


def _remove_shards(shards: list[tuple[Path, dict]]) -> tuple[Path, ...]:
    removed = []
    for d, _ in shards:
        remove_sweep(d)
        removed.append(d)
    return tuple(removed)

"""Joining the shard sweeps of one config (``conclab sweep --shard K/N``) into one sweep.

Shards may run on one machine or many (their folders copied together). Merging checks that
they belong together (one config fingerprint, one split) and that no run is there twice,
writes the merged sweep, reads it back, and only then removes the shards it took in.

A shard that is still running, or stopped before its end (killed: state ``running``, or
interrupted), is named and left where it is, so ``--resume`` can finish it; shards that are
missing are named too. Such a merge is *partial* (exit code ``PARTIAL_EXIT`` from the CLI),
and merging again once the rest has run completes the same merged sweep: a partial merged
sweep takes in later shards under its own sweep id.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from conc_lab import schema
from conc_lab.store.core import (
    RUN_KEY,
    StoreError,
    SweepBusy,
    file_seq,
    make_dirs,
    new_sweep_id,
    part_files,
    part_tag,
    read_manifest,
    read_sweep,
    remove_sweep,
    run_keys,
    sweep_dirs,
    sweep_lock,
    timing_note,
    write_manifest,
    write_part,
)

#: ``conclab merge`` exit code when the merged sweep is not complete (shards missing, running or
#: stopped early): a batch job depending on the merge (``--dependency=afterok``) sees it failed.
PARTIAL_EXIT = 3


@dataclass(frozen=True)
class MergeResult:
    """What ``merge`` did: the merged sweep, its runs, and the shards it holds, took in, or lacks."""

    sweep_dir: Path
    rows: int  # runs in the merged sweep
    shards: tuple[str, ...]  # shards the merged sweep holds, e.g. ("1/3", "3/3")
    added: tuple[str, ...]  # of those, the ones this merge took in
    missing: tuple[str, ...]  # shards of the N not found at all
    unfinished: tuple[str, ...]  # one line each: a shard found but left out (running, stopped early)
    removed: tuple[Path, ...]  # shard folders taken into the merged sweep and removed
    timing: str | None  # a note when the shards ran at different times

    @property
    def complete(self) -> bool:
        return not self.missing and not self.unfinished


def merge(results_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> MergeResult:
    """Merge the shard sweeps of one config under ``results_dir`` into one sweep.

    ``results_dir`` is a config's folder (``results/cpu``). The merged sweep goes to
    ``results_dir`` itself (the shards taken in are then removed, so no run is counted twice)
    or, with ``out``, to ``out/<name>/<sweep_id>`` like ``sweep --out`` (the shards are kept).
    It is ``complete`` when all N shards were there and complete, else ``partial``; a
    partial merged sweep there takes in the shards merged later. Refused (``StoreError``):
    shards of different configs or splits, a shard there twice, a run in two shards.

    >>> merge("results/cpu").shards  # doctest: +SKIP
    ('1/2', '2/2')
    """
    root = Path(results_dir)
    shards = {d: m for d in sweep_dirs(root) for m in [read_manifest(d)] if m.get("shard")}
    config = _one_config(root, shards)
    dest = root if out is None else Path(out) / config["name"]
    target = _partial_target(dest, config)
    with contextlib.ExitStack() as held:  # the target and every shard taken in stay locked throughout
        if target is not None:
            held.enter_context(sweep_lock(target[0]))
        taken, leftover, unfinished = _sort_out(root, shards, target, held)
        merged_dir, manifest, rows = _write(root, dest, target, taken)
        removed = () if out is not None else tuple(_removed([*taken, *leftover]))
    have = {src["shard"] for src in manifest["merged_from"]}
    n = config["split"]
    missing = [f"{k}/{n}" for k in range(1, n + 1) if f"{k}/{n}" not in have]
    return MergeResult(
        sweep_dir=merged_dir,
        rows=rows,
        shards=tuple(sorted(have, key=_shard_key)),
        added=tuple(m["shard"] for m in taken.values()),
        missing=tuple(k for k in missing if not any(line.startswith(f"shard {k} ") for line in unfinished)),
        unfinished=tuple(unfinished),
        removed=removed,
        timing=timing_note(manifest),
    )


def _removed(dirs: list[Path]):
    for d in dirs:
        remove_sweep(d)
        yield d


def _shard_key(label: str) -> tuple[int, int]:
    k, n = label.split("/")
    return int(n), int(k)


def _one_config(root: Path, shards: dict[Path, dict]) -> dict:
    """The shards' common config: name, fingerprint, split N; ``StoreError`` if they differ."""
    merged = [m for d in sweep_dirs(root) for m in [read_manifest(d)] if m.get("merged_from")]
    if not shards and not any(m.get("state") == "partial" for m in merged):
        raise StoreError(f"{root}: no shard sweeps to merge (run: conclab sweep CONFIG --shard K/N)")
    manifests = list(shards.values()) or [m for m in merged if m.get("state") == "partial"]
    fingerprints = {m.get("fingerprint") for m in manifests}
    if len(fingerprints) > 1:
        raise StoreError(
            f"{root}: shards of different configs (fingerprints {sorted(map(str, fingerprints))})"
        )
    splits = {_split(m) for m in manifests}
    if len(splits) > 1:
        raise StoreError(f"{root}: shards of different splits ({sorted(m.get('shard') for m in manifests)})")
    first = manifests[0]
    return {
        "name": first.get("name") or root.name,
        "fingerprint": first.get("fingerprint"),
        "split": splits.pop(),
    }


def _split(manifest: dict) -> int:
    label = manifest.get("shard") or (manifest.get("merged_from") or [{}])[0].get("shard") or "1/1"
    return manifest.get("split") or _shard_key(label)[0]


def _partial_target(dest: Path, config: dict) -> tuple[Path, dict] | None:
    """The partial merged sweep of this config and split under ``dest``, to take in more shards."""
    if not dest.exists():
        return None
    found = [
        (d, m)
        for d in sweep_dirs(dest)
        for m in [read_manifest(d)]
        if m.get("merged_from") and m.get("state") == "partial"
        if m.get("fingerprint") == config["fingerprint"] and _split(m) == config["split"]
    ]
    return max(found, key=lambda dm: dm[1].get("started_at") or 0, default=None)


def _sort_out(
    root: Path, shards: dict[Path, dict], target: tuple[Path, dict] | None, held: contextlib.ExitStack
) -> tuple[dict[Path, dict], list[Path], list[str]]:
    """Shards to take in (locked), shards already in the target, and lines for those left out."""
    already = {src["shard"]: src["sweep_id"] for src in (target[1]["merged_from"] if target else [])}
    by_label: dict[str, Path] = {}
    taken, leftover, unfinished = {}, [], []
    for d, m in sorted(shards.items(), key=lambda dm: _shard_key(dm[1]["shard"])):
        label = m["shard"]
        if label in by_label:
            raise StoreError(f"{root}: shard {label} is there twice ({by_label[label]} and {d}); remove one")
        by_label[label] = d
        if label in already:
            if already[label] != m.get("sweep_id"):
                raise StoreError(f"{d}: shard {label} is already merged into {target[0]}; remove one")
            leftover.append(d)  # taken in by a merge cut short before it removed the shard
            continue
        problem = _unfinished(d, m, held)
        if problem:
            unfinished.append(f"shard {label} {problem}")
        else:
            taken[d] = m
    return taken, leftover, unfinished


def _unfinished(d: Path, m: dict, held: contextlib.ExitStack) -> str | None:
    """Why shard ``d`` cannot be taken in yet (it runs, or stopped early), or None (it is now locked)."""
    try:
        held.enter_context(sweep_lock(d))
    except SweepBusy:
        return f"is still running ({d}); merge again when it has finished"
    except OSError:  # a read-only copy: no one can be writing it
        pass
    if m.get("state") == "complete":
        return None
    runs = len(read_sweep(d, ["trial_id"]).table)
    how = "killed while running" if m.get("state") == "running" else m.get("state")
    return (
        f"is not complete ({how}, {runs} runs) in {d}; finish it with "
        f"`conclab sweep CONFIG --shard {m['shard']} --resume`, then merge again"
    )


def _write(
    root: Path, dest: Path, target: tuple[Path, dict] | None, taken: dict[Path, dict]
) -> tuple[Path, dict, int]:
    """Write the taken shards into the target (or a new merged sweep): (folder, manifest, runs)."""
    if target is None and not taken:
        raise StoreError(f"{root}: no complete shard to merge yet")
    tables = {d: _rows(d) for d in taken}
    old_rows = len(read_sweep(target[0], ["trial_id"]).table) if target else 0
    _no_run_twice(root, target, tables)
    manifest = _merged_manifest(target[1] if target else None, taken)
    merged_dir = target[0] if target else dest / f".merging-{manifest['sweep_id']}"
    make_dirs(merged_dir)
    done = {part_tag(p).get("merged_from") for p in part_files(merged_dir)}
    seq = 1 + max([file_seq(p) for p in part_files(merged_dir)] + [-1])
    for d, table in tables.items():
        if taken[d].get("sweep_id") not in done:  # else written by a merge cut short
            ids = pa.array([manifest["sweep_id"]] * len(table), pa.string())
            table = table.set_column(table.schema.get_field_index("sweep_id"), "sweep_id", ids)
            write_part(merged_dir / f"part-{seq:06d}.parquet", table, manifest, taken[d].get("sweep_id"))
            seq += 1
    write_manifest(merged_dir, manifest)
    if target is None:  # appears whole, or not at all
        os.replace(merged_dir, dest / manifest["sweep_id"])
        merged_dir = dest / manifest["sweep_id"]
    rows = old_rows + sum(len(t) for t in tables.values())
    if len(read_sweep(merged_dir, ["trial_id"]).table) != rows:
        raise StoreError(f"{merged_dir}: the merged sweep does not read back whole; shards left in place")
    return merged_dir, manifest, rows


def _rows(d: Path) -> pa.Table:
    return read_sweep(d).table.select(schema.COLUMNS)


def _no_run_twice(root: Path, target: tuple[Path, dict] | None, tables: dict[Path, pa.Table]) -> None:
    keys = set()
    if target is not None:
        keys = set(run_keys(read_sweep(target[0], list(RUN_KEY)).table))
    for table in tables.values():
        for key in run_keys(table):
            if key in keys:
                raise StoreError(f"{root}: trial {key[0]} repeat {key[1]} is in more than one shard")
            keys.add(key)


def _merged_manifest(previous: dict | None, taken: dict[Path, dict]) -> dict:
    """The merged sweep's manifest: what it held before, plus the shards taken in now."""
    sources = list(previous["merged_from"]) if previous else []
    sources += [
        {
            "sweep_id": m.get("sweep_id"),
            "shard": m["shard"],
            "state": m.get("state"),
            "dir": str(d),
            "started_at": m.get("started_at"),
            "finished_at": m.get("finished_at"),
        }
        for d, m in taken.items()
    ]
    first = previous or next(iter(taken.values()))
    split = _split(first)
    labels = {src["shard"] for src in sources}
    complete = all(f"{k}/{split}" in labels for k in range(1, split + 1))
    return dict(
        first,
        sweep_id=first["sweep_id"] if previous else new_sweep_id(),
        shard=None,
        split=split,
        started_at=min(src.get("started_at") or time.time() for src in sources),
        finished_at=max(src.get("finished_at") or 0 for src in sources),
        state="complete" if complete else "partial",
        schema_version=schema.SCHEMA_VERSION,
        merged_from=sorted(sources, key=lambda src: _shard_key(src["shard"])),
    )

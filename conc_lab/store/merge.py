"""Joining the shard sweeps of one config (``conclab sweep --shard K/N``) into one sweep.

Shards may run on one machine or many (their folders copied together). Merging checks that
they belong together (one config fingerprint, one split, one size for every calibrated
workload) and that no run is there twice, writes the merged sweep, reads it back, and only
then removes the shards it took in.

A shard that is still running, or stopped before its end (killed: state ``running``, or
interrupted), is named and left where it is, so ``--resume`` can finish it; shards that are
missing are named too. Such a merge is *partial* (exit code ``PARTIAL_EXIT`` from the CLI),
and merging again once the rest has run completes the same merged sweep.

A merge is safe to kill and run again: the merged sweep's id follows from the config's
fingerprint and split (``merged_id``), so a second merge finds what the first left and
finishes it, never making a second merged sweep. Its parts count only once its manifest
names their shard (``reader.committed``), and a shard it took in is not counted beside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from conc_lab import schema
from conc_lab.store.layout import (
    StoreError,
    SweepBusy,
    file_seq,
    make_dirs,
    part_files,
    remove_sweep,
    sweep_dirs,
)
from conc_lab.store.load import timing_note
from conc_lab.store.lock import sweep_lock
from conc_lab.store.manifest import Manifest, MergedShard, SweepState, read_manifest, write_manifest
from conc_lab.store.reader import RUN_KEY, lost_line, part_tag, read_sweep, run_keys
from conc_lab.store.writer import parts_on_disk, write_part

#: ``conclab merge`` exit code when the merged sweep is not complete (shards missing, running or
#: stopped early): a batch job depending on the merge (``--dependency=afterok``) sees it failed.
PARTIAL_EXIT = 3
#: The most missing shards named one by one; past it, a count.
_MAX_NAMED = 20


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


@dataclass(frozen=True)
class _Config:
    """What the shards to merge have in common."""

    name: str
    fingerprint: str | None
    split: int
    sizes: dict[str, int]


def merged_id(fingerprint: str | None, split: int) -> str:
    """The merged sweep's id, the same for every merge of these shards (a re-run finds it).

    >>> merged_id("abc", 4) == merged_id("abc", 4) != merged_id("abc", 5)
    True
    """
    digest = hashlib.sha256(f"{fingerprint}/{split}".encode()).hexdigest()[:12]
    return f"merged-{split}-{digest}"


def merge(results_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> MergeResult:
    """Merge the shard sweeps of one config under ``results_dir`` into one sweep.

    ``results_dir`` is a config's folder (``results/cpu``). The merged sweep goes to
    ``results_dir`` itself (the shards taken in are then removed, so no run is counted twice)
    or, with ``out``, to ``out/<name>/<sweep_id>`` like ``sweep --out`` (the shards are kept).
    It is ``complete`` when all N shards were there and complete, else ``partial``; a
    partial merged sweep there takes in the shards merged later. Refused (``StoreError``):
    shards of different configs, splits or calibrated sizes, a shard there twice, a run in
    two shards, a folder that cannot be written.

    >>> merge("results/cpu").shards  # doctest: +SKIP
    ('1/2', '2/2')
    """
    root = _config_folder(Path(results_dir))
    shards = {d: m for d in sweep_dirs(root) for m in [read_manifest(d)] if m.shard}
    config = _one_config(root, shards)
    dest = root if out is None else Path(out) / config.name
    try:
        return _merge(root, dest, shards, config, keep=out is not None)
    except (SweepBusy, StoreError):
        raise
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else f"{dest}: "
        raise StoreError(
            f"{where}cannot write the merged sweep ({exc.strerror or exc}); nothing was removed"
        ) from None


def _config_folder(root: Path) -> Path:
    """The config's folder to merge in: ``root``, or ``root/<name>`` when ``root`` is the folder
    the shards were written to with ``sweep --out root`` (``conclab merge results`` for
    ``results/cpu``): the merged sweep belongs beside its shards, where ``load``, ``--resume`` and a
    later merge look for it. A folder holding the shards of several configs is refused, naming them.
    """
    if not root.is_dir() or root.name.startswith((".", "_")):
        return root
    sweeps = {d: read_manifest(d) for d in sweep_dirs(root)}
    names = {m.name for m in sweeps.values() if m.shard or m.merged_from}
    if not names or root.name in names or any(d.parent == root for d in sweeps):
        return root
    below = sorted(n for n in names if n and (root / n).is_dir())
    if len(below) == 1 and all(root / below[0] in d.parents for d in sweeps):
        return root / below[0]
    if len(below) > 1:
        folders = ", ".join(str(root / n) for n in below)
        raise StoreError(
            f"{root}: holds the shards of {len(below)} configs ({folders}); merge one config's "
            f"folder: conclab merge {root / below[0]}"
        )
    return root


def _merge(root: Path, dest: Path, shards: dict[Path, Manifest], config: _Config, keep: bool) -> MergeResult:
    target = _target(dest, config)
    with contextlib.ExitStack() as held:  # the target and every shard taken in stay locked throughout
        if target is not None:
            held.enter_context(sweep_lock(target[0]))
        taken, leftover, unfinished = _sort_out(root, shards, target, held)
        merged_dir, manifest, rows = _write(root, dest, target, taken, config)
        removed = () if keep else tuple(_removed([*taken, *leftover]))
    have = {src.shard for src in manifest.merged_from}
    n = config.split
    missing = _missing(have, n, unfinished)
    return MergeResult(
        sweep_dir=merged_dir,
        rows=rows,
        shards=tuple(sorted(have, key=_shard_key)),
        added=tuple(m.shard for m in taken.values()),
        missing=missing,
        unfinished=tuple(unfinished),
        removed=removed,
        timing=timing_note(manifest),
    )


def _missing(have: set[str], n: int, unfinished: list[str]) -> tuple[str, ...]:
    """The shards of ``n`` neither merged nor found; past ``_MAX_NAMED`` the rest as a count."""
    missing: list[str] = []
    count = n - len(have) - len(unfinished)
    for k in range(1, n + 1):
        label = f"{k}/{n}"
        if label not in have and not any(line.startswith(f"shard {label} ") for line in unfinished):
            missing.append(label)
            if len(missing) == _MAX_NAMED and count > _MAX_NAMED:
                missing.append(f"and {count - _MAX_NAMED} more")
                break
    return tuple(missing)


def _removed(dirs: list[Path]):
    for d in dirs:
        remove_sweep(d)
        yield d


def _shard_key(label: str) -> tuple[int, int]:
    k, n = label.split("/")
    return int(n), int(k)


def _one_config(root: Path, shards: dict[Path, Manifest]) -> _Config:
    """The shards' common config: name, fingerprint, split N, sizes; ``StoreError`` if they differ."""
    found = {d: m for d in sweep_dirs(root) for m in [read_manifest(d)] if m.merged_from}
    merged = list(found.values())
    partial = {d: m for d, m in found.items() if m.state is SweepState.PARTIAL}
    if not shards and not merged:
        raise StoreError(f"{root}: no shard sweeps to merge (run: conclab sweep CONFIG --shard K/N)")
    # no shards left: a merge run again (after one that was cut short) finds its work done
    newest = max(found, key=lambda d: found[d].started_at or 0, default=None)
    chosen = shards or partial or {newest: found[newest]}
    manifests = list(chosen.values())
    fingerprints = {m.fingerprint for m in manifests}
    if len(fingerprints) > 1:
        raise StoreError(f"{root}: shards of different configs: {_different_configs(chosen)}")
    splits = {m.split_n for m in manifests}
    if len(splits) > 1:
        raise StoreError(f"{root}: shards of different splits: {_different_splits(chosen)}")
    sizes = _one_size(root, [*manifests, *(m for m in merged if m.fingerprint in fingerprints)])
    first = manifests[0]
    # a manifest's name is checked to be one folder name; the folder's own, resolved, cannot be ".." either
    return _Config(first.name or root.resolve().name, first.fingerprint, splits.pop(), sizes)


def _different_configs(sweeps: dict[Path, Manifest]) -> str:
    """Which shards ran which config (most shards first), how the first two differ, and what to do."""
    groups: dict[str | None, list[tuple[Path, Manifest]]] = {}
    for d, m in sorted(sweeps.items(), key=lambda dm: (_shard_key(dm[1].shard or "1/1"), dm[0].name)):
        groups.setdefault(m.fingerprint, []).append((d, m))
    ordered = sorted(groups.values(), key=len, reverse=True)

    def named(group: list[tuple[Path, Manifest]]) -> str:
        shown = [f"{m.shard or 'merged'} ({d.name})" for d, m in group[:_MAX_NAMED]]
        more = f" and {len(group) - _MAX_NAMED} more" if len(group) > _MAX_NAMED else ""
        return ", ".join(shown) + more

    ran = [f"{named(g)} ran {'one config' if i == 0 else 'another'}" for i, g in enumerate(ordered)]
    how = _config_change(ordered[0][0][1], ordered[1][0][1])
    return (
        "; ".join(ran) + (f" ({how})" if how else "") + "; move the shards of one config out of this "
        "folder (or run them again with the other config), then merge"
    )


def _different_splits(sweeps: dict[Path, Manifest]) -> str:
    """Each split's shards by K/N and folder (most shards first), and what to do."""
    groups: dict[int | None, list[str]] = {}
    for d, m in sorted(sweeps.items(), key=lambda dm: (_shard_key(dm[1].shard or "1/1"), dm[0].name)):
        groups.setdefault(m.split_n, []).append(f"{m.shard or 'merged'} ({d.name})")
    ordered = sorted(groups.items(), key=lambda kv: len(kv[1]), reverse=True)
    parts = [
        f"{', '.join(names[:_MAX_NAMED])}{f' and {len(names) - _MAX_NAMED} more' if len(names) > _MAX_NAMED else ''}"
        f" split {n} ways"
        for n, names in ordered
    ]
    return "; ".join(parts) + "; move the shards of one split out of this folder, then merge"


def _config_change(a: Manifest, b: Manifest) -> str:
    """The first line of config (or sweep option) that differs between two sweeps, quoted; '' if unknown."""
    lines_a = [line.rstrip() for line in (a.config_text or "").splitlines() if line.strip()]
    lines_b = [line.rstrip() for line in (b.config_text or "").splitlines() if line.strip()]
    for x, y in zip(lines_a, lines_b):
        if x != y:
            return f"{x.strip()!r} against {y.strip()!r}"
    if len(lines_a) != len(lines_b):
        longer = lines_a if len(lines_a) > len(lines_b) else lines_b
        extra = longer[min(len(lines_a), len(lines_b))].strip()
        return f"{extra!r} in only one of them"
    if dict(a.overrides) != dict(b.overrides):
        opts = [
            " ".join(f"--{k} {v}" for k, v in sorted(m.overrides.items())) or "no options" for m in (a, b)
        ]
        return f"sweep {opts[0]} against {opts[1]}"
    return ""


def _one_size(root: Path, manifests: list[Manifest]) -> dict[str, int]:
    """Every calibrated size (``size: auto``) the shards chose, refused where two disagree.

    Shards that each calibrate may choose different sizes; merged, their runs would compare
    different work as one trial.
    """
    sizes: dict[str, int] = {}
    where: dict[str, str] = {}
    for m in manifests:
        label = m.shard or "merged"
        for workload, size in m.calibrated_sizes.items():
            if sizes.setdefault(workload, size) != size:
                raise StoreError(
                    f"{root}: shards calibrated different sizes for {workload} ({where[workload]}: "
                    f"{sizes[workload]}, {label}: {size}); run `conclab calibrate CONFIG` once (or give "
                    "it a size in the config), run the shards again, then merge"
                )
            where.setdefault(workload, label)
    return sizes


def _target(dest: Path, config: _Config) -> tuple[Path, Manifest] | None:
    """The merged sweep of this config and split under ``dest`` (partial, or left by a merge cut short)."""
    if not dest.exists():
        return None
    found = [
        (d, m)
        for d in sweep_dirs(dest)
        for m in [read_manifest(d)]
        if m.merged_from and m.fingerprint == config.fingerprint and m.split_n == config.split
    ]
    named = [dm for dm in found if dm[1].sweep_id == merged_id(config.fingerprint, config.split)]
    if named:  # left by an earlier merge of these shards, cut short or partial
        return named[0]
    partial = [dm for dm in found if dm[1].state is SweepState.PARTIAL]  # merged before ids were fixed
    return max(partial, key=lambda dm: dm[1].started_at or 0, default=None)


def _sort_out(
    root: Path, shards: dict[Path, Manifest], target: tuple[Path, Manifest] | None, held: contextlib.ExitStack
) -> tuple[dict[Path, Manifest], list[Path], list[str]]:
    """Shards to take in (locked), shards already in the target, and lines for those left out."""
    already = {src.shard: src.sweep_id for src in (target[1].merged_from if target else ())}
    by_label: dict[str, Path] = {}
    taken, leftover, unfinished = {}, [], []
    for d, m in sorted(shards.items(), key=lambda dm: _shard_key(dm[1].shard)):
        label = m.shard
        if label in by_label:
            raise StoreError(f"{root}: shard {label} is there twice ({by_label[label]} and {d}); remove one")
        by_label[label] = d
        if label in already:
            if already[label] != m.sweep_id:
                raise StoreError(f"{d}: shard {label} is already merged into {target[0]}; remove one")
            leftover.append(d)  # taken in by a merge cut short before it removed the shard
            continue
        problem = _unfinished(d, m, held)
        if problem:
            unfinished.append(f"shard {label} {problem}")
        else:
            taken[d] = m
    return taken, leftover, unfinished


def _unfinished(d: Path, m: Manifest, held: contextlib.ExitStack) -> str | None:
    """Why shard ``d`` cannot be taken in yet (it runs, or stopped early), or None (it is now locked)."""
    try:
        held.enter_context(sweep_lock(d))
    except SweepBusy:
        return f"is still running ({d}); merge again when it has finished"
    except OSError:  # a read-only copy: no one can be writing it (a .lock that is a link: refused)
        pass
    if m.state is SweepState.COMPLETE:
        return None
    runs = len(read_sweep(d, ["trial_id"]).table)
    how = "killed while running" if m.state is SweepState.RUNNING else m.state
    return (
        f"is not complete ({how}, {runs} runs) in {d}; finish it with "
        f"`conclab sweep CONFIG --shard {m.shard} --resume`, then merge again"
    )


def _write(
    root: Path, dest: Path, target: tuple[Path, Manifest] | None, taken: dict[Path, Manifest], config: _Config
) -> tuple[Path, Manifest, int]:
    """Write the taken shards into the target (or a new merged sweep): (folder, manifest, runs)."""
    if target is None and not taken:
        raise StoreError(f"{root}: no complete shard to merge yet")
    tables = {d: _rows(d) for d in taken}
    old_rows = len(read_sweep(target[0], ["trial_id"]).table) if target else 0
    _no_run_twice(root, target, tables)
    manifest = _merged_manifest(target[1] if target else None, taken, config)
    # a new merged sweep is written hidden, then renamed in whole; the hidden folder of a merge
    # killed before that rename has the same name, and is finished, not begun again
    merged_dir = target[0] if target else dest / f".merging-{manifest.sweep_id}"
    make_dirs(merged_dir)
    done = {part_tag(p).get("merged_from") for p in part_files(merged_dir)}
    seq = 1 + max([file_seq(p) for p in part_files(merged_dir)] + [-1])
    for d, table in tables.items():
        if taken[d].sweep_id not in done:  # else written by a merge cut short
            ids = pa.array([manifest.sweep_id] * len(table), pa.string())
            table = table.set_column(table.schema.get_field_index("sweep_id"), "sweep_id", ids)
            write_part(merged_dir, seq, table, manifest.sweep_id, taken[d].sweep_id)
            seq += 1
    # the parts it held (one deleted stays named), and every part there now: this merge's, a cut-short one's
    held = dict(target[1].parts or {}) if target else {}
    manifest = manifest.replace(parts={**held, **parts_on_disk(merged_dir, held)})
    write_manifest(merged_dir, manifest)  # the commit: from here the new parts count
    if target is None:  # appears whole, or not at all
        os.replace(merged_dir, dest / manifest.sweep_id)
        merged_dir = dest / manifest.sweep_id
    rows = old_rows + sum(len(t) for t in tables.values())
    if len(read_sweep(merged_dir, ["trial_id"]).table) != rows:
        raise StoreError(f"{merged_dir}: the merged sweep does not read back whole; shards left in place")
    return merged_dir, manifest, rows


def _rows(d: Path) -> pa.Table:
    """A shard's runs; ``StoreError`` when a part it records is gone: merged, its runs would be lost."""
    read = read_sweep(d)
    for name, rows in read.lost.items():
        raise StoreError(lost_line(d, read.manifest, name, rows) + "; then merge again")
    return read.table.select(schema.COLUMNS)


def _no_run_twice(root: Path, target: tuple[Path, Manifest] | None, tables: dict[Path, pa.Table]) -> None:
    keys = set()
    if target is not None:
        keys = set(run_keys(read_sweep(target[0], list(RUN_KEY)).table))
    for table in tables.values():
        for key in run_keys(table):
            if key in keys:
                raise StoreError(f"{root}: trial {key[0]} repeat {key[1]} is in more than one shard")
            keys.add(key)


def _merged_manifest(previous: Manifest | None, taken: dict[Path, Manifest], config: _Config) -> Manifest:
    """The merged sweep's manifest: what it held before, plus the shards taken in now."""
    sources = list(previous.merged_from) if previous else []
    sources += [
        MergedShard(
            sweep_id=m.sweep_id,
            shard=m.shard,
            state=m.state.value,
            dir=str(d),
            started_at=m.started_at,
            finished_at=m.finished_at,
        )
        for d, m in taken.items()
    ]
    first = previous or next(iter(taken.values()))
    split = config.split
    labels = {src.shard for src in sources}
    complete = all(f"{k}/{split}" in labels for k in range(1, split + 1)) if len(labels) == split else False
    return first.replace(
        sweep_id=first.sweep_id if previous else merged_id(config.fingerprint, split),
        shard=None,
        split=split,
        started_at=min(src.started_at or time.time() for src in sources),
        finished_at=max(src.finished_at or 0 for src in sources),
        state=SweepState.COMPLETE if complete else SweepState.PARTIAL,
        schema_version=schema.SCHEMA_VERSION,
        calibrated_sizes=config.sizes,
        merged_from=tuple(sorted(sources, key=lambda src: _shard_key(src.shard))),
    )

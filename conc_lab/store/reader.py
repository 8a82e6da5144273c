"""Reading one sweep folder, checking every byte read: parts, journals, and which runs count.

A read is a snapshot: the manifest, then the journals' bytes, then the parts, so a seal
running meanwhile (part renamed in, then its journal removed) is seen before or after,
never with its rows in neither. A part's bytes are checked against the sha256 in its name
and its Parquet page checksums; damage is a ``StoreError`` naming the file, never a decode
error and never a changed value.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from conc_lab import schema
from conc_lab.store.layout import (
    MANIFEST,
    StoreError,
    StoreWarning,
    check_files,
    file_seq,
    is_sweep,
    journal_files,
    orphan_dirs,
    part_files,
    part_name,
)
from conc_lab.store.lock import busy, live_owner
from conc_lab.store.manifest import Manifest, SweepState, read_manifest

if TYPE_CHECKING:
    import pyarrow.dataset as ds


@functools.lru_cache(maxsize=1)
def _parquet_format():
    """Parquet with every page checked, made on first read: ``pyarrow.dataset`` imports pandas,
    0.3 s that a sweep (which only writes) should not pay at start-up (bench_core startup)."""
    import pyarrow.dataset as ds

    return ds.ParquetFileFormat(
        default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True)
    )


@dataclass(frozen=True)
class Part:
    """One Parquet part as read: its rows and the tag it was written with (``writer.write_part``)."""

    table: pa.Table
    tag: dict


def part_checksum(part: Path) -> str | None:
    """The sha256 prefix in a part's name (``part-000001.<sha>.parquet``); None for parts from before."""
    pieces = part.name.split(".")
    return pieces[1] if len(pieces) == 3 else None


def read_part(part: Path, columns: list[str] | None, where, sweep_id: str | None) -> Part:
    """A part's rows (``columns``, default all; ``where`` filters), every byte checked first.

    ``FileNotFoundError`` when the part went meanwhile (its sweep was merged or resealed):
    the caller reads the folder again.
    """
    data = _arrow_bytes(part)
    expected = part_checksum(part)
    if expected is not None and hashlib.sha256(data).hexdigest()[: len(expected)] != expected:
        raise StoreError(
            f"{part}: damaged Parquet part (its bytes no longer match the checksum in its name: "
            "changed on disk); restore it from a copy, or move it away to read the rest"
        )
    try:
        fragment = _parquet_format().make_fragment(pa.BufferReader(data))
        table = fragment.to_table(schema=schema.SCHEMA, columns=columns, filter=where)
        meta = fragment.physical_schema.metadata or {}
        tag = json.loads(meta.get(b"conc_lab", b"{}"))
        foreign = (
            set(table["sweep_id"].unique().to_pylist()) - {sweep_id}
            if "sweep_id" in table.column_names
            else set()
        )
    except Exception as exc:  # any failure to decode these bytes is damage: never a traceback
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreError(f"{part}: damaged Parquet part, cannot be read ({problem})") from None
    if sweep_id is not None and foreign:
        raise StoreError(
            f"{part}: holds runs of sweep {sorted(foreign)[0]}, not of {sweep_id} (a copied file?)"
        )
    return Part(table, tag if isinstance(tag, dict) else {})


def _arrow_bytes(part: Path) -> pa.Buffer:
    """A file's bytes in memory Arrow owns, not a Python ``bytes``.

    Arrow releases a buffer from whichever of its threads drops it last, and a buffer that
    wraps a Python object needs the GIL for that. A thread waiting for the GIL while the
    interpreter exits (a command ending at once on a store error) is ended by Python inside
    Arrow's C++, which aborts the process: "terminate called without an active exception"
    after the error line, and not the exit code 2 (apache/arrow#34314).
    """
    with pa.OSFile(str(part)) as f:
        return f.read_buffer()


def part_tag(path: Path) -> dict:
    """The conc_lab tag a part was written with (``write_part``); {} when it has none or is damaged."""
    try:
        return read_part(path, ["sweep_id"], None, None).tag
    except (StoreError, OSError):
        return {}


def committed(part: Part, manifest: Manifest) -> bool:
    """Whether a part's rows count: a merge's part counts once the manifest names its shard.

    A merge writes a shard's part first and the manifest that names the shard last, so a
    merge killed in between leaves a part that no reader counts (the shard still does),
    and the merge run again keeps it.
    """
    source = part.tag.get("merged_from")
    return source is None or source in {m.sweep_id for m in manifest.merged_from}


#: Hex digits of a journal line's sha256 written before its row: 64 bits, so no damage passes by chance.
LINE_SUM_DIGITS = 16


def journal_line(row: dict) -> bytes:
    """One journal line: the start of the row's sha256, a space, the row as JSON, a newline.

    A line whose bytes changed on disk no longer matches its checksum, so it is named as
    damaged, never read as a changed value. ASCII whatever text the row holds (``ensure_ascii``).

    >>> journal_line({"repeat": 1})
    b'05f13bb05a61cbcb {"repeat":1}\\n'
    """
    body = json.dumps(row, separators=(",", ":")).encode()
    return _line_sum(body) + b" " + body + b"\n"


def _line_sum(body: bytes) -> bytes:
    return hashlib.sha256(body).hexdigest()[:LINE_SUM_DIGITS].encode()


_SUMMED = re.compile(rb"[0-9a-f]{%d} " % LINE_SUM_DIGITS)


def _is_summed(line: bytes) -> bool:
    return _SUMMED.match(line) is not None


def _line_body(line: bytes, summed: bool) -> bytes:
    """The JSON a journal line holds, its checksum checked; ``ValueError`` saying why it cannot be trusted.

    ``summed``: the journal's lines carry checksums. Only a journal none of whose lines has
    one (written by a conc_lab from before) is read without: one bit changed cannot turn a
    checksummed line into a plain one (its first byte is a hex digit, never ``{``).
    """
    if not summed:
        return line
    if not _is_summed(line):
        raise ValueError("no checksum, in a journal whose lines have one")
    body = line[LINE_SUM_DIGITS + 1 :]
    if _line_sum(body) != line[:LINE_SUM_DIGITS]:
        raise ValueError("its bytes no longer match its checksum: changed on disk")
    return body


def _whole_but_last_byte(line: bytes, summed: bool) -> bool:
    """A last line whole but for its newline, changed into another byte: damage, not a tear."""
    try:
        return summed and bool(_line_body(line[:-1], summed))
    except ValueError:
        return False


def journal_entries(
    path: Path, data: bytes | None = None, sweep_id: str | None = None
) -> Iterator[tuple[int, dict | str]]:
    """``(line number, row)`` for each whole line of a journal, ``(line number, problem)`` for a damaged one.

    Each line's checksum is checked (``journal_line``), then its row against the schema (text
    made safe). A torn last line, with no newline after it, is a kill mid-write: that run was
    in flight, not finished; it is skipped. ``data``: the journal's bytes, when already read.
    ``sweep_id``: the sweep whose folder holds it; a row of another sweep is a problem, as in a part.
    """
    lines = (path.read_bytes() if data is None else data).split(b"\n")
    summed = any(_is_summed(line) for line in lines)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        torn = number == len(lines)  # no newline after it
        try:
            body = _line_body(line, summed)
        except ValueError as exc:
            if not torn or _whole_but_last_byte(line, summed):  # a tear cuts a line, never changes one
                yield number, f"corrupt line {number} ({exc})"
            continue
        try:
            row = schema.check_row(json.loads(body))
            if sweep_id is not None and row["sweep_id"] != sweep_id:
                yield (
                    number,
                    f"line {number} holds a run of sweep {row['sweep_id']}, not of {sweep_id} (a copied file?)",
                )
            else:
                yield number, row
        except json.JSONDecodeError as exc:
            if not torn:
                yield number, f"corrupt line {number} (not JSON: {exc.msg})"
        except (ValueError, RecursionError) as exc:  # RowError, or bytes that are not UTF-8
            yield number, f"corrupt line {number} (not a result row: {exc})"


def read_journal(path: Path, data: bytes | None = None, sweep_id: str | None = None) -> list[dict]:
    rows = []
    for _, entry in journal_entries(path, data, sweep_id):
        if isinstance(entry, str):
            raise StoreError(f"{path}: {entry}; `conclab check` lists all damage")
        rows.append(entry)
    return rows


@dataclass(frozen=True)
class SweepRows:
    """One sweep folder as read: its manifest, and its rows (sealed parts and unsealed journals)."""

    dir: Path
    manifest: Manifest
    table: pa.Table
    lost: dict[str, int]  # parts the manifest records that are not on disk (deleted?), with their runs


def read_sweep(
    sweep_dir: str | os.PathLike, columns: list[str] | None = None, where: ds.Expression | None = None
) -> SweepRows:
    """Read one sweep folder, checking what is read: the one reader of parts and journals.

    ``columns`` (default all) always gain ``sweep_id``, ``trial_id`` and ``repeat``; ``where``
    filters rows. Damage (a foreign file, a damaged manifest, part or journal line, a version
    this conc_lab cannot read) is a ``StoreError`` naming the file. A run found twice (a
    copied part) is counted once, with a ``StoreWarning``.
    """
    sweep_dir = Path(sweep_dir)
    for _ in range(10):
        try:
            return _read_sweep_once(sweep_dir, columns, where)
        except FileNotFoundError:  # a live writer sealed a journal meanwhile: read the new state
            time.sleep(0.01)
    raise StoreError(f"{sweep_dir}: its files change too fast to be read; try again")


def _read_sweep_once(sweep_dir: Path, columns: list[str] | None, where) -> SweepRows:
    check_files(sweep_dir)
    manifest = read_manifest(sweep_dir)
    if manifest.schema_version != schema.SCHEMA_VERSION:
        raise StoreError(
            f"{sweep_dir}: schema version {manifest.schema_version}, this conc_lab reads {schema.SCHEMA_VERSION}"
        )
    need = list(dict.fromkeys(["sweep_id", "trial_id", "repeat"] + list(columns or schema.COLUMNS)))
    wanted, need = need, list(dict.fromkeys(need + list(RUN_KEY)))
    # A snapshot: journals are read first, parts listed after. A seal renames its part in, then
    # removes its journal; so a journal gone before it was read has its part in the list below,
    # and rows sealed meanwhile are read once (from the part; the journal read is dropped).
    journals = {}
    for journal in journal_files(sweep_dir):
        with contextlib.suppress(FileNotFoundError):
            journals[journal] = journal.read_bytes()
    parts = part_files(sweep_dir)
    lost = lost_parts(manifest, parts)
    if lost and not sweep_dir.is_dir():  # moved meanwhile (a shard run again, hidden): read it again
        raise FileNotFoundError(sweep_dir)
    read = [read_part(p, need, where, manifest.sweep_id) for p in parts]
    tables = [p.table for p in read if committed(p, manifest)]
    sealed = {file_seq(p) for p in parts}
    rows = [
        r
        for j, data in journals.items()
        if file_seq(j) not in sealed
        for r in read_journal(j, data, manifest.sweep_id)
    ]
    if rows:
        table = schema.to_table(rows, checked=True).select(need)
        tables.append(table.filter(where) if where is not None else table)
    table = pa.concat_tables(tables) if tables else schema.SCHEMA.empty_table().select(need)
    return SweepRows(sweep_dir, manifest, once_per_run(table, sweep_dir).select(wanted), lost)


def lost_parts(manifest: Manifest, parts: list[Path]) -> dict[str, int]:
    """The parts ``manifest`` records that are not among ``parts`` (deleted?), with their runs."""
    there = {part_name(p) for p in parts}
    return {name: rows for name, rows in (manifest.parts or {}).items() if name not in there}


def lost_line(sweep_dir: Path, manifest: Manifest, name: str, rows: int) -> str:
    """One line naming a part recorded but not on disk, and how to get its runs back."""
    again = "" if manifest.merged_from else ", or run the sweep again with --resume (it runs them again)"
    return (
        f"{sweep_dir / name}: missing: its {rows} runs, recorded in the manifest, are not there "
        f"(deleted?); restore it from a copy{again}"
    )


#: Columns that tell one stored run from another: (trial_id, repeat), and for the noisy runs a
#: run replaced (status redone, several per repeat) also their start time.
RUN_KEY = ("trial_id", "repeat", "status", "started_at")


def run_keys(table: pa.Table) -> list[tuple]:
    """One key per row: (trial_id, repeat, None), or (trial_id, repeat, started_at) for a redone run."""
    return [
        (t, r, at if status == schema.REDONE else None)
        for t, r, at, status in zip(
            table["trial_id"].to_pylist(),
            table["repeat"].to_pylist(),
            table["started_at"].to_pylist(),
            table["status"].to_pylist(),
        )
    ]


def once_per_run(table: pa.Table, sweep_dir: Path) -> pa.Table:
    """Each run once: a part copied beside itself must not double a sweep's runs."""
    keys = run_keys(table)
    if len(set(keys)) == len(keys):
        return table
    seen: set[tuple] = set()
    doubled = [k in seen or seen.add(k) is not None for k in keys]
    warnings.warn(
        f"{sweep_dir}: {sum(doubled)} runs are stored twice (a copied file?); each is counted once "
        f"(conclab check {sweep_dir} names the files)",
        StoreWarning,
        stacklevel=5,  # the caller of load: once_per_run < _read_sweep_once < read_sweep < load
    )
    return table.filter(pa.array([not d for d in doubled]))


def doubled_sweeps(manifests: dict[Path, Manifest]) -> dict[Path, str]:
    """Sweeps among ``manifests`` whose runs another of them holds too, each with the reason.

    A sweep folder copied whole (one sweep id twice). A shard run twice (same config, same
    ``K/N``): the complete one, else the latest, is kept. A shard beside the merged sweep that
    took it in (merged elsewhere, then copied back, or a merge killed before it removed it).
    """
    doubled: dict[Path, str] = {}
    by_id: dict[str, Path] = {}
    for d, m in sorted(manifests.items()):  # a sweep folder copied whole: its runs are the same runs
        first = by_id.setdefault(m.sweep_id, d)
        if first != d:
            doubled[d] = f"a copy of sweep {m.sweep_id}, also at {first}"
    merged_into = _merged_into(manifests)
    by_shard = defaultdict(list)
    for d, m in manifests.items():
        merged = merged_into.get(m.sweep_id) or merged_into.get((m.fingerprint, m.shard))
        if d in doubled:
            continue
        if merged is not None and merged != d:
            doubled[d] = f"shard {m.shard} is already in merged sweep {merged.name}"
        elif m.shard:
            by_shard[(m.fingerprint, m.shard)].append(d)
    for (_, shard), dirs in by_shard.items():
        keep = max(
            dirs, key=lambda d: (manifests[d].state is SweepState.COMPLETE, manifests[d].started_at or 0)
        )
        doubled.update({d: f"shard {shard} was run twice; {keep.name} is kept" for d in dirs if d != keep})
    return doubled


def _merged_into(manifests: dict[Path, Manifest]) -> dict:
    """Merged sweeps by what they took in: a shard's sweep id, and (fingerprint, K/N)."""
    merged_into: dict = {}
    for d, m in manifests.items():
        for source in m.merged_from:
            merged_into[source.sweep_id] = d
            merged_into[(m.fingerprint, source.shard)] = d
    return merged_into


def completed_runs(sweep_dir: str | os.PathLike) -> set[tuple[str, int]]:
    """(trial_id, repeat) of every run recorded in a sweep: what ``--resume`` skips.

    ``SweepBusy`` (naming its pid) while a live conclab writes the sweep: a resume is refused
    then, before it starts anything, not only when its writer would open the folder.
    """
    owner = live_owner(sweep_dir)
    if owner is not None:
        raise busy(Path(sweep_dir), owner)
    table = read_sweep(sweep_dir, ["trial_id", "repeat", "status"]).table
    return {
        (t, r)
        for t, r, status in zip(
            table["trial_id"].to_pylist(), table["repeat"].to_pylist(), table["status"].to_pylist()
        )
        if status != schema.REDONE  # replaced by its redo, which may not have been recorded yet
    }


def latest_sweep(results_dir: str | os.PathLike, shard: str | None = None) -> Path | None:
    """The sweep under ``results/<name>`` (of that ``shard``, e.g. "3/10") that ``--resume`` continues.

    An unfinished sweep (killed, interrupted, stopped) comes before a complete one, whatever
    the clocks said when each began: a sweep killed while the clock was behind is still the
    one to continue. Among equals, the most recently started; None when there is none.
    """
    root = Path(results_dir)
    if not root.exists():
        return None
    orphans = orphan_dirs(root)
    if orphans:
        raise StoreError(
            f"{orphans[0]}: result files without a {MANIFEST} (deleted?); restore it, or move the "
            "folder out, before resuming"
        )
    manifests = {
        p: read_manifest(p) for p in root.iterdir() if not p.name.startswith((".", "_")) and is_sweep(p)
    }
    dirs = [p for p, m in manifests.items() if m.shard == shard and not m.merged_from]
    return max(
        dirs,
        key=lambda p: (manifests[p].state is not SweepState.COMPLETE, manifests[p].started_at or 0),
        default=None,
    )


def merged_holding(results_dir: str | os.PathLike, shard: str) -> Path | None:
    """The merged sweep under ``results/<name>`` that already took in ``shard`` (a merge moves the
    shard's own folder into it), or None."""
    root = Path(results_dir)
    if not root.is_dir():
        return None
    for p in sorted(root.iterdir()):
        if not p.name.startswith((".", "_")) and is_sweep(p):
            if any(m.shard == shard for m in read_manifest(p).merged_from):
                return p
    return None

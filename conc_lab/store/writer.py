"""Writing one sweep: each row to the journal as its run ends, sealed into Parquet parts in batches.

Every row reaches the journal with one ``write`` as soon as its run ends, so a killed
sweep (even ``kill -9``) loses at most the run in flight; rows are sealed into Parquet
in batches, which keeps the per-trial cost far below a Parquet file per row. A journal
whose part exists (a crash between rename and unlink) is ignored; a torn last line (a
crash mid-write) is dropped.

Each part carries Parquet page checksums and the start of its sha256 in its name
(``part-000003.<sha>.parquet``): a bit changed on disk is found on every read, never read
as a value.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from conc_lab import schema
from conc_lab.store.layout import (
    CHECKSUM_DIGITS,
    HIDDEN_PARTS,
    JOURNAL,
    MANIFEST,
    REPLACED,
    StoreError,
    SweepBusy,
    file_seq,
    fsync_dir,
    is_sweep,
    journal_files,
    make_dirs,
    open_new,
    part_files,
    part_name,
    write_all,
    write_atomic,
)
from conc_lab.store.lock import lock, sweep_lock, unlock
from conc_lab.store.manifest import Manifest, SweepState, read_manifest, write_manifest
from conc_lab.store.reader import journal_line, read_journal


class SweepWriter:
    """Appends rows of one sweep as they come; seals them into Parquet parts in batches.

    Each row is checked against the schema on ``append`` (a malformed one is refused alone,
    ``schema.RowError``). It holds the folder's lock from start to ``close`` (``SweepBusy``).

    >>> import tempfile
    >>> w = SweepWriter(Path(tempfile.mkdtemp()) / "demo" / "s1", Manifest(sweep_id="s1"))
    >>> w.append({"sweep_id": "s1", "colour": "red"})
    Traceback (most recent call last):
    ...
    conc_lab.schema.RowError: row refused: unknown result columns: ['colour']
    >>> w.close(SweepState.COMPLETE)
    """

    def __init__(
        self, sweep_dir: str | os.PathLike, manifest: Manifest, flush_rows: int = 2000, flush_s: float = 10.0
    ):
        self.dir = Path(sweep_dir)
        self.manifest = manifest.replace(schema_version=schema.SCHEMA_VERSION, state=SweepState.RUNNING)
        self.flush_rows, self.flush_s = flush_rows, flush_s
        self._lock_fd = None
        try:
            make_dirs(self.dir)
            self._lock_fd = lock(self.dir)
        except OSError as exc:
            raise StoreError(self._cannot_write(self.dir, exc)) from None
        try:
            # A shard run again: the earlier unfinished runs of it are no longer what load counts (this
            # one is the latest), and while a complete run of it stands, this one's parts stay hidden.
            self._hidden = False
            if self.manifest.shard:
                replace_earlier(self.dir, self.manifest, unfinished_only=True)
                self._hidden = any(True for _ in shard_twins(self.dir, self.manifest, complete=True))
            # a resume runs again what is not on disk: the parts there are the sweep's now
            self._before = _earlier(self.dir)
            self.manifest = self.manifest.replace(parts=parts_on_disk(self.dir, _parts(self._before)))
            write_manifest(self.dir, self.manifest)
            self._seal_leftover_journals()
            self._seq = 1 + max([file_seq(p) for p in part_files(self.dir)] + [-1])
            self._rows: list[dict] = []
            self._open_journal()
        except OSError as exc:
            self._unlock()
            raise StoreError(self._cannot_write(self.dir, exc)) from None
        except BaseException:
            self._unlock()
            raise

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            unlock(self.dir, self._lock_fd)
            self._lock_fd = None

    def _open_journal(self) -> None:
        self._journal_path = self.dir / JOURNAL.replace("*", f"{self._seq:06d}")
        self._fd = open_new(self._journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self._journal_size = os.fstat(self._fd).st_size
        self._last_seal = time.monotonic()

    def append(self, row: dict) -> None:
        """Check one finished run's row and record it; it is on disk (in the kernel) when this returns.

        Raises ``schema.RowError`` for a row that does not fit the schema (nothing is written),
        and ``StoreError`` when the row cannot be written (disk full): the journal is then cut
        back to its last whole row, so every row before this one stays readable.
        """
        try:
            row = schema.check_row(row)
        except schema.RowError as exc:
            raise schema.RowError(f"row refused: {exc}") from None
        if row["sweep_id"] != self.manifest.sweep_id:
            raise schema.RowError(f"row refused: sweep_id {row['sweep_id']!r} in sweep {self.dir}")
        line = journal_line(row)  # checksummed: a line changed on disk is found, never read
        try:
            write_all(self._fd, line)
        except OSError as exc:
            os.ftruncate(self._fd, self._journal_size)  # no torn line mid-journal once space is back
            raise StoreError(self._cannot_write(self._journal_path, exc)) from None
        self._journal_size += len(line)
        self._rows.append(row)
        if len(self._rows) >= self.flush_rows or time.monotonic() - self._last_seal >= self.flush_s:
            self.seal()

    def _cannot_write(self, path: Path, exc: OSError) -> str:
        return (
            f"{path}: cannot write results ({exc.strerror or exc}); the runs recorded before are "
            "kept; make room, then run the same sweep with --resume"
        )

    def seal(self) -> None:
        """Turn the journal's rows into a Parquet part (atomically), then drop the journal."""
        if self._rows:
            try:
                table = schema.to_table(self._rows, checked=True)
                part = write_part(self.dir, self._seq, table, self.manifest.sweep_id, hidden=self._hidden)
                self._record(part, table.num_rows)
            except OSError as exc:  # the journal still holds every row; a resume seals it
                raise StoreError(self._cannot_write(self.dir, exc)) from None
        os.close(self._fd)
        self._journal_path.unlink()
        self._rows = []
        self._seq += 1
        self._open_journal()

    def close(self, state: SweepState | str) -> None:
        """Seal what is left, record the sweep's final state (complete, interrupted, stopped), unlock.

        The lock goes even when sealing fails (a full disk): ``--resume`` then takes over. A shard sweep
        that completes replaces its shard's earlier runs, then shows its parts (hidden while one stood).
        """
        try:
            self.seal()
            os.close(self._fd)
            self._journal_path.unlink()
            ended = _ended_at(self._before, SweepState(state), self.manifest.parts)
            self.manifest = self.manifest.replace(state=SweepState(state), finished_at=ended)
            write_manifest(self.dir, self.manifest)
            if self.manifest.state is SweepState.COMPLETE and self.manifest.shard:
                replace_earlier(self.dir, self.manifest)
                show_parts(self.dir)
        except OSError as exc:
            raise StoreError(self._cannot_write(self.dir / MANIFEST, exc)) from None
        finally:
            self._unlock()

    def _seal_leftover_journals(self) -> None:
        """A resumed sweep first turns what a killed run left in journals into parts.

        Temp files a killed run left before their rename are dropped: their rows are
        still in the journal, or (for the manifest) rewritten just now.
        """
        for tmp in self.dir.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        sealed = {file_seq(p) for p in part_files(self.dir)}
        for journal in journal_files(self.dir):
            if file_seq(journal) not in sealed:
                rows = read_journal(journal, sweep_id=self.manifest.sweep_id)
                if rows:
                    table = schema.to_table(rows, True)
                    part = write_part(
                        self.dir, file_seq(journal), table, self.manifest.sweep_id, hidden=self._hidden
                    )
                    self._record(part, table.num_rows)
            journal.unlink()

    def _record(self, part: Path, rows: int) -> None:
        """Name a part just sealed in the manifest (before its journal goes): check finds it if deleted."""
        self.manifest = self.manifest.replace(parts={**(self.manifest.parts or {}), part_name(part): rows})
        write_manifest(self.dir, self.manifest)


def _parts(manifest: Manifest | None) -> dict[str, int]:
    return dict(manifest.parts or {}) if manifest is not None else {}


def _ended_at(before: Manifest | None, state: SweepState, parts: Mapping[str, int] | None) -> float:
    """Now, unless a resume stored nothing (the same parts) and leaves the sweep as it was: it did
    not end it again."""
    same = before is not None and before.state is state and _parts(before) == dict(parts or {})
    if same and before.finished_at:
        return before.finished_at
    return time.time()


def _earlier(sweep_dir: Path) -> Manifest | None:
    """The manifest a resumed sweep had when it last ended; None for a new sweep (or one whose
    manifest is damaged: its parts are then read from their footers)."""
    try:
        return read_manifest(sweep_dir)
    except StoreError:
        return None


def parts_on_disk(sweep_dir: Path, known: dict[str, int]) -> dict[str, int]:
    """Every part in ``sweep_dir``, by its plain name, with its runs (``known``, else its footer's count).

    A part whose footer cannot be read is left out: check names it as damaged.
    """
    parts = {}
    for part in part_files(sweep_dir):
        name = part_name(part)
        if name in known:
            parts[name] = known[name]
            continue
        with contextlib.suppress(Exception):
            parts[name] = pq.read_metadata(part).num_rows
    return parts


def write_part(
    sweep_dir: Path,
    seq: int,
    table: pa.Table,
    sweep_id: str,
    merged_from: str | None = None,
    hidden: bool = False,
) -> Path:
    """Write rows as one Parquet part (atomically), tagged with the schema version and sweep id.

    The part has Parquet page checksums, and the start of its sha256 in its name, which every
    read checks. ``merged_from``: the shard sweep whose rows these are (a merge): a merge cut
    short is not merged twice when run again, and its parts count only once the merged
    sweep's manifest names that shard (``part_tag``). ``hidden``: named ``_part-...``, which
    plain Parquet readers skip (``layout.HIDDEN_PARTS``).
    """
    tag = {"schema_version": schema.SCHEMA_VERSION, "sweep_id": sweep_id}
    if merged_from is not None:
        tag["merged_from"] = merged_from
    table = table.replace_schema_metadata({b"conc_lab": json.dumps(tag)})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", write_page_checksum=True)
    data = sink.getvalue().to_pybytes()
    name = f"part-{seq:06d}.{hashlib.sha256(data).hexdigest()[:CHECKSUM_DIGITS]}.parquet"
    path = sweep_dir / ("_" + name if hidden else name)
    write_atomic(path, data)
    return path


def shard_twins(sweep_dir: Path, manifest: Manifest, complete: bool | None = None) -> Iterator[Path]:
    """The other runs of ``manifest``'s shard beside ``sweep_dir`` (same config, same K/N, not merged).

    ``complete``: only those complete (True) or not (False). Hidden folders, links and
    folders whose manifest is damaged (``check`` reports those) are left out.
    """
    for other in sorted(sweep_dir.parent.iterdir()):
        if (
            other == sweep_dir
            or other.name.startswith((".", "_"))
            or other.is_symlink()
            or not is_sweep(other)
        ):
            continue
        try:
            theirs = read_manifest(other)
        except StoreError:
            continue  # damage is check's to report, not this sweep's to move
        if theirs.shard != manifest.shard or theirs.fingerprint != manifest.fingerprint or theirs.merged_from:
            continue
        if complete is None or (theirs.state is SweepState.COMPLETE) == complete:
            yield other


def replace_earlier(sweep_dir: Path, manifest: Manifest, unfinished_only: bool = False) -> list[Path]:
    """Hide the earlier runs of a shard that has now completed: ``results/<name>/_replaced-<id>``.

    ``load`` counts a shard run twice once (the complete run, else the latest); hidden (``_``
    first), the earlier run is skipped by plain Parquet readers too, so they count the same
    runs. ``unfinished_only``: hide only runs that did not complete (a run of the shard
    beginning: it is the latest now). A run still being written is left alone. Returns the
    folders hidden.
    """
    hidden = []
    for other in list(shard_twins(sweep_dir, manifest, complete=False if unfinished_only else None)):
        with contextlib.suppress(SweepBusy, OSError), sweep_lock(other):
            target = other.with_name(f"{REPLACED}{other.name}")
            os.rename(other, target)
            hidden.append(target)
    return hidden


def show_parts(sweep_dir: Path) -> None:
    """Give a completed shard run's hidden parts their plain names: plain readers count it now."""
    shown = False
    for part in sweep_dir.glob(HIDDEN_PARTS):
        os.rename(part, part.with_name(part.name[1:]))
        shown = True
    if shown:
        fsync_dir(sweep_dir)

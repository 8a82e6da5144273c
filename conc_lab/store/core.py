"""The result store: the only module that touches result files.

Layout of one sweep::

    results/<name>/<sweep_id>/
        _manifest.json         config, its fingerprint, environment, state (running|complete|interrupted)
        part-000000.parquet    sealed batches of rows (written to a temp file, fsynced, renamed)
        _journal-000001.jsonl  rows since the last seal, one JSON line each, written as each run ends
        .lock                  held (flock) by the one conclab writing the sweep

Every row reaches the journal with one ``write`` as soon as its run ends, so a killed
sweep (even ``kill -9``) loses at most the run in flight; rows are sealed into Parquet
in batches, which keeps the per-trial cost far below a Parquet file per row. A journal
whose part exists (a crash between rename and unlink) is ignored; a torn last line (a
crash mid-write) is dropped. ``load`` reads parts and journals alike.

Everything but the parts starts with ``_`` or ``.``, which Parquet readers skip: pandas,
pyarrow.dataset, polars and duckdb read ``results/<name>`` directly (sealed rows only).
Stores written before (``manifest.json``, ``journal-*.jsonl``) are read as they are, and
take the new names when resumed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import time
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from conc_lab import schema

MANIFEST = "_manifest.json"
#: The names before plain Parquet readers were considered: still read, and renamed on resume.
OLD_MANIFEST, OLD_JOURNAL = "manifest.json", "journal-*.jsonl"
JOURNAL = "_journal-*.jsonl"
LOCK = ".lock"  # hidden: plain Parquet readers skip it
MIN_FREE_BYTES = 64 << 20
_FILE_MODE = 0o644
_DIR_MODE = 0o755


class StoreError(RuntimeError):
    """A results directory that cannot be written, or holds files conc_lab did not write."""


class SweepBusy(StoreError):
    """The sweep folder is held by a live conclab: two writers would corrupt each other's rows."""


class StoreWarning(UserWarning):
    """Something read that conc_lab repaired in what it returns (a run stored twice, counted once)."""


def new_sweep_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def preflight(out: str | os.PathLike) -> None:
    """Fail now, not after an hour, if results cannot be written under ``out``.

    The folders it makes to find out are removed again: a sweep refused later (an unreachable
    cluster, a config error) leaves nothing behind; the sweep's writer makes them for good.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "results"
    >>> preflight(out); out.exists()
    False
    """
    out = Path(out)
    made: list[Path] = []
    try:
        made = make_dirs(out)
        probe = out / f".conclab-probe-{os.getpid()}"
        probe.write_bytes(b"x")
        probe.unlink()
        free = shutil.disk_usage(out).free
    except OSError as exc:
        raise StoreError(f"{out}: results directory is not writable ({exc.strerror or exc})") from None
    finally:
        for folder in reversed(made):
            with contextlib.suppress(OSError):  # not empty: a sweep beside this one wrote there meanwhile
                folder.rmdir()
    if free < MIN_FREE_BYTES:
        raise StoreError(f"{out}: only {free >> 20} MiB free; need at least {MIN_FREE_BYTES >> 20} MiB")


def make_dirs(path: Path) -> list[Path]:
    """``mkdir -p`` whose new folders are 0o755 whatever the umask: never world-writable.

    Returns the folders it made, outermost first.
    """
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    made = []
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=_DIR_MODE)
        except FileExistsError:  # made meanwhile by a sweep beside this one
            continue
        os.chmod(folder, _DIR_MODE)
        made.append(folder)
    return made


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a torn one.

    The bytes go to a hidden temp file beside ``path`` (mode 0644, fsynced), which is renamed
    over ``path``; the folder is fsynced so the rename survives a power cut too.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "report.html"
    >>> write_atomic(target, b"<html></html>")
    >>> target.read_bytes(), oct(target.stat().st_mode & 0o777)
    (b'<html></html>', '0o644')
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
    try:
        os.fchmod(fd, _FILE_MODE)  # whatever the umask: results are readable by the group's tools
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)  # a full disk must not also keep the half-written file
        raise
    os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is out: a write can be short when the disk fills."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_MANIFEST_TYPES = {  # keys the store relies on, with the types they must have when present
    "sweep_id": str,
    "name": str,
    "state": str,
    "shard": str,
    "fingerprint": str,
    "started_at": (int, float),
    "finished_at": (int, float),
    "schema_version": int,
    "environment": dict,
    "merged_from": list,
}


def read_manifest(sweep_dir: str | os.PathLike) -> dict:
    """A sweep's manifest, checked: ``StoreError`` naming the file when it is missing or damaged."""
    path = manifest_path(sweep_dir)
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise StoreError(f"{path}: missing; this sweep folder has lost its manifest") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise StoreError(f"{path}: damaged manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise StoreError(f"{path}: damaged manifest (a JSON {type(manifest).__name__}, not an object)")
    for key, kind in _MANIFEST_TYPES.items():
        value = manifest.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise StoreError(f"{path}: damaged manifest ({key} is {type(value).__name__})")
    return manifest


def manifest_path(sweep_dir: str | os.PathLike) -> Path:
    """The sweep's manifest file: ``_manifest.json``, or ``manifest.json`` in a store from before."""
    path = Path(sweep_dir) / MANIFEST
    old = path.with_name(OLD_MANIFEST)
    return old if not path.exists() and old.exists() else path


def is_sweep(folder: Path) -> bool:
    return (folder / MANIFEST).exists() or (folder / OLD_MANIFEST).exists()


def write_manifest(sweep_dir: Path, manifest: dict) -> None:
    write_atomic(sweep_dir / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    # a resumed sweep of an older store moves to the new name (kept until the new one is on disk)
    (sweep_dir / OLD_MANIFEST).unlink(missing_ok=True)


def _lock(sweep_dir: Path) -> int:
    """Take the sweep folder's lock; the fd holds it until ``_unlock``, or until this process dies.

    An ``flock``, so the kernel releases it when its owner dies however it dies (``kill -9``
    included), and a later ``--resume`` takes over; ``SweepBusy`` while the owner lives. The
    holder removes the lock file on release, so a finished sweep keeps no ``.lock``; a lock
    taken on a file that was removed meanwhile is not the lock, and is taken again.
    """
    path = sweep_dir / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise _busy(sweep_dir, owner) from None
        except FileNotFoundError:  # released (and removed) by its holder just now
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    with contextlib.suppress(OSError):  # a full disk: the lock holds without the owner's pid
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _unlock(sweep_dir: Path, fd: int) -> None:
    with contextlib.suppress(OSError):  # removed with its folder (a merge), or a read-only copy
        os.unlink(sweep_dir / LOCK)
    os.close(fd)


@contextlib.contextmanager
def sweep_lock(sweep_dir: str | os.PathLike):
    """Hold a sweep folder's lock for the block (``SweepBusy`` if a live conclab holds it)."""
    fd = _lock(Path(sweep_dir))
    try:
        yield
    finally:
        _unlock(Path(sweep_dir), fd)


def _busy(sweep_dir: Path, owner: str) -> SweepBusy:
    return SweepBusy(
        f"{sweep_dir}: this sweep is being written by another conclab (pid {owner}), still "
        "running; let it finish, or stop it, then resume"
    )


def live_owner(sweep_dir: str | os.PathLike) -> str | None:
    """The pid of the live conclab writing the sweep, or None; creates and removes nothing.

    A sweep whose state is ``running`` with no live owner was killed: ``--resume`` continues it.
    """
    try:
        fd = os.open(Path(sweep_dir) / LOCK, os.O_RDONLY)
    except OSError:  # no lock file: no writer (a writer keeps it until it lets go)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
    finally:
        os.close(fd)  # and with it the shared lock just taken
    return None


def is_live(sweep_dir: str | os.PathLike) -> bool:
    """Whether a live conclab holds the sweep (a ``running`` state without one: its owner died)."""
    return live_owner(sweep_dir) is not None


class SweepWriter:
    """Appends rows of one sweep as they come; seals them into Parquet parts in batches.

    Each row is checked against the schema on ``append`` (``schema.RowError`` otherwise),
    so a malformed row is refused alone and the sweep folder stays readable. The writer holds
    the folder's lock (``.lock``) from start to ``close``: a second writer gets ``SweepBusy``.

    >>> import tempfile
    >>> w = SweepWriter(Path(tempfile.mkdtemp()) / "demo" / "s1", {"sweep_id": "s1"})
    >>> w.append({"sweep_id": "s1", "colour": "red"})
    Traceback (most recent call last):
    ...
    conc_lab.schema.RowError: row refused: unknown result columns: ['colour']
    >>> w.close("complete")
    """

    def __init__(
        self, sweep_dir: str | os.PathLike, manifest: dict, flush_rows: int = 2000, flush_s: float = 10.0
    ):
        self.dir = Path(sweep_dir)
        self.manifest = dict(manifest, schema_version=schema.SCHEMA_VERSION, state="running")
        self.flush_rows, self.flush_s = flush_rows, flush_s
        try:
            make_dirs(self.dir)
            self._lock_fd = _lock(self.dir)
        except OSError as exc:
            raise StoreError(self._cannot_write(self.dir, exc)) from None
        try:
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
            _unlock(self.dir, self._lock_fd)
            self._lock_fd = None

    def _open_journal(self) -> None:
        self._journal_path = self.dir / JOURNAL.replace("*", f"{self._seq:06d}")
        self._fd = os.open(self._journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, _FILE_MODE)
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
        if row["sweep_id"] != self.manifest.get("sweep_id", row["sweep_id"]):
            raise schema.RowError(f"row refused: sweep_id {row['sweep_id']!r} in sweep {self.dir}")
        # ensure_ascii (the default): the journal is plain ASCII whatever text the row holds
        line = (json.dumps(row, separators=(",", ":")) + "\n").encode()
        try:
            _write_all(self._fd, line)
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
            part = self.dir / f"part-{self._seq:06d}.parquet"
            try:
                write_part(part, schema.to_table(self._rows, checked=True), self.manifest)
            except OSError as exc:  # the journal still holds every row; a resume seals it
                raise StoreError(self._cannot_write(part, exc)) from None
        os.close(self._fd)
        self._journal_path.unlink()
        self._rows = []
        self._seq += 1
        self._open_journal()

    def close(self, state: str) -> None:
        """Seal what is left, record the sweep's final state (complete, interrupted, failed), unlock.

        The lock goes even when sealing fails (a full disk): ``--resume`` then takes over.
        """
        try:
            self.seal()
            os.close(self._fd)
            self._journal_path.unlink()
            self.manifest["state"] = state
            self.manifest["finished_at"] = time.time()
            write_manifest(self.dir, self.manifest)
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
                rows = _read_journal(journal)
                if rows:
                    write_part(
                        self.dir / f"part-{file_seq(journal):06d}.parquet",
                        schema.to_table(rows, True),
                        self.manifest,
                    )
            journal.unlink()


def file_seq(path: Path) -> int:
    return int(path.stem.rsplit("-", 1)[1])


def part_files(sweep_dir: Path) -> list[Path]:
    return sorted(sweep_dir.glob("part-*.parquet"))


def journal_files(sweep_dir: Path) -> list[Path]:
    return sorted([*sweep_dir.glob(JOURNAL), *sweep_dir.glob(OLD_JOURNAL)], key=file_seq)


def write_part(path: Path, table: pa.Table, manifest: dict, merged_from: str | None = None) -> None:
    """Write rows as one Parquet part (atomically), tagged with the schema version and sweep id.

    ``merged_from``: the shard sweep whose rows these are (a merge), so a merge cut short is
    not merged twice when run again (``part_tag``).
    """
    tag = {"schema_version": schema.SCHEMA_VERSION, "sweep_id": manifest.get("sweep_id")}
    if merged_from is not None:
        tag["merged_from"] = merged_from
    table = table.replace_schema_metadata({b"conc_lab": json.dumps(tag)})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    write_atomic(path, sink.getvalue().to_pybytes())


def part_tag(path: Path) -> dict:
    """The conc_lab tag a part was written with (``write_part``); {} when it has none or is damaged."""
    try:
        meta = pq.read_schema(path).metadata or {}
        tag = json.loads(meta.get(b"conc_lab", b"{}"))
    except (pa.ArrowException, OSError, ValueError):
        return {}
    return tag if isinstance(tag, dict) else {}


def journal_entries(path: Path) -> Iterator[tuple[int, dict | str]]:
    """``(line number, row)`` for each whole line of a journal, ``(line number, problem)`` for a damaged one.

    Rows are checked against the schema (text made safe). A torn last line, with no newline
    after it, is a kill mid-write: that run was in flight, not finished; it is skipped.
    """
    lines = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield number, schema.check_row(json.loads(line))
        except json.JSONDecodeError as exc:
            if number < len(lines):  # else no newline after it: torn, not damaged
                yield number, f"corrupt line {number} (not JSON: {exc.msg})"
        except (ValueError, RecursionError) as exc:  # RowError, or bytes that are not UTF-8
            yield number, f"corrupt line {number} (not a result row: {exc})"


def _read_journal(path: Path) -> list[dict]:
    rows = []
    for _, entry in journal_entries(path):
        if isinstance(entry, str):
            raise StoreError(f"{path}: {entry}; `conclab check` lists all damage")
        rows.append(entry)
    return rows


@dataclass(frozen=True)
class SweepRows:
    """One sweep folder as read: its manifest, and its rows (sealed parts and unsealed journals)."""

    dir: Path
    manifest: dict
    table: pa.Table


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
    version = manifest.get("schema_version")
    if version != schema.SCHEMA_VERSION:
        raise StoreError(
            f"{sweep_dir}: schema version {version}, this conc_lab reads {schema.SCHEMA_VERSION}"
        )
    need = list(dict.fromkeys(["sweep_id", "trial_id", "repeat"] + list(columns or schema.COLUMNS)))
    wanted, need = need, list(dict.fromkeys(need + list(RUN_KEY)))
    parts = part_files(sweep_dir)
    tables = [read_part(p, need, where, manifest.get("sweep_id")) for p in parts]
    sealed = {file_seq(p) for p in parts}
    rows = [r for j in journal_files(sweep_dir) if file_seq(j) not in sealed for r in _read_journal(j)]
    if rows:
        table = schema.to_table(rows, checked=True).select(need)
        tables.append(table.filter(where) if where is not None else table)
    table = pa.concat_tables(tables) if tables else schema.SCHEMA.empty_table().select(need)
    return SweepRows(sweep_dir, manifest, _once_per_run(table, sweep_dir).select(wanted))


def read_part(part: Path, columns: list[str], where, sweep_id: str | None) -> pa.Table:
    try:
        table = ds.dataset(str(part), schema=schema.SCHEMA, format="parquet").to_table(
            columns=columns, filter=where
        )
    except (pa.ArrowException, OSError) as exc:
        if not part.exists():
            raise FileNotFoundError(part) from None
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreError(f"{part}: damaged Parquet part, cannot be read ({problem})") from None
    foreign = set(pc.unique(table["sweep_id"]).to_pylist()) - {sweep_id}
    if sweep_id is not None and foreign:
        raise StoreError(
            f"{part}: holds runs of sweep {sorted(foreign)[0]}, not of {sweep_id} (a copied file?)"
        )
    return table


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


def _once_per_run(table: pa.Table, sweep_dir: Path) -> pa.Table:
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
        stacklevel=5,  # the caller of load: _once_per_run < _read_sweep_once < read_sweep < load
    )
    return table.filter(pa.array([not d for d in doubled]))


def sweep_dirs(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Every sweep directory (one holding a manifest) at or under the given paths.

    Hidden folders (``.`` or ``_`` first, as Parquet readers skip them) are not searched. A
    folder holding result files but no manifest (deleted?) is a ``StoreError``: its runs
    would otherwise be left out in silence.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found = []
    for p in map(Path, paths):
        if not p.exists():
            raise StoreError(f"{p}: no such results directory")
        if is_sweep(p):
            found.append(p)
            continue
        orphans = orphan_dirs(p)
        if orphans:
            raise StoreError(
                f"{orphans[0]}: result files without a {MANIFEST} (deleted?); restore it, "
                "or move the folder out of the results directory"
            )
        found.extend(sweeps_below(p))
    return found


def sweeps_below(root: Path) -> list[Path]:
    """Sweep folders under ``root``, hidden folders left out."""
    return sorted({m.parent for name in (MANIFEST, OLD_MANIFEST) for m in visible_files(root, name)})


def visible_files(root: Path, pattern: str) -> Iterator[Path]:
    for f in root.rglob(pattern):
        if not any(part.startswith((".", "_")) for part in f.relative_to(root).parts[:-1]):
            yield f


def orphan_dirs(root: Path) -> list[Path]:
    """Folders under ``root`` that hold result files but no manifest."""
    found = {
        f.parent for pattern in ("part-*.parquet", JOURNAL, OLD_JOURNAL) for f in visible_files(root, pattern)
    }
    return sorted(d for d in found if not is_sweep(d))


def doubled_sweeps(manifests: dict[Path, dict]) -> dict[Path, str]:
    """Sweeps among ``manifests`` whose runs another of them holds too, each with the reason.

    A sweep folder copied whole (one sweep id twice). A shard run twice (same config, same
    ``K/N``): the complete one, else the latest, is kept. A shard beside the merged sweep that
    took it in (merged elsewhere, then copied back).
    """
    doubled: dict[Path, str] = {}
    by_id: dict[str, Path] = {}
    for d, m in sorted(manifests.items()):  # a sweep folder copied whole: its runs are the same runs
        first = by_id.setdefault(m.get("sweep_id"), d)
        if first != d and m.get("sweep_id") is not None:
            doubled[d] = f"a copy of sweep {m['sweep_id']}, also at {first}"
    merged_into = _merged_into(manifests)
    by_shard = defaultdict(list)
    for d, m in manifests.items():
        merged = merged_into.get(m.get("sweep_id")) or merged_into.get((m.get("fingerprint"), m.get("shard")))
        if d in doubled:
            continue
        if merged is not None and merged != d:
            doubled[d] = f"shard {m.get('shard')} is already in merged sweep {merged.name}"
        elif m.get("shard"):
            by_shard[(m.get("fingerprint"), m["shard"])].append(d)
    for (_, shard), dirs in by_shard.items():
        keep = max(
            dirs, key=lambda d: (manifests[d].get("state") == "complete", manifests[d].get("started_at") or 0)
        )
        doubled.update({d: f"shard {shard} was run twice; {keep.name} is kept" for d in dirs if d != keep})
    return doubled


def _merged_into(manifests: dict[Path, dict]) -> dict:
    """Merged sweeps by what they took in: a shard's sweep id, and (fingerprint, K/N)."""
    merged_into: dict = {}
    for d, m in manifests.items():
        for source in m.get("merged_from") or []:
            if isinstance(source, dict) and source.get("sweep_id"):
                merged_into[source["sweep_id"]] = d
                merged_into[(m.get("fingerprint"), source.get("shard"))] = d
    return merged_into


_KNOWN = (MANIFEST, OLD_MANIFEST, LOCK, "part-*.parquet", JOURNAL, OLD_JOURNAL, ".*.tmp")


def check_files(sweep_dir: Path) -> None:
    for f in sweep_dir.iterdir():
        if f.is_dir() and is_sweep(f):
            continue
        if not any(f.match(pattern) for pattern in _KNOWN):
            raise StoreError(f"{f}: not a conc_lab file; move it out of the results directory")


def remove_sweep(sweep_dir: Path) -> None:
    """Delete a sweep folder's own files, and the folder once empty (anything else stays)."""
    for f in sweep_dir.iterdir():
        if f.is_file() and any(f.match(pattern) for pattern in _KNOWN):
            f.unlink()
    if not any(sweep_dir.iterdir()):
        sweep_dir.rmdir()


def completed_runs(sweep_dir: str | os.PathLike) -> set[tuple[str, int]]:
    """(trial_id, repeat) of every run recorded in a sweep: what ``--resume`` skips.

    ``SweepBusy`` (naming its pid) while a live conclab writes the sweep: a resume is refused
    then, before it starts anything, not only when its writer would open the folder.
    """
    owner = live_owner(sweep_dir)
    if owner is not None:
        raise _busy(Path(sweep_dir), owner)
    table = read_sweep(sweep_dir, ["trial_id", "repeat", "status"]).table
    return {
        (t, r)
        for t, r, status in zip(
            table["trial_id"].to_pylist(), table["repeat"].to_pylist(), table["status"].to_pylist()
        )
        if status != schema.REDONE  # replaced by its redo, which may not have been recorded yet
    }


def latest_sweep(results_dir: str | os.PathLike, shard: str | None = None) -> Path | None:
    """The most recently started sweep under ``results/<name>`` (of that ``shard``, e.g. "3/10"), or None."""
    root = Path(results_dir)
    if not root.exists():
        return None
    orphans = orphan_dirs(root)
    if orphans:
        raise StoreError(
            f"{orphans[0]}: result files without a {MANIFEST} (deleted?); restore it, or move the "
            "folder out, before resuming"
        )
    manifests = {p: read_manifest(p) for p in root.iterdir() if is_sweep(p)}
    dirs = [p for p, m in manifests.items() if m.get("shard") == shard]
    return max(dirs, key=lambda p: manifests[p].get("started_at") or 0, default=None)


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
    tables = [r.table for r in reads]
    table = pa.concat_tables(tables) if tables else schema.SCHEMA.empty_table()
    df = table.select(wanted).to_pandas()
    if env and "sweep_id" in wanted:
        df = _join_environment(df, [r.manifest for r in reads])
    df = _with_dtypes(df)
    # what a summary of these rows should say too (e.g. merged shards that ran at different times)
    df.attrs["notes"] = [
        f"sweep {r.dir.name}: {note}" for r in reads for note in [timing_note(r.manifest)] if note
    ]
    return df


def timing_note(manifest: dict) -> str | None:
    """A note when a merged sweep's shards did not all run at once: their load differed.

    >>> timing_note({"merged_from": [{"shard": "1/2", "started_at": 0, "finished_at": 60},
    ...                              {"shard": "2/2", "started_at": 7200, "finished_at": 7260}]})
    'shards ran at different times (1/2 at 00:00-00:01 UTC, 2/2 at 02:00-02:01 UTC): speedups across them compare runs made under different load'
    """
    spans = [
        (src.get("shard"), src.get("started_at"), src.get("finished_at"))
        for src in manifest.get("merged_from") or []
        if isinstance(src, dict) and src.get("started_at") is not None and src.get("finished_at") is not None
    ]
    if len(spans) < 2 or max(s for _, s, _ in spans) <= min(f for _, _, f in spans):
        return None  # all ran at one moment, or nothing to tell

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


def _join_environment(df: pd.DataFrame, manifests: list[dict]) -> pd.DataFrame:
    envs = [{"sweep_id": m.get("sweep_id"), **(m.get("environment") or {})} for m in manifests]
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

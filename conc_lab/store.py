"""The result store: the only module that touches result files.

Layout of one sweep::

    results/<name>/<sweep_id>/
        manifest.json          config, its fingerprint, environment, state (running|complete|interrupted)
        part-000000.parquet    sealed batches of rows (written to a temp file, fsynced, renamed)
        journal-000001.jsonl   rows since the last seal, one JSON line each, written as each run ends

Every row reaches the journal with one ``write`` as soon as its run ends, so a killed
sweep (even ``kill -9``) loses at most the run in flight; rows are sealed into Parquet
in batches, which keeps the per-trial cost far below a Parquet file per row. A journal
whose part exists (a crash between rename and unlink) is ignored; a torn last line (a
crash mid-write) is dropped. ``load`` reads parts and journals alike.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from conc_lab import schema

MANIFEST = "manifest.json"
MIN_FREE_BYTES = 64 << 20
_FILE_MODE = 0o644
_DIR_MODE = 0o755


class StoreError(RuntimeError):
    """A results directory that cannot be written, or holds files conc_lab did not write."""


def new_sweep_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def preflight(out: str | os.PathLike) -> None:
    """Fail now, not after an hour, if results cannot be written under ``out``."""
    out = Path(out)
    try:
        make_dirs(out)
        probe = out / f".conclab-probe-{os.getpid()}"
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as exc:
        raise StoreError(f"{out}: results directory is not writable ({exc.strerror or exc})") from None
    free = shutil.disk_usage(out).free
    if free < MIN_FREE_BYTES:
        raise StoreError(f"{out}: only {free >> 20} MiB free; need at least {MIN_FREE_BYTES >> 20} MiB")


def make_dirs(path: Path) -> None:
    """``mkdir -p`` whose new folders are 0o755 whatever the umask: never world-writable."""
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=_DIR_MODE)
        except FileExistsError:  # made meanwhile by a sweep beside this one
            continue
        os.chmod(folder, _DIR_MODE)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a torn one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
    try:
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


def read_manifest(sweep_dir: str | os.PathLike) -> dict:
    path = Path(sweep_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: unreadable manifest ({exc})") from None


def write_manifest(sweep_dir: Path, manifest: dict) -> None:
    atomic_write_bytes(sweep_dir / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())


class SweepWriter:
    """Appends rows of one sweep as they come; seals them into Parquet parts in batches.

    >>> import tempfile
    >>> w = SweepWriter(Path(tempfile.mkdtemp()) / "demo" / "s1", {"sweep_id": "s1"})
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
            write_manifest(self.dir, self.manifest)
            self._seal_leftover_journals()
            self._seq = 1 + max([_seq(p) for p in self.dir.glob("part-*.parquet")] + [-1])
            self._rows: list[dict] = []
            self._open_journal()
        except OSError as exc:
            raise StoreError(self._cannot_write(self.dir, exc)) from None

    def _open_journal(self) -> None:
        self._journal_path = self.dir / f"journal-{self._seq:06d}.jsonl"
        self._fd = os.open(self._journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, _FILE_MODE)
        self._journal_size = os.fstat(self._fd).st_size
        self._last_seal = time.monotonic()

    def append(self, row: dict) -> None:
        """Record one finished run; it is on disk (in the kernel) when this returns.

        Raises ``StoreError`` when the row cannot be written (disk full): the journal is
        then cut back to its last whole row, so every row before this one stays readable.
        """
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
                _write_part(part, schema.to_table(self._rows), self.manifest)
            except OSError as exc:  # the journal still holds every row; a resume seals it
                raise StoreError(self._cannot_write(part, exc)) from None
        os.close(self._fd)
        self._journal_path.unlink()
        self._rows = []
        self._seq += 1
        self._open_journal()

    def close(self, state: str) -> None:
        """Seal what is left and record the sweep's final state (complete, interrupted, failed)."""
        self.seal()
        os.close(self._fd)
        self._journal_path.unlink()
        self.manifest["state"] = state
        self.manifest["finished_at"] = time.time()
        try:
            write_manifest(self.dir, self.manifest)
        except OSError as exc:
            raise StoreError(self._cannot_write(self.dir / MANIFEST, exc)) from None

    def _seal_leftover_journals(self) -> None:
        """A resumed sweep first turns what a killed run left in journals into parts.

        Temp files a killed run left before their rename are dropped: their rows are
        still in the journal, or (for the manifest) rewritten just now.
        """
        for tmp in self.dir.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        for journal in sorted(self.dir.glob("journal-*.jsonl")):
            part = self.dir / f"part-{_seq(journal):06d}.parquet"
            if not part.exists():
                rows = _read_journal(journal)
                if rows:
                    _write_part(part, schema.to_table(rows), self.manifest)
            journal.unlink()


def _seq(path: Path) -> int:
    return int(path.stem.split("-")[1])


def _write_part(path: Path, table: pa.Table, manifest: dict) -> None:
    meta = {
        b"conc_lab": json.dumps(
            {"schema_version": schema.SCHEMA_VERSION, "sweep_id": manifest.get("sweep_id")}
        )
    }
    table = table.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def _read_journal(path: Path) -> list[dict]:
    lines = path.read_bytes().split(b"\n")
    rows = []
    for i, line in enumerate(lines):
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            if i == len(lines) - 1:  # torn by a kill mid-write: that run was in flight, not finished
                break
            raise StoreError(f"{path}: corrupt line {i + 1}") from None
    return rows


def sweep_dirs(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Every sweep directory (one holding a manifest) at or under the given paths."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found = []
    for p in map(Path, paths):
        if not p.exists():
            raise StoreError(f"{p}: no such results directory")
        if (p / MANIFEST).exists():
            found.append(p)
        else:
            found.extend(sorted(m.parent for m in p.rglob(MANIFEST)))
    return found


_KNOWN = ("manifest.json", "part-*.parquet", "journal-*.jsonl", ".*.tmp")


def _check_files(sweep_dir: Path) -> None:
    for f in sweep_dir.iterdir():
        if f.is_dir() and (f / MANIFEST).exists():
            continue
        if not any(f.match(pattern) for pattern in _KNOWN):
            raise StoreError(f"{f}: not a conc_lab file; move it out of the results directory")


def completed_runs(sweep_dir: str | os.PathLike) -> set[tuple[str, int]]:
    """(trial_id, repeat) of every run recorded in a sweep: what ``--resume`` skips."""
    df = load(sweep_dir, columns=["trial_id", "repeat"], env=False)
    return set(zip(df["trial_id"], df["repeat"].astype(int)))


def latest_sweep(results_dir: str | os.PathLike, shard: str | None = None) -> Path | None:
    """The most recently started sweep under ``results/<name>`` (of that ``shard``, e.g. "3/10"), or None."""
    root = Path(results_dir)
    if not root.exists():
        return None
    dirs = [p for p in root.iterdir() if (p / MANIFEST).exists()]
    dirs = [p for p in dirs if read_manifest(p).get("shard") == shard]
    return max(dirs, key=lambda p: read_manifest(p).get("started_at", 0), default=None)


@dataclass(frozen=True)
class MergeResult:
    """What ``merge`` wrote: the merged sweep, its rows, and the shards it found or missed."""

    sweep_dir: Path
    rows: int
    shards: tuple[str, ...]  # e.g. ("1/3", "2/3")
    missing: tuple[str, ...]  # shards of the N that were not there
    removed: tuple[Path, ...]  # shard directories replaced by the merged sweep


def merge(results_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> MergeResult:  # noqa: C901 -- being split (#11)
    """Combine the shard sweeps of one config under ``results_dir`` into one sweep.

    ``results_dir`` is a config's folder (``results/cpu``) holding sweeps run with
    ``--shard K/N``, on one machine or many (copied together). Every shard must come from
    the same config (fingerprint) and no (trial, repeat) may appear twice. The merged sweep
    is written to ``out`` (default ``results_dir``) under a new sweep id, state ``complete``
    only when all N shards were there and complete (else ``partial``). Written in place,
    the shard directories are removed once the merged part is on disk and reads back whole,
    so ``load`` does not count their rows twice; with another ``out`` they are kept.

    >>> merge("results/cpu").shards  # doctest: +SKIP
    ('1/2', '2/2')
    """
    root = Path(results_dir)
    shards = []
    for d in sweep_dirs(root):
        m = read_manifest(d)
        if m.get("shard"):
            shards.append((d, m))
    if not shards:
        raise StoreError(f"{root}: no shard sweeps to merge (run: conclab sweep CONFIG --shard K/N)")
    fingerprints = {m.get("fingerprint") for _, m in shards}
    if len(fingerprints) > 1:
        raise StoreError(
            f"{root}: shards of different configs (fingerprints {sorted(map(str, fingerprints))})"
        )
    counts = {int(m["shard"].split("/")[1]) for _, m in shards}
    if len(counts) > 1:
        raise StoreError(f"{root}: shards of different splits ({sorted(m['shard'] for _, m in shards)})")
    seen: dict[str, Path] = {}
    for d, m in shards:
        if m["shard"] in seen:
            raise StoreError(
                f"{root}: shard {m['shard']} is there twice ({seen[m['shard']]} and {d}); remove one"
            )
        seen[m["shard"]] = d
    n = counts.pop()
    shards.sort(key=lambda dm: int(dm[1]["shard"].split("/")[0]))
    tables = []
    for d, _ in shards:
        _check_files(d)
        parts = sorted(d.glob("part-*.parquet"))
        if parts:
            tables.append(
                ds.dataset([str(p) for p in parts], schema=schema.SCHEMA, format="parquet").to_table()
            )
        sealed = {_seq(p) for p in parts}
        rows = [
            r for j in sorted(d.glob("journal-*.jsonl")) if _seq(j) not in sealed for r in _read_journal(j)
        ]
        if rows:
            tables.append(schema.to_table(rows))
    table = pa.concat_tables(tables) if tables else schema.SCHEMA.empty_table()
    keys = set()
    for trial_id, repeat in zip(table["trial_id"].to_pylist(), table["repeat"].to_pylist()):
        if (trial_id, repeat) in keys:
            raise StoreError(f"{root}: trial {trial_id} repeat {repeat} is in more than one shard")
        keys.add((trial_id, repeat))
    sweep_id = new_sweep_id()
    table = table.set_column(
        table.schema.get_field_index("sweep_id"), "sweep_id", pa.array([sweep_id] * len(table), pa.string())
    )
    labels = tuple(m["shard"] for _, m in shards)
    missing = tuple(f"{k}/{n}" for k in range(1, n + 1) if f"{k}/{n}" not in labels)
    first = shards[0][1]
    complete = not missing and all(m.get("state") == "complete" for _, m in shards)
    manifest = dict(
        first,
        sweep_id=sweep_id,
        shard=None,
        started_at=min(m.get("started_at", 0) for _, m in shards),
        finished_at=max(m.get("finished_at", 0) or 0 for _, m in shards),
        state="complete" if complete else "partial",
        schema_version=schema.SCHEMA_VERSION,
        merged_from=[
            {"sweep_id": m.get("sweep_id"), "shard": m["shard"], "state": m.get("state"), "dir": str(d)}
            for d, m in shards
        ],
    )
    dest = Path(out) if out is not None else root
    merged_dir = dest / sweep_id
    make_dirs(merged_dir)
    _write_part(merged_dir / "part-000000.parquet", table, manifest)
    write_manifest(merged_dir, manifest)
    if len(load(merged_dir, columns=["trial_id"], env=False)) != len(table):
        raise StoreError(f"{merged_dir}: the merged sweep does not read back whole; shards left in place")
    removed = []
    if dest.resolve() == root.resolve():
        for d, _ in shards:
            for f in d.iterdir():
                if f.is_file() and any(f.match(pattern) for pattern in _KNOWN):
                    f.unlink()
            if not any(d.iterdir()):
                d.rmdir()
            removed.append(d)
    return MergeResult(merged_dir, len(table), labels, missing, tuple(removed))


_CATEGORICAL = ("sweep_name", "workload", "backend", "start_method", "python", "affinity", "status")


def load(  # noqa: C901 -- being split (#11)
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    columns: list[str] | None = None,
    env: bool = True,
    **filters,
) -> pd.DataFrame:
    """Every recorded run under ``paths`` (a sweep, a sweep name's folder, many), as a DataFrame.

    ``filters`` select rows before they are read (pushed down to Parquet): a value matches
    by equality, a list or tuple by membership. With ``env`` the sweep-level environment
    (``schema.ENV_COLUMNS``) is joined as columns.

    >>> df = load("results/smoke", backend=["threading", "sequential"])  # doctest: +SKIP
    """
    unknown = set(filters) - set(schema.COLUMNS)
    if unknown:
        raise ValueError(f"cannot filter on unknown columns {sorted(unknown)}")
    read_cols = list(columns) if columns else list(schema.COLUMNS)
    need = list(dict.fromkeys(read_cols + list(filters) + ["sweep_id"]))
    expr = None
    for col, value in filters.items():
        e = (
            ds.field(col).isin(list(value))
            if isinstance(value, (list, tuple, set))
            else ds.field(col) == value
        )
        expr = e if expr is None else expr & e
    tables, envs = [], []
    for sweep_dir in sweep_dirs(paths):
        _check_files(sweep_dir)
        manifest = read_manifest(sweep_dir)
        version = manifest.get("schema_version")
        if version != schema.SCHEMA_VERSION:
            raise StoreError(
                f"{sweep_dir}: schema version {version}, this conc_lab reads {schema.SCHEMA_VERSION}"
            )
        parts = sorted(sweep_dir.glob("part-*.parquet"))
        if parts:
            try:
                dataset = ds.dataset([str(p) for p in parts], schema=schema.SCHEMA, format="parquet")
                tables.append(dataset.to_table(columns=need, filter=expr))
            except (pa.ArrowInvalid, OSError) as exc:
                raise StoreError(f"{sweep_dir}: corrupt Parquet part ({exc})") from None
        sealed = {_seq(p) for p in parts}
        journal_rows = [
            row
            for j in sorted(sweep_dir.glob("journal-*.jsonl"))
            if _seq(j) not in sealed
            for row in _read_journal(j)
        ]
        if journal_rows:
            table = schema.to_table(journal_rows).select(need)
            tables.append(table.filter(expr) if expr is not None else table)
        envs.append({"sweep_id": manifest.get("sweep_id"), **(manifest.get("environment") or {})})
    if tables:
        df = pa.concat_tables(tables).to_pandas()
    else:
        df = schema.SCHEMA.empty_table().select(need).to_pandas()
    df = df[[c for c in need if c in read_cols or c == "sweep_id"]]
    if columns and "sweep_id" not in columns:
        df = df.drop(columns="sweep_id")
    for col in _CATEGORICAL:
        if col in df:
            df[col] = df[col].astype("category")
    if env and envs and "sweep_id" in df:
        env_df = pd.DataFrame(envs)[["sweep_id"] + [c for c in schema.ENV_COLUMNS if c in envs[0]]]
        df = df.merge(env_df.drop_duplicates("sweep_id"), on="sweep_id", how="left")
    return df

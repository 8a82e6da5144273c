"""Where a sweep's files live, and writing them safely: the names, the errors, atomic writes.

Layout of one sweep::

    results/<name>/<sweep_id>/
        _manifest.json            config, its fingerprint, environment, state (``manifest.SweepState``)
        part-000000.<sha>.parquet sealed batches of rows (temp file, fsynced, renamed); ``<sha>``
                                  is the start of the file's sha256, checked on every read;
                                  ``_part-...`` while a complete run of the same shard stands
                                  beside this one, unfinished (``writer.SweepWriter``)
        _journal-000001.jsonl     rows since the last seal, one line each (sha256 start, JSON), written
                                  as each run ends
        .lock                     held (flock) by the one conclab writing the sweep

Everything but the parts starts with ``_`` or ``.``, which Parquet readers skip: pandas,
pyarrow.dataset, polars and duckdb read ``results/<name>`` directly (sealed rows only).
Stores written before (``manifest.json``, ``journal-*.jsonl``, parts without a checksum in
their name) are read as they are, and take the new names when resumed.

The store never follows a symbolic link where it writes: a ``.lock``, journal or temp file
that is a link is refused (``O_NOFOLLOW``), so a link planted there cannot make a sweep
truncate a file outside the store.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

MANIFEST = "_manifest.json"
#: The names before plain Parquet readers were considered: still read, and renamed on resume.
OLD_MANIFEST, OLD_JOURNAL = "manifest.json", "journal-*.jsonl"
JOURNAL = "_journal-*.jsonl"
PARTS = "part-*.parquet"
#: The parts of a shard run again while an earlier complete run of it stands beside it: hidden from
#: plain Parquet readers (``load`` counts the complete run until this one completes, and so do they).
HIDDEN_PARTS = "_part-*.parquet"
LOCK = ".lock"  # hidden: plain Parquet readers skip it
#: A sweep replaced by a later run of the same shard: hidden, so plain readers skip it as load does.
REPLACED = "_replaced-"
MIN_FREE_BYTES = 64 << 20
#: Hex digits of a part's sha256 kept in its name (128 bits: no damage goes unseen by chance).
CHECKSUM_DIGITS = 32
FILE_MODE = 0o644
DIR_MODE = 0o755
#: Open flags for every file the store writes: a symlink in its place is an error, not followed.
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
KNOWN = (MANIFEST, OLD_MANIFEST, LOCK, PARTS, HIDDEN_PARTS, JOURNAL, OLD_JOURNAL, ".*.tmp")


class StoreError(RuntimeError):
    """A results directory that cannot be written, or holds files conc_lab did not write."""


class SweepBusy(StoreError):
    """The sweep folder is held by a live conclab: two writers would corrupt each other's rows."""


class StoreWarning(UserWarning):
    """Something read that conc_lab repaired in what it returns (a run stored twice, counted once)."""


def new_sweep_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def preflight(out: str | os.PathLike, name: str = "") -> None:
    """Fail now, not after an hour, if results cannot be written under ``out``.

    ``name``: the sweep's, for the check that its files' paths under ``out`` stay within the
    system's limit (``PATH_MAX``).

    The folders it makes to find out are removed again: a sweep refused later (an unreachable
    cluster, a config error) leaves nothing behind; the sweep's writer makes them for good.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "results"
    >>> preflight(out); out.exists()
    False
    """
    out = Path(out)
    _check_length(out, name)
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


#: Bytes a sweep adds under ``out/<name>`` at most: its folder (``/_replaced-<sweep id>``, a shard
#: run again; ``/.merging-merged-<N>-<12 hex>``, a merge), then its longest file name, a hidden
#: part's temp file (``/._part-000000.<sha>.parquet.<pid>.tmp``, a pid of up to 7 digits).
SWEEP_PATH_BYTES = 40 + len("/._part-000000.") + CHECKSUM_DIGITS + len(".parquet.") + 7 + len(".tmp")


def _check_length(out: Path, name: str) -> None:
    """``StoreError`` when the paths of a sweep's files under ``out`` would pass ``PATH_MAX``.

    Refused before anything is written or run: past the limit, the first seal fails after the
    runs, leaving a manifest and a journal no ``--resume`` can finish.
    """
    folder = out.absolute()
    while not os.path.exists(folder) and folder.parent != folder:  # no OSError for a path too long
        folder = folder.parent
    try:
        limit = os.pathconf(folder, "PC_PATH_MAX") - 1  # it counts the closing NUL
    except (OSError, ValueError):
        limit = 4095
    length = len(os.fsencode(out))
    need = length + 1 + len(os.fsencode(name)) + SWEEP_PATH_BYTES
    if need > limit:
        raise StoreError(
            f"{out}: too long a results path ({length} bytes): a sweep's files under it take paths of up "
            f"to {need} bytes, past this system's limit of {limit} bytes; give a shorter --out"
        )


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
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made meanwhile by a sweep beside this one
            continue
        os.chmod(folder, DIR_MODE)
        made.append(folder)
    return made


def open_new(path: Path, flags: int) -> int:
    """``os.open`` for writing a store file, refusing a symlink at ``path`` with one clear line."""
    try:
        return os.open(path, flags | NOFOLLOW, FILE_MODE)
    except OSError:
        if os.path.islink(path):
            raise StoreError(
                f"{path}: is a symbolic link (to {os.readlink(path)}); conc_lab writes no file through "
                "a link; remove it"
            ) from None
        raise


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a torn one.

    The bytes go to a hidden temp file beside ``path`` (mode 0644, fsynced, never through a
    symlink), which is renamed over ``path``; the folder is fsynced so the rename survives a
    power cut too.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "report.html"
    >>> write_atomic(target, b"<html></html>")
    >>> target.read_bytes(), oct(target.stat().st_mode & 0o777)
    (b'<html></html>', '0o644')
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # left by a killed process of the same pid; O_EXCL then makes sure of a new file
    fd = open_new(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        os.fchmod(fd, FILE_MODE)  # whatever the umask: results are readable by the group's tools
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)  # a full disk must not also keep the half-written file
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is out: a write can be short when the disk fills."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def file_seq(path: Path) -> int:
    """The sequence number in a part's or journal's name: ``part-000007.<sha>.parquet`` -> 7."""
    return int(path.name.split(".", 1)[0].rsplit("-", 1)[1])


def part_files(sweep_dir: Path) -> list[Path]:
    """Every part of a sweep, hidden ones too (``HIDDEN_PARTS``), in the order they were sealed."""
    found = [*sweep_dir.glob(PARTS), *sweep_dir.glob(HIDDEN_PARTS)]
    return sorted(found, key=lambda p: (file_seq(p), p.name))


def part_name(part: Path) -> str:
    """A part's name as its manifest records it: hidden or not (``_part-...``), ``part-...``."""
    return part.name[1:] if part.name.startswith("_") else part.name


def journal_files(sweep_dir: Path) -> list[Path]:
    return sorted([*sweep_dir.glob(JOURNAL), *sweep_dir.glob(OLD_JOURNAL)], key=file_seq)


def manifest_path(sweep_dir: str | os.PathLike) -> Path:
    """The sweep's manifest file: ``_manifest.json``, or ``manifest.json`` in a store from before."""
    path = Path(sweep_dir) / MANIFEST
    old = path.with_name(OLD_MANIFEST)
    return old if not path.exists() and old.exists() else path


def is_sweep(folder: Path) -> bool:
    return (folder / MANIFEST).exists() or (folder / OLD_MANIFEST).exists()


def sweep_dirs(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Every sweep directory (one holding a manifest) at or under the given paths.

    Hidden folders (``.`` or ``_`` first, as Parquet readers skip them) are not searched. A
    folder holding result files but no manifest (deleted?) is a ``StoreError``: its runs
    would otherwise be left out in silence. So is a sweep folder that is a symbolic link
    below a results folder (readers do not follow links): load it by its own path. A folder
    reached through two of ``paths`` is listed once.
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
        links = linked_sweeps(p)
        if links:
            raise StoreError(
                f"{links[0]}: a sweep folder that is a symbolic link (to {os.readlink(links[0])}); "
                "its runs would be missed by Parquet readers: move the folder in, or load it by its own path"
            )
        found.extend(sweeps_below(p))
    return _each_once(found)


def _each_once(dirs: list[Path]) -> list[Path]:
    """``dirs`` with a folder named twice (``results results/smoke``, ``./x`` and ``x``) kept once:
    the same folder holds the same runs, and reading it twice would count every run twice."""
    seen: dict[Path, Path] = {}
    for d in dirs:
        seen.setdefault(d.resolve(), d)
    return list(seen.values())


def sweeps_below(root: Path) -> list[Path]:
    """Sweep folders under ``root``, hidden folders left out."""
    return sorted({m.parent for name in (MANIFEST, OLD_MANIFEST) for m in visible_files(root, name)})


def linked_sweeps(root: Path) -> list[Path]:
    """Sweep folders under ``root`` reached only through a symbolic link (``rglob`` skips them)."""
    found = []
    for folder, dirs, _ in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
        for d in dirs:
            path = Path(folder) / d
            if path.is_symlink() and is_sweep(path):
                found.append(path)
    return sorted(found)


def visible_files(root: Path, pattern: str) -> Iterator[Path]:
    for f in root.rglob(pattern):
        if not any(part.startswith((".", "_")) for part in f.relative_to(root).parts[:-1]):
            yield f


def orphan_dirs(root: Path) -> list[Path]:
    """Folders under ``root`` that hold result files but no manifest."""
    patterns = (PARTS, HIDDEN_PARTS, JOURNAL, OLD_JOURNAL)
    found = {f.parent for pattern in patterns for f in visible_files(root, pattern)}
    return sorted(d for d in found if not is_sweep(d))


def check_files(sweep_dir: Path) -> None:
    for f in sweep_dir.iterdir():
        if f.is_dir() and is_sweep(f):
            continue
        if not any(f.match(pattern) for pattern in KNOWN):
            raise StoreError(f"{f}: not a conc_lab file; move it out of the results directory")


def remove_sweep(sweep_dir: Path) -> None:
    """Delete a sweep folder's own files, and the folder once empty (anything else stays)."""
    for f in sweep_dir.iterdir():
        if f.is_file() and any(f.match(pattern) for pattern in KNOWN):
            f.unlink()
    if not any(sweep_dir.iterdir()):
        sweep_dir.rmdir()

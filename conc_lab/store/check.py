"""``conclab check``: every damaged file and every run stored twice in a results folder.

``load`` stops at the first damaged file (naming it); ``check`` goes on and lists them all,
so a user sees the whole state of a folder copied from a cluster before trusting it. Every
byte of every part is read and checked (its sha256 and page checksums), and runs are counted
as ``load`` counts them: a run stored twice, once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from conc_lab import schema
from conc_lab.store.layout import (
    MANIFEST,
    REPLACED,
    StoreError,
    check_files,
    file_seq,
    is_sweep,
    journal_files,
    linked_sweeps,
    manifest_path,
    orphan_dirs,
    part_files,
    sweeps_below,
)
from conc_lab.store.lock import is_live
from conc_lab.store.manifest import Manifest, SweepState, read_manifest, state_note
from conc_lab.store.reader import (
    committed,
    doubled_sweeps,
    journal_entries,
    lost_line,
    lost_parts,
    read_part,
    run_keys,
)


@dataclass
class CheckReport:
    """What ``check`` found: sweeps and runs read, problems (damage, duplicates), and notes."""

    sweeps: int = 0
    runs: int = 0  # counted as load counts them: a run stored twice, once
    problems: list[str] = field(default_factory=list)  # each one line, naming a file or folder
    notes: list[str] = field(default_factory=list)  # worth knowing, not damage (a killed sweep)
    missing: list[Path] = field(default_factory=list)  # paths given that do not exist
    not_folders: list[Path] = field(default_factory=list)  # paths given that are files
    empty: list[Path] = field(default_factory=list)  # folders given with no sweep in them or below

    @property
    def ok(self) -> bool:
        return not self.problems and not self.missing and not self.not_folders and not self.empty


def check(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> CheckReport:
    """Read every file of every sweep under ``paths`` and report all damage and duplicates.

    A path that is a file (``not_folders``) or a folder with no sweep in it or below (``empty``)
    is not ``ok``: there is nothing there to call whole.

    >>> check("no/such/folder").missing
    [PosixPath('no/such/folder')]
    """
    report = CheckReport()
    roots = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    manifests: dict[Path, Manifest] = {}
    runs: dict[Path, int] = {}
    for root in roots:
        if not root.exists():
            report.missing.append(root)
            continue
        if not root.is_dir():
            report.not_folders.append(root)
            continue
        told = len(report.problems) + len(report.notes)
        for d in orphan_dirs(root):
            report.problems.append(f"{d}: result files without a {MANIFEST} (deleted?)")
        _note_hidden(root, report)
        dirs = [root] if is_sweep(root) else sweeps_below(root)
        if not dirs and len(report.problems) + len(report.notes) == told:
            report.empty.append(root)  # nothing there to call whole: a wrong path, or a copy that failed
        for d in dirs:
            if any(d.resolve() == seen.resolve() for seen in runs):
                continue  # a folder reached through two of the paths is checked, and counted, once
            manifest, runs[d] = _check_sweep(d, report)
            if manifest is not None:
                manifests[d] = manifest
    doubled = doubled_sweeps(manifests)
    for d, why in doubled.items():
        report.problems.append(f"{d}: runs counted twice: {why}; load counts it once, move one away")
    report.runs = sum(n for d, n in runs.items() if d not in doubled)
    return report


def _note_hidden(root: Path, report: CheckReport) -> None:
    """Notes for what readers skip on purpose: a merge cut short, replaced shard runs, linked sweeps."""
    for d in sorted(root.glob("**/.merging-*")):  # readers skip it; only disk space is lost
        report.notes.append(f"{d}: left by a merge cut short, read by no one; merge again, or delete it")
    for d in sorted(root.glob(f"**/{REPLACED}*")):
        report.notes.append(
            f"{d}: an earlier run of a shard run again, read by no one; delete it to free space"
        )
    for d in linked_sweeps(root):
        report.problems.append(
            f"{d}: a sweep folder that is a symbolic link (to {os.readlink(d)}), skipped by readers; "
            "move the folder in, or check it by its own path"
        )


def _check_sweep(sweep_dir: Path, report: CheckReport) -> tuple[Manifest | None, int]:
    """Check one sweep folder into ``report``: its manifest (None when damaged), and its runs."""
    report.sweeps += 1
    try:
        check_files(sweep_dir)
    except StoreError as exc:
        report.problems.append(str(exc))
    try:
        manifest = read_manifest(sweep_dir)
    except StoreError as exc:
        report.problems.append(str(exc))
        return None, 0
    if manifest.schema_version != schema.SCHEMA_VERSION:
        report.problems.append(
            f"{manifest_path(sweep_dir)}: schema version {manifest.schema_version}, "
            f"this conc_lab reads {schema.SCHEMA_VERSION}"
        )
        return manifest, 0
    seen: dict[tuple[str, int], Path] = {}
    runs = [0]
    journals = journal_files(sweep_dir)
    parts = part_files(sweep_dir)
    for part in parts:
        try:
            read = read_part(part, None, None, manifest.sweep_id)  # every column: every byte checked
        except (StoreError, FileNotFoundError) as exc:
            report.problems.append(str(exc))
            continue
        if not committed(read, manifest):
            report.notes.append(f"{part}: written by a merge cut short, not counted; merge again")
            continue
        _count(run_keys(read.table), part, seen, report, runs)
    _check_parts(sweep_dir, manifest, parts, report)
    sealed = {file_seq(p) for p in parts}
    for journal in journals:
        if file_seq(journal) not in sealed:
            _check_journal(journal, seen, report, runs, manifest.sweep_id)
    if manifest.state is SweepState.RUNNING and not is_live(sweep_dir):
        report.notes.append(
            f"{sweep_dir}: state running, but no conclab is writing it (killed?); --resume continues it"
        )
    elif manifest.state not in (SweepState.COMPLETE, SweepState.RUNNING):  # whole files, not a whole sweep
        report.notes.append(f"{sweep_dir}: {runs[0]} runs, {state_note(manifest)}")
    return manifest, runs[0]


def _check_parts(sweep_dir: Path, manifest: Manifest, parts: list[Path], report: CheckReport) -> None:
    """A part the manifest records that is not on disk is named; a manifest from before cannot tell."""
    if manifest.parts is None:
        report.notes.append(
            f"{manifest_path(sweep_dir)}: written by an older conc_lab, it does not record its parts: "
            "a deleted part cannot be found"
        )
    for name, rows in lost_parts(manifest, parts).items():
        report.problems.append(lost_line(sweep_dir, manifest, name, rows))


def _check_journal(journal: Path, seen: dict, report: CheckReport, runs: list[int], sweep_id: str) -> None:
    keys = []
    try:
        for _, entry in journal_entries(journal, sweep_id=sweep_id):
            if isinstance(entry, str):
                report.problems.append(f"{journal}: {entry}")
            else:
                redone = entry.get("status") == schema.REDONE  # several per repeat, told apart by start
                keys.append((entry["trial_id"], entry["repeat"], entry.get("started_at") if redone else None))
    except OSError as exc:
        report.problems.append(f"{journal}: unreadable ({exc.strerror or exc})")
    _count(keys, journal, seen, report, runs)


def _count(keys: Iterable[tuple], path: Path, seen: dict, report: CheckReport, runs: list[int]) -> None:
    """Count runs; a (trial, repeat) already seen in this sweep is named once per file holding it."""
    doubled: dict[Path, int] = {}
    for key in keys:
        if key in seen:
            doubled[seen[key]] = doubled.get(seen[key], 0) + 1
        else:
            seen[key] = path
            runs[0] += 1
    for first, n in doubled.items():
        report.problems.append(f"{path}: {n} runs stored twice, also in {first.name} (a copied file?)")

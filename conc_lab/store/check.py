"""``conclab check``: every damaged file and every run stored twice in a results folder.

``load`` stops at the first damaged file (naming it); ``check`` goes on and lists them all,
so a user sees the whole state of a folder copied from a cluster before trusting it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from conc_lab import schema
from conc_lab.store.core import (
    MANIFEST,
    RUN_KEY,
    StoreError,
    check_files,
    doubled_sweeps,
    file_seq,
    is_live,
    is_sweep,
    journal_entries,
    journal_files,
    manifest_path,
    orphan_dirs,
    part_files,
    read_manifest,
    read_part,
    run_keys,
    sweeps_below,
)


@dataclass
class CheckReport:
    """What ``check`` found: sweeps and runs read, problems (damage, duplicates), and notes."""

    sweeps: int = 0
    runs: int = 0
    problems: list[str] = field(default_factory=list)  # each one line, naming a file or folder
    notes: list[str] = field(default_factory=list)  # worth knowing, not damage (a killed sweep)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> CheckReport:
    """Read every file of every sweep under ``paths`` and report all damage and duplicates.

    >>> check("results/smoke").ok  # doctest: +SKIP
    True
    """
    report = CheckReport()
    roots = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    manifests: dict[Path, dict] = {}
    for root in roots:
        if not root.exists():
            report.problems.append(f"{root}: no such results directory")
            continue
        for d in orphan_dirs(root):
            report.problems.append(f"{d}: result files without a {MANIFEST} (deleted?)")
        for d in sorted(root.glob("**/.merging-*")):  # readers skip it; only disk space is lost
            report.notes.append(f"{d}: left by a merge cut short, read by no one; delete it")
        dirs = [root] if is_sweep(root) else sweeps_below(root)
        for d in dirs:
            manifest = _check_sweep(d, report)
            if manifest is not None:
                manifests[d] = manifest
    for d, why in doubled_sweeps(manifests).items():
        report.problems.append(f"{d}: runs counted twice: {why}; load counts it once, move one away")
    return report


def _check_sweep(sweep_dir: Path, report: CheckReport) -> dict | None:
    """Check one sweep folder into ``report``; its manifest, or None when that is damaged."""
    report.sweeps += 1
    try:
        check_files(sweep_dir)
    except StoreError as exc:
        report.problems.append(str(exc))
    try:
        manifest = read_manifest(sweep_dir)
    except StoreError as exc:
        report.problems.append(str(exc))
        return None
    if manifest.get("schema_version") != schema.SCHEMA_VERSION:
        report.problems.append(
            f"{manifest_path(sweep_dir)}: schema version {manifest.get('schema_version')}, "
            f"this conc_lab reads {schema.SCHEMA_VERSION}"
        )
        return manifest
    seen: dict[tuple[str, int], Path] = {}
    parts = part_files(sweep_dir)
    for part in parts:
        try:
            table = read_part(part, ["sweep_id", *RUN_KEY], None, manifest.get("sweep_id"))
        except (StoreError, FileNotFoundError) as exc:
            report.problems.append(str(exc))
            continue
        _count(run_keys(table), part, seen, report)
    sealed = {file_seq(p) for p in parts}
    for journal in journal_files(sweep_dir):
        if file_seq(journal) not in sealed:
            _check_journal(journal, seen, report)
    if manifest.get("state") == "running" and not is_live(sweep_dir):
        report.notes.append(
            f"{sweep_dir}: state running, but no conclab is writing it (killed?); --resume continues it"
        )
    return manifest


def _check_journal(journal: Path, seen: dict, report: CheckReport) -> None:
    keys = []
    try:
        for _, entry in journal_entries(journal):
            if isinstance(entry, str):
                report.problems.append(f"{journal}: {entry}")
            else:
                redone = entry.get("status") == schema.REDONE  # several per repeat, told apart by start
                keys.append((entry["trial_id"], entry["repeat"], entry.get("started_at") if redone else None))
    except OSError as exc:
        report.problems.append(f"{journal}: unreadable ({exc.strerror or exc})")
    _count(keys, journal, seen, report)


def _count(keys: Iterable[tuple[str, int]], path: Path, seen: dict, report: CheckReport) -> None:
    """Count runs; a (trial, repeat) already seen in this sweep is named once per file holding it."""
    doubled: dict[Path, int] = {}
    for key in keys:
        if key in seen:
            doubled[seen[key]] = doubled.get(seen[key], 0) + 1
        else:
            seen[key] = path
            report.runs += 1
    for first, n in doubled.items():
        report.problems.append(f"{path}: {n} runs stored twice, also in {first.name} (a copied file?)")

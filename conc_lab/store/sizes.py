"""Sizes calibrated once for every sweep of a config: ``results/<name>/_sizes.json``.

``size: auto`` calibrates before a sweep runs, on the machine it runs on. Shards of one sweep
(a SLURM array) would each calibrate on their own and may choose different sizes, which
``merge`` then refuses. ``conclab calibrate CONFIG`` calibrates once and writes the sizes
here; every sweep of that config under the same results folder (each shard, a resume, a
plain sweep) reads them instead of calibrating. The file is hidden (``_`` first), so
Parquet readers skip it, and is tied to the config's fingerprint: a changed config
calibrates again.

>>> import tempfile
>>> out = Path(tempfile.mkdtemp())
>>> path = write_sizes(out, "cpu", SharedSizes("f00d", {"m:f": 4096}, calibrated_at=0.0, hostname="n1"))
>>> path.name, read_sizes(out, "cpu").sizes
('_sizes.json', {'m:f': 4096})
>>> read_sizes(out, "other") is None
True
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from conc_lab.store.layout import StoreError, make_dirs, write_atomic

SIZES = "_sizes.json"


@dataclass(frozen=True)
class SharedSizes:
    """The sizes ``conclab calibrate`` chose for a config's ``size: auto`` workloads."""

    fingerprint: str  # the config's: sizes for another config are not used
    sizes: Mapping[str, int] = field(default_factory=dict)  # workload -> size
    calibrated_at: float | None = None  # time.time() when it was calibrated
    hostname: str | None = None  # the machine it was calibrated on

    def to_json(self) -> dict:
        return {
            "fingerprint": self.fingerprint,
            "sizes": dict(self.sizes),
            "calibrated_at": self.calibrated_at,
            "hostname": self.hostname,
        }


def sizes_path(out: str | os.PathLike, name: str) -> Path:
    return Path(out) / name / SIZES


def write_sizes(out: str | os.PathLike, name: str, shared: SharedSizes) -> Path:
    """Write ``shared`` for config ``name`` under ``out`` (atomically); returns the file."""
    path = sizes_path(out, name)
    try:
        make_dirs(path.parent)
        write_atomic(path, json.dumps(shared.to_json(), indent=1, sort_keys=True).encode())
    except OSError as exc:
        raise StoreError(f"{path}: cannot write calibrated sizes ({exc.strerror or exc})") from None
    return path


def read_sizes(out: str | os.PathLike, name: str) -> SharedSizes | None:
    """The sizes calibrated for config ``name`` under ``out``; None when there are none.

    A damaged file is a ``StoreError`` naming it: a sweep must not calibrate anew in silence
    while its shards beside it read sizes.
    """
    path = sizes_path(out, name)
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:
        raise StoreError(f"{path}: damaged calibrated sizes ({exc}); run conclab calibrate again") from None
    sizes = doc.get("sizes") if isinstance(doc, dict) else None
    ok = isinstance(sizes, dict) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes.values()
    )
    if not ok or not isinstance(doc.get("fingerprint"), str):
        raise StoreError(
            f"{path}: damaged calibrated sizes (want a fingerprint and sizes of whole numbers); "
            "run conclab calibrate again"
        )
    at = doc.get("calibrated_at")
    host = doc.get("hostname")
    return SharedSizes(
        doc["fingerprint"],
        dict(sizes),
        at if isinstance(at, (int, float)) and not isinstance(at, bool) else None,
        host if isinstance(host, str) else None,
    )

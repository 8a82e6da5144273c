"""A sweep's manifest: one typed, frozen record, checked whenever it is read.

``_manifest.json`` holds what a sweep is (its config and fingerprint, environment, shard)
and how far it got (``SweepState``). It is read as a ``Manifest``; a file of the wrong shape
is one ``StoreError`` naming the file and the key, never a traceback later. Keys this
conc_lab does not know are kept as they are (``extra``) and written back.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conc_lab import schema
from conc_lab.store.layout import MANIFEST, OLD_MANIFEST, StoreError, manifest_path, write_atomic
from conc_lab.store.lock import is_live


class SweepState(str, enum.Enum):
    """How far a sweep got, as its manifest's ``state`` says (the one place these are told).

    - ``running``: being written, or its writer was killed (no live ``.lock`` owner):
      ``--resume`` continues it;
    - ``complete``: every planned run was recorded;
    - ``interrupted``: stopped by Ctrl-C or SIGTERM; ``--resume`` continues it;
    - ``stopped``: stopped early on purpose (``--fail-fast``, a stop rule); ``--resume`` continues it;
    - ``partial``: a merged sweep still missing shards; merging again completes it.
    """

    RUNNING = "running"
    COMPLETE = "complete"
    INTERRUPTED = "interrupted"
    STOPPED = "stopped"
    PARTIAL = "partial"

    def __str__(self) -> str:  # "complete" in messages, not "SweepState.COMPLETE"
        return self.value

    __format__ = str.__format__


_SHARD = re.compile(r"[1-9][0-9]{0,8}/[1-9][0-9]{0,8}")
_PART = re.compile(r"part-[0-9]+(\.[0-9a-f]+)?\.parquet")  # as ``writer.write_part`` names it


def _safe_component(value: str) -> str | None:
    """Why ``value`` cannot be one folder name (it would leave the folder it is joined to), or None."""
    if not value or value in (".", "..") or any(c in value for c in "/\\\0"):
        return f"{value!r} is not a plain folder name"
    return None


def _is_count(value: object, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_share(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1


def _shard_problem(value: str) -> str | None:
    if not _SHARD.fullmatch(value) or int(value.split("/")[0]) > int(value.split("/")[1]):
        return f"{value!r} is not K/N with 1 <= K <= N"
    return None


@dataclass(frozen=True)
class MergedShard:
    """One shard a merged sweep took in (the manifest's ``merged_from`` entries)."""

    sweep_id: str
    shard: str
    state: str | None = None
    dir: str | None = None
    started_at: float | None = None
    finished_at: float | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Manifest:
    """What a sweep is and how far it got; read and written as ``_manifest.json``.

    >>> m = Manifest(sweep_id="s1", name="demo", shard="2/4")
    >>> m.state, m.split_n, Manifest.from_json(m.to_json(), "x").shard
    (<SweepState.RUNNING: 'running'>, 4, '2/4')
    >>> Manifest.from_json({"sweep_id": "s1", "name": "../../x"}, "m.json")
    Traceback (most recent call last):
    ...
    conc_lab.store.layout.StoreError: m.json: damaged manifest (name: '../../x' is not a plain folder name)
    """

    sweep_id: str
    name: str | None = None
    state: SweepState = SweepState.RUNNING
    fingerprint: str | None = None
    shard: str | None = None  # "K/N" for a shard sweep
    split: int | None = None  # N, for a merged sweep
    started_at: float | None = None
    finished_at: float | None = None
    schema_version: int | None = None
    config_path: str | None = None
    config_text: str | None = None
    seed: int | None = None
    shuffle: bool | None = None
    cluster: str | None = None
    environment: Mapping[str, Any] = field(default_factory=dict)
    calibrated_sizes: Mapping[str, int] = field(default_factory=dict)
    overrides: Mapping[str, int | float] = field(
        default_factory=dict
    )  # sweep --repeats / --warmup / --precision
    selftest: Mapping[str, Any] | None = None  # an A/A self-test's workload, size, repeats
    aa_floor: float | None = None  # the noise floor that self-test measured (0.03: ±3%)
    doctor: tuple[Mapping[str, Any], ...] = ()
    merged_from: tuple[MergedShard, ...] = ()
    #: Every part sealed, by its plain name (``part-000003.<sha>.parquet``), with its runs: a part
    #: deleted is named by check and load. None in a manifest written before parts were recorded.
    parts: Mapping[str, int] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys another conc_lab wrote

    @property
    def split_n(self) -> int:
        """N of the split this sweep belongs to (1 for a sweep not sharded)."""
        label = self.shard or (self.merged_from[0].shard if self.merged_from else "1/1")
        return self.split or int(label.split("/")[1])

    def replace(self, **changes) -> Manifest:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        doc = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        doc.update(
            state=self.state.value,
            environment=dict(self.environment),
            calibrated_sizes=dict(self.calibrated_sizes),
            overrides=dict(self.overrides),
            doctor=[dict(d) for d in self.doctor],
            merged_from=[m.to_json() for m in self.merged_from],
            parts=None if self.parts is None else dict(self.parts),
        )
        return {**self.extra, **doc}

    @classmethod
    def from_json(cls, doc: Any, path: str | os.PathLike) -> Manifest:
        """The manifest ``doc`` (parsed JSON) holds; ``StoreError`` naming ``path`` and the key if malformed."""
        if not isinstance(doc, dict):
            raise StoreError(f"{path}: damaged manifest (a JSON {type(doc).__name__}, not an object)")

        def bad(key: str, problem: str) -> StoreError:
            return StoreError(f"{path}: damaged manifest ({key}: {problem})")

        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: _checked(k, doc[k], bad) for k in known & doc.keys() if doc[k] is not None}
        if "sweep_id" not in values:
            raise bad("sweep_id", "missing")
        return cls(**values, extra={k: v for k, v in doc.items() if k not in known})


_TYPES: dict[str, type | tuple[type, ...]] = {
    "sweep_id": str,
    "name": str,
    "fingerprint": str,
    "shard": str,
    "split": int,
    "started_at": (int, float),
    "finished_at": (int, float),
    "schema_version": int,
    "config_path": str,
    "config_text": str,
    "seed": int,
    "shuffle": bool,
    "cluster": str,
    "state": str,
    "environment": dict,
    "calibrated_sizes": dict,
    "overrides": dict,
    "selftest": dict,
    "aa_floor": (int, float),
    "doctor": list,
    "merged_from": list,
    "parts": dict,
}


def _checked(key: str, value: Any, bad) -> Any:
    """``value`` of manifest key ``key``, checked and made typed (``bad(key, problem)`` raised)."""
    kind = _TYPES[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise bad(key, f"{type(value).__name__}, not {_kind_name(kind)}")
    problem = None
    if key in ("sweep_id", "name"):
        problem = _safe_component(value)
    elif key == "shard":
        problem = _shard_problem(value)
    elif key == "split" and value < 1:
        problem = f"{value} is not a number of shards"
    elif key == "state":
        if value not in {s.value for s in SweepState}:
            problem = f"{value!r} is not one of {', '.join(s.value for s in SweepState)}"
        else:
            return SweepState(value)
    elif key == "environment":
        wrong = [k for k in schema.ENV_COLUMNS if not isinstance(value.get(k), (str, int, float, type(None)))]
        problem = f"{wrong[0]} is {type(value[wrong[0]]).__name__}, not a plain value" if wrong else None
    elif key in ("calibrated_sizes", "overrides", "parts"):
        problem = _counts_problem(key, value)
    elif key == "doctor":
        problem = "an entry is not an object" if not all(isinstance(d, dict) for d in value) else None
        value = tuple(value)
    elif key == "merged_from":
        return tuple(_merged_shard(i, entry, bad) for i, entry in enumerate(value))
    if problem:
        raise bad(key, problem)
    return value


def _counts_problem(key: str, value: dict) -> str | None:
    """What is wrong with a mapping of counts (calibrated sizes, overrides, parts), or None."""
    if key == "parts":
        wrong = [k for k, v in value.items() if not _PART.fullmatch(k) or not _is_count(v, 0)]
        return f"{wrong[0]!r} is not a part's name with its count of runs" if wrong else None
    low = 1 if key == "calibrated_sizes" else 0
    share = {"precision"} if key == "overrides" else set()  # sweep --precision: a target, not a count
    wrong = [k for k, v in value.items() if k not in share and not _is_count(v, low)]
    wrong += [k for k, v in value.items() if k in share and not _is_share(v)]
    return f"{wrong[0]!r} is not a {'share' if wrong[0] in share else 'count'}" if wrong else None


def _merged_shard(i: int, entry: Any, bad) -> MergedShard:
    key = f"merged_from[{i}]"
    if not isinstance(entry, dict):
        raise bad(key, f"{type(entry).__name__}, not an object")
    fields = {f.name: f for f in dataclasses.fields(MergedShard)}
    kinds = {"sweep_id": str, "shard": str, "state": str, "dir": str, "started_at": (int, float)}
    kinds["finished_at"] = (int, float)
    values = {}
    for name, value in entry.items():
        if name not in fields or value is None:
            continue
        if not isinstance(value, kinds[name]) or isinstance(value, bool):
            raise bad(f"{key}.{name}", f"{type(value).__name__}, not {_kind_name(kinds[name])}")
        values[name] = value
    for name in ("sweep_id", "shard"):
        if name not in values:
            raise bad(f"{key}.{name}", "missing")
    problem = _safe_component(values["sweep_id"]) or _shard_problem(values["shard"])
    if problem:
        raise bad(key, problem)
    return MergedShard(**values)


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "text", int: "an integer", float: "a number", bool: "true/false", dict: "an object"}
    names[list] = "a list"
    return " or ".join(dict.fromkeys(names[k] for k in kinds if not (k is int and float in kinds)))


def read_manifest(sweep_dir: str | os.PathLike) -> Manifest:
    """A sweep's manifest, checked: ``StoreError`` naming the file when it is missing or damaged."""
    path = manifest_path(sweep_dir)
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise StoreError(f"{path}: missing; this sweep folder has lost its manifest") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise StoreError(f"{path}: damaged manifest ({exc})") from None
    return Manifest.from_json(doc, path)


def write_manifest(sweep_dir: Path, manifest: Manifest) -> None:
    data = json.dumps(manifest.to_json(), indent=1, sort_keys=True, default=str).encode()
    write_atomic(sweep_dir / MANIFEST, data)
    # a resumed sweep of an older store moves to the new name (kept until the new one is on disk)
    (sweep_dir / OLD_MANIFEST).unlink(missing_ok=True)


def state_note(manifest: Manifest, sweep_dir: os.PathLike | None = None) -> str | None:
    """A note when the sweep did not make every planned run: its rows are only those that ran.

    Without it a summary of an interrupted sweep reads as complete (found by a new-user test).

    >>> state_note(Manifest("m", state=SweepState.INTERRUPTED))
    'interrupted (Ctrl-C or SIGTERM) before every planned run was made: only the runs that ran are here; --resume continues it'
    >>> state_note(Manifest("m", state=SweepState.COMPLETE)) is None
    True
    """
    why = {
        SweepState.INTERRUPTED: "interrupted (Ctrl-C or SIGTERM)",
        SweepState.STOPPED: "stopped early on purpose (--fail-fast, or advise settled or out of budget)",
        SweepState.RUNNING: "still being written",
        SweepState.PARTIAL: "a merge still missing shards",
    }.get(manifest.state)
    if why is None:
        return None
    if manifest.state is SweepState.PARTIAL:
        return f"{why}: only the shards merged so far are here; merge again once the rest have run"
    if manifest.state is SweepState.RUNNING and sweep_dir is not None and not is_live(sweep_dir):
        why = "killed while running (no conclab is writing it)"
    return f"{why} before every planned run was made: only the runs that ran are here; --resume continues it"

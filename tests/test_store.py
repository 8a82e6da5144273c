from __future__ import annotations

import json

import pandas as pd
import pytest

from conc_lab import schema
from conc_lab.store.layout import MANIFEST, StoreError, preflight
from conc_lab.store.load import load
from conc_lab.store.manifest import Manifest, read_manifest
from conc_lab.store.reader import completed_runs
from conc_lab.store.writer import SweepWriter

pytestmark = pytest.mark.inprocess


def make_row(i: int, backend: str = "threading", sweep_id: str = "s1") -> dict:
    row = schema.empty_row()
    row.update(
        sweep_id=sweep_id,
        sweep_name="demo",
        trial_id=f"t{i % 3}",
        workload="m:f",
        backend=backend,
        workers=2,
        tasks=4,
        size=10,
        affinity="compact",
        repeat=i,
        status="ok",
        started_at=1_764_086_400_000_000 + i,
        run_s=0.1 * (i + 1),
        pinned=True,
        cores=[0, 1],
        task_records=[
            {"task": 0, "worker": 1, "core": 1, "cpu": 1, "pid": 42, "start_s": 0.0, "end_s": 0.05}
        ],
        correct=True,
    )
    return row


def writer(tmp_path, **kw) -> SweepWriter:
    return SweepWriter(
        tmp_path / "demo" / "s1", Manifest(sweep_id="s1", environment={"cpu_model": "X"}), **kw
    )


def test_rows_round_trip_with_schema_types_and_environment(tmp_path):
    w = writer(tmp_path)
    rows = [make_row(i) for i in range(5)]
    for r in rows:
        w.append(r)
    w.close("complete")
    assert not list((tmp_path / "demo" / "s1").glob("_journal-*"))
    df = load(tmp_path / "demo")
    assert len(df) == 5
    assert list(df["run_s"]) == pytest.approx([r["run_s"] for r in rows])
    assert isinstance(df["backend"].dtype, pd.CategoricalDtype)
    assert str(df["started_at"].dtype).startswith("datetime64")
    assert df["task_records"][0][0]["core"] == 1
    assert (df["cpu_model"] == "X").all()
    assert read_manifest(tmp_path / "demo" / "s1").state == "complete"


def test_a_sealed_row_holds_exactly_what_was_appended_whatever_its_values():
    """Rows are sealed through Arrow's JSON reader (no pandas): every value comes back bit for bit."""
    import math
    from datetime import datetime, timezone

    import pyarrow as pa

    texts = ["", "é \udcff x", 'line\nbreak "quoted" \\ \t', "😀" * 3, "\x00\x1f", "1e5"]
    floats = [0.0, -0.0, 5e-324, 0.1 + 0.2, 1.7976931348623157e308, float("nan"), float("inf")]
    stamps = [
        4_102_444_800_000_000,
        -1,
        datetime(2026, 12, 3, 17, 1, 2, 345678),
        datetime(2000, 1, 1, tzinfo=timezone.utc),
    ]
    rows = []
    for i in range(12):
        row = make_row(i) | {
            "error": texts[i % len(texts)],
            "foreign_cpu": floats[i % len(floats)],
            "run_s": [0.0, 5e-324, 0.1 + 0.2, 1e300][i % 4],
            "started_at": stamps[i % len(stamps)],
            "peak_rss_bytes": [2**63 - 1, -(2**63), 0][i % 3],
            "workers": [2**31 - 1, 1][i % 2],
            "cores": [[], [0, 1, 2**31 - 1], None][i % 3],
            "correct": [True, False, None][i % 3],
            "task_records": [[], None, make_row(0)["task_records"] * 2][i % 3],
        }
        rows.append(schema.check_row(row))
    table = schema.to_table(rows, checked=True)
    assert table.schema.equals(schema.SCHEMA, check_metadata=True)
    expected = pa.Table.from_pylist(rows, schema=schema.SCHEMA)
    for name in schema.COLUMNS:
        got, want = table.column(name).to_pylist(), expected.column(name).to_pylist()
        same = [
            g == w or (isinstance(g, float) and math.isnan(g) and math.isnan(w)) for g, w in zip(got, want)
        ]
        assert all(same), (name, got, want)
    assert [math.copysign(1, v) for v in table.column("foreign_cpu").to_pylist()[:2]] == [1, -1]
    assert schema.to_table([], checked=True).num_rows == 0


def test_unsealed_rows_are_read_from_the_journal_and_a_torn_line_is_dropped(tmp_path):
    w = writer(tmp_path, flush_rows=3)
    for i in range(5):  # 3 sealed into a part, 2 left in the journal: a crash now loses nothing
        w.append(make_row(i))
    journal = next((tmp_path / "demo" / "s1").glob("_journal-*.jsonl"))
    with open(journal, "ab") as f:
        f.write(b'{"sweep_id": "s1", "trial_')  # a kill in the middle of a write
    df = load(tmp_path / "demo" / "s1")
    assert sorted(df["repeat"]) == [0, 1, 2, 3, 4]
    # A resumed sweep first seals what the killed one left (its lock died with it).
    w._unlock()
    w2 = writer(tmp_path)
    assert not any(p.stat().st_size for p in (tmp_path / "demo" / "s1").glob("_journal-*.jsonl"))
    w2.close("complete")
    assert sorted(load(tmp_path / "demo")["repeat"]) == [0, 1, 2, 3, 4]


def test_journal_beside_its_own_part_is_not_read_twice(tmp_path):
    w = writer(tmp_path)
    for i in range(3):
        w.append(make_row(i))
    journal = w._journal_path
    saved = journal.read_bytes()
    w.seal()  # part-000000 written, journal removed; now pretend the unlink never happened
    journal.write_bytes(saved)
    assert len(load(tmp_path / "demo")) == 3


def test_filters_are_pushed_down_and_checked(tmp_path):
    w = writer(tmp_path)
    for i in range(6):
        w.append(make_row(i, backend="sequential" if i % 2 else "threading"))
    w.close("complete")
    df = load(tmp_path, backend="sequential")
    assert set(df["backend"]) == {"sequential"} and len(df) == 3
    assert len(load(tmp_path, repeat=[0, 1, 2])) == 3
    with pytest.raises(ValueError, match="unknown columns"):
        load(tmp_path, colour="red")


def test_many_sweeps_load_together_and_foreign_files_are_reported(tmp_path):
    for sid in ("s1", "s2"):
        w = SweepWriter(tmp_path / "demo" / sid, Manifest(sweep_id=sid))
        w.append(make_row(0, sweep_id=sid))
        w.close("complete")
    assert sorted(load(tmp_path).sweep_id) == ["s1", "s2"]
    assert completed_runs(tmp_path / "demo" / "s1") == {("t0", 0)}
    (tmp_path / "demo" / "s2" / "notes.txt").write_text("hi")
    with pytest.raises(StoreError, match="notes.txt: not a conc_lab file"):
        load(tmp_path)


def test_corrupt_part_and_unknown_schema_version_are_errors(tmp_path):
    w = writer(tmp_path)
    w.append(make_row(0))
    w.close("complete")
    sweep = tmp_path / "demo" / "s1"
    manifest = json.loads((sweep / MANIFEST).read_text())
    (sweep / MANIFEST).write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(StoreError, match="schema version 99"):
        load(sweep)
    (sweep / MANIFEST).write_text(json.dumps(manifest))
    (sweep / "part-000000.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(StoreError, match="corrupt"):
        load(sweep)


def test_files_are_not_world_writable(tmp_path):
    w = writer(tmp_path)
    w.append(make_row(0))
    w.close("complete")
    for p in (tmp_path / "demo" / "s1").iterdir():
        assert not p.stat().st_mode & 0o002, p


def test_preflight_refuses_an_unwritable_results_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="not writable"):
        preflight(blocker / "results")


def test_a_journal_of_another_sweep_is_named_never_counted_or_sealed(tmp_path):
    """A part of another sweep was refused; a journal was read as this sweep's runs, then sealed by
    a resume into a part that broke the sweep (a hostile-user test)."""
    from conc_lab.store.check import check

    mine = writer(tmp_path)
    for i in range(2):
        mine.append(make_row(i))
    mine.close("interrupted")
    other = SweepWriter(tmp_path / "demo" / "s2", Manifest(sweep_id="s2", environment={}))
    other.append(make_row(5, sweep_id="s2"))  # left in its journal: never closed
    journal = next((tmp_path / "demo" / "s2").glob("_journal-*"))
    copied = tmp_path / "demo" / "s1" / "_journal-000009.jsonl"
    copied.write_bytes(journal.read_bytes())
    with pytest.raises(StoreError, match="holds a run of sweep s2, not of s1"):
        load(tmp_path / "demo" / "s1")
    assert any("not of s1" in p for p in check(tmp_path / "demo" / "s1").problems)
    with pytest.raises(StoreError, match="not of s1"):
        SweepWriter(tmp_path / "demo" / "s1", read_manifest(tmp_path / "demo" / "s1"))  # as --resume does
    assert copied.exists() and not list((tmp_path / "demo" / "s1").glob("part-000009*"))

"""Bit flips in a sealed part: does any flipped bit come back as a changed value?

One real part (written by the store's writer: rows of every column type) is damaged one bit
at a time over its data pages (every bit, or ``--limit`` of them drawn at random), and read
back with ``conc_lab.load`` after each flip. Each flip ends one of four ways:

- refused: ``load`` raised a ``StoreError`` naming the part (the goal for every flip);
- unchanged: read back equal to the original (a bit no value depends on);
- changed: read back with different values, silently (must be 0);
- crashed: any other exception, e.g. ``UnicodeDecodeError`` or ``ArrowInvalid`` (must be 0).

    python benchmarks/bench_bitflip.py --limit 2000     # about a minute
    python benchmarks/bench_bitflip.py                  # every bit: long
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401 - puts the repository first on sys.path
import pyarrow.parquet as pq


def make_part(folder: Path, rows: int) -> Path:
    from conc_lab import schema
    from conc_lab.store.layout import part_files
    from conc_lab.store.manifest import Manifest, SweepState
    from conc_lab.store.writer import SweepWriter

    w = SweepWriter(folder, Manifest(sweep_id="flip", name="flip"), flush_rows=rows + 1)
    for i in range(rows):
        row = schema.empty_row() | dict(
            sweep_id="flip",
            sweep_name="flip",
            trial_id=f"t{i % 7}",
            workload="m:f",
            backend=["threading", "sequential", "multiprocessing"][i % 3],
            workers=1 + i % 4,
            tasks=8,
            size=100 * (i + 1),
            affinity="compact",
            repeat=i // 7,
            status=[schema.OK, schema.FAILED][i % 5 == 0],
            error="boom" if i % 5 == 0 else None,
            run_s=0.001 * (i + 1) ** 1.5,
            correct=None if i % 5 == 0 else i % 2 == 0,
            started_at=1_764_086_400_000_000 + 1000 * i,
            cores=[i % 4, (i + 1) % 4],
            task_records=[
                {"task": 0, "worker": 0, "core": 0, "cpu": 0, "pid": 1, "start_s": 0.0, "end_s": 0.1}
            ],
        )
        w.append(row)
    w.close(SweepState.COMPLETE)
    (part,) = part_files(folder)
    return part


def data_pages(part: Path) -> tuple[int, int]:
    """The byte range from the first column chunk's first page to the last one's end."""
    meta = pq.ParquetFile(part).metadata
    spans = []
    for g in range(meta.num_row_groups):
        for c in range(meta.num_columns):
            col = meta.row_group(g).column(c)
            start = min(x for x in (col.dictionary_page_offset, col.data_page_offset) if x is not None)
            spans.append((start, start + col.total_compressed_size))
    return min(s for s, _ in spans), max(e for _, e in spans)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=60)
    ap.add_argument("--limit", type=int, default=0, help="flip this many random bits, not every one")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    from conc_lab.store.layout import StoreError
    from conc_lab.store.load import load

    work = Path(tempfile.mkdtemp(prefix="bench_bitflip-"))
    try:
        folder = work / "flip" / "flip"
        part = make_part(folder, args.rows)
        whole = part.read_bytes()
        original = load(folder, env=False)
        start, end = data_pages(part)
        bits = [(byte, bit) for byte in range(start, end) for bit in range(8)]
        if args.limit:
            bits = random.Random(args.seed).sample(bits, min(args.limit, len(bits)))
        counts = {"refused": 0, "unchanged": 0, "changed": 0, "crashed": 0}
        crashes: dict[str, int] = {}
        t0 = time.perf_counter()
        for byte, bit in bits:
            data = bytearray(whole)
            data[byte] ^= 1 << bit
            part.write_bytes(bytes(data))
            try:
                df = load(folder, env=False)
            except StoreError as exc:
                counts["refused" if part.name in str(exc) else "crashed"] += 1
            except Exception as exc:  # noqa: BLE001 - what a user would see as a traceback
                counts["crashed"] += 1
                crashes[type(exc).__name__] = crashes.get(type(exc).__name__, 0) + 1
            else:
                counts["unchanged" if df.equals(original) else "changed"] += 1
        part.write_bytes(whole)
        took = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"part: {len(whole)} bytes, data pages {start}..{end} ({end - start} bytes, {8 * (end - start)} bits)"
    )
    print(f"bits flipped: {len(bits)}{' (random sample)' if args.limit else ' (every one)'} in {took:.1f} s")
    for what, n in counts.items():
        print(f"  {what:10s} {n}")
    if crashes:
        print(f"  crash types: {crashes}")
    if counts["changed"] or counts["crashed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()

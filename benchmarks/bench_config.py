"""Hostile configs, timed: the figures behind issue #14 items 5, 6 and 14 (and #12's streaming expand).

    python benchmarks/bench_config.py            # about a minute on a quiet 2-core machine

Prints, one per line:
- parse_config of a matrix with 3 axes of 100,000 values each (the duplicate check; main: 207 s);
- the same matrix read from YAML by `load_config` (PyYAML's pure-Python reader dominates);
- `conclab expand` on the 8-level alias bomb: wall time, exit code, length of its one line, and
  the child's peak RSS (main: 50 s, 5 GB, a 722 MB line);
- a 10^15-point matrix: `matrix.count`, `matrix.check_size` (the refusal), and the time to the
  first trial of `expand` (main: `expand` printed nothing for 60 s, `sweep` ran out of memory).
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT

sys.path.insert(0, str(ROOT / "tests"))

from test_config_cli import _bomb  # noqa: E402 - the tests' own bomb, after the path is set

from conc_lab.config.document import load_config, parse_config  # noqa: E402
from conc_lab.config.errors import ConfigError  # noqa: E402
from conc_lab.plan import matrix  # noqa: E402

N = 100_000


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def three_axes() -> dict:
    return {
        "name": "big",
        "matrix": {
            "workload": [f"m:f{i}" for i in range(N)],
            "backend": "threading",
            "tasks": list(range(1, N + 1)),
            "size": list(range(N)),
        },
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:  # first: a forked child's peak counts this process's pages
        bomb = Path(tmp) / "bomb.yaml"
        bomb.write_text(_bomb(8))
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "conc_lab.cli", "expand", str(bomb)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        s = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(
            f"conclab expand on the 8-level alias bomb ({bomb.stat().st_size} bytes): {s:.2f} s, exit "
            f"{proc.returncode}, {len(proc.stderr.splitlines())} line of {len(proc.stderr.strip())} chars, "
            f"peak RSS {peak:.0f} MiB"
        )

    doc = three_axes()
    cfg, s = timed(lambda: parse_config(doc, check_imports=False))
    print(f"parse_config, 3 axes of {N:,} values: {s:.2f} s")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.yaml"
        m = doc["matrix"]
        path.write_text(
            "name: big\nmatrix:\n"
            f"  workload: [{', '.join(m['workload'])}]\n  backend: threading\n"
            f"  tasks: [{', '.join(map(str, m['tasks']))}]\n  size: [{', '.join(map(str, m['size']))}]\n"
        )
        _, s = timed(lambda: load_config(path, check_imports=False))
        print(f"load_config of the same matrix as YAML ({path.stat().st_size:,} bytes): {s:.2f} s")

    n, s = timed(lambda: matrix.count(cfg))
    print(f"matrix.count of the {n:.0e}-point matrix: {s * 1e3:.1f} ms")
    t0 = time.perf_counter()
    try:
        matrix.check_size(cfg)
        print("check_size accepted it (it should not)")
    except ConfigError as exc:
        print(f"check_size refuses it in {(time.perf_counter() - t0) * 1e3:.1f} ms: {exc.problem}")
    _, s = timed(lambda: next(iter(matrix.expand(cfg))))
    print(f"first trial from expand: {s * 1e3:.2f} ms")


if __name__ == "__main__":
    main()

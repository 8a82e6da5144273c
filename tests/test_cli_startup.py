"""Commands that need no data start without the heavy packages (#21): none is even imported.

``python -X importtime`` lists every module an interpreter imports; these tests run the real
command under it and fail naming any of pyarrow, pandas, numpy, matplotlib, scipy or Ray.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.host

HEAVY = ("pyarrow", "pandas", "numpy", "matplotlib", "scipy", "ray")


def imported(*args: str, code: str | None = None) -> set[str]:
    """Every module ``python -m conc_lab.cli ARGS`` (or ``python -c CODE``) imports; it must succeed."""
    run = ["-c", code] if code is not None else ["-m", "conc_lab.cli", *args]
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *run], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert lines, "python -X importtime printed nothing"
    return {line.rsplit("|", 1)[-1].strip() for line in lines}


@pytest.mark.parametrize(
    "args",
    [
        ("--version",),
        ("--help",),
        ("sweep", "--help"),
        ("expand", "configs/smoke.yaml", "--count"),
        ("expand", "configs/smoke.yaml", "--format", "json"),
        ("doctor", "--json"),
    ],
    ids=" ".join,
)
def test_a_command_that_needs_no_data_imports_no_heavy_package(args):
    modules = imported(*args)
    assert "conc_lab.cli.main" in modules  # the walk sees what it should
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == [], f"conclab {' '.join(args)} imports {heavy[:5]}"


def test_the_check_sees_a_heavy_import():
    assert "pyarrow" in imported(code="import conc_lab.schema")


def test_a_quiet_sweep_never_imports_pandas(tmp_path):
    """`conclab sweep -q` seals its rows with Arrow alone: pandas (0.15-0.4 s here) only for a table."""
    config = tmp_path / "one.yaml"
    config.write_text(
        "name: one\nrepeats: 1\nwarmup: 0\n"
        "matrix: {workload: [experiments.overhead:noop], backend: [sequential]}\n"
    )
    modules = imported("sweep", str(config), "--out", str(tmp_path / "out"), "-q")
    assert "pyarrow.parquet" in modules  # it did seal a part
    assert sorted(m for m in modules if m.split(".")[0] == "pandas")[:3] == []
    assert list((tmp_path / "out").glob("one/*/part-*.parquet"))


def test_a_spawned_workers_loop_imports_no_json():
    """What a spawned worker imports beyond multiprocessing is in its ``setup_s``: json cost 2 ms there."""
    modules = imported(code="import conc_lab.host.backends._worker")
    assert "conc_lab.host.measure" in modules
    assert "json" not in modules

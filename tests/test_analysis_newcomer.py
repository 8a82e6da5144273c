"""A data scientist's first afternoon with two finished sweeps: ``conc_lab.load``, ``summarize``,
``check``, ``report`` and the scaling forecasts, each as a person runs them (real sweeps, real
Parquet, the real CLI in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from test_advise_newcomer import conclab as advise_conclab

import conc_lab

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent

# Two worker counts of a sleep, three runs each: about a second a sweep on a busy 2-core machine.
TINY = """
name: tiny
repeats: 3
warmup: 0
timeout_s: 30
matrix:
  workload: [experiments.io:sleep]
  backend: [sequential, threading]
  workers: [1, 2]
  tasks: [2]
  size: [5]
"""


def conclab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return advise_conclab(cwd, *args)  # the real CLI in a fresh process, as test_advise_newcomer runs it


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """``results/tiny/`` holding two sweeps of one config, as after running it twice."""
    root = tmp_path_factory.mktemp("newcomer")
    config = root / "tiny.yaml"
    config.write_text(textwrap.dedent(TINY))
    for _ in range(2):
        assert conc_lab.sweep(config, out=root / "results", on_event=lambda event: None).ok
    return root


def test_a_folder_named_twice_counts_each_run_once(results):
    # was: `load(["results/tiny", "results/tiny/<id>"])` read that sweep twice: 27 rows of 18 runs,
    # and `summarize results results/tiny` said n 6 where 3 ran, with intervals narrowed to match
    one = sorted((results / "results" / "tiny").iterdir())[0]
    assert len(conc_lab.load(results / "results")) == 18
    assert len(conc_lab.load([results / "results", results / "results" / "tiny", one])) == 18
    assert len(conc_lab.load([one, Path(os.path.relpath(one, Path.cwd()))])) == 9

    proc = conclab("summarize", "results", "results/tiny", str(one), "-f", "json", cwd=results)
    assert proc.returncode == 0, proc.stderr
    assert {row["n"] for row in json.loads(proc.stdout)} == {6}  # 3 runs in each of 2 sweeps
    proc = conclab("summarize", "results", "results/tiny", cwd=results)
    said = " ".join((proc.stderr + proc.stdout).split())
    assert "note: 2 sweeps pooled (every row mixes their runs)" in said, said


def test_check_counts_a_folder_named_twice_once(results):
    # was: `conclab check results results/tiny` said "4 sweeps" of a store holding 2
    proc = conclab("check", "results", "results/tiny", cwd=results)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (proc.stderr + proc.stdout).strip() == "2 sweeps, 18 runs: ok"


def test_forecast_intervals_stay_within_what_each_law_can_forecast(results):
    # was: predict_scaling(summary) of 1 and 2 workers gave Amdahl at 64 workers 1.9 (0.0001–35000):
    # the law's f is bounded to [0, 1], so no Amdahl forecast lies outside 1 … the worker count
    forecasts = conc_lab.predict_scaling(conc_lab.summarize(results / "results"))
    assert len(forecasts) and set(forecasts["workers"]) == {4, 8, 16, 64}
    assert (forecasts["speedup_high"] <= forecasts["workers"]).all(), forecasts
    assert (forecasts["speedup_low"] <= forecasts["speedup"]).all()
    assert (forecasts["speedup"] <= forecasts["speedup_high"]).all()
    amdahl = forecasts[forecasts["law"] == "amdahl"]
    assert len(amdahl) and (amdahl["speedup_low"] >= 1.0).all(), amdahl


def test_compare_prints_the_geometric_mean_as_it_prints_every_ratio(results):
    # was: "geometric mean b/a 1, no trial changed" beside "b/a 0.94–1.05": `.3g` drops the zeros
    one = sorted((results / "results" / "tiny").iterdir())[0]
    proc = conclab("compare", str(one), str(one), cwd=results)
    assert proc.returncode == 0, proc.stderr
    assert "geometric mean b/a 1.00, no trial changed" in " ".join(proc.stdout.split()), proc.stdout

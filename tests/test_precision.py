"""Precision (#20): paired speedups, the recorded run order, the A/A self-test, derived claims.

The estimator tests build runs the way a sweep records them (a row per run, with its round and
start time) and check the figures a user reads from ``summarize``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conc_lab.analysis.pairing import pair_runs
from conc_lab.analysis.summary import summarize

pytestmark = pytest.mark.inprocess


def _rounds(n_rounds: int, slow_rounds: set[int], lost: set[int], seed: int = 1) -> pd.DataFrame:
    """A sequential loop (1 s) and threading (0.5 s: speedup 2) in ``n_rounds`` interleaved rounds, in
    a random order per round; in ``slow_rounds`` the machine runs 1.2x slower; the threading runs
    of the rounds in ``lost`` failed."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n_rounds):
        slow = 1.2 if r in slow_rounds else 1.0
        order = rng.permutation(["sequential", "threading"])
        for slot, backend in enumerate(order):
            base = 1.0 if backend == "sequential" else 0.5
            failed = backend == "threading" and r in lost
            rows.append(
                {
                    "workload": "w",
                    "tasks": 2,
                    "size": 10,
                    "backend": backend,
                    "workers": 1 if backend == "sequential" else 2,
                    "repeat": r,
                    "status": "failed" if failed else "ok",
                    "run_s": np.nan if failed else base * slow * rng.uniform(0.995, 1.005),
                    "started_at": pd.Timestamp("2026-01-01", tz="UTC")
                    + pd.Timedelta(seconds=10 * r + 3 * slot),
                }
            )
    return pd.DataFrame(rows)


def _threading(summary: pd.DataFrame) -> pd.Series:
    return summary[summary["backend"] == "threading"].iloc[0]


def test_a_slow_state_over_half_the_rounds_moves_the_paired_speedup_under_2_percent():
    steady = _threading(summarize(_rounds(21, set(), set())))
    drift = _rounds(21, slow_rounds=set(range(11)), lost={2, 7})  # two threading runs failed while slow
    paired = _threading(summarize(drift))
    unpaired = _threading(summarize(drift.drop(columns="started_at")))  # no times: cannot be paired
    assert steady.speedup_method == paired.speedup_method == "paired"
    assert unpaired.speedup_method == "unpaired"
    assert abs(paired.speedup / steady.speedup - 1) < 0.02
    assert unpaired.speedup / steady.speedup - 1 > 0.15  # the unpaired estimate moves by ~20%
    assert paired.speedup_ci_low <= 2.0 <= paired.speedup_ci_high
    assert paired.speedup_ci_high - paired.speedup_ci_low < 0.05 * paired.speedup


def test_each_run_pairs_with_the_nearest_baseline_run_of_its_own_round():
    df = _rounds(3, set(), set())
    pairs = pair_runs(df)
    for i, j in enumerate(pairs):
        if df.loc[i, "backend"] == "sequential":
            assert j == -1
        else:
            assert df.loc[j, "backend"] == "sequential" and df.loc[j, "repeat"] == df.loc[i, "repeat"]


def test_runs_of_different_sweeps_never_pair_and_the_summary_says_it_used_the_unpaired_estimate():
    df = _rounds(5, set(), set())
    seq = df["backend"] == "sequential"
    # merged shards: the baseline ran in one sweep, the backend in another, at other times
    df = df.assign(sweep_id=np.where(seq, "shard-1", "shard-2"))
    row = _threading(summarize(df))
    assert (pair_runs(df) == -1).all()
    assert row.speedup_method == "unpaired" and "unpaired" in row.notes  # the table says so too
    assert 1.9 < row.speedup < 2.1


def test_a_speedup_inherits_its_baselines_doubts():
    df = _rounds(7, set(), set())
    seq = (df["backend"] == "sequential").to_numpy()
    run = df["run_s"].to_numpy().copy()
    run[np.flatnonzero(seq)[::2]] *= 1.6  # the baseline swings; the threading runs do not
    s = summarize(df.assign(run_s=run))
    base, row = s[s.backend == "sequential"].iloc[0], _threading(s)
    assert base.unstable and row.unstable
    assert "baseline unstable" in row.notes


def _noisy_at(df: pd.DataFrame, backend: str, which: list[int], slow: float) -> pd.DataFrame:
    """``df`` with the ``which``-th runs of ``backend`` marked noisy and ``slow`` times slower."""
    rows = np.flatnonzero((df["backend"] == backend).to_numpy())[which]
    run, noisy = df["run_s"].to_numpy().copy(), np.zeros(len(df), bool)
    run[rows] *= slow
    noisy[rows] = True
    return df.assign(run_s=run, noisy=noisy)


def test_a_noisy_flag_means_the_noisy_runs_decide_the_number_not_that_one_was_seen():
    df = _rounds(11, set(), set())
    # a noisy baseline run the machine slowed: its pair reads 2.6x against the quiet pairs' 2.0x
    moved = _threading(summarize(_noisy_at(df, "sequential", [4], 1.3)))
    assert "baseline noisy" in moved.notes and moved.speedup_ci_high > 2.5
    # flagged noisy, yet it reads as the quiet ones do: the number stands, nothing to flag
    inside = _threading(summarize(_noisy_at(df, "sequential", [4], 1.0)))
    assert "noisy" not in inside.notes and inside.speedup_ci_high < 2.05
    # the row's own runs: 'noisy'; and most pairs noisy is flagged even where they agree with each
    # other (a steady competitor slows both sides of each pair, unequally)
    own = _threading(summarize(_noisy_at(df, "threading", [2], 1.4)))
    assert "noisy" in own.notes.split(", ") and "baseline noisy" not in own.notes
    most = _threading(summarize(_noisy_at(df, "threading", list(range(6)), 1.0)))
    assert "noisy" in most.notes.split(", ")


def test_a_pair_with_a_noisy_run_widens_the_interval_to_cover_it():
    df = _rounds(11, set(), set())
    thr = np.flatnonzero((df["backend"] == "threading").to_numpy())
    run = df["run_s"].to_numpy().copy()
    run[thr[3]] *= 2.0  # measured while the machine was busy: the pair's ratio is ~1.0
    noisy = np.zeros(len(df), bool)
    noisy[thr[3]] = True
    quiet = _threading(summarize(df.assign(run_s=run)))
    flagged = _threading(summarize(df.assign(run_s=run, noisy=noisy)))
    assert quiet.speedup_ci_low > 1.9  # one stray pair does not move an exact median interval ...
    assert flagged.speedup_ci_low < 1.05  # ... but one the machine vouches against is covered
    assert flagged.speedup == quiet.speedup


@pytest.mark.host
def test_a_real_sweep_records_a_fresh_permutation_per_round(tmp_path):
    import conc_lab
    from conc_lab.run.runner import sweep

    cfg = tmp_path / "order.yaml"
    cfg.write_text(
        "name: order\nrepeats: 6\nwarmup: 0\naffinity: none\n"
        "matrix:\n  workload: [experiments.io:sleep]\n  backend: [sequential, threading]\n"
        "  workers: [1, 2]\n  tasks: [1]\n  size: [1]\n"
    )
    result = sweep(cfg, out=tmp_path / "results")
    df = conc_lab.load(result.sweep_dir).sort_values("started_at")
    assert (df["round"] == df["repeat"]).all()
    orders = []
    for _, rnd in df.groupby("round"):
        assert sorted(rnd["slot"]) == list(range(len(rnd)))  # a permutation of the round's trials
        assert rnd["slot"].is_monotonic_increasing  # ... in the order the runs started
        orders.append(tuple(rnd["trial_id"]))
    assert len(orders) == 6 and len(set(orders)) > 1  # a fresh one each round, not one order
    seq = df[df["backend"] == "sequential"]
    assert seq["slot"].nunique() > 1  # the baseline does not always run in the same place


@pytest.mark.host
def test_what_ray_leaves_running_counts_as_foreign_cpu_for_the_next_non_ray_trial(monkeypatch):
    import os
    import signal
    import subprocess
    import sys
    import time

    from conc_lab.host import noise, protocol

    # A busy process outside this test's tree (its shell parent exits), listed as the Ray runtime's.
    spawn = f"{sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!"
    pid = int(subprocess.run(["sh", "-c", spawn], capture_output=True, text=True, check=True).stdout)
    try:
        monkeypatch.setenv(protocol.SWEEP_PIDS_ENV, str(pid))
        before = {ray: noise.Sample(None, with_ray=ray) for ray in (True, False)}
        time.sleep(1.0)
        after = {ray: noise.Sample(None, with_ray=ray) for ray in (True, False)}
        own = {ray: after[ray].own - before[ray].own for ray in (True, False)}
        assert own[True] - own[False] > 0.05  # a ray trial owns it; any other trial does not
    finally:
        os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.host
def test_conclab_selftest_prints_the_floor_and_records_it_where_summarize_and_compare_find_it(tmp_path):
    import json
    import re
    import subprocess
    import sys

    from conc_lab.analysis.selftest import FLOOR_FIELD, floor_of, machine_floor

    def conclab(*args):
        return subprocess.run(
            [sys.executable, "-m", "conc_lab.cli", *args], capture_output=True, text=True, timeout=300
        )

    done = conclab("selftest", "--out", str(tmp_path / "results"), "--repeats", "4", "--size", "20000")
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert re.fullmatch(r"on this machine, two identical arms differ by up to ±\d+\.\d% \(95%\)", line)
    (manifest,) = (tmp_path / "results" / "selftest").glob("*/_manifest.json")
    floor = json.loads(manifest.read_text())[FLOOR_FIELD]
    assert f"±{100 * floor:.1f}%" in line
    assert machine_floor(tmp_path / "results" / "smoke" / "some-sweep") == floor  # found from below
    assert floor_of(str(tmp_path / "results")) == floor  # what summarize(path) and compare(a, b) use
    bad = conclab("selftest", "--out", str(tmp_path / "results"), "--repeats", "1")
    assert bad.returncode == 2 and "--repeats" in bad.stderr and "Traceback" not in bad.stderr


def test_compare_calls_no_change_under_the_floor_and_summarize_says_so():
    from conc_lab.analysis.compare import compare

    a = pd.DataFrame(
        {
            "workload": "w",
            "backend": "threading",
            "workers": 2,
            "tasks": 4,
            "size": 1,
            "status": "ok",
            "run_s": 1.0 + 0.001 * np.arange(12),
        }
    )
    b = a.assign(run_s=a.run_s * 0.97)  # 3% faster, every run: the rank test is sure
    assert compare(a, b).loc[0, "change"] == "faster"
    assert compare(a, b, min_effect=0.05).loc[0, "change"] != "faster"  # under a ±5% A/A floor
    df = _rounds(9, set(), set())
    df = df.assign(run_s=np.where(df.backend == "threading", df.run_s * 1.97, df.run_s))  # speedup ~1.01
    assert "within A/A floor" in _threading(summarize(df, min_effect=0.05)).notes
    assert "within A/A floor" not in _threading(summarize(df)).notes


def test_break_even_claims_no_crossing_the_data_does_not_show():
    # pure-Python threads: 2% "faster" per unit by noise (a fit crosses at 1e4), ahead at no size
    spread = [0.92, 0.96, 1.0, 1.04, 1.08]  # the runs of every curve scatter ±8% about the line
    rows = []
    for size in (10_000, 30_000, 100_000):
        for backend, per_unit, setup in (("sequential", 1e-5, 0.0), ("threading", 0.98e-5, 0.002)):
            for r in range(5):
                rows.append(
                    {
                        "workload": "w",
                        "tasks": 2,
                        "size": size,
                        "backend": backend,
                        "repeat": r,
                        "workers": 1 if backend == "sequential" else 2,
                        "status": "ok",
                        "setup_s": setup,
                        "run_s": per_unit * size * spread[r],
                    }
                )
    s = summarize(pd.DataFrame(rows))
    th = s[s.backend == "threading"]
    assert (th.break_even == "not at the sizes measured").all()
    assert th.break_even_size.isna().all()


def _cpu_run(backend: str, workers: int, run_s: float, cpu_s: float, repeat: int) -> dict:
    """A run of 2 tasks of pure-Python work; threads overlap their tasks (both run the whole time)."""
    if workers == 1:
        recs = [
            {"worker": 0, "start_s": 0.0, "end_s": run_s / 2},
            {"worker": 0, "start_s": run_s / 2, "end_s": run_s},
        ]
    else:
        recs = [{"worker": w, "start_s": 0.0, "end_s": run_s} for w in range(workers)]
    return {
        "workload": "experiments.cpu:sum_squares",
        "tasks": 2,
        "size": 10,
        "backend": backend,
        "workers": workers,
        "repeat": repeat,
        "status": "ok",
        "run_s": run_s,
        "setup_s": 0.0,
        "cpu_user_s": cpu_s,
        "cpu_sys_s": 0.0,
        "task_records": recs,
        "foreign_cpu": 0.0,
    }


def test_why_never_calls_pure_cpu_work_waiting_and_names_the_gil_in_every_sweep():
    rows = [_cpu_run("sequential", 1, 1.0, 0.98, 0)]  # the quiet plain loop: on the CPU throughout
    rows += [_cpu_run("sequential", 1, 1.0, 0.73, r) for r in (1, 2)]  # 27% off the CPU (preempted)
    # threads on the GIL: CPU 1.3x wall in one sweep (the host's thread, a noisy clock), 1.0x in another
    for cpu_walls in (1.0, 1.3):
        rows_t = rows + [_cpu_run("threading", 2, 2.0, 2.0 * cpu_walls, r) for r in range(3)]
        s = summarize(pd.DataFrame(rows_t))
        seq, th = s[s.backend == "sequential"].iloc[0], _threading(s)
        assert "waiting" not in str(seq.why), seq.why
        assert str(th.why).startswith("GIL-bound"), th.why


@pytest.mark.slow
@pytest.mark.host
def test_the_cli_and_the_api_filter_a_summary_the_same_way(tmp_path):
    import json
    import subprocess
    import sys

    from conc_lab.run.runner import sweep

    cfg = tmp_path / "filters.yaml"
    cfg.write_text(
        "name: filters\nrepeats: 3\nwarmup: 0\naffinity: none\n"
        "matrix:\n  workload: [experiments.io:sleep]\n  backend: [sequential, threading]\n"
        "  workers: [1, 2]\n  tasks: [2]\n  size: [1, 2]\n"
    )
    result = sweep(cfg, out=tmp_path / "results")
    api = summarize(result.sweep_dir, workers=2, size=2)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "conc_lab.cli",
            "summarize",
            str(result.sweep_dir),
            "--workers",
            "2",
            "--size",
            "2",
            "-f",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    cli = pd.DataFrame(json.loads(done.stdout))
    key = ["backend", "workers", "size"]
    assert cli[key].values.tolist() == api[key].values.tolist() == [["sequential", 1, 2], ["threading", 2, 2]]


@pytest.mark.host
def test_a_real_adjacent_sweep_pairs_each_run_with_the_baseline_run_just_before_it(tmp_path):
    import conc_lab
    from conc_lab.run.runner import sweep

    cfg = tmp_path / "adjacent.yaml"
    cfg.write_text(
        "name: adjacent\nrepeats: 3\nwarmup: 0\naffinity: none\npairing: adjacent\n"
        "matrix:\n  workload: [experiments.io:sleep]\n  backend: [sequential, threading]\n"
        "  workers: [1, 2]\n  tasks: [2]\n  size: [2]\n"
    )
    result = sweep(cfg, out=tmp_path / "results")
    assert result.ok and result.recorded == 3 * 4  # per round: A B A C
    df = conc_lab.load(result.sweep_dir).sort_values("started_at").reset_index(drop=True)
    pairs = pair_runs(df)
    for i in np.flatnonzero((df["backend"] == "threading").to_numpy()):
        assert pairs[i] == i - 1  # the baseline run right before it
        assert df.loc[i - 1, "round"] == df.loc[i, "round"]
    s = summarize(df)
    assert (s[s.backend == "threading"].speedup_method == "paired").all()


def test_an_unpaired_interval_also_covers_the_noisy_runs_behind_it():
    df = _rounds(11, set(), set()).drop(columns="started_at")  # no times: the unpaired estimate
    thr = np.flatnonzero((df["backend"] == "threading").to_numpy())
    run = df["run_s"].to_numpy().copy()
    run[thr[3]] *= 2.0  # measured while others had the cores
    noisy = np.zeros(len(df), bool)
    noisy[thr[3]] = True
    quiet = _threading(summarize(df.assign(run_s=run)))
    flagged = _threading(summarize(df.assign(run_s=run, noisy=noisy)))
    assert quiet.speedup_method == flagged.speedup_method == "unpaired"
    assert quiet.speedup_ci_low > 1.9 and flagged.speedup_ci_low < 1.05


def test_a_tick_of_foreign_cpu_in_a_short_run_is_not_noise_but_a_busy_core_is():
    from conc_lab.host.noise import verdict

    # /proc/stat counts 10 ms ticks: one in a 40 ms run reads "25%", and is not a competitor
    assert verdict({"foreign_cpu": 0.25, "run_s": 0.04, "setup_s": 0.0, "cores": [0]}) is None
    assert verdict({"foreign_cpu": 0.3, "run_s": 0.05, "cores": [0, 1]}) is None  # 3 ticks over 2 cores
    assert verdict({"foreign_cpu": 0.9, "run_s": 0.5, "cores": [0]}) == "others used 90% of its cores"
    assert verdict({"foreign_cpu": 0.5, "run_s": 0.2, "cores": [0, 1]}) == "others used 50% of its cores"


def test_one_pair_standing_for_two_runs_gives_way_to_the_unpaired_interval():
    # Three rounds: the plain loop failed in round 1, threading in round 2, so each side has two ok
    # runs but only round 0 pairs. One pair has no interval; both sides' two runs do.
    df = _rounds(3, set(), set())
    lost = ((df["backend"] == "sequential") & (df["repeat"] == 1)) | (
        (df["backend"] == "threading") & (df["repeat"] == 2)
    )
    df.loc[lost, ["status", "run_s"]] = ["failed", np.nan]
    row = _threading(summarize(df))
    assert row.speedup_method == "unpaired" and "too few runs" not in row.notes
    assert row.baseline_n == 2  # the runs the baseline is the median of, a column of its own
    with pytest.warns(UserWarning, match="no sequential runs"):
        alone = summarize(df[df.backend != "sequential"])
    assert pd.isna(alone.baseline_n.iloc[0])  # no baseline: <NA>
    assert row.speedup_ci_low <= row.speedup <= row.speedup_ci_high and 1.9 < row.speedup < 2.1

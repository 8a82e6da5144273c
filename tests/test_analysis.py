"""Summaries, scaling fits and comparisons on hand-built frames whose answers are known."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from conc_lab.analysis.compare import compare, compare_verdict
from conc_lab.analysis.scaling import amdahl_speedup, fit_amdahl, fit_scaling, predict_scaling, usl_speedup
from conc_lab.analysis.stats import mann_whitney_p
from conc_lab.analysis.summary import summarize, tidy_dtypes
from conc_lab.present.render import render

pytestmark = pytest.mark.inprocess


def runs(backend: str, workers: int, times, *, status="ok", **extra) -> list[dict]:
    base = {"workload": "experiments.cpu:sum_squares", "tasks": 8, "size": 1000, "hostname": "box"}
    return [
        {**base, "backend": backend, "workers": workers, "status": status, "run_s": t, **extra} for t in times
    ]


def row(summary: pd.DataFrame, **where) -> pd.Series:
    mask = np.ones(len(summary), bool)
    for key, value in where.items():
        col = summary[key]
        mask &= (col.isna() if value is None else col == value).to_numpy()
    assert mask.sum() == 1, f"expected one row for {where}, got {mask.sum()}"
    return summary[mask].iloc[0]


def test_known_medians_speedup_efficiency_and_karp_flatt():
    df = pd.DataFrame(
        runs("sequential", 1, [3.9, 4.0, 4.1], setup_s=0.0, correct=True)
        + runs("threading", 2, [4.2, 4.4, 4.0, 4.3], setup_s=0.001, correct=True)
        + runs("multiprocessing", 4, [1.18, 1.2, 1.22], setup_s=0.05, correct=True, start_method="fork")
    )
    s = summarize(df)
    assert list(s.backend) == ["sequential", "threading", "multiprocessing"]  # baseline first
    seq = row(s, backend="sequential")
    assert (seq.n, seq.median_s, seq.speedup, seq.speedup_ci_low, seq.speedup_ci_high) == (
        3,
        4.0,
        1.0,
        1.0,
        1.0,
    )
    thr = row(s, backend="threading")
    assert thr.median_s == pytest.approx(4.25)
    assert thr.q1_s == pytest.approx(np.quantile([4.2, 4.4, 4.0, 4.3], 0.25))
    assert thr.iqr_s == pytest.approx(np.quantile([4.2, 4.4, 4.0, 4.3], 0.75) - thr.q1_s)
    assert thr.speedup == pytest.approx(4.0 / 4.25)
    assert thr.efficiency == pytest.approx(4.0 / 4.25 / 2)
    assert thr.setup_s == pytest.approx(0.001)
    mp = row(s, backend="multiprocessing")
    assert mp.start_method == "fork"
    assert mp.speedup == pytest.approx(4.0 / 1.2)
    assert mp.efficiency == pytest.approx(4.0 / 1.2 / 4)
    # Karp–Flatt: e = (1/S - 1/p) / (1 - 1/p)
    assert mp.karp_flatt == pytest.approx((1.2 / 4.0 - 0.25) / 0.75)
    assert np.isnan(seq.karp_flatt)
    assert mp.speedup_ci_low < mp.speedup < mp.speedup_ci_high
    assert (s.correct_share == 1.0).all()
    assert (s.notes == "").all()


def test_failures_are_counted_never_dropped():
    df = pd.DataFrame(
        runs("sequential", 1, [1.0, 1.0, 1.0])
        + runs("threading", 2, [0.5, 0.6])
        + runs("threading", 2, [None], status="failed")
        + runs("threading", 2, [None], status="timeout")
        + runs("threading", 2, [0.5], status="skipped")
        + runs("ray", 2, [None, None], status="failed")
    )
    s = summarize(df)
    thr = row(s, backend="threading")
    assert (thr.n, thr.failures, thr.skipped) == (2, 2, 1)
    assert thr.median_s == pytest.approx(0.55)  # the skipped run's time is not a measurement
    assert "failures" in thr.notes
    ray = row(s, backend="ray")
    assert (ray.n, ray.failures) == (0, 2)
    assert np.isnan(ray.median_s) and np.isnan(ray.speedup)
    assert "no runs" in ray.notes and "failures" in ray.notes


def test_correct_share_counts_only_checkable_runs():
    df = pd.DataFrame(
        runs("sequential", 1, [1.0, 1.0], correct=True)
        + runs("threading", 2, [1.0, 1.0, 1.0], correct=True)
        + runs("threading", 2, [1.0], correct=False)
        + runs("multiprocessing", 2, [1.0, 1.0], correct=None)
    )
    s = summarize(df)
    assert row(s, backend="threading").correct_share == pytest.approx(0.75)
    assert "incorrect" in row(s, backend="threading").notes
    assert np.isnan(row(s, backend="multiprocessing").correct_share)


def test_baseline_is_matched_on_parameters_python_and_node():
    df = pd.DataFrame(
        runs("sequential", 1, [2.0], size=10)
        + runs("sequential", 1, [8.0], size=20)
        + runs("threading", 2, [1.0], size=10)
        + runs("threading", 2, [2.0], size=20)
        + runs("sequential", 1, [6.0], size=10, python="3.13t")
        + runs("threading", 2, [1.5], size=10, python="3.13t")
        + runs("threading", 2, [1.0], size=10, hostname="other-box")  # no baseline measured there
    )
    s = summarize(df)
    assert row(s, backend="threading", size=10, node="box", python=None).speedup == pytest.approx(2.0)
    assert row(s, backend="threading", size=20).speedup == pytest.approx(4.0)
    assert row(s, backend="threading", python="3.13t").speedup == pytest.approx(4.0)
    lost = row(s, node="other-box")
    assert np.isnan(lost.speedup) and "no baseline" in lost.notes


def test_a_cluster_node_without_its_own_baseline_borrows_the_other_nodes_flagged():
    df = pd.DataFrame(
        runs("sequential", 1, [4.0, 4.0, 4.4], node_id="n1")
        + runs("sequential", 1, [3.0], node_id="n3")
        + runs("threading", 2, [2.0], node_id="n1")
        + runs("threading", 2, [1.0], node_id="n2")  # n2 ran no sequential trial
    )
    s = summarize(df)
    same = row(s, backend="threading", node="n1")
    assert same.speedup == pytest.approx(2.0) and "other nodes" not in same.notes
    borrowed = row(s, backend="threading", node="n2")
    assert borrowed.baseline_s == pytest.approx(4.0)  # the median of every node's sequential runs
    assert borrowed.speedup == pytest.approx(4.0) and "baseline from other nodes" in borrowed.notes


def test_node_id_wins_over_hostname():
    df = pd.DataFrame(runs("sequential", 1, [1.0], node_id="n1") + runs("sequential", 1, [2.0], node_id="n2"))
    assert sorted(summarize(df).node) == ["n1", "n2"]


def exact_vs_monte_carlo(sample: np.ndarray, resamples: int = 20000, seed: int = 0):
    rng = np.random.default_rng(seed)
    boot = np.median(rng.choice(sample, size=(resamples, len(sample))), axis=1)
    return np.quantile(boot, [0.025, 0.975])


@pytest.mark.parametrize("n", [5, 9, 15, 31])
def test_exact_bootstrap_interval_matches_a_brute_force_bootstrap_for_odd_n(n):
    sample = np.sort(np.random.default_rng(n).lognormal(0, 0.3, n))
    s = summarize(pd.DataFrame(runs("sequential", 1, sample)))
    lo, hi = exact_vs_monte_carlo(sample)
    # Monte-Carlo noise can move a percentile by at most one order statistic
    rank = {v: i for i, v in enumerate(sample)}
    assert abs(rank[s.ci_low_s[0]] - np.searchsorted(sample, lo)) <= 1
    assert abs(rank[s.ci_high_s[0]] - np.searchsorted(sample, hi)) <= 1


@pytest.mark.parametrize("n", [4, 10, 20])
def test_exact_bootstrap_interval_is_conservative_for_even_n(n):
    sample = np.sort(np.random.default_rng(n).lognormal(0, 0.3, n))
    s = summarize(pd.DataFrame(runs("sequential", 1, sample)))
    lo, hi = exact_vs_monte_carlo(sample)
    assert s.ci_low_s[0] <= lo + 1e-12 and hi <= s.ci_high_s[0] + 1e-12
    assert s.ci_low_s[0] < s.median_s[0] < s.ci_high_s[0]


def test_intervals_cover_the_true_median_and_speedup_about_95_percent_of_the_time():
    # 400 independent experiments in one frame (one "size" each): true median 1.0 for the
    # baseline and 0.25 for 4 processes, so the true speedup is exactly 4.
    rng = np.random.default_rng(42)
    experiments, n = 400, 11
    frames = []
    for backend, workers, median in (("sequential", 1, 1.0), ("multiprocessing", 4, 0.25)):
        frames.append(
            pd.DataFrame(
                {
                    "workload": "w",
                    "tasks": 8,
                    "size": np.repeat(np.arange(experiments), n),
                    "backend": backend,
                    "workers": workers,
                    "status": "ok",
                    "run_s": median * rng.lognormal(0, 0.1, experiments * n),
                }
            )
        )
    s = summarize(pd.concat(frames, ignore_index=True))
    seq, mp = s[s.backend == "sequential"], s[s.backend == "multiprocessing"]
    median_cover = ((seq.ci_low_s <= 1.0) & (1.0 <= seq.ci_high_s)).mean()
    speedup_cover = ((mp.speedup_ci_low <= 4.0) & (4.0 <= mp.speedup_ci_high)).mean()
    assert 0.90 <= median_cover <= 0.995, median_cover
    assert 0.90 <= speedup_cover <= 0.995, speedup_cover


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(min_value=1e-4, max_value=1e3, allow_nan=False), min_size=1, max_size=25),
        min_size=1,
        max_size=6,
    )
)
@pytest.mark.slow
def test_group_statistics_agree_with_numpy(groups):
    df = pd.DataFrame([r for i, g in enumerate(groups) for r in runs("sequential", 1, g, size=i)])
    s = summarize(df).set_index("size")
    for i, g in enumerate(groups):
        got = s.loc[i]
        assert got.n == len(g)
        assert got.median_s == pytest.approx(np.median(g), rel=1e-12)
        assert got.q1_s == pytest.approx(np.quantile(g, 0.25), rel=1e-12)
        assert got.q3_s == pytest.approx(np.quantile(g, 0.75), rel=1e-12)
        if len(g) == 1:  # one run says nothing of the spread: no interval
            assert np.isnan(got.ci_low_s) and np.isnan(got.ci_high_s)
        else:
            assert min(g) <= got.ci_low_s <= got.median_s <= got.ci_high_s <= max(g)


def test_break_even_says_when_the_baselines_line_stands_on_one_size():
    """The plain loop ran ok at size 20 only (its size-10 runs failed), the backend at 10 and 20:
    the loop's time per unit is then its one run over its size, which the text says of a backend
    measured at one size ("one size measured, run ∝ size assumed") but did not say of the loop."""
    seq = runs("sequential", 1, [2.0, 2.02, 1.98], size=20) + runs(
        "sequential", 1, [1.0] * 3, size=10, status="failed"
    )
    thr = runs("threading", 2, [0.6, 0.61, 0.59], size=10) + runs("threading", 2, [1.1, 1.11, 1.09], size=20)
    s = summarize(
        pd.DataFrame(seq + thr).assign(setup_s=lambda d: d.backend.map({"sequential": 0.0}).fillna(0.05))
    )
    t = row(s, backend="threading", size=20)
    # loop: 0.1 s a unit, no fixed cost; threads: 0.05 s a unit (0.6 -> 1.1 over 10 units), fixed 0.1 + 0.05
    assert t.break_even_size == pytest.approx((0.1 + 0.05) / (0.1 - 0.05))
    assert t.break_even == "size ≥ 3 (extrapolated; one size measured, run ∝ size assumed)"


def test_a_size_that_names_no_run_lists_the_sizes_in_numeric_order():
    """`conclab summarize --size 7` said "there are: 20, 20000, 5, 80000" (sorted as text)."""
    df = pd.DataFrame([r for z in (5, 20, 20000, 80000) for r in runs("sequential", 1, [1.0], size=z)])
    with pytest.raises(ValueError, match=r"no run has size 7; there are: 5, 20, 20000, 80000$"):
        summarize(df, size=7)


def test_unstable_and_superlinear_are_flagged():
    df = pd.DataFrame(
        runs("sequential", 1, [4.0, 4.01, 3.99, 4.0, 4.02])
        + runs("threading", 2, [2.0, 3.5, 1.2, 2.8, 4.4])  # CV far over 10%
        + runs("multiprocessing", 2, [1.0, 1.01, 0.99, 1.0, 1.0])  # speedup 4 on 2 workers
        + runs("multiprocessing", 4, [1.01, 1.0, 0.99, 1.0, 1.01])
    )
    s = summarize(df)
    assert row(s, backend="threading").unstable and "unstable" in row(s, backend="threading").notes
    assert not row(s, backend="sequential").unstable
    assert row(s, backend="multiprocessing", workers=2).superlinear
    assert not row(s, backend="multiprocessing", workers=4).superlinear  # 4x on 4 is the ideal, not beyond
    assert not row(s, backend="threading").superlinear


def test_amdahl_fit_recovers_a_known_serial_fraction():
    rng = np.random.default_rng(7)
    frames = []
    for backend, f in (("threading", 0.9), ("multiprocessing", 0.1)):
        for workers in (1, 2, 4, 8, 16):
            t = 10.0 * (f + (1 - f) / workers) * rng.lognormal(0, 0.01, 9)
            frames += runs(backend, workers, t)
    frames += runs("sequential", 1, 10.0 * rng.lognormal(0, 0.01, 9))
    s = summarize(pd.DataFrame(frames))
    fit = fit_amdahl(s).set_index("backend")
    assert fit.loc["threading", "serial_fraction"] == pytest.approx(0.9, abs=0.02)
    assert fit.loc["multiprocessing", "serial_fraction"] == pytest.approx(0.1, abs=0.02)
    assert fit.loc["multiprocessing", "max_speedup"] == pytest.approx(10, rel=0.2)
    assert fit.loc["multiprocessing", "points"] == 5
    assert fit.loc["multiprocessing", "rmse"] < 0.2
    # Karp–Flatt per point estimates the same serial fraction
    kf = s[(s.backend == "multiprocessing") & (s.workers > 1)].karp_flatt
    assert np.allclose(kf, 0.1, atol=0.03)
    assert amdahl_speedup(0.1, np.array([16]))[0] == pytest.approx(1 / (0.1 + 0.9 / 16))


def test_mann_whitney_matches_scipy_on_ragged_groups_with_and_without_ties():
    rng = np.random.default_rng(3)
    groups, values, sides, expected = [], [], [], []
    for i in range(300):
        n1, n2 = rng.integers(1, 14, 2)
        a, b = rng.normal(0, 1, n1), rng.normal(rng.normal(0, 1), 1, n2)
        if i % 3 == 0:
            a, b = np.round(a), np.round(b)
        groups.append(np.full(n1 + n2, i))
        values.append(np.concatenate([a, b]))
        sides.append(np.r_[np.zeros(n1, bool), np.ones(n2, bool)])
        equal = np.ptp(np.r_[a, b]) == 0
        expected.append(1.0 if equal else mannwhitneyu(a, b, method="auto").pvalue)
    got = mann_whitney_p(np.concatenate(groups), np.concatenate(values), np.concatenate(sides), 300)
    assert np.allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_compare_finds_a_real_change_and_not_a_noise_one():
    def sweep(scale_mp: float, seed: int) -> pd.DataFrame:
        r = np.random.default_rng(seed)
        return pd.DataFrame(
            runs("sequential", 1, 2.0 * r.lognormal(0, 0.02, 10))
            + runs("multiprocessing", 2, scale_mp * r.lognormal(0, 0.02, 10), start_method="spawn")
        )

    before, after = sweep(1.0, 1), sweep(0.8, 2)
    after = pd.concat([after, pd.DataFrame(runs("ray", 2, [0.9, 0.95]))], ignore_index=True)
    c = compare(before, after)
    mp = row(c, backend="multiprocessing")
    assert mp.change == "faster" and mp.significant
    assert mp.ratio == pytest.approx(0.8, rel=0.03)
    assert mp.ratio_ci_low < 0.8 < mp.ratio_ci_high
    assert mp.p_value < 0.001 and mp.q_value >= mp.p_value
    seq = row(c, backend="sequential")
    assert seq.change == "same" and seq.p_value > 0.05
    ray = row(c, backend="ray")
    assert ray.change == "only in b" and (ray.n_a, ray.n_b) == (0, 2)


def test_compare_refuses_an_empty_side():
    with pytest.raises(ValueError, match="a is empty"):
        compare(pd.DataFrame(columns=["workload", "backend", "run_s"]), pd.DataFrame(runs("ray", 1, [1.0])))


def test_render_formats_round_trip():
    df = pd.DataFrame(
        runs("sequential", 1, [1.0, 1.1, 0.9])
        + runs("threading", 2, [0.6, 0.5, 0.55])
        + runs("ray", 2, [None], status="failed")
    )
    s = summarize(df)
    back = pd.read_csv(io.StringIO(render(s, "csv")))
    assert list(back.columns) == list(s.columns) and len(back) == 3
    assert back.speedup.tolist()[:2] == pytest.approx(s.speedup.tolist()[:2])
    records = json.loads(render(s, "json"))
    assert records[1]["backend"] == "threading" and records[2]["median_s"] is None
    md = render(s, "markdown").splitlines()
    assert md[0].startswith("| workload |") and len(md) == 2 + 3
    table = render(s, "table")
    for text in ("sequential", "threading", "ray", "1.82", "failures"):
        assert text in table
    assert "start_method" not in table  # a key that never varies is left out for people
    with pytest.raises(ValueError, match="unknown format"):
        render(s, "xml")


def test_tidy_dtypes_makes_categoricals_and_summaries_accept_them():
    df = pd.DataFrame(runs("sequential", 1, [1.0, 2.0]) + runs("threading", 2, [1.0]))
    tidy = tidy_dtypes(df)
    assert isinstance(tidy.backend.dtype, pd.CategoricalDtype) and not isinstance(
        df.backend.dtype, pd.CategoricalDtype
    )
    a, b = summarize(df), summarize(tidy)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


def test_compare_verdict_counts_changes_and_warns_when_runs_are_too_few():
    a = pd.DataFrame(runs("sequential", 1, [1.0, 1.1, 0.9]) + runs("threading", 2, [2.0, 2.1, 1.9]))
    b = a.assign(run_s=a.run_s * 0.5)
    c = compare(a, b)
    assert list(c.backend) == ["sequential", "threading"]
    # 3 runs a side: the smallest exact two-sided p is 2/C(6,3) = 0.1, so nothing can be significant
    assert c.p_value.tolist() == pytest.approx([0.1, 0.1]) and (c.change == "inconclusive").all()
    verdict = compare_verdict(c)
    assert verdict.startswith("2 inconclusive; geometric mean of b/a over 2 matched trials: 0.5")
    assert "2 trial(s) have too few runs" in verdict
    more = pd.concat([a] * 3, ignore_index=True)
    more = more.assign(run_s=more.run_s * np.random.default_rng(0).lognormal(0, 0.01, len(more)))
    c = compare(more, more.assign(run_s=more.run_s * 0.5))
    assert (c.change == "faster").all() and "too few" not in compare_verdict(c)


def test_compare_says_inconclusive_when_the_test_lacks_power_not_same():
    # #12: a 2.2x change measured 3 times a side was labelled "same"
    a = pd.DataFrame(runs("threading", 2, [1.0, 1.05, 0.95]))
    c = compare(a, a.assign(run_s=a.run_s * 2.2))
    assert c.change.tolist() == ["inconclusive"] and not c.significant.any()
    assert compare_verdict(c).startswith("1 inconclusive")
    # with power: the same change is "slower", and a real non-change is "same"
    r = np.random.default_rng(3)
    a = pd.DataFrame(runs("threading", 2, r.lognormal(0, 0.02, 12)))
    assert compare(a, a.assign(run_s=a.run_s * 2.2)).change.tolist() == ["slower"]
    b = pd.DataFrame(runs("threading", 2, r.lognormal(0, 0.02, 12)))
    assert compare(a, b).change.tolist() == ["same"]


def test_compare_text_says_why_an_interval_clear_of_one_is_still_no_answer():
    """A 2.2x slowdown measured 3 times a side: every b run slower than every a run, the medians'
    interval well clear of 1, yet "no answer" (3 runs a side cannot reach p < 0.05). The footnote
    said "the interval holds both faster and slower", which the line's own interval belies."""
    from conc_lab.present.comparison import compare_text

    a = pd.DataFrame(runs("threading", 2, [1.0, 1.05, 0.95]))
    c = compare(a, a.assign(run_s=a.run_s * 2.2))
    assert c.change.tolist() == ["inconclusive"] and c.ratio_ci_low[0] > 1.5
    text = compare_text(c, width=100)
    assert "no answer (b/a" in text and "holds both faster and slower" not in text
    assert "no answer: the interval says slower, but 3 runs against 3 cannot give a p below 0.1" in text
    # an interval that does hold 1 keeps the old footnote
    c = compare(a, a.assign(run_s=[1.05, 0.95, 1.0]))
    assert c.ratio_ci_low[0] < 1 < c.ratio_ci_high[0]
    assert "no answer: the interval holds both faster and slower" in compare_text(c, width=100)


def test_one_run_has_no_95_percent_interval():
    """A sweep with ``repeats: 1``: one run per trial, one pair per speedup. Its "95% CI" read as
    the run itself (5.41 ms – 5.41 ms, speedup 1.05 (1.05–1.05), compare's b/a 0.53–0.53): an
    interval of no width from one observation, as if the number were certain."""
    at = pd.to_datetime(["2026-01-01 00:00:00", "2026-01-01 00:00:01"], utc=True)
    one = pd.DataFrame(runs("sequential", 1, [2.0]) + runs("threading", 2, [1.0]))
    one = one.assign(round=0, started_at=at, setup_s=0.0, teardown_s=0.0, noisy=[False, True])
    s = summarize(one)
    t = row(s, backend="threading")
    assert t.n == 1 and t.speedup == pytest.approx(2.0) and t.speedup_method == "paired"
    assert t[["ci_low_s", "ci_high_s", "speedup_ci_low", "speedup_ci_high"]].isna().all()
    assert t[["e2e_speedup_ci_low", "e2e_speedup_ci_high"]].isna().all()
    assert row(s, backend="sequential")[["ci_low_s", "ci_high_s"]].isna().all()
    unpaired = summarize(one.drop(columns=["round", "started_at"]))
    assert row(unpaired, backend="threading")[["speedup_ci_low", "speedup_ci_high"]].isna().all()
    c = compare(one, one.assign(run_s=one.run_s / 2))
    assert c.ratio.tolist() == [0.5, 0.5] and c[["ratio_ci_low", "ratio_ci_high"]].isna().all(axis=None)
    # two runs: an interval again (the exact bootstrap's: the two runs themselves)
    two = summarize(pd.DataFrame(runs("threading", 2, [1.0, 1.2])))
    assert two[["ci_low_s", "ci_high_s"]].iloc[0].tolist() == [1.0, 1.2]


def test_the_noise_line_counts_one_run_as_one_run_and_says_what_the_csv_holds():
    """It read "1 runs are noisy (... -f csv has noisy and noise_note per run)": the csv has one row
    per trial, its ``noisy`` the count of that trial's noisy runs."""
    from conc_lab.cli.results import _noise_line

    df = pd.DataFrame(runs("threading", 2, [1.0, 1.1])).assign(noisy=[True, False])
    line = _noise_line(df)
    assert line.startswith("1 run is noisy (") and "per run" not in line
    assert "-f csv has per row how many (noisy) and why (noise_note)" in line
    redone = pd.concat([df, pd.DataFrame(runs("threading", 2, [3.0], status="redone"))])
    assert _noise_line(redone).startswith("1 run was redone as noisy; 1 run is still noisy (")


def usl_runs(backend: str, sigma: float, kappa: float, workers=(1, 2, 4, 8, 16), seed=5, noise=0.01):
    r = np.random.default_rng(seed)
    frames = runs("sequential", 1, 10.0 * r.lognormal(0, noise, 9))
    for n in workers:
        frames += runs(
            backend, n, 10.0 / usl_speedup(sigma, kappa, np.array([n]))[0] * r.lognormal(0, noise, 9)
        )
    return frames


def test_predict_scaling_takes_the_summary_the_readme_fits_from():
    """`predict_scaling(summary)` died with KeyError: 'amdahl_f' (it wanted fit_scaling's frame)."""
    s = summarize(pd.DataFrame(usl_runs("threading", 0.05, 0.02)))
    from_summary = predict_scaling(s, (32,))
    assert from_summary.equals(predict_scaling(fit_scaling(s), (32,)))
    usl = from_summary.set_index("law").loc["usl"]
    assert usl.speedup == pytest.approx(usl_speedup(0.05, 0.02, np.array([32]))[0], rel=0.05)
    with pytest.raises(ValueError, match="fit_scaling"):
        predict_scaling(pd.DataFrame({"workload": ["w"], "workers": [2]}))


def test_usl_fit_recovers_known_contention_and_coherency_and_wins_over_amdahl():
    s = summarize(pd.DataFrame(usl_runs("threading", 0.05, 0.02)))
    fit = fit_scaling(s).set_index("backend").loc["threading"]
    assert fit.usl_sigma == pytest.approx(0.05, abs=0.015)
    assert fit.usl_kappa == pytest.approx(0.02, abs=0.004)
    assert fit.usl_peak_workers == pytest.approx(np.sqrt(0.95 / 0.02), rel=0.15)
    assert fit.better == "usl" and fit.usl_chi2 < fit.amdahl_chi2
    assert 0 <= fit.amdahl_f <= 1  # a fraction, however badly Amdahl fits retrograde data
    pred = predict_scaling(fit_scaling(s)).query("law == 'usl'").set_index("workers")
    truth = usl_speedup(0.05, 0.02, np.array([4, 8, 16, 64]))
    assert ((pred.speedup_low.to_numpy() <= truth) & (truth <= pred.speedup_high.to_numpy())).all()
    assert pred.extrapolated.tolist() == [False, False, False, True]  # 64 lies beyond the measured 16
    assert pred.better.all()


def test_amdahl_wins_on_amdahl_data_and_a_slowdown_never_gives_a_fraction_above_one():
    s = summarize(pd.DataFrame(usl_runs("multiprocessing", 0.1, 0.0, seed=8)))
    fit = fit_scaling(s).loc[0]
    assert fit.better == "amdahl" and fit.amdahl_f == pytest.approx(0.1, abs=0.02)
    assert fit.usl_kappa == pytest.approx(0.0, abs=0.003)
    # threads on GIL-bound work: slower with more workers (S(2) = 0.57): Amdahl cannot say it
    slow = summarize(pd.DataFrame(usl_runs("threading", 0.9, 0.5, workers=(1, 2, 3, 4))))
    assert (fit_amdahl(slow).serial_fraction <= 1).all()
    fit = fit_scaling(slow).loc[0]
    assert fit.amdahl_f == pytest.approx(1.0) and fit.better == "usl" and fit.usl_kappa > 0.3


def test_no_law_is_fitted_with_as_many_parameters_as_worker_counts():
    s = summarize(pd.DataFrame(usl_runs("threading", 0.2, 0.0, workers=(1, 2))))
    fit = fit_scaling(s).loc[0]
    assert fit.points == 2 and np.isnan(fit.usl_sigma) and np.isfinite(fit.amdahl_f)
    assert "USL: too few worker counts (2 for 2 parameters)" in fit.note and fit.better == "amdahl"
    pred = predict_scaling(fit_scaling(s))
    assert set(pred.law) == {"amdahl"} and pred.extrapolated.all()  # 4..64 all beyond 2 workers
    # one worker count (the seed config: workers [2] only) fits nothing: no f = 1.75, no ceiling of 87.8
    one = summarize(pd.DataFrame(usl_runs("threading", 0.2, 0.0, workers=(2,))))
    assert np.isnan(fit_amdahl(one).serial_fraction[0]) and np.isnan(fit_amdahl(one).max_speedup[0])
    fit = fit_scaling(one).loc[0]
    assert fit.better == "none" and "Amdahl: too few worker counts (1 for 1 parameter)" in fit.note
    assert len(predict_scaling(fit_scaling(one))) == 0


def test_end_to_end_speedup_counts_setup_and_teardown_where_measured():
    # #15 item 3: a user's program pays start-up, the run and joining the workers
    df = pd.DataFrame(
        runs("sequential", 1, [1.0, 1.0, 1.0], setup_s=0.0, teardown_s=0.0)
        + runs("multiprocessing", 2, [0.5, 0.5, 0.5], setup_s=0.3, teardown_s=0.1)
        + runs("threading", 2, [0.9, 0.9, 0.9], setup_s=0.01, teardown_s=None)  # teardown not measured
    )
    s = summarize(df)
    mp, th = row(s, backend="multiprocessing"), row(s, backend="threading")
    assert mp.speedup == pytest.approx(2.0) and mp.e2e_s == pytest.approx(0.9)
    assert mp.e2e_speedup == pytest.approx(1 / 0.9) and mp.e2e_speedup_ci_low <= mp.e2e_speedup
    assert th.e2e_s == pytest.approx(0.91)  # setup + run; the unmeasured teardown is not made up
    assert row(s, backend="sequential").e2e_speedup == 1.0


def test_break_even_size_from_start_up_cost_and_time_per_unit_of_work():
    # the loop: 10 µs per unit; processes: 0.2 s to start and stop, then 5 µs per unit -> 40 000 units
    frames = []
    for size in (10_000, 30_000, 100_000, 300_000):
        frames += runs("sequential", 1, [1e-5 * size] * 3, size=size, setup_s=0.0)
        frames += runs("multiprocessing", 2, [5e-6 * size] * 3, size=size, setup_s=0.15, teardown_s=0.05)
        frames += runs("threading", 2, [1.1e-5 * size] * 3, size=size, setup_s=0.001)
    s = summarize(pd.DataFrame(frames))
    mp = s[s.backend == "multiprocessing"]
    assert mp.break_even_size.to_numpy() == pytest.approx([40_000] * 4, rel=1e-6)
    assert (mp.break_even == "size ≥ 40,000").all()
    small, big = mp[mp["size"] == 10_000].iloc[0], mp[mp["size"] == 100_000].iloc[0]
    assert small.e2e_speedup < 1 < big.e2e_speedup  # the two sides of it, measured
    assert (s[s.backend == "threading"].break_even == "never (no faster per unit of work)").all()
    assert (s[s.backend == "sequential"].break_even == "").all()
    # one size measured: the run is taken as proportional to it, and the text says so
    one = summarize(pd.DataFrame([f for f in frames if f["size"] == 300_000]))
    assert row(one, backend="multiprocessing").break_even == (
        "size ≥ 40,000 (extrapolated; one size measured, run ∝ size assumed)"
    )


def test_break_even_stands_on_medians_like_the_speedups_beside_it():
    # #15: one slow run per curve moved the break-even (means) against the median speedups shown
    # beside it. The loop: 1 s per 100 000 units; processes 0.2 s to start, then 0.5 s: break-even
    # at 40 000 units, whatever one outlier does to the means.
    one = pd.DataFrame(
        runs("sequential", 1, [1.0, 1.0, 1.0, 1.0, 9.0], size=100_000, setup_s=0.0)
        + runs("multiprocessing", 2, [0.5, 0.5, 0.5, 0.5, 0.6], size=100_000, setup_s=0.2, teardown_s=0.0)
    )
    mp = row(summarize(one), backend="multiprocessing")
    assert mp.speedup == pytest.approx(2.0) and mp.e2e_speedup == pytest.approx(1 / 0.7)
    assert mp.break_even_size == pytest.approx(40_000)  # means: 0.2 / ((2.6 - 0.52) / 1e5) ≈ 9 600
    # several sizes: the line goes through each size's median run
    frames = []
    for size, outlier in ((10_000, 1.0), (100_000, 0.01), (300_000, 5.0)):
        frames += runs("sequential", 1, [1e-5 * size] * 4 + [outlier], size=size, setup_s=0.0)
        frames += runs("multiprocessing", 2, [5e-6 * size] * 5, size=size, setup_s=0.2, teardown_s=0.0)
    mp = summarize(pd.DataFrame(frames))
    mp = mp[mp.backend == "multiprocessing"]
    assert mp.break_even_size.to_numpy() == pytest.approx([40_000] * 3, rel=1e-6)


def test_python_api_filters_keep_the_sequential_baseline_and_say_did_you_mean():
    # #12 item 9: conc_lab.summarize(conc_lab.load(p, backend="threading")) gave every speedup NaN
    import conc_lab

    df = pd.DataFrame(
        runs("sequential", 1, [1.0, 1.1, 0.9])
        + runs("threading", 2, [0.6, 0.5, 0.55])
        + runs("multiprocessing", 2, [0.3, 0.35, 0.32])
    )
    s = conc_lab.summarize(df, backend="threading")
    assert list(s.backend) == ["sequential", "threading"] and np.isfinite(s.speedup).all()
    s = conc_lab.summarize(df, workload="sum_squares", workers=2)  # the function name, where unique
    assert set(s.backend) == {"sequential", "threading", "multiprocessing"} and np.isfinite(s.speedup).all()
    with pytest.raises(ValueError, match="no run has backend 'threadin'; did you mean 'threading'"):
        conc_lab.summarize(df, backend="threadin")
    with pytest.warns(UserWarning, match=r"summarize\(path, backend=...\) keeps them"):
        conc_lab.summarize(df[df.backend == "threading"])

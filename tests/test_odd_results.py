"""Offline analysis of odd but legitimate results, from real small sweeps: a sweep whose every run
failed, a sweep without the sequential baseline. A user reads them with summarize and report,
from Python and from the command line, and gets tables and pages, never a traceback."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

import conc_lab
from conc_lab import events
from conc_lab.cli import app
from conc_lab.config.document import parse_config

pytestmark = pytest.mark.host

TESTS = Path(__file__).resolve().parent


def _sweep(tmp_path: Path, name: str, workload: str, backends: list[str]) -> Path:
    cfg = parse_config(
        {
            "name": name,
            "repeats": 2,
            "warmup": 0,
            "timeout_s": 30,
            "matrix": {
                "workload": [workload],
                "backend": backends,
                "workers": [1, 2],
                "tasks": [2],
                "size": [5],
            },
        },
        path=str(TESTS / f"{name}.yaml"),  # so the host finds workloads_faulty beside it
    )
    return conc_lab.sweep(cfg, out=tmp_path, on_event=events.ignore).sweep_dir


def test_a_sweep_whose_every_run_failed_is_reported_not_a_traceback(tmp_path):
    """Every run raised: `conclab report` died with "TypeError: operation 'add' not supported for
    dtype 'str' with dtype 'int32'" (the attribution figure labelled an empty set of trials)."""
    sweep_dir = _sweep(tmp_path, "allfail", "workloads_faulty:raises", ["sequential", "threading"])
    df = conc_lab.load(sweep_dir)
    assert len(df) == 6 and (df["status"] == "failed").all()
    summary = conc_lab.summarize(df)
    assert (summary["n"] == 0).all() and summary["notes"].str.contains("failures").all()
    res = CliRunner().invoke(app, ["report", str(sweep_dir), "-o", str(tmp_path / "report")])
    assert res.exit_code == 0, res.output
    assert res.exception is None and (tmp_path / "report" / "index.html").exists()


def test_a_sweep_without_the_baseline_says_so_in_words_that_fit_it(tmp_path):
    """A config without ``sequential``: `conclab report` printed a Python warning with its source
    line ("report.py:68: UserWarning: ... summary = summarize(df)"), and from Python the warning
    blamed a filter nobody used ("conc_lab.load(path, backend=...) leaves them out")."""
    sweep_dir = _sweep(tmp_path, "nobase", "experiments.io:sleep", ["threading"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = conc_lab.summarize(sweep_dir)
    assert summary["speedup"].isna().all()
    (message,) = [str(w.message) for w in caught if "sequential" in str(w.message)]
    assert "backend: sequential in the config's matrix" in message
    res = CliRunner().invoke(app, ["report", str(sweep_dir), "-o", str(tmp_path / "report")])
    assert res.exit_code == 0, res.output
    assert "UserWarning" not in res.output and "summarize(df)" not in res.output
    assert "note: no sequential runs in these results, so no speedups" in res.output


def test_two_sweeps_of_different_configs_in_one_folder_are_not_called_mixed(tmp_path):
    """Two sweeps of different configs under one results root: summarize said "2 sweeps pooled
    (each row mixes their runs)", though no row held runs of both; two sweeps of one config do."""
    _sweep(tmp_path, "first", "experiments.io:sleep", ["sequential", "threading"])
    _sweep(tmp_path, "second", "experiments.cpu:sum_squares", ["sequential", "threading"])
    said = CliRunner().invoke(app, ["summarize", str(tmp_path)]).output.replace("\n", " ")
    assert "each row mixes" not in said and "2 sweeps pooled (though no row mixes their runs)" in said, said
    _sweep(tmp_path, "first", "experiments.io:sleep", ["sequential", "threading"])
    said = CliRunner().invoke(app, ["summarize", str(tmp_path)]).output.replace("\n", " ")
    # the first config's 3 rows (sequential, threading x1, x2) hold both of its sweeps; the second's 3 do not
    assert "3 sweeps pooled (3 of 6 rows mix their runs)" in said, said


def test_load_names_a_workload_as_summarize_does(tmp_path):
    """`conc_lab.summarize(path, workload="sleep")` found experiments.io:sleep, but
    `conc_lab.load(path, workload="sleep")` returned an empty frame without a word."""
    sweep_dir = _sweep(tmp_path, "names", "experiments.io:sleep", ["sequential", "threading"])
    whole = conc_lab.load(sweep_dir)
    assert len(whole) == 6
    assert len(conc_lab.load(sweep_dir, workload="sleep")) == 6
    assert len(conc_lab.load(sweep_dir, workload=["experiments.io:sleep"], workers=2)) == 2
    assert conc_lab.load(sweep_dir, workload="sleep", backend="threading")["backend"].eq("threading").all()
    with pytest.raises(ValueError, match="no run has workload 'slep'; did you mean"):
        conc_lab.load(sweep_dir, workload="slep")


def test_a_misspelled_backend_is_named_against_every_stored_one(tmp_path):
    """`conc_lab.summarize(path, backend="threadin")` said "there are: sequential" (it had read only
    the baseline's rows), where the CLI's --backend says did-you-mean; `conc_lab.load(path,
    backend="threadin")` returned an empty frame without a word."""
    sweep_dir = _sweep(tmp_path, "backends", "experiments.io:sleep", ["sequential", "threading"])
    for read in (conc_lab.load, conc_lab.summarize):
        with pytest.raises(ValueError, match="no run has backend 'threadin'; did you mean 'threading'"):
            read(sweep_dir, backend="threadin")
        with pytest.raises(ValueError, match="no run has backend 'ray'; there are: sequential, threading$"):
            read(sweep_dir, backend="ray")
    assert conc_lab.load(sweep_dir, backend="threading")["backend"].eq("threading").all()
    assert set(conc_lab.summarize(sweep_dir, backend="threading")["backend"]) == {"sequential", "threading"}


def test_an_answer_too_long_for_decimal_is_checked_not_failed(tmp_path):
    # was: every run of a workload returning 3000! failed with "Exceeds the limit (4300 digits) for
    # integer string conversion", the checksum's int.__repr__ refusing it
    df = conc_lab.load(
        _sweep(tmp_path, "bigint", "workloads_faulty:big_factorial", ["sequential", "threading"])
    )
    assert (df["status"] == "ok").all(), df["error"].dropna().tolist()
    assert df["correct"].astype(bool).all()
    assert df["checksum"].nunique() == 1

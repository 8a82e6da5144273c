"""``precision:`` adds rounds after ``repeats`` for the speedups still too wide, and only for them (#20).

On a shared VM five rounds leave a pure-Python speedup's interval at ±12% or more; the rounds it
needs are added for that trial and its baseline alone, interleaved as every round is. Checked on
real sweeps: a trial whose times scatter on purpose gets every round up to ``max_repeats``, a
steady one stops at ``repeats``; a sweep stopped inside the added rounds resumes them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

import conc_lab
from conc_lab import events
from conc_lab.config.document import parse_config
from conc_lab.config.errors import ConfigError
from conc_lab.plan.matrix import Trial
from conc_lab.plan.runs import run_order

TESTS = str(Path(__file__).resolve().parent)

pytestmark = pytest.mark.host


def _config(**top):
    doc = {
        "name": "prec",
        "repeats": 5,
        "warmup": 0,
        "precision": {"target": 0.25, "max_repeats": 8},
        "matrix": {
            "workload": [
                {"workload": "workloads_jitter:jittery", "size": [3]},
                {"workload": "workloads_jitter:steady", "size": [20]},
            ],
            "backend": ["sequential", "threading"],
            "workers": [1],
            "tasks": [1],
        },
        **top,
    }
    return parse_config(doc, path=str(Path(TESTS) / "prec.yaml"))  # the workloads are found beside it


def _rows_per(df) -> dict[tuple[str, str], int]:
    """Runs per (workload, backend), the noisy runs that were redone left out (``noise.redo``)."""
    df = df[df.status != "redone"]
    return dict(Counter(zip(df.workload.str.rsplit(":", n=1).str[-1], df.backend.astype(str))))


def test_rounds_are_added_for_the_wide_speedup_alone(tmp_path):
    told = []
    result = conc_lab.sweep(_config(), tmp_path, on_event=told.append)
    df = conc_lab.load(result.sweep_dir)
    assert _rows_per(df) == {
        ("jittery", "sequential"): 8,
        ("jittery", "threading"): 8,
        ("steady", "sequential"): 5,
        ("steady", "threading"): 5,
    }
    added = [e for e in told if isinstance(e, events.RoundAdded)]
    assert [e.round for e in added] == [5, 6, 7] and all(e.trials == 1 and e.runs == 2 for e in added)
    (end,) = [e for e in told if isinstance(e, events.PrecisionReached)]
    assert (end.rounds, end.wide) == (8, 1) and end.widest > 0.25
    assert result.ok and not result.interrupted and result.recorded == 26
    jittery = df[df.workload.str.endswith("jittery") & (df.status != "redone")]
    assert sorted(jittery["round"].unique()) == list(range(8))
    summary = conc_lab.summarize(result.sweep_dir)
    steady = summary[(summary.backend == "threading") & summary.workload.str.endswith("steady")].iloc[0]
    assert abs(steady.speedup_ci_high - steady.speedup_ci_low) / 2 <= 0.25 * steady.speedup


def test_two_narrow_pairs_are_not_yet_precise_the_sweep_says_so_and_runs_to_five(tmp_path):
    """With ``repeats: 2`` a steady trial's two pairs agree within ±25%, and a sweep stopped there:
    the interval of two values is their range, which holds the median half the time. Two of twelve
    sweeps of a trial scattered by 10x stopped so too. Precision wants 5 pairs (``MIN_PAIRS``)."""
    import shutil
    import subprocess
    import sys

    shutil.copy(Path(TESTS) / "workloads_jitter.py", tmp_path)
    (tmp_path / "steady.yaml").write_text(
        "name: steady\nrepeats: 2\nwarmup: 0\nprecision: {target: 0.25}\nmatrix:\n"
        "  workload: [{workload: workloads_jitter:steady, size: [20]}]\n"
        "  backend: [sequential, threading]\n  tasks: [1]\n"
    )
    cmd = [sys.executable, "-m", "conc_lab.cli", "sweep", "steady.yaml", "-o", "out"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    said = " ".join((proc.stdout + proc.stderr).split())  # lines wrapped at the terminal's width
    assert "round 3: 1 speedup within ±25% but on fewer than 5 pairs: 2 more runs" in said, said
    assert "round 6" not in said and "precision: every speedup within ±25% after 5 rounds" in said, said
    assert _rows_per(conc_lab.load(tmp_path / "out" / "steady")) == {
        ("steady", "sequential"): 5,
        ("steady", "threading"): 5,
    }


def test_a_sweep_stopped_inside_the_added_rounds_resumes_them(tmp_path):
    def stop_at_the_second_added_round(event):
        if isinstance(event, events.RoundAdded) and event.round == 6:
            raise KeyboardInterrupt

    first = conc_lab.sweep(_config(), tmp_path, on_event=stop_at_the_second_added_round)
    assert first.interrupted
    assert _rows_per(conc_lab.load(first.sweep_dir))[("jittery", "threading")] == 6
    told = []
    again = conc_lab.sweep(_config(), tmp_path, resume=True, on_event=told.append)
    df = conc_lab.load(again.sweep_dir)
    assert again.sweep_dir == first.sweep_dir and not again.interrupted
    # round 5 ran before the stop: the resume runs it no more and does not announce it again
    assert [e.round for e in told if isinstance(e, events.RoundAdded)] == [6, 7]
    assert _rows_per(df)[("jittery", "threading")] == 8 and _rows_per(df)[("steady", "threading")] == 5
    assert not df[df.status != "redone"].duplicated(["trial_id", "repeat"]).any()


def test_an_added_round_runs_only_what_it_is_given_still_shuffled_and_adjacent_pairs_stay_adjacent():
    cfg = _config(pairing="adjacent")
    trials = [Trial(w, b, 1, 1, 5) for w in ("m:a", "m:b") for b in ("sequential", "threading")]
    asked = []

    def more(round_no):
        asked.append(round_no)
        return {trials[2].trial_id, trials[3].trial_id} if round_no < 7 else None

    runs = list(run_order(trials, cfg, more))
    assert asked == [5, 6, 7]  # the planned rounds ask nothing; the first empty answer ends it
    added = [(r.round, r.trial.workload, r.trial.backend) for r in runs if r.round >= 5]
    assert added == [
        (5, "m:b", "sequential"),
        (5, "m:b", "threading"),
        (6, "m:b", "sequential"),
        (6, "m:b", "threading"),
    ]
    assert len({(r.trial.trial_id, r.repeat) for r in runs}) == len(runs)


@pytest.mark.parametrize(
    ("precision", "problem"),
    [
        ({"target": 2}, "precision.target: must be a share between 0 and 1"),
        ({"max_repeats": 2}, "precision.max_repeats: must be an integer >= 5"),
        ({"within": 0.1}, "precision.within: unknown key"),
    ],
)
def test_a_bad_precision_is_one_line_naming_the_key(precision, problem):
    with pytest.raises(ConfigError, match=problem):
        _config(precision=precision)


def test_repeats_from_the_command_line_stay_within_max_repeats():
    from conc_lab.config.document import override

    with pytest.raises(
        ConfigError, match=r"--repeats: must be at most the config's precision.max_repeats \(8\)"
    ):
        override(_config(), repeats=9)
    assert override(_config(), repeats=8).repeats == 8


def test_precision_without_a_baseline_says_there_is_nothing_to_narrow(tmp_path):
    cfg = _config(
        matrix={"workload": ["workloads_jitter:steady"], "backend": ["threading"], "tasks": [1], "size": [1]}
    )
    told = []
    result = conc_lab.sweep(cfg, tmp_path, on_event=told.append)
    warned = [e.text for e in told if isinstance(e, events.Warned)]
    assert any("no trial here has a sequential baseline" in w for w in warned), warned
    assert not any(isinstance(e, (events.RoundAdded, events.PrecisionReached)) for e in told)
    assert result.recorded == 5 and result.ok


def test_a_precision_goal_redoes_noisy_runs_unless_the_file_says_how_often():
    """A noisy run widens its speedup's interval to cover it, and added rounds cannot undo that."""
    assert _config().noise.redo == 2
    assert _config(noise={"redo": 0}).noise.redo == 0
    assert _config(precision=None).noise.redo == 0


def test_ctrl_c_inside_the_added_rounds_does_not_say_every_run_ran_and_resumes(tmp_path):
    """Stopped in a round ``--precision`` added, the table was headed "partial: 65 of 65 runs;
    interrupted": the plan's count, which the added rounds had passed, read as the sweep done. Its
    resume, with every planned run done, crashed ("KeyError: None": no progress bar for 0 runs)."""
    import shutil
    import signal
    import subprocess
    import sys
    import time

    shutil.copy(Path(TESTS) / "workloads_jitter.py", tmp_path)
    (tmp_path / "jit.yaml").write_text(
        "name: jit\nrepeats: 3\nwarmup: 0\nmatrix:\n"
        "  workload: [{workload: workloads_jitter:jittery, size: [3]}]\n"
        "  backend: [sequential, threading]\n  tasks: [1]\n"
    )
    cmd = [sys.executable, "-m", "conc_lab.cli", "sweep", "jit.yaml", "-o", "out", "--precision", "0.001"]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as test_resume explains
    )

    def stored() -> int:  # a redone run was replaced by its redo
        folder = tmp_path / "out" / "jit"
        return len(conc_lab.load(folder).query("status != 'redone'")) if folder.is_dir() else 0

    deadline = time.monotonic() + 120
    while stored() < 10:  # 6 runs planned: 10 stored are inside the added rounds
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    said = " ".join(out.split())
    kept = stored()
    added = f"partial: {kept} runs, {kept - 6} of them in rounds added for precision; interrupted"
    assert added in said, said
    # resumed, it runs added rounds alone (every planned run is done): "KeyError: None" from the bar
    again = subprocess.run([*cmd, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert "more runs recorded" in again.stderr and "0 measured runs" in again.stdout + again.stderr

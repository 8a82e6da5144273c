"""The plan as data: run order, warm-ups, shuffle, shards and resume, without running anything."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from conc_lab.config.document import parse_config
from conc_lab.plan import runs as plan_mod
from conc_lab.plan.runs import Plan, Run, select_trials

pytestmark = pytest.mark.inprocess

DOC = {
    "name": "p",
    "repeats": 3,
    "warmup": 1,
    "shuffle": False,  # matrix order, so the tests can name positions; shuffled rounds: below
    "matrix": {
        "workload": ["experiments.io:sleep"],
        "backend": ["sequential", "threading"],
        "workers": [1],
        "tasks": [1, 2],
        "size": [1],
    },
}


def _config(**changes):
    return parse_config({**DOC, **changes})


def test_rounds_interleave_every_trial_and_warm_ups_come_first_and_say_so():
    cfg = _config()
    trials = select_trials(cfg)
    runs = list(Plan(cfg, trials).runs())
    assert len(trials) == 4  # two backends x two task counts
    assert [r.warmup for r in runs] == [True] * 4 + [False] * 12
    assert [r.repeat for r in runs] == [0] * 4 + [0] * 4 + [1] * 4 + [2] * 4
    for round_no in range(4):
        assert [r.trial for r in runs[round_no * 4 : round_no * 4 + 4]] == trials  # matrix order
    assert all(r.repeat >= 0 for r in runs)  # a warm-up is a flag, not a negative repeat


def test_shuffled_rounds_are_permutations_replayed_by_the_seed():
    cfg = _config(shuffle=True, seed=7, repeats=6)
    trials = select_trials(cfg)
    first = [r.trial.trial_id for r in Plan(cfg, trials).runs()]
    assert first == [r.trial.trial_id for r in Plan(cfg, trials).runs()]
    rounds = [first[i : i + 4] for i in range(0, len(first), 4)]
    assert all(sorted(r) == sorted(t.trial_id for t in trials) for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # seven rounds of four: not all in one order
    other = [r.trial.trial_id for r in Plan(dataclasses.replace(cfg, seed=8), trials).runs()]
    assert other != first


def test_a_resumed_plan_runs_only_what_is_missing_with_warm_ups_only_where_needed():
    cfg = _config()
    a, b, c, _ = select_trials(cfg)
    done = frozenset(
        {(a.trial_id, r) for r in range(3)}  # a is complete
        | {(b.trial_id, 0), (b.trial_id, 2)}  # b misses repeat 1
    )
    p = Plan(cfg, [a, b, c], done)
    runs = list(p.runs())
    assert Run(a, 0, True) not in runs and not [r for r in runs if r.trial == a]
    assert [r for r in runs if r.trial == b] == [Run(b, 0, True), Run(b, 1)]
    assert [r for r in runs if r.trial == c] == [Run(c, 0, True), Run(c, 0), Run(c, 1), Run(c, 2)]
    assert (p.total, p.measured) == (len(runs), 4) == (6, 4)


def test_a_huge_plan_is_counted_and_started_without_listing_its_runs():
    cfg = dataclasses.replace(_config(), repeats=10**9)
    p = Plan(cfg, select_trials(cfg))
    assert p.measured == 4 * 10**9 and p.total == 4 * (10**9 + 1)
    head = list(itertools.islice(p.runs(), 7))  # a generator: returns at once
    assert [r.warmup for r in head] == [True] * 4 + [False] * 3


def test_shards_are_disjoint_and_complete_and_parsed_from_k_of_n():
    cfg = _config(matrix={**DOC["matrix"], "size": [1, 2, 3], "tasks": [1, 2, 3]})
    every = [t.trial_id for t in select_trials(cfg)]
    slices = [[t.trial_id for t in select_trials(cfg, f"{k}/4")] for k in range(1, 5)]
    assert sorted(itertools.chain(*slices)) == sorted(every) and len(every) == 18
    assert slices[1] == every[1::4]
    assert plan_mod.shard_label(plan_mod.parse_shard("2/4")) == "2/4"


def test_rounds_are_shuffled_by_default_and_each_run_knows_its_round_and_slot():
    cfg = parse_config({k: v for k, v in DOC.items() if k != "shuffle"} | {"repeats": 8})
    assert cfg.shuffle
    runs = [r for r in Plan(cfg, select_trials(cfg)).runs() if not r.warmup]
    rounds = [runs[i : i + 4] for i in range(0, len(runs), 4)]
    assert all([r.slot for r in rnd] == [0, 1, 2, 3] for rnd in rounds)
    assert all({r.round for r in rnd} == {rnd[0].repeat} for rnd in rounds)
    firsts = [rnd[0].trial for rnd in rounds]
    assert len(set(firsts)) > 1  # the baseline does not always open (or close) a round


def test_adjacent_pairing_runs_the_baseline_right_before_each_backend_run_and_resumes():
    cfg = _config(pairing="adjacent", shuffle=True, seed=3)
    trials = select_trials(cfg)  # sequential and threading, at tasks 1 and 2
    p = Plan(cfg, trials)
    runs = [r for r in p.runs() if not r.warmup]
    assert p.measured == len(runs) == 3 * 4  # per round: (A B) twice
    for before, run in zip(runs, runs[1:]):
        if run.trial.backend == "threading":
            assert before.trial.backend == "sequential" and before.trial.tasks == run.trial.tasks
            assert before.round == run.round and before.slot == run.slot - 1
    keys = [(r.trial.trial_id, r.repeat) for r in runs]
    assert len(set(keys)) == len(keys)  # every run has a (trial, repeat) of its own
    done = frozenset(keys[:5])
    rest = [r for r in Plan(cfg, trials, done).runs() if not r.warmup]
    assert sorted((r.trial.trial_id, r.repeat) for r in rest) == sorted(keys[5:])
    assert cfg.fingerprint != _config(shuffle=True, seed=3).fingerprint

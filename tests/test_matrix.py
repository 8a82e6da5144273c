from __future__ import annotations

import tracemalloc

import pytest

from conc_lab.config.document import parse_config
from conc_lab.plan.matrix import Trial, count, expand

pytestmark = pytest.mark.inprocess


def cfg(matrix: dict, **top) -> object:
    return parse_config({"name": "t", "matrix": matrix, **top}, check_imports=False)


def test_product_collapses_sequential_workers_and_keeps_order():
    c = cfg(
        {"workload": ["m:a", "m:b"], "backend": ["sequential", "threading"], "workers": [1, 2], "tasks": 4}
    )
    got = [(t.workload, t.backend, t.workers, t.tasks) for t in expand(c)]
    assert got == [
        ("m:a", "sequential", 1, 4),
        ("m:a", "threading", 1, 4),
        ("m:a", "threading", 2, 4),
        ("m:b", "sequential", 1, 4),
        ("m:b", "threading", 1, 4),
        ("m:b", "threading", 2, 4),
    ]
    assert count(c) == 6


def test_weak_scaling_gives_the_baseline_each_task_count():
    c = cfg(
        {
            "workload": "m:a",
            "backend": ["sequential", "threading"],
            "workers": [1, 2, 4],
            "tasks_per_worker": 3,
        },
        affinity="none",
    )
    seq = [t.tasks for t in expand(c) if t.backend == "sequential"]
    thr = [(t.workers, t.tasks) for t in expand(c) if t.backend == "threading"]
    assert seq == [3, 6, 12]
    assert thr == [(1, 3), (2, 6), (4, 12)]
    assert count(c) == len(list(expand(c))) == 6


def test_backend_options_are_an_axis_and_exclude_include_apply():
    c = cfg(
        {"workload": "m:a", "backend": ["sequential", "multiprocessing"], "workers": [1, 2], "tasks": 2},
        backend_options={"multiprocessing": {"start_method": ["fork", "spawn"]}},
        exclude=[{"start_method": "spawn", "workers": 1}],
        include=[{"workload": "m:b", "backend": "threading", "workers": 2}],
        affinity="none",
    )
    got = [(t.workload, t.backend, t.workers, t.start_method) for t in expand(c)]
    assert got == [
        ("m:a", "sequential", 1, None),
        ("m:a", "multiprocessing", 1, "fork"),
        ("m:a", "multiprocessing", 2, "fork"),
        ("m:a", "multiprocessing", 2, "spawn"),
        ("m:b", "threading", 2, None),
    ]
    assert count(c) == len(got)


def test_per_workload_sizes_override_the_size_axis():
    c = cfg(
        {"workload": ["m:a", {"workload": "m:b", "size": [5, 6]}], "backend": "sequential", "size": [100]}
    )
    assert [(t.workload, t.size) for t in expand(c)] == [("m:a", 100), ("m:b", 5), ("m:b", 6)]


def test_trial_id_is_stable_and_depends_on_every_parameter():
    a = Trial("m:a", "threading", 2, 8, 100)
    assert a.trial_id == Trial("m:a", "threading", 2, 8, 100).trial_id
    others = [
        Trial("m:b", "threading", 2, 8, 100),
        Trial("m:a", "multiprocessing", 2, 8, 100),
        Trial("m:a", "threading", 1, 8, 100),
        Trial("m:a", "threading", 2, 4, 100),
        Trial("m:a", "threading", 2, 8, 10),
        Trial("m:a", "threading", 2, 8, 100, start_method="fork"),
        Trial("m:a", "threading", 2, 8, 100, python="python3.12"),
        Trial("m:a", "threading", 2, 8, 100, affinity="none"),
    ]
    assert len({a.trial_id, *(t.trial_id for t in others)}) == len(others) + 1


def test_expand_is_lazy_on_a_million_points():
    c = cfg(
        {
            "workload": [f"m:f{i}" for i in range(100)],
            "backend": ["threading"],
            "workers": [1],
            "tasks": list(range(1, 101)),
            "size": list(range(100)),
        },
        affinity="none",
    )
    gen = expand(c)
    tracemalloc.start()
    first = [next(gen) for _ in range(1000)]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(first) == 1000
    assert peak < 5_000_000  # the other 999,000 trials were never built
    assert count(c) == 1_000_000  # its time and memory are measured in benchmarks/bench_core.py


def test_trial_fields_are_the_schema_parameter_columns():
    """Trial and the Parquet schema name the same parameters, in order, with matching types."""
    import dataclasses
    import typing

    import pyarrow as pa

    from conc_lab import schema

    assert [f.name for f in dataclasses.fields(Trial)] == schema.PARAM_NAMES
    hints = typing.get_type_hints(Trial)
    assert hints["size"] == int | typing.Literal["auto"]  # "auto" until calibrated: typed as such
    for column in schema.PARAM_FIELDS:
        kinds = set(typing.get_args(hints[column.name])) or {hints[column.name]}
        expected = int if pa.types.is_integer(column.type) else str
        assert expected in kinds, (column.name, hints[column.name])
        assert (type(None) in kinds) == column.nullable, column.name

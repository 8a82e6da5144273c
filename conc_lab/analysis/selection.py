"""Choosing what to summarize: which sweeps, and which runs, as a person names them.

A person types ``--workload sleep`` for ``experiments.io:sleep``, ``--backend threadin`` by
mistake, ``--latest`` for the sweep they just ran. These helpers turn such names into the
exact stored values (or sweep folders), and a name that matches nothing into a
``SelectError`` that says what does exist, with a did-you-mean where one is close.
Filtering keeps the sequential baseline every speedup is measured against.

>>> resolve("workload", ["sleep"], ["experiments.io:sleep", "experiments.cpu:sum_squares"])
['experiments.io:sleep']
>>> resolve("backend", ["threadin"], ["sequential", "threading"])
Traceback (most recent call last):
...
conc_lab.analysis.selection.SelectError: --backend: no run has backend 'threadin'; did you mean 'threading'?
"""

from __future__ import annotations

import difflib
import numbers
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from conc_lab.host.protocol import SEQUENTIAL
from conc_lab.store.layout import sweep_dirs
from conc_lab.store.manifest import read_manifest


def short_workload_names(workloads: Iterable[str]) -> dict[str, str]:
    """{full name: name without the dotted module prefix all of them share}.

    >>> short_workload_names(["pkg.mod:f"])
    {'pkg.mod:f': 'f'}
    >>> short_workload_names(["a.b:f", "a.bc:g"])
    {'a.b:f': 'b:f', 'a.bc:g': 'bc:g'}
    """
    names = list(dict.fromkeys(str(w) for w in workloads))
    if not names or any(":" not in n for n in names):
        return {n: n for n in names}
    modules = [n.split(":", 1)[0].split(".") for n in names]
    common = 0
    while all(len(m) > common and m[common] == modules[0][common] for m in modules):
        common += 1
    if common == min(len(m) for m in modules):  # one module for all: the function names are unique
        return {n: n.split(":", 1)[1] for n in names}
    return {n: ".".join(m[common:]) + ":" + n.split(":", 1)[1] for n, m in zip(names, modules)}


class SelectError(ValueError):
    """A filter or sweep that matches nothing (or too much); ``str()`` is one line for the user."""


def _names(workload: str, short: str) -> set[str]:
    """Every name a person may use for ``module:function``: whole, short, or the function alone."""
    return {workload, short, workload.rsplit(":", 1)[-1]}


def resolve(column: str, wanted: Sequence, present: Iterable, label: str | None = None) -> list:
    """The stored values of ``column`` that ``wanted`` names; SelectError for one that names none.

    Workloads also match by short name (the common module prefix dropped) or function name,
    when that is unique. Errors begin with ``label`` (the CLI's ``--column`` by default).

    >>> resolve("workers", [2], [1, 2, 4])
    [2]
    """
    label = label or f"--{column}"
    present = sorted({v for v in present if v is not None and v == v}, key=_order)  # v != v: NaN
    short = short_workload_names(present) if column == "workload" else {}
    out = []
    for value in wanted:
        if column == "workload":
            hits = [w for w in present if str(value) in _names(w, short[w])]
        else:
            hits = [v for v in present if str(v) == str(value)]
        if len(hits) > 1:
            raise SelectError(f"{label}: {value!r} matches {', '.join(map(str, hits))}; name one of them")
        if not hits:
            raise SelectError(f"{label}: no run has {column} {value!r}{_suggest(value, present, short)}")
        out.append(hits[0])
    return out


def _order(value: object) -> tuple:
    """Numbers by value (5 before 20000), then text: how the ``there are`` list reads."""
    number = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    return (0, value, "") if number else (1, 0, str(value))


def _suggest(value: object, present: list, short: dict) -> str:
    names = {str(v): v for v in present}
    for full, name in short.items():
        names.setdefault(name, full)
    close = difflib.get_close_matches(str(value), list(names), n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; there are: {', '.join(map(str, present))}" if len(present) <= 12 else ""


def sweeps(
    paths: Iterable[str | os.PathLike], sweep_ids: Sequence[str] = (), latest: bool = False
) -> list[Path]:
    """The sweep folders under ``paths``: those named by id (a unique prefix will do), or the
    most recent of each config with ``latest``; all of them otherwise."""
    dirs = sweep_dirs(list(paths))
    manifests = {d: read_manifest(d) for d in dirs}
    if sweep_ids:
        ids = {d: manifests[d].sweep_id for d in dirs}
        chosen = []
        for wanted in sweep_ids:
            hits = [d for d in dirs if ids[d] == wanted] or [d for d in dirs if ids[d].startswith(wanted)]
            if len(hits) != 1:
                what = "matches several sweeps" if hits else "names no sweep there"
                close = difflib.get_close_matches(wanted, list(ids.values()), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise SelectError(f"--sweep: {wanted!r} {what}{hint}")
            chosen += hits
        dirs = list(dict.fromkeys(chosen))
    if latest:
        newest: dict[str, Path] = {}
        for d in dirs:
            name = manifests[d].name
            started = manifests[d].started_at or 0
            if name not in newest or started > (manifests[newest[name]].started_at or 0):
                newest[name] = d
        dirs = list(newest.values())
    return dirs


def apart_from_selftests(dirs: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """``dirs`` split into the sweeps to read and the A/A self-tests (``conclab selftest``) left out.

    A self-test's two arms are one sequential trial measured twice: pooled with a person's own
    sweeps they read as rows of theirs, and as runs of their baseline where the trial matches.
    They are kept only where nothing else is there (its own folder, ``results/selftest``).
    """
    tests = [d for d in dirs if read_manifest(d).selftest is not None]
    if len(tests) == len(dirs):
        return list(dirs), []
    return [d for d in dirs if d not in tests], tests


def keep_baseline(backends: Sequence[str] | None) -> list[str] | None:
    """A backend filter with the sequential baseline added (every speedup is measured against it).

    >>> keep_baseline(["threading"])
    ['threading', 'sequential']
    """
    if not backends or SEQUENTIAL in backends:
        return list(backends) if backends else None
    return [*backends, SEQUENTIAL]


#: The filters a person names by hand, checked against what is stored (a did-you-mean, not an
#: empty frame): ``backend="threadin"`` read no row and said nothing.
NAMED_FILTERS = ("workload", "backend")


def stored_values(paths, columns: Sequence[str]) -> dict:
    """{column: the values stored under ``paths``}, reading those columns alone."""
    import warnings

    from conc_lab.store.layout import StoreWarning
    from conc_lab.store.load import load as load_store

    with warnings.catch_warnings():  # the read that follows warns of the same store, once
        warnings.simplefilter("ignore", StoreWarning)
        df = load_store(paths, columns=list(columns), env=False)
    return {c: df[c].astype(object).unique() for c in columns}


def load(paths, columns: list[str] | None = None, env: bool = True, **filters):
    """Every recorded run under ``paths`` (a sweep, a sweep name's folder, many), as a DataFrame.

    ``conc_lab.load``: the store's ``load`` (``conc_lab.store.load.load``: ``filters`` pushed down
    to Parquet, a value by equality, a list, tuple or set by membership; ``env`` joins the sweep's
    environment), with a ``workload`` named as ``summarize`` and ``conclab summarize --workload``
    name it: ``workload="sleep"`` for ``experiments.io:sleep`` (a unique short or function name),
    and a workload or backend that names nothing stored a ``SelectError`` with a did-you-mean, not
    an empty frame.

    >>> df = load("results/smoke", workload="sleep", backend=["threading", "sequential"])  # doctest: +SKIP
    """
    from conc_lab.store.load import load as load_store

    named = [c for c in NAMED_FILTERS if c in filters]
    present = stored_values(paths, named) if named else {}
    for column in named:
        wanted = filters[column]
        names = list(wanted) if isinstance(wanted, (list, tuple, set)) else [wanted]
        found = resolve(column, names, present[column], label=column)
        filters[column] = found if isinstance(wanted, (list, tuple, set)) else found[0]
    return load_store(paths, columns=columns, env=env, **filters)

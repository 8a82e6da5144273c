"""Thousands of generated bad configs: each ends in one clean ConfigError, never another exception.

Property-based (hypothesis): malformed YAML text, documents with a value anywhere swapped for
junk of any type, and one generator per kind of mistake a person makes (unknown key, empty
matrix, zero or negative workers, more workers than cores when pinning, unknown backend or
start method, a workload that cannot be imported or is not callable, a name with a path
separator). Every error must read ``file: key: problem`` on one line. The CLI checks at the
end run the real `conclab` on a few of them: exit 2, one line, no traceback, nothing written.
How many configs a long run tries, and how many end in a traceback, is measured by
benchmarks/bench_fuzz.py, which reuses these strategies.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conc_lab.config.document import load_config
from conc_lab.config.errors import ConfigError
from conc_lab.config.model import AXES, TOP_KEYS, Config
from conc_lab.host import affinity
from conc_lab.host.protocol import BACKENDS

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = 400  # per property: with the properties below, about 2,800 configs a run
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BASE = {
    "name": "fuzz",
    "repeats": 2,
    "warmup": 1,
    "timeout_s": 10,
    "matrix": {
        "workload": ["experiments.cpu:sum_squares", {"workload": "experiments.io:sleep", "size": [1]}],
        "backend": ["sequential", "threading", "multiprocessing"],
        "workers": [1, 2],
        "tasks": [4],
        "size": [100],
    },
    "backend_options": {"multiprocessing": {"start_method": ["fork", "spawn"]}},
    "exclude": [{"backend": "threading", "workers": 1}],
    "include": [{"workload": "experiments.cpu:sum_squares", "backend": "threading", "workers": 2}],
    "affinity": "compact",
}
N_CORES = len(affinity.available_cores())

# --- strategies (benchmarks/bench_fuzz.py imports these) ------------------------------

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # nan and infinities included
    text,
    st.sampled_from(
        ["sequential", "fork", "compact", "auto", "experiments.cpu:sum_squares", "a:b", "..", "a/b", ""]
    ),
)
keys = st.one_of(text, st.integers(-3, 3), st.none(), st.booleans(), st.sampled_from(TOP_KEYS + AXES))
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=10,
)


def _paths(doc, prefix=()):
    """Every key path into ``doc``: where a mutation can strike."""
    if prefix:
        yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


PATHS = list(_paths(BASE))


@st.composite
def mutated_docs(draw):
    """BASE with one to three values replaced by junk, keys added, or keys deleted."""
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        action = draw(st.sampled_from(["replace", "add", "delete"]))
        parent = doc
        try:
            for step in path[:-1]:
                parent = parent[step]
            if action == "replace":
                parent[path[-1]] = draw(junk)
            elif action == "add" and isinstance(parent, dict):
                parent[draw(keys)] = draw(junk)
            elif action == "delete":
                del parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation changed the shape here: keep what we have
    return doc


yaml_tokens = st.sampled_from(
    ["{", "}", "[", "]", ":", ": ", "- ", ",", "\n", "  ", "\t", "'", '"', "&a ", "*a", "<<: ", "? ", "---",
     "...", "%YAML 1.1", "!!python/object/apply:os.system ", "!!binary ", "!!set ", "#", "|", ">", "@",
     "name", "matrix", "workload", "backend", "workers", "experiments.cpu:sum_squares", "sequential",
     "-1", "0", "1e3", "null", "~", "yes", "\x00", "\ufeff", "é"]
)  # fmt: skip
yaml_texts = st.one_of(
    st.lists(yaml_tokens, max_size=40).map("".join),
    text,
    st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
)


@st.composite
def broken_yaml_of_base(draw):
    """BASE as YAML text with a few characters deleted, doubled or inserted."""
    chars = list(yaml.safe_dump(BASE, sort_keys=False))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(chars) - 1))
        op = draw(st.sampled_from(["delete", "insert", "double"]))
        if op == "delete":
            del chars[i]
        elif op == "insert":
            chars.insert(i, draw(yaml_tokens))
        else:
            chars.insert(i, chars[i])
    return "".join(chars)


# --- the one property every generated config must have --------------------------------


def _write(path: Path, content) -> None:
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8", "surrogatepass"))
    else:
        path.write_text(yaml.safe_dump(content, allow_unicode=True))


def load_outcome(path: Path, content) -> Config | ConfigError:
    """Write ``content`` (YAML text or a document) to ``path`` and load it.

    Returns the Config or the ConfigError; anything else propagates and fails the test.
    """
    _write(path, content)
    try:
        return load_config(path)
    except ConfigError as err:
        assert str(err) == f"{path}: {err.key}: {err.problem}"
        assert err.key and err.problem and "\n" not in str(err) and "\r" not in str(err)
        return err


@pytest.fixture(scope="module")
def cfg_path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "fuzzed.yaml"


@pytest.mark.slow
@FUZZ
@given(content=yaml_texts)
def test_malformed_yaml_text_is_a_config_error(cfg_path, content):
    assert isinstance(load_outcome(cfg_path, content), ConfigError)


@pytest.mark.slow
@FUZZ
@given(content=broken_yaml_of_base())
def test_a_damaged_good_file_loads_or_is_a_config_error(cfg_path, content):
    load_outcome(cfg_path, content)  # some damage is harmless (a doubled space); none may crash


@pytest.mark.slow
@settings(FUZZ, max_examples=2 * EXAMPLES)
@given(doc=mutated_docs())
def test_junk_anywhere_in_a_good_document_loads_or_is_a_config_error(cfg_path, doc):
    outcome = load_outcome(cfg_path, doc)
    if isinstance(outcome, Config):
        assert outcome.repeats >= 1 and all(w >= 1 for w in outcome.axes["workers"])


# --- one generator per kind of mistake: always an error, at the right key ---------------

identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True)


def _with(path: tuple, value) -> dict:
    doc = copy.deepcopy(BASE)
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return doc


MISTAKES = {
    "unknown top-level key": (
        identifiers.filter(lambda k: k not in TOP_KEYS).map(lambda k: (_with((k,), 1), k, "unknown key")),
    ),
    "unknown axis": (
        identifiers.filter(lambda k: k not in AXES).map(
            lambda k: (_with(("matrix", k), [1]), f"matrix.{k}", "unknown key")
        ),
    ),
    "empty matrix": (
        st.sampled_from([{}, [], None, "", 0]).map(
            lambda m: (_with(("matrix",), m), "matrix", "is required")
        ),
    ),
    "empty axis": (
        st.sampled_from(["workload", "backend", "workers", "tasks", "size"]).map(
            lambda a: (_with(("matrix", a), []), f"matrix.{a}", "is empty")
        ),
    ),
    "zero or negative workers": (
        st.integers(max_value=0).map(
            lambda w: (_with(("matrix", "workers"), [1, w]), "matrix.workers[1]", "positive integer")
        ),
    ),
    "more workers than cores when pinning": (
        st.integers(min_value=N_CORES + 1, max_value=2**31 - 1).map(
            lambda w: (_with(("matrix", "workers"), [w]), "matrix.workers", "cores to pin them to")
        ),
    ),
    "unknown backend": (
        text.filter(lambda b: b not in BACKENDS).map(
            lambda b: (
                _with(("matrix", "backend"), ["sequential", b]),
                "matrix.backend[1]",
                "unknown backend",
            )
        ),
    ),
    "unknown start method": (
        text.filter(lambda m: m not in ("fork", "spawn", "forkserver")).map(
            lambda m: (
                _with(("backend_options", "multiprocessing", "start_method"), [m]),
                "backend_options.multiprocessing.start_method[0]",
                "must be one of",
            )
        ),
    ),
    "unimportable workload": (
        identifiers.map(
            lambda m: (
                _with(("matrix", "workload"), [f"no_such_module_{m}:f"]),
                "matrix.workload[0]",
                "cannot import",
            )
        ),
    ),
    "missing or non-callable workload": (
        st.sampled_from(
            [("_MIB", "is not callable"), ("__doc__", "is not callable"), ("nope", "has no")]
        ).map(
            lambda a: (_with(("matrix", "workload"), [f"experiments.cpu:{a[0]}"]), "matrix.workload[0]", a[1])
        ),
    ),
    "name with a path separator": (
        st.tuples(text, st.sampled_from(["/", "\\", "../", "..\\", "/etc/"]), text).map(
            lambda t: (_with(("name",), "".join(t)), "name", "no path separators")
        ),
    ),
    "wrong type for a number": (
        st.tuples(st.sampled_from(["repeats", "warmup", "seed", "timeout_s"]), junk)
        .filter(lambda kv: not (isinstance(kv[1], (int, float)) and not isinstance(kv[1], bool)))
        .map(lambda kv: (_with((kv[0],), kv[1]), kv[0], "must be")),
    ),
}


@pytest.mark.slow  # a fuzz of every kind of mistake: seconds each, a child per example for some
@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_each_kind_of_mistake_is_named_at_its_key(cfg_path, mistake):
    (strategy,) = MISTAKES[mistake]

    @settings(FUZZ, max_examples=EXAMPLES // 4)
    @given(case=strategy)
    def check(case):
        doc, key, words = case
        outcome = load_outcome(cfg_path, doc)
        assert isinstance(outcome, ConfigError), f"{mistake} was accepted: {doc}"
        assert outcome.key == key or outcome.key.startswith(key), (outcome.key, key)
        assert words in outcome.problem, outcome.problem

    check()


# --- the CLI, as a person meets these errors -------------------------------------------

CLI_CASES = {
    "malformed": "name: x\nmatrix: [\n",
    "python tag": "!!python/object/apply:os.system ['echo pwned']\n",
    "unknown key": yaml.safe_dump(_with(("matrix", "wokers"), [1])),
    "negative workers": yaml.safe_dump(_with(("matrix", "workers"), [-1])),
    "unknown start method": yaml.safe_dump(
        _with(("backend_options", "multiprocessing", "start_method"), ["vfork"])
    ),
    "non-callable workload": yaml.safe_dump(_with(("matrix", "workload"), ["experiments.cpu:_MIB"])),
    "name with separator": yaml.safe_dump(_with(("name",), "../../etc")),
    "deeply nested": "a: " + "[" * 3000 + "]" * 3000 + "\n",
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CLI_CASES))
def test_the_cli_refuses_a_bad_config_in_one_line_with_exit_2_and_writes_nothing(tmp_path, case):
    config = tmp_path / "bad.yaml"
    config.write_text(CLI_CASES[case])
    out = tmp_path / "results"
    for command in (["sweep", str(config), "--out", str(out)], ["expand", str(config)]):
        proc = subprocess.run(
            [sys.executable, "-m", "conc_lab.cli", *command],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "COLUMNS": "300"},
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {config}: "), proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]

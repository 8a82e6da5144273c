from __future__ import annotations

import pytest

from conc_lab.config.document import load_config
from conc_lab.config.errors import ConfigError

pytestmark = pytest.mark.inprocess

GOOD = """
name: demo
repeats: 2
matrix:
  workload: [experiments.cpu:sum_squares]
  backend: [sequential, threading]
  workers: [1, 2]
  tasks: [4]
  size: [100]
"""


def test_shipped_configs_load():
    for name in ("smoke", "cpu"):
        cfg = load_config(f"configs/{name}.yaml")
        assert cfg.name == name
        assert "sequential" in cfg.axes["backend"]  # every shipped matrix has its baseline


def test_good_config_and_defaults(write_config):
    cfg = load_config(write_config(GOOD))
    assert (cfg.name, cfg.repeats, cfg.warmup, cfg.affinity) == ("demo", 2, 1, "compact")
    assert cfg.axes["workers"] == (1, 2)
    assert cfg.axes["python"] == (None,)


def test_fingerprint_changes_with_the_matrix_not_with_comments(write_config):
    a = load_config(write_config(GOOD, "a"))
    b = load_config(write_config("# a comment\n" + GOOD, "b"))
    c = load_config(write_config(GOOD.replace("tasks: [4]", "tasks: [8]"), "c"))
    assert a.fingerprint == b.fingerprint != c.fingerprint


@pytest.mark.parametrize(
    "edit, key, words",
    [
        (("repeats: 2", "repeats: 0"), "repeats", "positive integer"),
        (("repeats: 2", "repeats: two"), "repeats", "must be an integer"),
        (("workers: [1, 2]", "workers: [1, -2]"), "matrix.workers[1]", "positive integer"),
        (("workers: [1, 2]", "workers: [1, 64]"), "matrix.workers", "cores to pin"),
        (
            ("backend: [sequential, threading]", "backend: [sequential, threadng]"),
            "matrix.backend[1]",
            "did you mean 'threading'",
        ),
        (("tasks: [4]", "taks: [4]"), "matrix.taks", "did you mean 'tasks'"),
        (("repeats: 2", "repeets: 2"), "repeets", "did you mean 'repeats'"),
        (
            ("workload: [experiments.cpu:sum_squares]", "workload: [experiments.cpu:nope]"),
            "matrix.workload[0]",
            "has no 'nope'",
        ),
        (
            ("workload: [experiments.cpu:sum_squares]", "workload: [no_such_mod:f]"),
            "matrix.workload[0]",
            "cannot import",
        ),
        (
            ("workload: [experiments.cpu:sum_squares]", "workload: [not-a-ref]"),
            "matrix.workload[0]",
            "module:function",
        ),
        (("workload: [experiments.cpu:sum_squares]", "workload: []"), "matrix.workload", "empty"),
        (("name: demo", "name: ../evil"), "name", "path separators"),
        (("size: [100]", "size: [100]\n  size: [5]"), "(yaml)", "duplicate key 'size'"),
        (("matrix:", "matrix: [\n"), "(yaml)", "line"),
    ],
)
def test_bad_configs_name_file_key_and_problem(write_config, edit, key, words):
    path = write_config(GOOD.replace(*edit))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == key
    assert words in err.value.problem
    line = str(err.value)
    assert line.startswith(str(path)) and "\n" not in line


def test_unsafe_yaml_tag_is_refused(write_config):
    path = write_config(GOOD + "description: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == "(yaml)"


def test_start_method_and_options_are_checked(write_config):
    bad = GOOD.replace("backend: [sequential, threading]", "backend: [sequential, multiprocessing]")
    with pytest.raises(
        ConfigError, match=r"backend_options.multiprocessing.start_method\[0\]: must be one of"
    ):
        load_config(write_config(bad + "backend_options:\n  multiprocessing: {start_method: [vfork]}\n"))
    with pytest.raises(ConfigError, match="which matrix.backend does not list"):
        load_config(write_config(GOOD + "backend_options:\n  multiprocessing: {start_method: [fork]}\n"))


def test_missing_file_and_non_mapping(tmp_path, write_config):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write_config("- just\n- a list\n"))


def test_one_workload_lookup_and_one_lacks_message():
    """``module:function`` is looked up, and "needs X, which ... lacks" worded, in one place."""
    import re
    from pathlib import Path

    sources = {p: p.read_text() for p in Path("conc_lab").rglob("*.py")}
    lookups = [p.name for p, text in sources.items() if 'partition(":")' in text and "import_module(" in text]
    lacks = [p.name for p, text in sources.items() if re.search(r"needs %s, which|which \{.*lacks", text)]
    assert lookups == lacks == ["workload.py"]

"""The runner ⇄ host contract (conc_lab/host/protocol.py) against a real host and the schema."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conc_lab import schema
from conc_lab.host import protocol
from conc_lab.plan.matrix import Trial
from conc_lab.run.trial_host import PACKAGE_ROOT, TrialHost, child_env

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent
PROTOCOL = REPO / "conc_lab" / "host" / "protocol.py"


def test_the_protocol_speaks_the_schemas_vocabulary():
    # Every status but redone (a noisy run its redo replaced: the executor's, never a host's)
    assert (
        protocol.STATUS_OK,
        protocol.STATUS_FAILED,
        protocol.STATUS_TIMEOUT,
        protocol.STATUS_SKIPPED,
    ) == tuple(s for s in schema.STATUSES if s != schema.REDONE)
    assert list(protocol.TASK_RECORD_FIELDS) == [f.name for f in schema.TASK_TYPE]
    assert set(protocol.MEASURED_FIELDS) <= set(schema.COLUMNS)
    assert set(protocol.HELLO_FACTS) <= set(schema.COLUMNS)


def test_the_protocol_module_is_stdlib_only_and_python_3_8():
    tree = ast.parse(PROTOCOL.read_text(), feature_version=(3, 8))
    imported = {
        alias.name.partition(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert imported <= set(sys.stdlib_module_names)


def test_a_real_hosts_outcome_has_only_protocol_fields_and_records_map_to_the_schema():
    trial = Trial("experiments.cpu:sum_squares", "threading", workers=2, tasks=4, size=1000)
    with TrialHost(search_path=[str(REPO)]) as host:
        assert set(protocol.HELLO_FACTS) <= set(host.info)
        reply = host.request(protocol.request(protocol.RUN, {**trial.params(), protocol.CORES: None}), 60)
    assert reply[protocol.OK], reply
    outcome = reply[protocol.OUTCOME]
    assert outcome[protocol.STATUS] == schema.OK
    assert set(outcome) <= set(protocol.OUTCOME_FIELDS)
    records = [protocol.task_record(r) for r in outcome[protocol.TASK_RECORDS]]
    assert sorted(r["task"] for r in records) == [0, 1, 2, 3]
    assert all(set(r) == set(protocol.TASK_RECORD_FIELDS) and r["end_s"] >= r["start_s"] for r in records)


def test_a_child_without_conc_lab_installed_imports_the_host_from_package_root(tmp_path):
    """Another interpreter of the matrix has no conc_lab installed: PACKAGE_ROOT alone must find it.

    (It once pointed at the conc_lab folder itself, one level too deep: every python-axis
    host failed in a clean CI checkout, where nothing else put the project on the path.)
    """
    env = child_env([str(tmp_path)], base={})
    probe = "import conc_lab.host; print(conc_lab.host.__file__)"
    # -S: no site-packages, so no installed (or editable) conc_lab helps it
    out = subprocess.run(
        [sys.executable, "-S", "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == os.path.join(PACKAGE_ROOT, "conc_lab", "host", "__init__.py")


def test_one_child_environment_for_host_and_calibrator(tmp_path):
    env = child_env([str(tmp_path)], base={"PYTHONPATH": "/elsewhere", "OMP_NUM_THREADS": "4"})
    assert env["PYTHONPATH"].split(os.pathsep) == [PACKAGE_ROOT, "/elsewhere"]
    assert env[protocol.PATH_ENV] == str(tmp_path)
    assert env["OMP_NUM_THREADS"] == "4" and env["MKL_NUM_THREADS"] == "1"  # a user's choice is kept
    # the host reads the workload folders the parent put there
    probe = "import os; from conc_lab.host import protocol; print(protocol.search_path(os.environ))"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == repr([str(tmp_path)])


def test_an_outcome_with_a_key_the_protocol_does_not_name_is_refused():
    assert protocol.outcome(status=protocol.STATUS_OK, run_s=1.0) == {"status": "ok", "run_s": 1.0}
    with pytest.raises(KeyError, match="runs"):
        protocol.outcome(status=protocol.STATUS_OK, runs=1)
    with pytest.raises(KeyError, match="wall_s"):
        protocol.check_outcome({"status": "ok", "wall_s": 1.0})


def test_a_host_of_another_protocol_is_one_clear_line():
    hello = {
        protocol.OP: protocol.HELLO,
        protocol.VERSION: protocol.PROTOCOL_VERSION + 1,
        "executable": "/x/py",
    }
    problem = protocol.version_problem(hello)
    assert problem.count("\n") == 0 and "protocol" in problem and "/x/py" in problem
    with TrialHost(search_path=[str(REPO)]) as host:
        assert host.info[protocol.VERSION] == protocol.PROTOCOL_VERSION
        assert protocol.SECRET not in host.info  # kept by the handle, never a row's fact


def test_a_reply_for_another_request_or_without_the_secret_is_refused():
    assert protocol.check_reply({protocol.ID: 1, protocol.SECRET: "s"}, 1, "s") is None
    assert "forged" in protocol.check_reply({protocol.ID: 1, protocol.SECRET: "t"}, 1, "s")
    assert "request 2" in protocol.check_reply({protocol.ID: 2, protocol.SECRET: "s"}, 1, "s")

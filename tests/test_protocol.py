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


def test_one_child_environment_for_host_and_calibrator(tmp_path):
    env = child_env([str(tmp_path)], base={"PYTHONPATH": "/elsewhere", "OMP_NUM_THREADS": "4"})
    assert env["PYTHONPATH"].split(os.pathsep) == [PACKAGE_ROOT, "/elsewhere"]
    assert env[protocol.PATH_ENV] == str(tmp_path)
    assert env["OMP_NUM_THREADS"] == "4" and env["MKL_NUM_THREADS"] == "1"  # a user's choice is kept
    # the host reads the workload folders the parent put there
    probe = "import os; from conc_lab.host import protocol; print(protocol.search_path(os.environ))"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == repr([str(tmp_path)])

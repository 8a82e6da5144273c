"""Shared fixtures and the test tiers. Tests use real processes, hosts and Parquet files: no mocks.

Tiers: every test file says what infrastructure it starts with a module-level ``pytestmark``
(markers are registered in pyproject.toml, with ``--strict-markers``); tests that use the Ray, SLURM
or ``ray start`` fixtures get that fixture's marker as well, here, so no test can forget it. The
developer loop (README, "Development") deselects the slow tiers; CI runs everything.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from needs import need

REPO = Path(__file__).resolve().parent.parent

# Workload modules that misbehave on import, for trial hosts to import: --doctest-modules would
# import them into the test process itself. One left a spinning thread there for the whole run:
# every later test ran beside it, the suite took 3-7x its time, and sweeps run in-process counted
# the spinner's CPU as their own (in CI two hashing threads got one core's worth for a minute).
collect_ignore = ["workloads_hostile_import.py", "workloads_slow_clock.py"]  # side effects at import

# A fixture that starts infrastructure marks every test that uses it.
_FIXTURE_MARKS = {"ray_cluster": "ray", "ray_start": "ray_start", "slurm": "slurm"}


def pytest_collection_modifyitems(items):
    for item in items:
        for fixture, mark in _FIXTURE_MARKS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(getattr(pytest.mark, mark))


@pytest.fixture
def write_config(tmp_path):
    """Write a YAML config into tmp_path and return its path: ``write_config(text, name="x")``."""

    def write(text: str, name: str = "test") -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture(scope="session")
def ray_cluster():
    """One real 2-node Ray cluster on 127.0.0.1 for the whole session (Ray takes seconds to start).

    Head and second node get 1 logical CPU each; both share this machine's cores, which is what
    a node's trials pin within. Yields the ``ray.cluster_utils.Cluster``; tests that kill a node
    add their own (``add_node``) so the two stay up for the others. Health checks are quick so a
    killed node is noticed in seconds, not the default ~30 s.
    """
    import os

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only; see ray_backend
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3},
        },
    )
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


@pytest.fixture(scope="session")
def slurm():
    """A real single-node SLURM on 127.0.0.1 for the whole session (tests/slurm_cluster.py).

    Skips, saying why, where it cannot run (not root, not Debian, slurm-wlm or munge missing).
    Stops exactly the daemons it started, by PID.
    """
    from slurm_cluster import SlurmCluster, why_not

    need(why_not())
    cluster = SlurmCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session", params=["token-off", "token-on"])
def ray_start(request):
    """A real 2-node cluster started with the README's ``ray start`` lines (tests/ray_start_cluster.py).

    Once with Ray's token authentication off and once on (a private ``~/.ray/auth_token`` and
    ``RAY_AUTH_MODE=token``, as the README says); a test that needs one only parametrizes it
    indirectly. Skips, saying why, without ``ray[default]``. Stopped by the PIDs it started.
    """
    from ray_start_cluster import RayStartCluster, why_not

    need(why_not())
    cluster = RayStartCluster(auth=request.param == "token-on").start()
    try:
        yield cluster
    finally:
        cluster.stop()

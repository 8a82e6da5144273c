"""The asyncio and subinterpreters backends: faults recorded, config pairing, in real trial hosts.

The answer-and-pinning contract every backend meets is in tests/test_backends.py; here are
the faults (a raising, hanging or os._exit-ing workload, tests/workloads_faulty.py) and what
is particular to each new backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from needs import need

from conc_lab.host import affinity
from conc_lab.plan.matrix import Trial
from conc_lab.run.executor import ExecutorSettings, TrialExecutor

pytestmark = pytest.mark.host

TESTS = str(Path(__file__).resolve().parent)
REPO = Path(TESTS).parent
TIMEOUT_S = 3.0
OFFLOAD = json.dumps({"offload": "thread"}, sort_keys=True)
WORKERS = 2 if len(affinity.available_cores()) >= 2 else 1


@pytest.fixture
def executor():
    with TrialExecutor(
        ExecutorSettings("models", "t", "compact", timeout_s=TIMEOUT_S, search_path=[TESTS, str(REPO)])
    ) as ex:
        yield ex


# (workload prefix, options): coroutines on the loop, and plain functions offloaded to threads
ASYNCIO_MODES = [pytest.param("async_", None, id="coroutines"), pytest.param("", OFFLOAD, id="offload")]


def _asyncio_trial(prefix: str, fault: str, options: str | None, workers: int = WORKERS) -> Trial:
    return Trial(f"workloads_faulty:{prefix}{fault}", "asyncio", workers, tasks=4, size=2000, options=options)


@pytest.mark.parametrize("prefix, options", ASYNCIO_MODES)
@pytest.mark.parametrize(
    "fault, status, words, replaced",
    [
        ("raises", "failed", "ValueError: task 1 is broken on purpose", False),
        ("exits", "failed", "the run's process exited with code 3", False),  # the host stays
        # a hang waits out the timeout: slow; the developer loop keeps the others
        pytest.param("hangs", "timeout", "trial host killed and replaced", True, marks=pytest.mark.slow),
    ],
)
def test_asyncio_faults_are_recorded_and_the_next_trial_runs(
    executor, prefix, options, fault, status, words, replaced
):
    good = _asyncio_trial(prefix, "good", options)
    first = executor.execute(good, 0).row
    assert (first["status"], first["correct"]) == ("ok", True), first["error"]
    host = executor.hosts.hosts[executor.hosts.host_key(good)]

    row = executor.execute(_asyncio_trial(prefix, fault, options), 0).row

    assert row["status"] == status
    assert words in row["error"]
    assert row["run_s"] is None and row["checksum"] is None and row["correct"] is None
    assert (executor.hosts.hosts.get(executor.hosts.host_key(good)) is not host) == replaced
    after = executor.execute(good, 1).row
    assert (after["status"], after["correct"]) == ("ok", True), after["error"]
    assert after["checksum"] == first["checksum"]


@pytest.mark.slow
def test_a_coroutine_that_blocks_the_loop_times_out(executor):
    row = executor.execute(_asyncio_trial("async_", "blocks", None), 0).row
    assert row["status"] == "timeout"


def _max_in_flight(records) -> int:
    events = sorted([(r["start_s"], 1) for r in records] + [(r["end_s"], -1) for r in records])
    live = peak = 0
    for _, step in events:
        live += step
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize("workers", [1, 2, 8])
def test_asyncio_keeps_at_most_workers_coroutines_in_flight_on_one_pinned_core(executor, workers):
    trial = Trial("experiments.io:async_sleep", "asyncio", workers, tasks=8, size=20)
    row = executor.execute(trial, 0).row
    assert (row["status"], row["correct"]) == ("ok", True), row["error"]
    records = row["task_records"]
    assert sorted(r["task"] for r in records) == list(range(8))
    assert _max_in_flight(records) == workers  # every slot busy at once, never more
    core = affinity.plan("compact", 1)[0]
    assert row["cores"] == [core]  # one loop, one core, however many coroutines are in flight
    # one loop in one process: the run's own, forked by the host for this run alone
    (pid,) = {r["pid"] for r in records}
    assert pid != executor.hosts.hosts[executor.hosts.host_key(trial)].proc.pid
    assert {(r["worker"], r["core"], r["cpu"]) for r in records} == {(0, core, core)}


def test_async_loopback_gives_the_same_answer_as_the_threaded_one(executor):
    rows = [
        executor.execute(Trial(f"experiments.io:{fn}", backend, 2, tasks=4, size=50), 0).row
        for fn, backend in [("loopback_echo", "threading"), ("async_loopback_echo", "asyncio")]
    ]
    assert [(r["status"], r["correct"]) for r in rows] == [("ok", True)] * 2
    assert rows[0]["checksum"] == rows[1]["checksum"]


def _expand(tmp_path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "conc_lab.cli", "expand", str(path), "--count"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize(
    "matrix, words",
    [
        (
            "workload: [experiments.io:sleep]\n  backend: [asyncio]",
            "matrix.workload[0]: experiments.io:sleep is a plain function: asyncio awaits async def "
            "workloads; to run it with asyncio.to_thread set backend_options: {asyncio: {offload: thread}}",
        ),
        (
            "workload: [experiments.io:async_sleep]\n  backend: [sequential, threading]",
            "matrix.workload[0]: experiments.io:async_sleep is an async def workload, which threading "
            "cannot await; run it on sequential or asyncio",
        ),
    ],
)
def test_a_workload_on_a_backend_that_cannot_run_it_is_a_config_error(tmp_path, matrix, words):
    done = _expand(tmp_path, f"name: m\nmatrix:\n  {matrix}\n  workers: [1]\n")
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {tmp_path / 'm.yaml'}: {words}")
    assert done.stderr.count("\n") == 1  # one line
    assert "Traceback" not in done.stderr + done.stdout


def test_async_and_plain_workloads_mix_through_excludes_includes_and_the_offload_axis(tmp_path):
    done = _expand(
        tmp_path,
        """\
        name: m
        matrix:
          workload: [experiments.io:async_sleep, experiments.io:sleep]
          backend: [sequential, asyncio, threading]
          workers: [2]
        exclude:
          - {workload: experiments.io:async_sleep, backend: threading}
          - {workload: experiments.io:sleep, backend: asyncio, offload: none}
        include:
          - {workload: experiments.io:async_sleep, backend: asyncio, workers: 8}
        backend_options:
          asyncio: {offload: [none, thread]}
        """,
    )
    assert done.returncode == 0, done.stderr
    # async_sleep: sequential, asyncio x 2 offloads (awaited either way); sleep: sequential, threading,
    # asyncio offloaded; and the 8-in-flight include, which pins one core and so fits 2 cores.
    assert done.stdout.split()[-1] == "7"


# --- subinterpreters ------------------------------------------------------------------------

PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
BACKPORT = "interpreters-pep-734"


def _pyenv_python(version: str) -> str | None:
    found = sorted(PYENV.glob(f"{version}.*/bin/python{version}"))
    return str(found[-1]) if found else None


@pytest.fixture(scope="session")
def backport(tmp_path_factory):
    """(python3.13, folder with the backport installed for it): pip --target into a temp dir."""
    python = _pyenv_python("3.13")
    if python is None:
        pytest.skip(f"no pyenv Python 3.13 under {PYENV} to run subinterpreters on")
    target = tmp_path_factory.mktemp("backport313")
    _install_backport(python, target)
    return python, str(target)


def _install_backport(python: str, target) -> None:
    """pip install the backport into ``target`` for ``python``; a failure fails the test, saying why."""
    args = ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(target)]
    done = subprocess.run([python, *args, BACKPORT], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        need(f"cannot install {BACKPORT} for {python}: {done.stderr.strip()[-300:]}")


@pytest.fixture
def sub_executor(backport):
    python, target = backport
    with TrialExecutor(
        ExecutorSettings(
            "models", "t", "compact", timeout_s=TIMEOUT_S * 3, search_path=[TESTS, str(REPO), target]
        )
    ) as ex:
        yield ex, python


def _sub_trial(workload: str, python: str, workers: int = WORKERS, tasks: int = 4, size: int = 2000) -> Trial:
    return Trial(workload, "subinterpreters", workers, tasks=tasks, size=size, python=python)


def test_subinterpreters_give_the_sequential_answer_pinned_each_with_its_own_gil(sub_executor):
    executor, python = sub_executor
    trial = _sub_trial("experiments.cpu:sum_squares", python, tasks=6)
    row = executor.execute(trial, 0).row
    assert (row["status"], row["correct"]) == ("ok", True), row["error"]
    assert row["own_gil"] is True
    assert row["python_version"].startswith("3.13")
    cores = affinity.plan("compact", WORKERS)
    records = row["task_records"]
    assert sorted(r["task"] for r in records) == list(range(6))
    (pid,) = {r["pid"] for r in records}  # one process (the run's own): interpreters, not processes
    assert pid != executor.hosts.hosts[executor.hosts.host_key(trial)].proc.pid
    for r in records:
        assert r["core"] == cores[r["worker"]] == r["cpu"]  # pinned, and seen on that core
        assert 0 <= r["start_s"] <= r["end_s"] <= row["run_s"] + 1e-3
    assert row["setup_s"] > 0 and row["cpu_user_s"] + row["cpu_sys_s"] > 0
    assert row["teardown_s"] >= 0  # closing the interpreters, joining their threads


def test_a_result_that_is_not_shareable_crosses_back_pickled(sub_executor):
    executor, python = sub_executor
    row = executor.execute(_sub_trial("experiments.cpu:zlib_compress", python, tasks=2, size=1), 0).row
    assert (row["status"], row["correct"]) == ("ok", True), row["error"]  # a list: pickled


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault, status, words, replaced",
    [
        ("raises", "failed", "ValueError: task 1 is broken on purpose", False),
        ("exits", "failed", "the run's process exited with code 3", False),  # the host stays
        ("hangs", "timeout", "trial host killed and replaced", True),
    ],
)
def test_subinterpreter_faults_are_recorded_and_the_next_trial_runs(
    sub_executor, fault, status, words, replaced
):
    executor, python = sub_executor
    good = _sub_trial("workloads_faulty:good", python)
    first = executor.execute(good, 0).row
    assert (first["status"], first["correct"]) == ("ok", True), first["error"]
    host = executor.hosts.hosts[executor.hosts.host_key(good)]
    row = executor.execute(_sub_trial(f"workloads_faulty:{fault}", python), 0).row
    assert row["status"] == status
    assert words in row["error"]
    assert row["run_s"] is None and row["correct"] is None
    assert (executor.hosts.hosts.get(executor.hosts.host_key(good)) is not host) == replaced
    after = executor.execute(good, 1).row
    assert (after["status"], after["correct"]) == ("ok", True), after["error"]


def test_a_module_a_subinterpreter_cannot_import_fails_the_trial_with_the_reason(sub_executor):
    executor, python = sub_executor
    trial = _sub_trial("workloads_single_phase:work", python)
    row = executor.execute(trial, 0).row
    assert row["status"] == "failed"
    assert "cannot import workloads_single_phase:work in a subinterpreter: ImportError: " in row["error"]
    assert "module _testsinglephase does not support loading in subinterpreters" in row["error"]
    host = executor.hosts.hosts[executor.hosts.host_key(trial)]
    good = executor.execute(_sub_trial("workloads_faulty:good", python), 0).row
    assert good["status"] == "ok" and host.proc.poll() is None  # the host lived on


def test_an_interpreter_without_the_api_skips_the_trial_with_the_reason(tmp_path):
    # conc_lab's own interpreter (3.11 here) has neither concurrent.interpreters nor the backport.
    try:
        import interpreters_backport  # noqa: F401

        pytest.skip("the backport is installed in conc_lab's own interpreter")
    except ImportError:
        pass
    if sys.version_info >= (3, 14):
        pytest.skip("3.14+ has concurrent.interpreters")
    with TrialExecutor(ExecutorSettings("models", "t", "compact", timeout_s=30, search_path=[TESTS])) as ex:
        row = ex.execute(Trial("workloads_faulty:good", "subinterpreters", 1, tasks=2, size=10), 0).row
    assert row["status"] == "skipped"
    assert row["error"].startswith(
        "needs concurrent.interpreters (Python 3.14+) or the PyPI backport interpreters-pep-734, which CPython"
    )


# --- free-threaded: how to get one ----------------------------------------------------------


def test_doctor_says_how_to_get_a_free_threaded_build_when_none_is_found():
    from conc_lab.machine import doctor

    found = doctor.interpreters()
    free = [f for f in found if f.status == "ok" and "free-threaded" in f.detail]
    advice = [f for f in found if f.name == "free-threaded python"]
    if free:
        assert not advice
    else:
        assert advice == [doctor.FREE_THREADED_ADVICE]
        assert "benchmarks/build_free_threaded_python.sh" in advice[0].advice
        assert (REPO / "benchmarks/build_free_threaded_python.sh").stat().st_mode & 0o111  # executable


def test_the_build_script_parses_and_refuses_a_version_it_cannot_build(tmp_path):
    script = str(REPO / "benchmarks/build_free_threaded_python.sh")
    assert subprocess.run(["bash", "-n", script], timeout=30).returncode == 0
    done = subprocess.run(
        [script, "3.9"], capture_output=True, text=True, timeout=30, env={**os.environ, "WORK": str(tmp_path)}
    )
    assert done.returncode == 2 and "usage:" in done.stderr
    assert not any(tmp_path.iterdir())  # refused before touching anything


def test_the_loopback_workload_runs_in_subinterpreters_which_refuse_daemon_threads(sub_executor):
    executor, python = sub_executor
    row = executor.execute(_sub_trial("experiments.io:loopback_echo", python, tasks=2, size=20), 0).row
    assert (row["status"], row["correct"]) == ("ok", True), row["error"]


def test_the_backport_on_312_is_skipped_with_the_reason_it_does_not_import(tmp_path):
    """interpreters-pep-734 0.5.0 is pure Python over 3.13's private _interpreters module: on 3.12
    it installs, but does not import. The trial says so instead of failing."""
    python = _pyenv_python("3.12")
    if python is None:
        pytest.skip(f"no pyenv Python 3.12 under {PYENV}")
    target = tmp_path / "backport312"
    _install_backport(python, target)
    with TrialExecutor(
        ExecutorSettings("models", "t", "compact", timeout_s=30, search_path=[TESTS, str(target)])
    ) as ex:
        row = ex.execute(_sub_trial("workloads_faulty:good", python), 0).row
    if row["status"] == "ok":  # a later backport that supports 3.12 would land here: then it must be right
        assert row["correct"] is True and row["own_gil"] is not None
        return
    assert row["status"] == "skipped"
    assert "interpreters_backport.interpreters does not import here (ImportError: " in row["error"]

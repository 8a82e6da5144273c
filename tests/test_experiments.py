"""The workload library: known answers, the contract (deterministic, JSON-able, picklable), the
concurrency effects each workload exists to show, run with real threads and processes."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
import threading
import zlib
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

from conc_lab.config.document import load_config
from experiments import cpu, io, memory, overhead, seed

pytestmark = pytest.mark.host

ROOT = Path(__file__).resolve().parent.parent

# (function, a small size) for every workload that is cheap enough to call here.
CHEAP = [
    (seed.calc_square, 100),
    (seed.calc_quad, 100),
    (seed.square_and_quad, 100),
    (cpu.sum_squares, 100),
    (cpu.count_primes, 100),
    (cpu.mandelbrot_row, 32),
    (cpu.sha256_blocks, 1),
    (cpu.zlib_compress, 1),
    (io.sleep, 1),
    (io.fsync_write, 4),
    (io.loopback_echo, 5),
    (memory.result_global, 10),
    (memory.result_local, 10),
    (memory.counter_unlocked, 10),
    (memory.counter_locked, 10),
    (memory.payload_pickle, 1000),
    (memory.payload_shared_memory, 1000),
    (overhead.noop, 0),
    (overhead.thread_start, 3),
    (overhead.process_start_fork, 1),
]


@pytest.mark.parametrize("fn, size", CHEAP, ids=lambda v: getattr(v, "__name__", str(v)))
def test_contract_deterministic_json_picklable(fn, size):
    answers = [fn(task, size) for task in (0, 1, 2)]
    assert answers == [fn(task, size) for task in (0, 1, 2)], "same (task, size), same answer"
    assert json.loads(json.dumps(answers)) == answers
    assert pickle.loads(pickle.dumps(answers)) == answers
    assert getattr(fn, "checkable", True) is True  # every answer here is checked against sequential


def test_workloads_import_nothing_of_conc_lab():
    import ast

    for path in (ROOT / "experiments").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "conc_lab" for n in names), f"{path.name} imports {names}"


# --- seed ---------------------------------------------------------------------------


def test_seed_is_the_posts_program_corrected():
    # The post: number = 7, calc_square prints 49, calc_quad prints 2401.
    assert (seed.calc_square(0, 1), seed.calc_quad(0, 1)) == (49, 2401)
    assert [seed.square_and_quad(t, 1) for t in range(4)] == [49, 2401, 64, 4096]
    # Task t covers numbers 7 + t*size .. : the blocks tile the integers without overlap.
    size = 50
    whole = sum(n * n for n in range(7, 7 + 3 * size))
    assert sum(seed.calc_square(t, size) for t in range(3)) == whole
    assert seed.calc_quad(2, size) == sum(n**4 for n in range(7 + 2 * size, 7 + 3 * size))


@pytest.mark.parametrize("pool", [ThreadPoolExecutor, ProcessPoolExecutor])
def test_seed_started_and_joined_gives_the_sequential_answer(pool):
    # What the post meant: start both workers, join them, get both answers back.
    with pool(max_workers=2) as ex:
        got = list(ex.map(seed.square_and_quad, [0, 1], [1, 1]))
    assert got == [49, 2401]


# --- cpu ----------------------------------------------------------------------------


def test_sha256_blocks_is_sha256_of_the_bytes():
    block = cpu._block("random")
    assert len(block) == 1 << 20
    expected = hashlib.sha256((5).to_bytes(8, "little") + block + block).hexdigest()
    assert cpu.sha256_blocks(5, 2) == expected


def test_zlib_compress_round_trips_and_compresses():
    size, crc = cpu.zlib_compress(3, 1)
    packed = zlib.compress((3).to_bytes(8, "little") + cpu._block("text"), 6)
    assert (size, crc) == (len(packed), zlib.crc32(packed))
    assert zlib.decompress(packed)[8:] == cpu._block("text")
    assert size < (1 << 20) / 2, "text-like data should compress well"


def test_mandelbrot_row_known_points():
    # Task 0 is the row through y = 0; at size 4 it holds x = -2, -1.375, -0.75, -0.125,
    # all in the set, so every point runs the full 50 iterations.
    assert cpu.mandelbrot_row(0, 4) == 50 * 4
    # Task 2 wraps to the top edge, y = -1.25, where every point escapes within a few steps.
    assert cpu.mandelbrot_row(2, 4) < 4 * 5
    assert cpu.mandelbrot_row(0 + 4, 4) == cpu.mandelbrot_row(0, 4), "rows wrap around"
    # The middle row is the costliest: calibrating on task 0 covers the worst case.
    assert all(cpu.mandelbrot_row(t, 64) <= cpu.mandelbrot_row(0, 64) for t in range(64))


# --- io -----------------------------------------------------------------------------


def test_fsync_write_leaves_no_temp_files():
    tmp = Path(tempfile.gettempdir())
    before = {p.name for p in tmp.glob("conclab-io-*")}
    assert io.fsync_write(7, 16) == [16 * 1024, zlib.crc32(((7).to_bytes(4, "little") * 256) * 16)]
    assert {p.name for p in tmp.glob("conclab-io-*")} == before


def test_loopback_echo_answers_and_stops_its_server():
    threads_before = threading.active_count()
    assert io.loopback_echo(2, 10) == sum(2 * 10 + i + 1 for i in range(10))
    assert threading.active_count() == threads_before, "the server thread is joined before returning"


def test_loopback_echo_listens_on_loopback_only(monkeypatch):
    import socket

    bound = []
    real_bind = socket.socket.bind

    def spy(self, address):
        bound.append(address)
        return real_bind(self, address)

    monkeypatch.setattr(socket.socket, "bind", spy)
    io.loopback_echo(0, 1)
    assert bound == [("127.0.0.1", 0)]


@pytest.mark.parametrize("workers", [2])
def test_loopback_echo_concurrent_calls_do_not_collide(workers):
    with ThreadPoolExecutor(workers) as ex:
        got = list(ex.map(io.loopback_echo, range(6), [20] * 6))
    assert got == [io.loopback_echo(t, 20) for t in range(6)]


# --- memory: the effects, observed with real threads and processes ---------------------


def _run(fn, pool, tasks, size):
    """Like conc_lab's host: prepare in the parent, run every task in the pool, observe in the parent."""
    fn.prepare()
    with pool(max_workers=2) as ex:
        answers = list(ex.map(fn, range(tasks), [size] * tasks))
    return answers, fn.observe()


def test_result_question_threads_share_processes_copy():
    answers, seen = _run(memory.result_global, ThreadPoolExecutor, 4, 1)
    assert answers == [49, 64, 81, 100]
    assert seen["writers"] == [0, 1, 2, 3] and seen["result"] in answers
    answers, seen = _run(memory.result_global, ProcessPoolExecutor, 4, 1)
    assert answers == [49, 64, 81, 100]
    assert seen == {"result": None, "writers": []}, "a child process writes to its own copy"


@pytest.mark.parametrize("pool", [ThreadPoolExecutor, ProcessPoolExecutor])
def test_result_question_without_global_nobody_sees_it(pool):
    answers, seen = _run(memory.result_local, pool, 2, 1)
    assert answers == [49, 64] and seen == {"result": None, "writers": []}


def test_unlocked_counter_loses_updates_with_threads():
    import sys

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)  # many switches in the run, so the race cannot dodge them all
    try:
        answers, seen = _run(memory.counter_unlocked, ThreadPoolExecutor, 4, 100_000)
    finally:
        sys.setswitchinterval(old)
    assert answers == [100_000] * 4
    assert seen["increments"] == 400_000
    assert seen["lost"] == 400_000 - seen["counter"] > 0


def test_locked_counter_loses_nothing():
    answers, seen = _run(memory.counter_locked, ThreadPoolExecutor, 4, 20_000)
    assert seen == {"counter": 80_000, "increments": 80_000, "lost": 0}


def test_counter_in_processes_never_reaches_the_parent():
    answers, seen = _run(memory.counter_unlocked, ProcessPoolExecutor, 2, 1000)
    assert answers == [1000, 1000] and seen == {"counter": 0, "increments": 0, "lost": 0}


@pytest.mark.parametrize("size", [0, 1, 4096, 3_000_000])
def test_payload_transfers_deliver_the_same_bytes(size):
    want = zlib.crc32(memory._payload(size))
    assert memory.payload_pickle(1, size) == memory.payload_shared_memory(1, size) == want


def test_payload_shared_memory_unlinks_its_segment():
    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    memory.payload_shared_memory(0, 10_000)
    after = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    assert after <= before


# --- overhead -----------------------------------------------------------------------


def test_thread_and_process_starts_really_run_their_children():
    assert overhead.thread_start(1, 4) == sum((4 + i) % 100 for i in range(4))
    for fn in (overhead.process_start_fork, overhead.process_start_forkserver, overhead.process_start_spawn):
        assert fn(1, 2) == (2 + 0) % 100 + (2 + 1) % 100, fn.__name__


# --- configs ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["seed", "io", "memory", "overhead"])
def test_configs_validate(name):
    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg.name == name


# --- through conclab: the trial host runs prepare/observe in the parent -------------


def test_memory_effects_recorded_by_a_sweep(tmp_path, write_config):
    import conc_lab

    path = write_config(
        """
        name: mem
        repeats: 1
        warmup: 0
        matrix:
          workload: [experiments.memory:result_global, experiments.memory:result_local,
                     experiments.memory:counter_locked]
          backend: [sequential, threading, multiprocessing]
          workers: [2]
          tasks: [4]
          size: [2000]
        """
    )
    result = conc_lab.sweep(path, out=tmp_path / "results")
    assert result.ok
    df = conc_lab.load(result.sweep_dir)
    seen = {(r.workload.split(":")[1], r.backend): json.loads(r.observed) for r in df.itertuples()}
    assert seen["result_global", "sequential"]["writers"] == [0, 1, 2, 3]
    assert seen["result_global", "threading"]["writers"] == [0, 1, 2, 3], "threads write the parent's memory"
    assert seen["result_global", "multiprocessing"] == {"result": None, "writers": []}, (
        "processes write copies"
    )
    for backend in ("sequential", "threading", "multiprocessing"):
        assert seen["result_local", backend] == {"result": None, "writers": []}, "without global: a local"
    assert seen["counter_locked", "threading"] == {"counter": 8000, "increments": 8000, "lost": 0}
    assert seen["counter_locked", "multiprocessing"]["counter"] == 0
    assert df["correct"].all(), "the task answers agree with sequential on every backend"


def test_workloads_without_hooks_record_no_observation(tmp_path, write_config):
    import conc_lab

    path = write_config(
        """
        name: plain
        repeats: 1
        warmup: 0
        matrix: {workload: [experiments.seed:calc_square], backend: [sequential], tasks: [2], size: [1]}
        """
    )
    df = conc_lab.load(conc_lab.sweep(path, out=tmp_path / "r").sweep_dir)
    assert df["observed"].isna().all()


@pytest.mark.slow
def test_seed_config_answers_the_exercise_in_one_sweep(tmp_path):
    """configs/seed.yaml as shipped (fewer repeats): every backend agrees with the plain loop."""
    import yaml

    import conc_lab

    doc = yaml.safe_load((ROOT / "configs" / "seed.yaml").read_text())
    doc.update(repeats=1, warmup=0)
    path = tmp_path / "seed.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = conc_lab.sweep(path, out=tmp_path / "r")
    assert result.ok, result
    df = conc_lab.load(result.sweep_dir)
    variants = set(
        zip(df["backend"], df["start_method"].astype(object).where(df["start_method"].notna(), None))
    )
    assert variants == {
        ("sequential", None),
        ("threading", None),
        ("multiprocessing", "fork"),
        ("multiprocessing", "spawn"),
    }
    sizes = df.groupby(df["workload"].astype(str))["size"].apply(lambda s: sorted(set(s)))
    assert all(s[0] == 1 and s[1] > 1 for s in sizes), "size 1 (the post's program) and a calibrated size"
    assert df["correct"].all() and (df["status"] == "ok").all()

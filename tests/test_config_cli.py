"""Config mistakes and hostile configs met through the real `conclab`, as a person meets them.

Each ends in one line on stderr naming file, key and problem; exit 2; no traceback; nothing
written under --out. Issues #11, #12 (items 6, 12) and #14 (items 3, 5, 6, 11, 14).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "conc_lab.cli"]

GOOD = """\
name: demo
repeats: 2
matrix:
  workload: [experiments.cpu:sum_squares]
  backend: [sequential, threading]
  workers: [1, 2]
  tasks: [4]
  size: [100]
"""


def conclab(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, cwd=REPO, env=ENV, timeout=timeout, **kw
    )


# a workload module beside the config is imported by the check: no __pycache__ may appear
ENV = {**os.environ, "COLUMNS": "300", "PYTHONDONTWRITEBYTECODE": "1"}


def refused(tmp_path: Path, text: str, *, commands=("sweep", "expand"), timeout: float = 120) -> str:
    """Run each command on a config holding ``text``: one line, exit 2, nothing written. The line."""
    config = tmp_path / "bad.yaml"
    config.write_text(textwrap.dedent(text))
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "results"
    lines = []
    for command in commands:
        args = [command, str(config)] + (["--out", str(out)] if command == "sweep" else [])
        proc = conclab(*args, timeout=timeout)
        assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr and proc.stdout == "", proc.stderr[-2000:]
        got = proc.stderr.strip().splitlines()
        assert len(got) == 1 and got[0].startswith(f"error: {config}: "), proc.stderr[-2000:]
        lines.append(got[0])
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    return lines[0]


# --- #12 item 12: a misspelled function gets a suggestion, as a misspelled backend does ---


@pytest.mark.slow
def test_a_misspelled_function_gets_a_did_you_mean(tmp_path):
    line = refused(tmp_path, GOOD.replace("sum_squares", "sum_square"))
    assert "matrix.workload[0]" in line and "has no 'sum_square'" in line
    assert "did you mean 'experiments.cpu:sum_squares'?" in line


# --- #14 item 14: a long axis is checked for duplicates in linear time -------------------


def test_three_axes_of_100_000_values_load_without_a_quadratic_check():
    """On main the duplicate check compared each value with every earlier one: 207 s here."""
    code = textwrap.dedent(
        """
        from conc_lab.config.document import parse_config
        from conc_lab.plan.matrix import count
        n = 10**5
        cfg = parse_config({"name": "big", "matrix": {"workload": "experiments.io:sleep",
            "backend": "threading", "tasks": list(range(1, n + 1)), "size": list(range(n)),
            "python": [f"p{i}" for i in range(n)]}}, check_imports=False)
        print(len(cfg.axes["tasks"]) + len(cfg.axes["size"]) + len(cfg.axes["python"]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "300000", proc.stderr
    dup = (
        textwrap.dedent(code)
        .replace("list(range(n))", "list(range(n)) + [7]")
        .replace("print(len", "raise SystemExit(0)\nprint(len")
    )
    proc = subprocess.run([sys.executable, "-c", dup], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "matrix.size[100000]: 7 is listed twice" in proc.stderr


@pytest.fixture(autouse=True)
def _no_stray_results():
    yield
    assert not (REPO / "results" / "bad").exists()


# --- #14 item 5: an alias bomb ------------------------------------------------------------


def _bomb(levels: int) -> str:
    """``levels`` anchors under keys the config knows, each naming the one before nine times; then name."""
    keys = ["description", "exclude", "include", "backend_options", "ray", "affinity", "seed", "matrix"]
    keys += ["warmup", "repeats"]
    lines = ['description: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, key in enumerate(keys[1:levels]):
        prev, this = chr(ord("a") + i), chr(ord("b") + i)
        lines.append(f"{key}: &{this} [{','.join(['*' + prev] * 9)}]")
    lines.append(f"name: *{chr(ord('a') + levels - 1)}")
    return "\n".join(lines) + "\n"


@pytest.mark.slow
@pytest.mark.parametrize("levels", [8, 10])
def test_an_alias_bomb_ends_in_one_short_line_in_little_memory(tmp_path, levels):
    """On main: 8 levels took 50 s and 5 GB and printed a 722 MB line; 10 levels a MemoryError."""
    assert len(_bomb(8)) < 420  # the 415-byte file
    config = tmp_path / "bad.yaml"
    config.write_text(_bomb(levels))
    # run under a parent that reports the child's peak memory (ru_maxrss of its waited children)
    probe = (
        "import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stdout); sys.exit(p.returncode)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, *CLI, "expand", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ENV,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {config}: (yaml): ") and "alias" in line and len(line) < 400, line
    peak_kib = int(proc.stdout.strip().splitlines()[-1])
    assert peak_kib < 300 * 1024, f"{peak_kib} KiB"
    refused(tmp_path, _bomb(levels), commands=("sweep",))


def test_an_alias_that_contains_itself_is_refused(tmp_path):
    line = refused(tmp_path, GOOD.replace("backend: [sequential, threading]", "backend: &b [sequential, *b]"))
    assert "(yaml)" in line and "contains it" in line


# --- #14 item 14: a YAML merge key with an override -------------------------------------


@pytest.mark.slow
def test_a_yaml_merge_key_with_an_override_works_and_duplicates_are_still_refused(tmp_path):
    config = tmp_path / "merge.yaml"
    config.write_text(
        GOOD
        + "include:\n"
        + "  - &big {workload: experiments.cpu:sum_squares, backend: threading, workers: 2, tasks: 8}\n"
        + "  - <<: *big\n"
        + "    workers: 1\n"
    )
    proc = conclab("expand", str(config), "-f", "json")
    assert proc.returncode == 0, proc.stderr
    included = [(t["workers"], t["tasks"]) for t in json.loads(proc.stdout) if t["tasks"] == 8]
    assert included == [(2, 8), (1, 8)]  # the override wins over the merged key
    line = refused(tmp_path, GOOD.replace("  tasks: [4]\n", "  tasks: [4]\n  tasks: [8]\n"))
    assert "(yaml)" in line and "duplicate key 'tasks'" in line


# --- #14 item 11: a timeout too long to wait for --------------------------------------------


def test_a_huge_timeout_is_a_config_error(tmp_path):
    line = refused(tmp_path, GOOD + "timeout_s: 1.0e+10\n")
    assert "timeout_s: must be at most 2,592,000 seconds (30 days), got 10000000000.0" in line


# --- #14 item 3: workers bounded by a documented, overridable limit -----------------------


@pytest.mark.slow
def test_a_million_workers_is_refused_and_limits_workers_raises_the_bound(tmp_path):
    many = GOOD.replace("workers: [1, 2]", "workers: [1, 1000000]") + "affinity: none\n"
    line = refused(tmp_path, many)
    assert "matrix.workers: 1,000,000 workers is more than limits.workers" in line
    cpus = os.cpu_count()
    assert f"({16 * cpus:,}: 16 per CPU here" in line
    allowed = tmp_path / "allowed.yaml"
    allowed.write_text(
        many.replace("1000000]", f"{16 * cpus + 1}]") + f"limits: {{workers: {16 * cpus + 1}}}\n"
    )
    proc = conclab("expand", str(allowed), "--count")
    assert proc.returncode == 0 and proc.stdout.strip() == "3", proc.stderr


# --- #14 item 6: what cannot finish is refused, naming the count; expand streams ----------


@pytest.mark.slow
def test_a_billion_repeats_is_refused_naming_the_count(tmp_path):
    line = refused(tmp_path, GOOD.replace("repeats: 2", "repeats: 1000000000"))
    assert "repeats: 1 warm-up + 1,000,000,000 measured runs of each trial is more than limits.runs" in line


def test_a_trial_of_two_billion_tasks_is_refused(tmp_path):
    line = refused(tmp_path, GOOD.replace("tasks: [4]", "tasks: [2147483647]"))
    assert "matrix.tasks[0]: 2,147,483,647 tasks in one trial is more than limits.tasks (1,000,000)" in line


HUGE = """\
name: huge
repeats: 5
affinity: none
matrix:
  workload: [experiments.cpu:sum_squares]
  backend: [sequential, threading]
  workers: [1, 2, 3, 4, 5, 6, 7, 8]
  tasks: [{tasks}]
  size: [{sizes}]
"""


@pytest.mark.slow
def test_a_matrix_too_large_to_run_is_refused_and_expand_streams_it(tmp_path):
    """2.25 * 10^8 trials: on main `sweep` built the whole list and `expand` walked it before printing."""
    n = 5000
    text = HUGE.format(tasks=", ".join(map(str, range(1, n + 1))), sizes=", ".join(map(str, range(n))))
    trials = n * n * 9
    line = refused(tmp_path, text, commands=("sweep",))
    assert f"matrix: {trials:,} trials x 6 runs each (1 warm-up + 5 measured) = {trials * 6:,} runs" in line
    config = tmp_path / "bad.yaml"
    proc = conclab("expand", str(config), "--count")
    assert proc.returncode == 0 and int(proc.stdout) == trials
    proc = conclab("expand", str(config), "--limit", "3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("sum_squares") == 3 and f"{trials:,} trials (first 3 shown)" in proc.stdout
    stream = subprocess.Popen(
        [*CLI, "expand", str(config), "-f", "json"], stdout=subprocess.PIPE, text=True, cwd=REPO, env=ENV
    )
    try:
        assert stream.stdout.readline() == "[\n"
        first = json.loads(stream.stdout.readline().rstrip(",\n"))
        assert (first["backend"], first["tasks"], first["size"]) == ("sequential", 1, 0)
    finally:
        stream.kill()
        stream.wait()


# --- #12 item 6: a workload with the wrong signature is caught at config time --------------

MODULE = """\
import operator

def one_arg(n):
    return n

async def coroutine(task, size):
    return task

def flexible(*args, **kwargs):
    return 0

def keyword_only(task, *, size):
    return task

add = operator.add  # a builtin: (a, b, /)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "function, problem",
    [
        ("one_arg", "sigmod:one_arg takes (n), but a workload is called as sigmod:one_arg(task, size)"),
        ("keyword_only", "sigmod:keyword_only takes (task, *, size), but"),
    ],
)
def test_a_workload_with_the_wrong_signature_is_refused_at_config_time(tmp_path, function, problem):
    (tmp_path / "sigmod.py").write_text(MODULE)
    line = refused(tmp_path, GOOD.replace("experiments.cpu:sum_squares", f"sigmod:{function}"))
    assert f"matrix.workload[0]: {problem}" in line


@pytest.mark.parametrize(
    "function, backends", [("coroutine", "[sequential, asyncio]"), ("flexible", None), ("add", None)]
)
def test_workloads_that_accept_task_and_size_pass_the_check(tmp_path, function, backends):
    (tmp_path / "sigmod.py").write_text(MODULE)
    text = GOOD.replace("experiments.cpu:sum_squares", f"sigmod:{function}")
    if backends:
        text = text.replace("[sequential, threading]", backends)
    config = tmp_path / "ok.yaml"
    config.write_text(text)
    proc = conclab("expand", str(config), "--count")
    assert proc.returncode == 0, proc.stderr


# --- #12 item 12: expand -f json / csv, and the table kept -------------------------------


@pytest.mark.slow
def test_expand_prints_json_and_csv_of_every_trial_and_keeps_the_table(tmp_path):
    import csv
    import io

    import conc_lab

    cfg = conc_lab.load_config(REPO / "configs/cpu.yaml")
    want = [{"trial_id": t.trial_id, **t.params()} for t in conc_lab.expand(cfg)]
    proc = conclab("expand", "configs/cpu.yaml", "-f", "json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == want, proc.stderr
    proc = conclab("expand", "configs/cpu.yaml", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["trial_id"] for r in rows] == [w["trial_id"] for w in want]
    assert list(rows[0]) == list(want[0])
    table = conclab("expand", "configs/cpu.yaml")
    assert table.returncode == 0 and f"{len(want)} trials" in table.stdout and "sum_squares" in table.stdout
    bad = conclab("expand", "configs/cpu.yaml", "-f", "yaml")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: --format: unknown format 'yaml'; use one of table, json, csv"
    ]


# --- the workload measured is the one beside the config, not a same-named module above it ---


@pytest.mark.slow
def test_the_workload_beside_the_config_wins_over_a_same_named_module_in_the_folder_above(tmp_path):
    """Run from the config's folder (as `cd proj && conclab sweep x.yaml` does): `python -m` puts
    that folder first on sys.path, and the config's parent, added after it, must not get in front."""
    (tmp_path / "mywork.py").write_text("def work(task, size):\n    raise RuntimeError('the wrong mywork')\n")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "mywork.py").write_text(
        "def work(task, size):\n    return sum(i * i for i in range(size * (task + 1)))\n"
    )
    (proj / "x.yaml").write_text(
        textwrap.dedent(
            """\
            name: x
            repeats: 1
            warmup: 0
            matrix:
              workload: [mywork:work]
              backend: [sequential, threading, multiprocessing]
              workers: [2]
              tasks: [2]
              size: [auto]
            calibration: {target_s: 0.005}
            backend_options:
              multiprocessing: {start_method: [fork, spawn]}
            """
        )
    )
    env = {**ENV, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [*CLI, "sweep", "x.yaml", "--out", "r", "-q"],
        capture_output=True,
        text=True,
        cwd=proj,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "wrong mywork" not in proc.stderr
    import conc_lab

    df = conc_lab.load(proj / "r")
    assert len(df) == 4 and (df["status"] == "ok").all() and df["correct"].all(), df[["backend", "error"]]


@pytest.mark.parametrize(
    "typed, meant",
    [
        ("configs/smoke.yml", "configs/smoke.yaml"),
        ("configs/smok.yaml", "configs/smoke.yaml"),
        ("configs/CPU.yaml", "configs/cpu.yaml"),
    ],
)
def test_a_mistyped_config_file_gets_a_did_you_mean(typed, meant):
    # was: "error: configs/smoke.yml: (file): no such file", beside configs/smoke.yaml
    for command in ("sweep", "expand"):
        proc = conclab(command, typed)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.strip() == f"error: {typed}: (file): no such file; did you mean '{meant}'?"


def test_a_config_name_like_none_there_lists_what_is_there_and_no_folder_says_nothing_more(tmp_path):
    proc = conclab("sweep", "configs/zzz.yaml")
    assert proc.returncode == 2 and "configs holds cpu.yaml, " in proc.stderr and "smoke.yaml" in proc.stderr
    proc = conclab("sweep", str(tmp_path / "nowhere" / "x.yaml"))
    assert proc.stderr.strip() == f"error: {tmp_path / 'nowhere' / 'x.yaml'}: (file): no such file"

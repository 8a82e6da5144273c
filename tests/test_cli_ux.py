"""The `conclab` command as a person meets it (#12): real CLI in subprocesses, real tmux terminals.

Each test drives what a user types and checks what they would see: the help, the version,
shell completion, the summary table at 80 and 120 columns (tmux ``capture-pane``), tables
piped into other programs, and the resume hint after a Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from needs import need

import conc_lab
from conc_lab.analysis.summary import summarize
from conc_lab.present import tables
from conc_lab.store.layout import sweep_dirs
from conc_lab.store.manifest import read_manifest

pytestmark = pytest.mark.terminal

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "conc_lab.cli"]
SCRIPT = Path(sys.executable).with_name("conclab")  # the console script, for shell completion


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(extra)
    return env


def conclab(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, cwd=REPO, env=env or _env(), timeout=timeout
    )


# A cpu.yaml-like matrix, small enough for a test: two modules (so short names keep one level),
# every local backend but Ray, multiprocessing with two start methods, sizes per workload.
CPU_LIKE = """\
name: cpulike
repeats: 2
warmup: 1
timeout_s: 60
matrix:
  workload:
    - experiments.cpu:sum_squares
    - experiments.cpu:count_primes
    - {workload: experiments.io:sleep, size: [5]}
  backend: [sequential, threading, multiprocessing]
  workers: [1, 2]
  tasks: [4]
  size: [2000]
backend_options:
  multiprocessing: {start_method: [fork, spawn]}
affinity: compact
"""


@pytest.fixture(scope="module")
def cpulike(tmp_path_factory):
    """(config path, results root) of one finished cpu-like sweep."""
    root = tmp_path_factory.mktemp("cpulike")
    config = root / "cpulike.yaml"
    config.write_text(CPU_LIKE)
    out = root / "results"
    proc = conclab("sweep", str(config), "--out", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    return config, out


# --- tmux ----------------------------------------------------------------------------------------


def tmux_run(
    command: str, width: int, timeout: float = 300, screens: list[str] | None = None, joined: bool = False
) -> str:
    """Run ``command`` in a fresh tmux terminal ``width`` columns wide; the screen and scrollback.

    ``screens``: every capture taken while it ran is appended there (about two a second), for a
    test of what showed in which order. ``joined``: lines the terminal folded are joined, as a copy
    from the terminal joins them (a newline the program printed stays).
    """
    need(None if shutil.which("tmux") else "tmux is not installed (Debian: apt-get install tmux)")
    sock = f"conclab-test-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", sock, "-f", "/dev/null"]
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in _env().items() if k in ("PATH", "PYTHONPATH", "HOME"))
    script = f"cd {shlex.quote(str(REPO))}; env {env} {command}; echo __EXIT_$?__; sleep 600"
    subprocess.run(
        [*tmux, "new-session", "-d", "-x", str(width), "-y", "50", "-s", "t", script],
        check=True,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    try:
        subprocess.run([*tmux, "set-option", "-g", "history-limit", "10000"], check=True)
        deadline = time.monotonic() + timeout
        while True:
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p", *(["-J"] if joined else []), "-S", "-", "-t", "t"],
                capture_output=True,
                text=True,
            ).stdout
            if screens is not None:
                screens.append(screen)
            if "__EXIT_" in screen or time.monotonic() > deadline:
                return screen
            time.sleep(0.5)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def table_rows(screen: str) -> list[str]:
    """The lines of the summary table's body: from the header rule to what follows the table."""
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("───"))
    body = []
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith(("__EXIT_", "notes:", "every column")):
            break
        body.append(line)
    return body


@pytest.mark.parametrize("width", [80, 120])
def test_summary_table_fits_a_terminal_without_cutting_or_wrapping(cpulike, width):
    config, out = cpulike
    screen = tmux_run(f"python -m conc_lab.cli summarize {shlex.quote(str(out))}", width)
    assert "__EXIT_0__" in screen, screen
    summary = summarize(conc_lab.load(out))
    short = tables.short_workload_names(summary["workload"].astype(str))
    assert sorted(short.values()) == ["cpu:count_primes", "cpu:sum_squares", "io:sleep"]
    rows = table_rows(screen)
    # one line per summary row: a wrapped row would add lines that start with no workload
    assert len(rows) == len(summary), screen
    for line, (_, expect) in zip(rows, summary.iterrows()):
        cells = line.split()
        assert cells[0] == short[str(expect["workload"])], line  # whole, never "expe…"
        method = expect["start_method"]
        backend = expect["backend"] + (f"/{method}" if isinstance(method, str) else "")
        assert cells[1] == backend, line
    assert "…" not in screen
    assert all(len(line) <= width for line in screen.splitlines())
    header = next(line for line in screen.splitlines() if line.startswith("workload"))
    assert "speedup (95% CI)" in header


# Two workloads from modules that share no prefix, each at two sizes: the short names stay whole
# (``experiments.cpu:sum_squares``) and the table needs a size column.
MIXED = """\
name: mixed
repeats: 2
warmup: 0
timeout_s: 60
matrix:
  workload: [experiments.cpu:sum_squares, mywork:squares]
  backend: [sequential, multiprocessing]
  workers: [1, 2]
  tasks: [2]
  size: [20000, 100000]
backend_options:
  multiprocessing: {start_method: [fork]}
"""


def test_summary_of_two_modules_at_80_columns_keeps_every_number_whole(tmp_path):
    # was: at 80 columns the essentials did not fit, and every cell folded: size 100000 showed as
    # "10000" over "0", a median as "14.6" over "ms", a speedup's interval over three lines
    (tmp_path / "mywork.py").write_text(
        "def squares(task, size):\n    return sum(i * i for i in range(size))\n"
    )
    (tmp_path / "mixed.yaml").write_text(MIXED)
    env = _env()
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    proc = conclab("sweep", str(tmp_path / "mixed.yaml"), "--out", str(tmp_path / "results"), "-q", env=env)
    assert proc.returncode == 0, proc.stderr
    screen = tmux_run(f"python -m conc_lab.cli summarize {shlex.quote(str(tmp_path / 'results'))}", 80)
    assert "__EXIT_0__" in screen, screen
    summary = summarize(conc_lab.load(tmp_path / "results"))
    rows = table_rows(screen)
    assert len(rows) == len(summary), screen  # one line a row: nothing folded onto a second line
    for line, (_, expect) in zip(rows, summary.iterrows()):
        cells = line.split()
        assert cells[0] == str(expect["workload"]).split(":")[1], line  # the function names tell them apart
        assert str(expect["size"]) in cells, line
    assert all(len(line) <= 80 for line in screen.splitlines())


def test_sweep_final_table_in_a_terminal_80_columns(cpulike):
    """The table a sweep prints at its end, in an 80-column terminal: its resume of a done sweep."""
    config, out = cpulike
    screen = tmux_run(f"python -m conc_lab.cli sweep {config} --out {out} --resume", 80)
    assert "__EXIT_0__" in screen, screen
    assert "is complete: nothing to run" in screen
    assert "0/0" not in screen, "no empty progress bar when there is nothing to run"
    rows = table_rows(screen)
    assert len(rows) == 3 * 7 and all(re.match(r"(cpu|io):\w+ ", line) for line in rows), screen


@pytest.mark.parametrize("width", [80, 120])
def test_the_last_lines_of_a_sweep_break_between_words_and_keep_the_path_whole(tmp_path, width):
    """The closing lines (where every column is, where the overhead goes, what was recorded) were
    left for the terminal to break, which it does anywhere: "o / verhead", "an / d", "fr / esh"."""
    config = tmp_path / "w.yaml"
    config.write_text(
        "name: w\nrepeats: 2\nwarmup: 0\nmatrix:\n  workload: [experiments.io:sleep]\n"
        "  backend: [sequential, threading]\n  tasks: [1]\n  size: [1]\n"
    )
    out = Path(tempfile.mkdtemp(prefix="w", dir="/tmp"))  # a path that fits the screen: the words are checked
    try:
        screen = tmux_run(f"python -m conc_lab.cli sweep {config} --out {out} -v", width)
        (sweep_dir,) = (out / "w").iterdir()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    assert "__EXIT_0__" in screen, screen
    lines = screen.splitlines()
    words = " ".join(screen.split())  # had a word been cut, its halves would be two words here
    for phrase in (
        f"every column: conclab summarize {sweep_dir} --wide (or -f csv|markdown|json)",
        "(the command's wall time less the runs' setup, run and teardown, over 4 runs): start-up",
        "(interpreter, imports, config, hosts), runner",
        "trial host",
        "(each run's fresh process, its guards, the pipes)",
        "4 runs recorded (0 failed, 0 wrong, 0 skipped) in",
    ):
        assert phrase in words, (phrase, screen)
    assert sum(str(sweep_dir) in line for line in lines) >= 3, screen  # header, every column, last line
    assert all(len(line) <= width or " " not in line.strip() for line in lines), screen


def test_piped_tables_honour_columns():
    """`conclab doctor | head` is as wide as COLUMNS says, 80 without it; never 200."""
    for columns, limit in ((None, 80), ("100", 100)):
        env = _env(**({"COLUMNS": columns} if columns else {}))
        proc = conclab("doctor", env=env)
        assert proc.returncode == 0, proc.stderr  # findings exit 1 only with --strict
        widest = max(len(line) for line in proc.stdout.splitlines())
        assert 60 < widest <= limit, (columns, widest)


def test_summarize_wide_and_formats_carry_every_column(cpulike):
    _, out = cpulike
    wide = conclab("summarize", str(out), "--wide")
    assert wide.returncode == 0 and "IQR" in wide.stdout and "experiments.cpu:sum_squares" in wide.stdout
    csv = conclab("summarize", str(out), "-f", "csv")
    assert csv.stdout.splitlines()[0].startswith("workload,tasks,size,backend,workers,start_method")


# --- the CLI surface (#12 item 12) ----------------------------------------------------------------


@pytest.mark.parametrize("command", ["", "sweep", "summarize", "doctor", "expand", "report", "merge"])
def test_help_shows_no_bool_placeholder_for_flags(command):
    proc = conclab(*([command] if command else []), "--help", env=_env(COLUMNS="120"))
    assert proc.returncode == 0, proc.stderr
    assert "<bool>" not in proc.stdout and "--help" in proc.stdout


def test_version():
    proc = conclab("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"conclab {conc_lab.__version__}"


def test_shell_completion_completes_commands_and_options():
    need(None if SCRIPT.exists() else "the conclab console script is not installed next to this Python")
    env = _env(_CONCLAB_COMPLETE="complete_bash", COMP_WORDS="conclab sw", COMP_CWORD="1")
    proc = subprocess.run([str(SCRIPT)], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert "sweep" in proc.stdout.split(), proc.stdout + proc.stderr
    env.update(COMP_WORDS="conclab sweep --fail", COMP_CWORD="2")
    proc = subprocess.run([str(SCRIPT)], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert "--fail-fast" in proc.stdout.split(), proc.stdout + proc.stderr
    show = subprocess.run(
        [str(SCRIPT), "--show-completion", "bash"], capture_output=True, text=True, env=_env(), cwd=REPO
    )
    assert show.returncode == 0 and "_CONCLAB_COMPLETE" in show.stdout


# --- resume (#12 item 3) -------------------------------------------------------------------------

SLOW = """\
name: slow
repeats: 10
warmup: 0
matrix:
  workload: [experiments.io:sleep]
  backend: [sequential, threading]
  workers: [1]
  tasks: [2]
  size: [500]
"""


def test_resume_hint_reproduces_out_and_shard_and_completes(tmp_path):
    config = tmp_path / "slow.yaml"
    config.write_text(SLOW)
    out = tmp_path / "my results"  # a space: the hint must quote it
    proc = subprocess.Popen(
        [*CLI, "sweep", str(config), "--out", str(out), "--shard", "1/1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as test_resume explains
    )
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size for p in [*out.rglob("journal*"), *out.rglob("*.parquet")]):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    time.sleep(0.5)  # the sweep has ~20 s to go
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    hint = err.split("Resume with: ", 1)[1].strip()
    args = shlex.split(hint)
    assert args[:4] == ["conclab", "sweep", str(config), "--resume"], hint
    assert args[args.index("--out") + 1] == str(out) and args[args.index("--shard") + 1] == "1/1"

    again = conclab(*args[1:])  # run exactly what was printed
    assert again.returncode == 0, again.stderr
    sweeps = [p for p in (out / "slow").iterdir() if p.is_dir()]
    assert len(sweeps) == 1
    assert conc_lab.load(sweeps[0])["repeat"].nunique() == 10

    done = conclab(*args[1:])
    assert done.returncode == 0, done.stderr
    final = done.stderr.strip().splitlines()[-1]
    assert final == f"sweep {sweeps[0].name} is complete: nothing to run → {sweeps[0]}"
    assert "overhead" not in done.stderr


def test_resume_command_quotes_and_keeps_every_flag():
    from conc_lab.cli.sweep import resume_command

    text = resume_command(
        Path("configs/cpu.yaml"), Path("/r s"), shard="2/5", cluster="10.0.0.1:6379", ray_address=None
    )
    assert shlex.split(text) == [
        "conclab",
        "sweep",
        "configs/cpu.yaml",
        "--resume",
        "--out",
        "/r s",
        "--shard",
        "2/5",
        "--cluster",
        "10.0.0.1:6379",
    ]


# --- noise (#12 item 13) -------------------------------------------------------------------------

WITH_RAY = """\
name: withray
repeats: 1
warmup: 0
matrix:
  workload: [experiments.cpu:sum_squares]
  backend: [sequential, ray]
  workers: [1]
  tasks: [2]
  size: [1000]
"""


@pytest.mark.ray
def test_in_a_terminal_the_ray_line_comes_before_the_bar_and_no_token_banner(tmp_path):
    """#26 item 4: the bar sat at ``0/88 eta -:--:--`` for 10-28 s before ``ray: started ...``.

    In a real terminal (tmux, 80 columns), watched as it runs: when the bar is first drawn, the
    Ray line is already on the screen above it. Ray's token banner never shows.
    """
    config = tmp_path / "withray.yaml"
    config.write_text(WITH_RAY)
    screens: list[str] = []
    # Ray's default authentication (the banner's case), and a runtime of the sweep's own
    command = f"env -u RAY_AUTH_MODE -u RAY_ADDRESS {shlex.quote(sys.executable)} -m conc_lab.cli sweep"
    final = tmux_run(
        f"{command} {shlex.quote(str(config))} --out {shlex.quote(str(tmp_path / 'r'))}", 80, screens=screens
    )
    assert "__EXIT_0__" in final, final
    bar = re.compile(r"\b\d/2\b.*\beta\b")
    first = next((screen for screen in screens if bar.search(screen)), None)
    assert first is not None, final  # the bar was seen while the sweep ran
    lines = first.splitlines()
    ray_at = next((i for i, line in enumerate(lines) if "ray: started a local runtime" in line), None)
    bar_at = next(i for i, line in enumerate(lines) if bar.search(line))
    assert ray_at is not None and ray_at < bar_at, first
    assert "Token authentication" not in final


# --- failures and -q (#12 items 1, 12, 13) -------------------------------------------------------

MY_WORK = """\
import threading


def good(task, size):
    return task * size


def broken(task, size):
    raise ValueError("broken on purpose")


def wrong(task, size):
    # a different answer in every thread: the sequential reference never matches threading
    return threading.get_ident() % 9973 + task
"""


def _my_config(tmp_path: Path, workload: str, backends: str = "[threading]") -> Path:
    (tmp_path / "mywork.py").write_text(MY_WORK)
    config = tmp_path / f"{workload}.yaml"
    config.write_text(
        f"name: {workload}\nrepeats: 2\nwarmup: 1\nmatrix:\n  workload: [mywork:{workload}]\n"
        f"  backend: {backends}\n  workers: [2]\n  tasks: [4]\n  size: [10]\n"
    )
    return config


@pytest.mark.parametrize("workload, what", [("broken", "FAILED"), ("wrong", "WRONG ANSWER")])
def test_fail_fast_on_a_warmup_failure_exits_1_and_counts_it(tmp_path, workload, what):
    config = _my_config(tmp_path, workload)
    proc = conclab("sweep", str(config), "--out", str(tmp_path / "r"), "--fail-fast")
    assert proc.returncode == 1, proc.stderr
    assert f"{what} threading w=2 {workload} warm-up" in proc.stderr
    final = proc.stderr.strip().splitlines()[-1]
    assert re.match(r"0 runs recorded \(0 failed, 0 wrong, 0 skipped[^;)]*; 1 failed warm-up run\)", final)
    assert "overhead" not in final  # no per-run figure over no runs


def test_progress_lines_count_wrong_answers_as_wrong_as_the_last_line_does(tmp_path):
    # was "3/3 runs (3 failed)" on the way, then "0 failed, 2 wrong" at the end, for the same runs
    proc = conclab("sweep", str(_my_config(tmp_path, "wrong")), "--out", str(tmp_path / "r"))
    progress = [line for line in proc.stderr.splitlines() if re.match(r"\d+/\d+ runs", line)]
    assert progress and progress[-1].startswith("3/3 runs (3 wrong), "), proc.stderr
    assert not any("failed" in line for line in progress), progress
    assert "(0 failed, 2 wrong, " in proc.stderr.strip().splitlines()[-1]


def test_quiet_prints_only_errors_and_the_final_line(tmp_path):
    """-q: no header, no doctor warning, no table; the failures as they happen, and the last line."""
    config = _my_config(tmp_path, "broken", backends="[sequential, threading]")
    only_in_threads = MY_WORK.replace(
        "def broken(task, size):\n",
        "def broken(task, size):\n    if threading.current_thread() is threading.main_thread():\n"
        "        return task\n",
    )
    (tmp_path / "mywork.py").write_text(only_in_threads)
    proc = conclab("sweep", str(config), "--out", str(tmp_path / "r"), "-q")
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert re.match(
        r"4 runs recorded \(2 failed, 0 wrong, 0 skipped[^;)]*; 1 failed warm-up run\)", lines[-1]
    )
    # the warm-up and both measured runs of the threading trial, nothing else
    assert len(lines) == 4 and all(line.startswith("FAILED threading w=2 broken") for line in lines[:-1])
    # its time: the sweep's, then the command's with the interpreter's start-up and imports, which
    # the overhead per run counts too (before, "in 0.1 s; overhead 1300 ms per run" for one run)
    sweep_s, whole_s, per_run, unit = re.search(
        r" in ([\d.]+) s \(([\d.]+) s with start-up\); conc_lab's own overhead ([\d.]+) (µs|ms|s) a run",
        lines[-1],
    ).groups()
    per_run_s = float(per_run) * {"µs": 1e-6, "ms": 1e-3, "s": 1.0}[unit]
    assert float(sweep_s) < float(whole_s) and 4 * per_run_s <= float(whole_s) + 0.05


# --- summarize's filters (#12 item 9) ------------------------------------------------------------


def summarize_json(*args: str) -> list[dict]:
    proc = conclab("summarize", *args, "-f", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_filter_that_matches_nothing_is_an_error_with_a_suggestion(cpulike):
    _, out = cpulike
    for args, message in [
        (["--backend", "threadin"], "--backend: no run has backend 'threadin'; did you mean 'threading'?"),
        (["--workload", "sum_squars"], "did you mean"),
        (["--workers", "3"], "--workers: no run has workers 3; there are: 1, 2"),
        (["--sweep", "nosuchsweep"], "--sweep: 'nosuchsweep' names no sweep there"),
    ]:
        proc = conclab("summarize", str(out), *args)
        assert proc.returncode == 2, (args, proc.stdout)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and proc.stdout == "", (args, proc.stderr)


def test_filters_by_short_name_workers_and_size_keep_the_baseline(cpulike):
    _, out = cpulike
    rows = summarize_json(str(out), "--workload", "sleep")
    assert {r["workload"] for r in rows} == {"experiments.io:sleep"} and len(rows) == 7
    rows = summarize_json(str(out), "--workers", "2", "--backend", "threading")
    assert {(r["backend"], r["workers"]) for r in rows} == {("sequential", 1), ("threading", 2)}
    assert all(r["speedup"] is not None for r in rows)  # the baseline came along
    rows = summarize_json(str(out), "--size", "5")
    assert {r["workload"] for r in rows} == {"experiments.io:sleep"}


def test_sweep_and_latest_choose_among_the_sweeps_of_a_folder(cpulike, tmp_path):
    config, out = cpulike
    (first,) = sweep_dirs(out)
    first_id = read_manifest(first).sweep_id
    again = tmp_path / "again" / "cpulike.yaml"  # the same name, a smaller matrix: a second sweep
    again.parent.mkdir()
    again.write_text(
        CPU_LIKE.replace("repeats: 2", "repeats: 1")
        .replace("backend: [sequential, threading, multiprocessing]", "backend: [sequential]")
        .replace("    - experiments.cpu:count_primes\n", "")
        .replace("backend_options:\n  multiprocessing: {start_method: [fork, spawn]}\n", "")
    )
    second_out = tmp_path / "results"
    shutil.copytree(out, second_out)
    proc = conclab("sweep", str(again), "--out", str(second_out), "-q")
    assert proc.returncode == 0, proc.stderr
    pooled = summarize_json(str(second_out))
    assert len(pooled) == 21  # every trial of both sweeps (the second's are among the first's)
    latest = summarize_json(str(second_out), "--latest")
    assert {(r["workload"], r["backend"], r["n"]) for r in latest} == {
        ("experiments.cpu:sum_squares", "sequential", 1),
        ("experiments.io:sleep", "sequential", 1),
    }
    chosen = summarize_json(str(second_out), "--sweep", first_id[:-2])  # a unique start will do
    assert len(chosen) == 21 and {r["n"] for r in chosen} == {2}


# --- an unreachable cluster (#12 item 7) ---------------------------------------------------------


def test_an_unreachable_cluster_fails_in_one_line_and_leaves_no_folder(tmp_path):
    """Nothing listens on 127.0.0.1:1: one error line naming it and why, exit 2, no sweep folder.

    Before, Ray retried for minutes (then joined whatever other Ray runtime it found).
    """
    config = _my_config(tmp_path, "good", backends="[sequential]")
    out = tmp_path / "r"
    proc = conclab("sweep", str(config), "--cluster", "127.0.0.1:1", "--out", str(out), timeout=120)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: --cluster 127.0.0.1:1: connection refused: no Ray head listens there "
        "(is `ray start --head` running on that machine, on that port?)"
    ], proc.stderr
    assert "Traceback" not in proc.stderr and "GCS" not in proc.stderr
    assert not out.exists(), list(out.rglob("*"))  # nothing made: no sweep folder, nor its parents


# --- the progress display (#12 item 13) ----------------------------------------------------------

BAR = """\
name: barw
repeats: 3
warmup: 1
matrix:
  workload:
    - {workload: experiments.io:sleep, size: [150]}
    - experiments.cpu:count_primes
  backend: [sequential, threading, multiprocessing]
  workers: [1, 2]
  tasks: [2]
  size: [2000]
backend_options:
  multiprocessing: {start_method: [forkserver]}
"""


def test_progress_bar_keeps_its_width_and_counts_what_the_header_says(tmp_path):
    """At 80 columns the counter never moves as trial names change; header and bar agree on the total."""
    need(None if shutil.which("tmux") else "tmux is not installed (Debian: apt-get install tmux)")
    config = tmp_path / "barw.yaml"
    config.write_text(BAR)
    sock = f"conclab-test-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", sock, "-f", "/dev/null"]
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in _env().items() if k in ("PATH", "PYTHONPATH", "HOME"))
    command = f"python -m conc_lab.cli sweep {config} --out {tmp_path / 'r'}"
    script = f"cd {shlex.quote(str(REPO))}; env {env} {command}; echo __EXIT_$?__; sleep 600"
    subprocess.run(
        [*tmux, "new-session", "-d", "-x", "80", "-y", "50", "-s", "t", script],
        check=True,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    counters, labels, screen = set(), set(), ""
    try:
        deadline = time.monotonic() + 300
        while "__EXIT_" not in screen and time.monotonic() < deadline:
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", "t"], capture_output=True, text=True
            ).stdout
            for line in screen.splitlines():
                found = re.search(r" (\d+)/(\d+) ", line) if line.startswith("barw ") else None
                if found:
                    counters.add((found.start(2), found[2]))  # where "/total" sits
                    labels.add(line[found.end() :].strip())
            time.sleep(0.2)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    assert "__EXIT_0__" in screen, screen
    header = re.search(r"(\d+) trials, (\d+) measured runs \+ (\d+) warm-up", screen)
    assert header, screen
    total = str(int(header[2]) + int(header[3]))
    assert len(labels) > 2, labels  # trial names of several lengths went by
    assert {n for _, n in counters} == {total}  # the bar counts what the header announced
    assert len({pos for pos, _ in counters}) == 1, counters  # and its counter never moved

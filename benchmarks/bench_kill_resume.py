"""Kill-and-resume loop: SIGKILL the real `conclab sweep` at random moments, N times, then resume.

Each round starts `conclab sweep CONFIG --resume`, waits until its runs begin, sleeps a
random time and sends SIGKILL (kill -9: no handler, no cleanup). After N kills the sweep is
resumed until it completes. Reported: kills that landed, rows expected vs rows stored,
duplicate (trial_id, repeat) rows, runs lost between kills (rows stored earlier that a later
load no longer shows), processes the killed sweeps left running, and stray files.

    python benchmarks/bench_kill_resume.py              # 30 kills, about 2 minutes
    python benchmarks/bench_kill_resume.py --kills 100 --seed 7
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _common import ROOT

CLI = [sys.executable, "-m", "conc_lab.cli"]
CONFIG = """\
name: kr
repeats: 5
warmup: 1
timeout_s: 30
shuffle: true
matrix:
  workload: [experiments.io:sleep, experiments.cpu:sum_squares]
  backend: [sequential, threading, multiprocessing]
  workers: [1, 2]
  tasks: [2]
  size: [5]
backend_options:
  multiprocessing: {start_method: [fork, forkserver]}
"""


def survivors(tag: str, within_s: float = 5.0) -> list[int]:
    """Running processes whose environment carries ``tag`` (the sweep's hosts and workers inherit it)."""
    needle = f"CONCLAB_TEST_TAG={tag}".encode()
    deadline = time.monotonic() + within_s
    while True:
        alive = []
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                if needle in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    if Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                        alive.append(int(entry))
            except OSError:
                continue
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


def journal_rows(out: Path) -> int:
    """Rows in the journals of the sweep under ``out``: what this start wrote so far (parts come at the end)."""
    n = 0
    for journal in out.glob("kr/*/_journal-*.jsonl"):
        try:
            n += journal.read_bytes().count(b"\n")
        except OSError:  # sealed and removed meanwhile
            pass
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--max-delay", type=float, default=0.8, help="a warm-up kill lands within this many seconds"
    )
    ap.add_argument(
        "--max-rows", type=int, default=40, help="other kills land after up to this many new rows"
    )
    args = ap.parse_args()

    from conc_lab.config.document import load_config
    from conc_lab.plan.matrix import count
    from conc_lab.store.layout import MANIFEST
    from conc_lab.store.load import load
    from conc_lab.store.manifest import read_manifest

    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench_kill_resume-"))
    config, out = work / "kr.yaml", work / "out"
    config.write_text(CONFIG)
    cfg = load_config(config)
    expected = count(cfg) * cfg.repeats
    tag = uuid.uuid4().hex
    env = dict(os.environ, CONCLAB_TEST_TAG=tag, COLUMNS="400")

    def verify(out: Path) -> dict:
        sweeps = [d for d in (out / "kr").iterdir() if (d / MANIFEST).exists()]
        df = load(out / "kr")
        return {
            "sweeps": len(sweeps),
            "rows": len(df),
            "dup": int(df.duplicated(["trial_id", "repeat"]).sum()),
            "stray": sum(
                1
                for d in sweeps
                for p in d.iterdir()
                if not (p.name == MANIFEST or p.name.startswith("part-"))
            ),
            "complete": all(read_manifest(d).state == "complete" for d in sweeps),
            "ok": bool((df.status == "ok").all() and df.correct.all()),
        }

    def finish(out: Path) -> dict:
        for _ in range(4):
            if subprocess.run(argv_for(out), cwd=ROOT, env=env, capture_output=True).returncode == 0:
                return verify(out)
        raise SystemExit(f"resume of {out} did not complete")

    def argv_for(out: Path) -> list[str]:
        # not -q: -q hides the header line that says the runs have begun
        return [*CLI, "sweep", str(config), "--out", str(out), "--resume"]

    kills = lost = orphans = starts = 0
    sweeps: list[dict] = []
    progress: list[int] = []  # rows stored after each start, to show where the kills landed
    seen: set[tuple[str, int]] = set()
    t0 = time.perf_counter()
    while kills < args.kills:
        starts += 1
        proc = subprocess.Popen(
            argv_for(out), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        said = []
        for line in proc.stderr:  # the runs begin once this line is out
            said.append(line)
            if "measured runs" in line:
                break
        # Where to kill: during the warm-up round or host start (wait 0), or after a random number
        # of this start's rows have reached the journal, a random fraction of a run later.
        rows = rng.choice([0, rng.randint(1, args.max_rows)])
        if rows == 0:
            time.sleep(rng.uniform(0.0, args.max_delay))
        else:
            while journal_rows(out) < rows and proc.poll() is None:
                time.sleep(0.001)
            time.sleep(rng.uniform(0.0, 0.02))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        _, rest = proc.communicate()
        if proc.returncode not in (0, -signal.SIGKILL):
            raise SystemExit(f"conclab sweep exited {proc.returncode}: {''.join(said)}{rest}")
        orphans += len(survivors(tag))
        now = set()
        if (out / "kr").exists():  # killed before it made its store: nothing to check yet
            df = load(out / "kr", columns=["trial_id", "repeat"])
            now = set(zip(df["trial_id"], df["repeat"].astype(int)))
        lost += len(seen - now)
        seen |= now
        progress.append(len(now))
        if proc.returncode == 0:  # it finished between kills: check it, go on with a new sweep
            sweeps.append(verify(out))
            out, seen = work / f"out{starts}", set()
    sweeps.append(finish(out))
    loop_s = time.perf_counter() - t0

    rows = [s["rows"] for s in sweeps]
    dup = sum(s["dup"] for s in sweeps)
    stray = sum(s["stray"] for s in sweeps)
    good = all(s["complete"] and s["ok"] and s["sweeps"] == 1 for s in sweeps)
    print(
        f"kills landed:          {kills} (in {starts} starts), over {len(sweeps)} sweeps resumed to completion"
    )
    print(f"rows stored after each start: {progress}")
    print(f"rows expected:         {expected} per sweep, {expected * len(sweeps)} in all")
    print(f"rows stored:           {rows} = {sum(rows)} in all")
    print(f"duplicate rows:        {dup}")
    print(f"rows lost after a kill (stored, later missing): {lost}")
    print(f"processes left running after a kill: {orphans}")
    print(f"stray files (journal, .tmp) after completion: {stray}")
    print(f"each sweep one dir, state complete, all runs ok and correct: {good}")
    print(f"loop time:             {loop_s:.1f} s")
    if sum(rows) != expected * len(sweeps) or dup or lost or orphans or stray or not good:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

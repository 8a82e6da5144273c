"""Fuzzed bad configs: how many were tried, how many ended in a traceback instead of a ConfigError.

Uses the hypothesis strategies of tests/test_config_fuzz.py (malformed YAML text, damaged
copies of a good file, junk anywhere in a good document, and one generator per kind of
mistake), many more examples than the test runs. Every outcome must be a Config or a
ConfigError that reads ``file: key: problem`` on one line; anything else is counted as a
traceback and its first examples are printed. Then the real CLI is run on a sample of the
generated files: exit code 2, one line on stderr, no traceback.

    python benchmarks/bench_fuzz.py                    # 20,000 configs, ~5 minutes
    python benchmarks/bench_fuzz.py --examples 2000 --cli 20
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from _common import ROOT

sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=20000, help="configs to generate, over all strategies")
    ap.add_argument("--cli", type=int, default=40, help="of those, how many to also run through `conclab`")
    args = ap.parse_args()

    from hypothesis import HealthCheck, Phase, given, settings
    from test_config_fuzz import MISTAKES, broken_yaml_of_base, load_outcome, mutated_docs, yaml_texts

    from conc_lab.config.errors import ConfigError
    from conc_lab.config.model import Config

    strategies = {
        "malformed YAML text": (yaml_texts, 0.2),
        "damaged good file": (broken_yaml_of_base(), 0.2),
        "junk in a good document": (mutated_docs(), 0.4),
        **{
            f"mistake: {name}": (MISTAKES[name][0].map(lambda c: c[0]), 0.2 / len(MISTAKES))
            for name in MISTAKES
        },
    }
    work = Path(tempfile.mkdtemp(prefix="bench_fuzz-"))
    path = work / "fuzzed.yaml"
    counts: dict[str, collections.Counter] = {}
    crashes: list[str] = []
    samples: list[str] = []  # bad configs kept for the CLI run
    rng = random.Random(0)
    t0 = time.perf_counter()

    def run(name: str, strategy, share: float) -> None:
        tally = counts[name] = collections.Counter()

        @settings(
            max_examples=max(1, int(args.examples * share)),
            deadline=None,
            database=None,
            phases=[Phase.generate],  # count what was generated; no shrinking of the (absent) failures
            suppress_health_check=list(HealthCheck),
        )
        @given(content=strategy)
        def attempt(content):
            try:
                outcome = load_outcome(path, content)
            except Exception:  # noqa: BLE001 - this is the count we are after
                tally["traceback"] += 1
                if len(crashes) < 5:
                    crashes.append(f"{name}: {content!r:.300}\n{traceback.format_exc()}")
                return
            tally["tried"] += 1
            tally["loaded" if isinstance(outcome, Config) else "ConfigError"] += 1
            if isinstance(outcome, ConfigError) and rng.random() < 0.05:
                samples.append(path.read_text(errors="replace"))

        attempt()

    for name, (strategy, share) in strategies.items():
        run(name, strategy, share)
    fuzz_s = time.perf_counter() - t0

    cli = collections.Counter()
    for i, text in enumerate(rng.sample(samples, min(args.cli, len(samples)))):
        bad = work / f"cli-{i}.yaml"
        bad.write_text(text)
        proc = subprocess.run(
            [sys.executable, "-m", "conc_lab.cli", "sweep", str(bad), "--out", str(work / "results")],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "COLUMNS": "400"},
        )
        lines = proc.stderr.strip().splitlines()
        cli["tried"] += 1
        cli["exit 2, one line"] += proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ")
        cli["traceback"] += "Traceback" in proc.stderr
    cli["wrote results"] = int((work / "results").exists())

    tried = sum(c["tried"] + c["traceback"] for c in counts.values())
    tracebacks = sum(c["traceback"] for c in counts.values())
    print(f"{'strategy':44} {'tried':>7} {'ConfigError':>11} {'loaded':>7} {'traceback':>9}")
    for name, c in counts.items():
        print(
            f"{name:44} {c['tried'] + c['traceback']:7} {c['ConfigError']:11} {c['loaded']:7} {c['traceback']:9}"
        )
    print(
        f"{'all':44} {tried:7} {'':11} {'':7} {tracebacks:9}   ({fuzz_s:.0f} s, {tried / fuzz_s:.0f} configs/s)"
    )
    print(
        f"CLI on {cli['tried']} of the bad configs: {cli['exit 2, one line']} exit 2 with one line, "
        f"{cli['traceback']} tracebacks, results dir written: {bool(cli['wrote results'])}"
    )
    for crash in crashes:
        print("\n" + crash, file=sys.stderr)
    if tracebacks or cli["traceback"] or cli["exit 2, one line"] != cli["tried"] or cli["wrote results"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

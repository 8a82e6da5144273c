"""conclab doctor: each check read from a sysfs/procfs tree laid out in a temp dir, and the real machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from conc_lab.events import Warned
from conc_lab.machine import doctor

pytestmark = pytest.mark.host


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text + "\n")
    return root


def _by_name(findings):
    return {f.name: f for f in findings}


# A 4-CPU box with 2 physical cores (SMT pairs 0+2, 1+3), powersave governor, turbo on,
# busy, CPU 3 isolated, a 1.5-CPU cgroup quota.
BUSY_SMT = {
    "sys/devices/system/cpu/online": "0-3",
    "sys/devices/system/cpu/cpu0/topology/thread_siblings_list": "0,2",
    "sys/devices/system/cpu/cpu2/topology/thread_siblings_list": "0,2",
    "sys/devices/system/cpu/cpu1/topology/thread_siblings_list": "1,3",
    "sys/devices/system/cpu/cpu3/topology/thread_siblings_list": "1,3",
    "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "powersave",
    "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor": "performance",
    "sys/devices/system/cpu/intel_pstate/no_turbo": "0",
    "sys/devices/system/cpu/isolated": "3",
    "sys/fs/cgroup/cpu.max": "150000 100000",
    "proc/loadavg": "2.50 1.00 0.50 3/200 1234",
    "proc/cpuinfo": "processor\t: 0\nflags\t\t: fpu vme hypervisor sse",
}

# A quiet 2-core bare-metal box tuned the way pyperf recommends.
TUNED = {
    "sys/devices/system/cpu/online": "0-1",
    "sys/devices/system/cpu/cpu0/topology/thread_siblings_list": "0",
    "sys/devices/system/cpu/cpu1/topology/thread_siblings_list": "1",
    "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "performance",
    "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor": "performance",
    "sys/devices/system/cpu/intel_pstate/no_turbo": "1",
    "sys/devices/system/cpu/isolated": "1",
    "sys/fs/cgroup/cpu.max": "max 100000",
    "proc/loadavg": "0.02 0.05 0.01 1/90 99",
    "proc/cpuinfo": "processor\t: 0\nflags\t\t: fpu vme sse",
}


def test_busy_smt_box_is_flagged_with_advice(tmp_path):
    found = _by_name(doctor.diagnose(_tree(tmp_path, BUSY_SMT)))
    assert found["cores"].detail.startswith("4 logical CPUs usable ([0, 1, 2, 3]), 2 physical cores")
    assert found["smt"].status == "warn" and "0+2" in found["smt"].detail and "spread" in found["smt"].advice
    assert found["cpu_governor"].status == "warn" and "powersave" in found["cpu_governor"].detail
    assert found["turbo"].status == "warn"
    assert found["load"].status == "bad" and "2.50" in found["load"].detail
    assert found["isolated_cpus"].status == "ok" and "[3]" in found["isolated_cpus"].detail
    assert found["cpu_quota"].status == "bad" and "1.50 CPUs" in found["cpu_quota"].detail
    assert found["virtual_machine"].status == "info"
    assert doctor.worst(found.values()) == "bad"
    line = doctor.summary_line(list(found.values()))
    assert line.count("\n") == 0 and "load (bad" in line and "cpu_quota (bad" in line


def test_tuned_box_has_nothing_spoiling(tmp_path):
    found = _by_name(doctor.diagnose(_tree(tmp_path, TUNED)))
    for name in ("smt", "cpu_governor", "turbo", "load", "isolated_cpus", "cpu_quota", "virtual_machine"):
        assert found[name].status == "ok", found[name]
    # Checks of this process (affinity, timer, GIL, Ray) don't read the tree; they may still spoil.
    machine = [f for f in found.values() if f.name not in ("affinity", "timer", "ray")]
    assert doctor.summary_line(machine) is None


def test_missing_files_are_info_not_errors(tmp_path):
    found = _by_name(doctor.diagnose(tmp_path))  # an empty tree: nothing exposed
    assert found["cpu_governor"].status == "info"
    assert found["load"].status == "info"
    assert found["cpu_quota"].status == "ok"


@pytest.mark.parametrize(
    "load, status", [("0.10", "ok"), ("0.60", "warn"), ("0.99", "warn"), ("1.00", "bad"), ("7", "bad")]
)
def test_load_thresholds_on_two_cpus(tmp_path, load, status):
    files = dict(TUNED, **{"proc/loadavg": f"{load} 0 0 1/1 1"})
    assert _by_name(doctor.diagnose(_tree(tmp_path, files)))["load"].status == status


def test_cgroup_v1_quota(tmp_path):
    files = {k: v for k, v in TUNED.items() if "cgroup" not in k}
    files["sys/fs/cgroup/cpu/cpu.cfs_quota_us"] = "50000"
    files["sys/fs/cgroup/cpu/cpu.cfs_period_us"] = "100000"
    found = _by_name(doctor.diagnose(_tree(tmp_path, files)))
    assert found["cpu_quota"].status == "bad" and "at most 1 workers" in found["cpu_quota"].advice


def test_real_machine_every_check_answers():
    findings = doctor.diagnose()
    names = [f.name for f in findings]
    assert len(names) == len(set(names)) == 12
    assert all(f.status in doctor.STATUSES for f in findings)
    assert all(f.advice for f in findings if f.spoils), "every spoiling finding says what to do"
    assert all(not f.detail.startswith("check failed") for f in findings)
    # The affinity probe must leave this process's affinity as it found it.
    import os

    before = os.sched_getaffinity(0)
    doctor.diagnose()
    assert os.sched_getaffinity(0) == before


def test_sweep_stores_findings_and_warns_at_most_once(tmp_path, write_config):
    import conc_lab
    from conc_lab.store.manifest import read_manifest

    path = write_config(
        """
        name: doc
        repeats: 2
        warmup: 0
        matrix: {workload: [experiments.seed:calc_square], backend: [sequential, threading], tasks: [2], size: [10]}
        """
    )
    events = []
    result = conc_lab.sweep(path, out=tmp_path / "r", on_event=events.append)
    manifest = read_manifest(result.sweep_dir)
    stored = manifest.doctor
    assert [f["name"] for f in stored] == [f.name for f in doctor.diagnose()]
    warnings = [e.text for e in events if isinstance(e, Warned) and "spoiled" in e.text]
    spoiling = [f for f in stored if f["status"] in ("warn", "bad")]
    assert len(warnings) == (1 if spoiling else 0)
    for f in spoiling:
        assert f["name"] in warnings[0]


@pytest.mark.slow
def test_cli_doctor_json_and_strict_exit_code():
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "conc_lab.cli", "doctor", "--json", "--strict"], capture_output=True, text=True
    )
    findings = json.loads(out.stdout)
    assert [f["name"] for f in findings][:2] == ["cores", "smt"]
    spoils = any(f["status"] in ("warn", "bad") for f in findings)
    assert out.returncode == (1 if spoils else 0), out.stderr
    table = subprocess.run([sys.executable, "-m", "conc_lab.cli", "doctor"], capture_output=True, text=True)
    assert table.returncode == 0 and "cpu_governor" in table.stdout


def test_doctor_names_the_process_using_the_cpus_and_ends_with_its_verdict():
    """A newcomer told "load: bad … other work is competing for the CPUs: stop it" could not tell
    what to stop (and the load average lags a minute behind); the one line that said whether anything
    could spoil a measurement was nowhere: ``bad load`` sat mid-page above 30 lines of interpreters."""
    import os
    import subprocess
    import sys
    import time

    hog = subprocess.Popen([sys.executable, "-c", "while True: pass", "firstday-hog"])
    try:
        time.sleep(0.5)
        env = {**os.environ, "COLUMNS": "80"}
        proc = subprocess.run(
            [sys.executable, "-m", "conc_lab.cli", "doctor"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    finally:
        hog.kill()
        hog.wait()
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stdout.split())
    assert f"firstday-hog (pid {hog.pid})" in said, proc.stdout  # was: no process named anywhere
    assert "processes" in said and "kill PID" in said, proc.stdout
    import re

    verdict = re.search(r"\n(warn |bad  ) can spoil a measurement here: ", proc.stdout)  # the worst leads
    assert verdict, proc.stdout
    closing = proc.stdout[verdict.start() :]
    assert "seen:" not in closing, proc.stdout  # after every finding
    assert "processes (warn)" in " ".join(closing.split()), proc.stdout
    assert all(len(line) <= 80 for line in proc.stdout.splitlines()), proc.stdout

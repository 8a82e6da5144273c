"""What a config, a results directory and a local Ray runtime may and may not do.

A config is code-equivalent (its workloads are imported and run), so the aim is not to
sandbox it but to make sure nothing *else* acts: YAML builds no objects, only the named
``module:function`` workloads are imported, results land only under the chosen directory
and are not world-writable, nothing is unpickled from a source the user did not start,
and a local Ray runtime listens on loopback only with its dashboard off.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conc_lab.config.document import load_config
from conc_lab.config.errors import ConfigError

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent
GOOD = """\
name: sec
repeats: 1
warmup: 0
matrix:
  workload: [experiments.cpu:sum_squares]
  backend: [sequential, threading, multiprocessing]
  workers: [1, 2]
  tasks: [2]
  size: [100]
backend_options:
  multiprocessing: {start_method: [fork, spawn]}
"""


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "!!python/object/apply:subprocess.call [['touch', '{marker}']]",
        "!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
        "!!python/name:os.system",
        "!!python/module:os",
        "!<tag:yaml.org,2002:python/object/apply:os.system> ['touch {marker}']",
    ],
)
def test_object_construction_tags_are_refused_and_run_nothing(tmp_path, tag):
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(GOOD + "description: " + tag.format(marker=marker) + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert err.value.key == "(yaml)" and "constructor" in err.value.problem
    time.sleep(0.05)  # a command run in the background would have touched it by now
    assert not marker.exists()


def test_only_the_named_workload_modules_are_imported(tmp_path):
    marker = tmp_path / "imported"
    (tmp_path / "side_effect_mod.py").write_text(
        f"open({str(marker)!r}, 'a').write('x')\ndef f(task, size):\n    return task\n"
    )
    config = tmp_path / "c.yaml"
    # The module is named in a name and a description too: neither imports anything.
    config.write_text(GOOD.replace("name: sec", "name: side_effect_mod\ndescription: side_effect_mod:f"))
    load_config(config)
    assert not marker.exists() and "side_effect_mod" not in sys.modules
    config.write_text(GOOD.replace("experiments.cpu:sum_squares", "side_effect_mod:f"))
    load_config(config, check_imports=False)
    assert not marker.exists()  # validating the text alone imports nothing
    try:
        load_config(config)  # the explicit module:function is imported, to check it exists
        assert marker.read_text() == "x"
    finally:
        sys.modules.pop("side_effect_mod", None)


@pytest.mark.parametrize(
    "ref",
    ["os.system", "__import__('os').system", "os:system('ls')", "a:b:c", "os: system", ":f", "os:", "../x:f"],
)
def test_a_workload_must_be_a_plain_module_function_reference(tmp_path, ref):
    config = tmp_path / "c.yaml"
    config.write_text(GOOD.replace("experiments.cpu:sum_squares", repr(ref)))
    with pytest.raises(ConfigError) as err:
        load_config(config, check_imports=False)
    assert err.value.key == "matrix.workload[0]" and "module:function" in err.value.problem


@pytest.mark.parametrize(
    "name", ["..", ".", "../up", "/etc", "a/b", "a\\\\b", "-rf", ".hidden", "", "x" * 101, "a b", "é"]
)
def test_names_that_could_leave_the_results_dir_are_refused(tmp_path, name):
    config = tmp_path / "c.yaml"
    config.write_text(GOOD.replace("name: sec", f'name: "{name}"'))
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert err.value.key == "name"


def _tree(root: Path) -> dict[Path, int]:
    return {p: p.lstat().st_mode for p in [root, *root.rglob("*")]}


@pytest.mark.slow
def test_a_sweep_writes_only_under_its_results_dir_and_nothing_world_writable(tmp_path):
    """Under umask 000, the most permissive there is: the store sets its own modes."""
    config, out, cwd = tmp_path / "sec.yaml", tmp_path / "out" / "deeper", tmp_path / "cwd"
    config.write_text(GOOD)
    cwd.mkdir()
    before = _tree(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "conc_lab.cli", "sweep", str(config), "--out", str(out), "-q"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=lambda: os.umask(0),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    new = {p: mode for p, mode in _tree(tmp_path).items() if p not in before}
    assert new, "the sweep wrote nothing"
    outside = [p for p in new if not (p == tmp_path / "out" or p.is_relative_to(out))]
    assert outside == []
    writable = {str(p): oct(mode) for p, mode in new.items() if mode & 0o002}
    assert writable == {}
    assert (out / "sec").is_dir() and list(out.glob("sec/*/part-*.parquet"))


def test_nothing_in_conc_lab_unpickles_evaluates_or_loads_yaml_unsafely():
    """The runner and its hosts speak JSON; YAML goes through the strict safe loader only."""
    risky = re.compile(
        r"\bimport (c?pickle|marshal|shelve|dill|cloudpickle)\b|\b(pickle|marshal)\.loads?\(|"
        r"(?<![\w.])(eval|exec)\(|yaml\.(unsafe_load|full_load)|Loader=yaml\.(Loader|FullLoader|UnsafeLoader)|"
        r"\byaml\.load\((?![^)]*_StrictLoader)"
    )
    # The subinterpreter backend's workers are interpreters the trial host itself created, in its
    # own process: their results come back pickled, as a multiprocessing worker's do. Nothing else
    # may unpickle; pickle anywhere else (or eval, or unsafe YAML there) still fails this test.
    allowed = {("conc_lab/host/backends/subinterpreters.py", "pickle")}
    found = []
    for path in sorted((REPO / "conc_lab").rglob("*.py")):
        rel = str(path.relative_to(REPO))
        for no, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            hit = risky.search(code)
            if hit and not any(rel == f and word in hit.group(0) for f, word in allowed):
                found.append(f"{rel}:{no}: {line.strip()}")
    assert found == []


@pytest.mark.ray  # it starts a Ray runtime of its own
@pytest.mark.flaky(reruns=2)  # Ray opens its ports on its own clock
def test_a_local_ray_runtime_listens_on_loopback_only_with_no_dashboard():
    import psutil  # ray[default]'s, in the dev extra

    from conc_lab.run import ray_runtime

    me = psutil.Process()
    # Only this runtime's processes: the session's other Ray clusters (conftest's) are children
    # of this pytest too, and a `ray start` node there may listen beyond loopback on purpose.
    others = {p.pid for p in me.children(recursive=True)}
    with ray_runtime.RayRuntime() as rt:
        host = rt.address.rsplit(":", 1)[0]
        assert host in ("127.0.0.1", "localhost")
        deadline = time.monotonic() + 10
        listening: dict = {}
        while time.monotonic() < deadline:  # Ray's agents open their ports a moment after init
            family = {p.pid for p in [me, *me.children(recursive=True)]} - others
            listening = {
                (c.laddr.ip, c.laddr.port)
                for c in psutil.net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN and c.pid in family
            }
            if len(listening) >= 3:
                break
            time.sleep(0.2)
    assert listening, "found no socket of the Ray runtime to check"
    loopback = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
    assert {addr for addr in listening if addr[0] not in loopback} == set()
    assert 8265 not in {port for _, port in listening}  # the dashboard's web port

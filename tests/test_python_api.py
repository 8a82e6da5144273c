"""The Python API as a notebook user meets it (#26 item 8): tab completion and a config from a dict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent


def test_dir_lists_the_api_so_tab_completion_shows_it():
    # was: a lazy __getattr__ without __dir__, so dir(conc_lab) listed nothing of the API
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import conc_lab, sys; print(' '.join(dir(conc_lab))); print(sorted(sys.modules))",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout.splitlines()
    names = set(out[0].split())
    assert {"sweep", "load", "summarize", "compare", "write_report", "parse_config", "load_config"} <= names
    assert "pandas" not in out[1]  # listing the API imports none of it: the host stays light


def test_parse_config_is_exported_and_documented():
    import conc_lab

    assert "parse_config" in conc_lab.__all__ and "parse_config" in conc_lab.__doc__
    config = conc_lab.parse_config(
        {
            "name": "from-a-dict",
            "matrix": {
                "workload": ["experiments.cpu:sum_squares"],
                "backend": ["sequential", "threading"],
                "workers": [1, 2],
                "tasks": [2],
                "size": [1000],
            },
        }
    )
    assert config.name == "from-a-dict" and len(list(conc_lab.expand(config))) == 3

"""Shared fixtures. Tests use real processes, real hosts and real Parquet files: no mocks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def write_config(tmp_path):
    """Write a YAML config into tmp_path and return its path: ``write_config(text, name="x")``."""

    def write(text: str, name: str = "test") -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    return write

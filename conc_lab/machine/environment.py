"""The environment a sweep ran in, captured once per sweep and kept in its manifest."""

from __future__ import annotations

import os
import platform
import socket

import conc_lab
from conc_lab.host import affinity


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def capture(config_hash: str = "", config_path: str = "") -> dict:
    """Sweep-level facts: ``schema.ENV_COLUMNS``, the hostname, and what affinity allows.

    >>> from conc_lab import schema
    >>> set(schema.ENV_COLUMNS) <= set(capture())
    True
    """
    return {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count() or 0,
        "platform": platform.platform(),
        "conclab_version": conc_lab.__version__,
        "config_hash": config_hash,
        "config_path": config_path,
        "affinity_supported": affinity.SUPPORTED,
        "cores_available": affinity.available_cores(),
    }

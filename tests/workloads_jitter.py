"""Workloads whose run times are steady, or scattered on purpose (tests/test_precision_rounds.py)."""

import math
import random
import time

_DRAW = random.SystemRandom()  # each run's process is forked from one host: a seeded generator would repeat


def jittery(task: int, size: int) -> int:
    """Sleeps ``size`` ms times a factor drawn log-uniformly from 0.001-2: no five pairs agree
    on a ratio within ±25% but about once in 10^5."""
    time.sleep(size / 1000 * math.exp(_DRAW.uniform(math.log(0.001), math.log(2.0))))
    return task * size


def steady(task: int, size: int) -> int:
    """Sleeps ``size`` ms: every pair reads about 1."""
    time.sleep(size / 1000)
    return task * size

"""Workloads whose run times are steady, or scattered on purpose (tests/test_precision_rounds.py)."""

import math
import random
import time

_DRAW = random.SystemRandom()  # each run's process is forked from one host: a seeded generator would repeat


def jittery(task: int, size: int) -> int:
    """Sleeps ``size`` ms times a factor drawn log-uniformly from 0.5-100. Every draw is ``size / 2``
    ms or more, above a run's own floor (a sleep of microseconds takes a run ~0.5 ms, more under
    load: with factors down to 0.001 most draws sat on that floor, agreed, and once in 17 sweeps
    gave an interval within ±25% at 7 pairs). Pairs' log ratios spread by 2.2: five pairs span
    less than ±25% about once in 10^4 (simulated; fewer at more pairs)."""
    time.sleep(size / 1000 * math.exp(_DRAW.uniform(math.log(0.5), math.log(100.0))))
    return task * size


def steady(task: int, size: int) -> int:
    """Sleeps ``size`` ms: every pair reads about 1 (at 20 ms, a scheduling delay of a few ms
    under load moves a pair by 10-15%; at 5 ms it moved one past ±25% in a CI run at load 2)."""
    time.sleep(size / 1000)
    return task * size

"""One figure per backend on `conclab advise`'s screen: the headline names threads as their evidence
line does (found by a newcomer, the real CLI).

For a GIL-bound pure-Python function the headline read "threads 0.93× with 2 workers, their most"
and the line below it "threading 0.97× (…) with 1 worker": two figures for threads on one screen,
and the reader had to work out that one was their most workers and the other their best count.
The function here is slower with every thread alive in its process (a call that keeps the GIL and
waits in proportion), so threads are best at one worker and worst at their most, whatever the load:
the two figures differ by far more than noise, and the headline must give the evidence line's.
"""

from __future__ import annotations

import re

import pytest
from test_advise_newcomer import conclab

pytestmark = [pytest.mark.host, pytest.mark.slow]

CROWDWAIT = """
import ctypes
import threading

_libc = ctypes.PyDLL(None)  # a PyDLL call keeps the GIL: threads take turns, processes do not


def work(task, size):
    _libc.usleep(size * 1000 * threading.active_count())  # every thread alive makes it slower
    return task
"""


def test_the_headline_gives_threads_the_figure_and_count_of_their_evidence_line(tmp_path):
    (tmp_path / "crowdwait.py").write_text(CROWDWAIT)
    proc = conclab(tmp_path, "advise", "crowdwait:work", "--size", "5", "--budget", "20", "--out", "results")
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stdout.split())
    head = re.search(r"; threads (\S+×) with (\d+) workers?", said)
    line = re.search(r" threading (\S+×) \(.+?\) with (\d+) workers?", said)
    assert head and line, said
    # was "threads 0.11× with 8 workers, their most" beside "threading 0.50× (0.50–0.50) with 1 worker"
    assert head.groups() == line.groups(), said
    assert line.group(2) == "1", said  # best at one worker: more only slowed it
    assert re.search(r"; threads \S+× with 1 worker, no faster with more", said), said

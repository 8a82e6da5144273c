"""The sweep's renderer has a handler for every event the runner can tell, looked up by class.

A handler picked by the event's class name would silently drop the output of a renamed event;
``conc_lab.cli.progress.HANDLERS`` maps classes, and these tests fail when one is missing.
"""

from __future__ import annotations

import inspect
import io

import pytest
from rich.console import Console

from conc_lab import events
from conc_lab.cli.progress import HANDLERS, SweepRenderer, sweep_progress

pytestmark = pytest.mark.inprocess

EVENT_CLASSES = [
    cls
    for _, cls in inspect.getmembers(events, inspect.isclass)
    if issubclass(cls, events.Event) and cls is not events.Event and cls.__module__ == events.__name__
]

SAMPLES = {
    events.Planned: events.Planned(total=6, measured=4, sweep_dir="results/t/abc", trials=2),
    events.RunFinished: events.RunFinished(
        {
            "backend": "threading",
            "workers": 2,
            "workload": "experiments.io:sleep",
            "status": "failed",
            "correct": None,
            "error": "Traceback ...\nValueError: boom",
            "repeat": 0,
        },
        measured=True,
    ),
    events.Warned: events.Warned("a warning for people"),
    events.Calibrating: events.Calibrating(
        "experiments.cpu:sum_squares", size=1024, task_s=0.002, elapsed_s=0.1
    ),
    events.Calibrated: events.Calibrated("experiments.cpu:sum_squares", size=4096, task_s=0.05),
    events.RayStarted: events.RayStarted("127.0.0.1:6379", started=True, start_s=2.5),
    events.NodeJoined: events.NodeJoined("abcdef0123456789", "node-a"),
    events.NodeLost: events.NodeLost("abcdef0123456789", "node-a", "its runner died"),
    events.RoundAdded: events.RoundAdded(5, 3, 0.123, 0.05, 6),
    events.PrecisionReached: events.PrecisionReached(30, 2, 0.08, 0.05),
}


def test_the_events_module_is_seen_whole():
    assert {events.Planned, events.RunFinished, events.NodeLost} <= set(EVENT_CLASSES)


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.__name__)
def test_every_event_class_has_a_handler(cls):
    assert cls in HANDLERS, f"conc_lab.cli.progress.HANDLERS has no entry for events.{cls.__name__}"


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.__name__)
def test_every_event_prints_what_it_says(cls):
    assert cls in SAMPLES, f"add a sample events.{cls.__name__} to SAMPLES"
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=False)
    progress = sweep_progress(console, quiet=False)
    render = SweepRenderer(progress, "t")
    with progress:
        render(SAMPLES[events.Planned])  # the bar the runs advance
        render(SAMPLES[cls])
    text = out.getvalue()
    expected = {
        events.Planned: "2 trials, 4 measured runs + 2 warm-up",
        events.RunFinished: "FAILED threading w=2 sleep repeat 0: ValueError: boom",
        events.Warned: "warning: a warning for people",
        events.Calibrating: "size 1,024:",
        events.Calibrated: "experiments.cpu:sum_squares → 4096",
        events.RayStarted: "ray: started a local runtime at 127.0.0.1:6379",
        events.NodeJoined: "node node-a abcdef01",
        events.NodeLost: "node lost: node-a abcdef01: its runner died",
        events.RoundAdded: "round 6: 3 speedups still wider than ±5% (widest ±12%): 6 more runs",
        events.PrecisionReached: "2 speedups still wider than ±5% after 30 rounds",
    }
    assert expected[cls] in text

"""Which other processes are using the CPUs now: the names behind a high load.

The load average says *that* other work competes for the cores, a minute late; ``busy_now`` says
*which*: each process's CPU time (``/proc/PID/stat``, user + system ticks) read twice, a short
interval apart, so a newcomer told "stop it" knows what to stop. ``conclab doctor`` prints it; a
sweep does not pay the interval (its stored findings keep the load average).

Paths are read under ``root`` (default ``/``), as ``doctor``'s are.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from conc_lab.machine.doctor import Finding

#: A process using this share of one CPU or more is named; together at least ``BUSY`` is a warning.
NAMED = 0.10
BUSY = 0.50
#: How many of the busiest are named; a command line longer than this many characters is cut after a word.
SHOWN = 4
NAME_CHARS = 60


@dataclass(frozen=True)
class Busy:
    """A process and the share of one CPU it used over the interval (1.0: one core all the time)."""

    pid: int
    name: str
    cpu: float

    def text(self) -> str:
        """``python -m pytest (pid 123) 98%``

        >>> Busy(123, "python -m pytest", 0.984).text()
        'python -m pytest (pid 123) 98%'
        """
        return f"{self.name} (pid {self.pid}) {self.cpu:.0%}"


def _ticks(proc: Path) -> dict[int, int]:
    """CPU ticks (user + system) so far of every process readable under ``proc``."""
    out = {}
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
            out[int(entry.name)] = int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue  # gone between the listing and the read, or not ours to read
    return out


def _name(proc: Path, pid: int) -> str:
    """The process's command line as typed (its path shortened to the program's name), else ``[comm]``."""
    try:
        argv = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
        words = [w.decode(errors="replace") for w in argv if w]
        if not words:
            return f"[{(proc / str(pid) / 'comm').read_text().strip()}]"
    except OSError:
        return "?"
    words[0] = os.path.basename(words[0])
    kept = [words[0]]
    for word in words[1:]:  # whole words only: a long command line ends in "...", never mid-word
        if len(" ".join([*kept, word])) > NAME_CHARS:
            return " ".join(kept) + " ..."
        kept.append(word)
    return " ".join(kept)


def busiest(root: str | os.PathLike = "/", interval: float = 0.25) -> list[Busy]:
    """The processes other than this one that used at least ``NAMED`` of a CPU over ``interval``
    seconds, busiest first."""
    proc = Path(root) / "proc"
    hz = os.sysconf("SC_CLK_TCK")
    before = _ticks(proc)
    started = time.monotonic()
    time.sleep(interval)
    after = _ticks(proc)
    spent = time.monotonic() - started
    mine = os.getpid()
    shares = {
        pid: (ticks - before[pid]) / hz / spent
        for pid, ticks in after.items()
        if pid in before and pid != mine
    }
    busy = sorted(
        (Busy(pid, _name(proc, pid), s) for pid, s in shares.items() if s >= NAMED), key=lambda b: -b.cpu
    )
    return busy


def busy_now(root: str | os.PathLike = "/", interval: float = 0.25) -> Finding:
    """The ``processes`` finding: what else uses the CPUs now, by name and pid, and what to do.

    >>> busy_now(interval=0.01).name
    'processes'
    """
    try:
        busy = busiest(root, interval)
    except OSError as exc:
        return Finding("processes", "info", f"cannot read the processes: {exc}", "")
    if not busy:
        return Finding("processes", "ok", f"no other process used {NAMED:.0%} of a CPU or more just now", "")
    total = sum(b.cpu for b in busy)
    more = f", and {len(busy) - SHOWN} more" if len(busy) > SHOWN else ""
    detail = "using the CPUs now: " + ", ".join(b.text() for b in busy[:SHOWN]) + more
    if total < BUSY:
        return Finding("processes", "info", detail, "")
    return Finding(
        "processes",
        "warn",
        detail,
        "each takes cores a measurement needs: let it finish or stop it (kill PID) before a sweep",
    )

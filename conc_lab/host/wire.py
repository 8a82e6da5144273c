"""The wire between the host and a run's process: length-prefixed JSON frames, each with the run's nonce.

A run's process reads its request up to EOF (``read_all``), then writes two frames (``write_frame``):
first its fresh canary readings, before any of the workload's code runs, then its reply. The host
reads them (``collect``), takes the readings from the first frame alone, and fails a run whose pipe
carries anything else: a frame without the nonce, or one out of its place.

Standard library only, Python 3.8 syntax: this runs inside the trial host.
"""

import json
import os
import select
import signal
import time

from conc_lab.host import protocol

#: How often a wait for a run's reply also checks that its process still lives: a process it
#: forked may hold the reply pipe open, so EOF alone cannot tell that the run's process died.
_LIVENESS_S = 0.2

#: The key of the frame a run's process sends first, before the workload's code runs: its fresh canary readings.
CANARY_FRAME = "canary"


def write_frame(fd, doc):
    payload = json.dumps(doc, default=repr).encode()
    write_all(fd, b"%d\n" % len(payload) + payload)


def read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def collect(fd, pid, nonce):
    """(reply, None, readings, first_at) once the run's reply is read; (None, status, readings,
    first_at) if its process died (reaped) first. ``readings``: the fresh canary readings of the
    frame a run's process sends first, before the workload's code runs; never taken from a later
    frame or from the reply. ``first_at``: ``time.perf_counter()`` here as that frame was read."""
    buf, frames, readings, first_at = b"", 0, None, None
    while True:
        ready = select.select([fd], [], [], _LIVENESS_S)[0]
        chunk = os.read(fd, 1 << 20) if ready else None
        if chunk:
            buf += chunk
            while True:
                doc, rest = _frame(buf, nonce)
                if doc is None:
                    break
                frames += 1
                first = _readings(doc) if frames == 1 and doc is not _BAD else None
                if first is not None:
                    readings, first_at = first, time.perf_counter()
                elif doc is not _BAD and isinstance(doc.get("reply"), dict):
                    return doc["reply"], None, readings, first_at
                else:  # not a frame of this run's process, or one out of its place
                    os.kill(pid, signal.SIGKILL)  # its reply can no longer be told from what was forged
                    return corrupt(buf), None, readings, first_at
                buf = rest
            continue
        # EOF (no process holds the pipe any more: wait for it), or a quiet pipe (is it alive?)
        done, status = os.waitpid(pid, 0 if chunk == b"" else os.WNOHANG)
        if done:
            if buf:
                return corrupt(buf), None, readings, first_at
            return None, status, readings, first_at


def _readings(doc):
    """A canary frame's readings ([core, seconds] pairs), or None if ``doc`` is no such frame."""
    found = doc.get(CANARY_FRAME) if isinstance(doc, dict) and "reply" not in doc else None
    if not isinstance(found, list):
        return None
    ok = all(isinstance(r, list) and len(r) == 2 and isinstance(r[1], float) for r in found)
    return found if ok else None


_BAD = object()
_HEX = b"0123456789abcdef"


def new_secret():
    """32 random hex digits in a bytearray, made with no str or bytes copy of them: a freed copy
    would stay in the host's memory, which every run's process is forked with (and can read)."""
    raw = bytearray(16)
    fd = os.open("/dev/urandom", os.O_RDONLY)
    try:
        os.readv(fd, [raw])
    finally:
        os.close(fd)
    secret = bytearray(2 * len(raw))
    for i, byte in enumerate(raw):
        secret[2 * i], secret[2 * i + 1] = _HEX[byte >> 4], _HEX[byte & 15]
    raw[:] = bytes(len(raw))
    return secret


def _frame(buf, nonce):
    """(doc, the rest of ``buf``) once ``buf`` starts with a whole frame; (None, buf) before; (_BAD,
    b"") when it is not one this run's process wrote."""
    head, sep, rest = buf.partition(b"\n")
    if not sep:
        return (None, buf) if not head or (len(head) < 24 and head.isdigit()) else (_BAD, b"")
    if not head.isdigit():
        return _BAD, b""
    if len(rest) < int(head):
        return None, buf
    try:
        doc = json.loads(rest[: int(head)])
    except ValueError:
        return _BAD, b""
    if not isinstance(doc, dict) or doc.get("nonce") != nonce:
        return _BAD, b""
    return doc, rest[int(head) :]


def corrupt(buf):
    return {
        protocol.OK: True,
        protocol.OUTCOME: protocol.outcome(
            status=protocol.STATUS_FAILED,
            error="the run's reply channel carried a line its process did not write as its reply "
            "(a forged reply: the workload wrote into it?): %r" % buf[:80],
        ),
    }

"""Shared memory a run left in /dev/shm: named on its row, and removed when it is clearly the run's.

A POSIX shared-memory segment (``multiprocessing.shared_memory.SharedMemory`` never unlinked,
a named semaphore, a plain file written there) outlives every process that used it: it holds
its memory until someone unlinks it or the machine reboots. multiprocessing's resource tracker
unlinks what was registered with it only when the tracker itself ends, and the host keeps one
for all its runs (and kills a run's own with the run's process group), so nothing else would.

The run's process lists /dev/shm when its request arrives (``names``: one ``os.listdir``) and,
before it replies (``left``), lists it again only if the directory changed (its mtime and size:
one ``os.stat``; 200 entries take 70 us to list). What appeared between the two, is still there
and is this user's was made during the run, by the run or by another program meanwhile; /proc is
then read, once, for who has each open or mapped. One the run's processes hold is the run's: named
and removed. One only other processes hold is another program's: left out. One nobody holds cannot
be told from another program's (a file written and closed), so it is named and kept: removing it
deleted another sweep's files when two ran at once.

Standard library only, Python 3.8 syntax: this runs inside the trial host.

>>> before = names()
>>> path = os.path.join(DIR, "conclab-doctest-%d" % os.getpid())
>>> f = open(path, "wb"); _ = f.write(b"x" * 10); f.flush()
>>> any(n.startswith("left in /dev/shm: ") and "-%d (10 bytes); removed" % os.getpid() in n
...     for n in left(before))
True
>>> os.path.exists(path)
False
>>> f.close()
>>> before = names()
>>> with open(path, "wb") as f: _ = f.write(b"x" * 10)
>>> [n for n in left(before) if str(os.getpid()) in n] == [
...     "left in /dev/shm: conclab-doctest-%d (10 bytes; held by no process, so perhaps another"
...     " program's: kept)" % os.getpid()]
True
>>> os.remove(path)
"""

import os
import stat
import time

from conc_lab.host.hygiene import descendants, read_proc

DIR = "/dev/shm"
#: How many names a note lists before it counts the rest.
SHOWN = 5


def names():
    """What /dev/shm holds now: (the directory's stamp, its names), or None where there is none to watch."""
    try:
        return _stamp(), set(os.listdir(DIR))  # the stamp first: a change between the two is seen later
    except OSError:
        return None


def _stamp():
    st = os.stat(DIR)
    return st.st_mtime_ns, st.st_size, st.st_ino  # tmpfs: each entry made or removed changes both


class Watch(object):
    """/dev/shm as the runner last listed it: for runs killed before they could report (a timeout,
    a dead host), whose own check never ran and whose resource trackers died with them. ``mark``
    before each request costs one ``os.stat``; the directory is listed again only when it changed."""

    def __init__(self):
        self.before = names()

    def mark(self):
        if self.before is None:
            return
        try:
            if _stamp() != self.before[0]:
                self.before = names()
        except OSError:
            pass

    def held(self, root):
        """What appeared since ``mark`` that process ``root`` (a trial host about to be killed, a
        child subreaper: its run's processes are under it) and its descendants hold: (device,
        inode) pairs for ``left``; one ``os.stat`` when nothing appeared."""
        try:
            if self.before is None or _stamp() == self.before[0]:
                return set()
        except OSError:
            return set()
        return held_by([root] + descendants(root))

    def left(self, ours=()):
        """Notes on what appeared since ``mark``: ``left``, with ``ours`` from ``held``."""
        notes = left(self.before, settle_s=SETTLE_S, ours=ours)
        self.before = names()
        return notes


#: How long the runner waits for the processes it just killed to let go of what they held: a
#: SIGKILLed process keeps its mappings until its exit is through, and one re-parented away from
#: the runner then looked like another program's, its segment kept and untold (seen in CI).
SETTLE_S = 1.0


def left(before, settle_s=0.0, ours=()):
    """Notes on what appeared in /dev/shm since ``before`` (``names()``) and is still there.

    An entry of this user's is the run's when a process of this one's process group (or one it
    started) has it open or mapped, or when its (device, inode) is in ``ours`` (what a run's
    processes held before they were killed, ``held_by``): named and removed, unless a process
    outside holds it too (waited for up to ``settle_s``: a killed process exiting still holds its
    maps). One only other processes hold is another program's, made meanwhile: left out. One that
    nobody holds is named and kept (module doc).
    """
    found = _new_entries(before)
    if not found:
        return []
    holders = _holders(found)
    deadline = time.monotonic() + settle_s
    while ours and time.monotonic() < deadline and any(holders[f[3]][1] for f in found if f[3] in ours):
        time.sleep(0.02)
        holders = _holders(found)
    parts, removed = [], 0
    for name, size, plain, key in found:
        inside, outside = holders[key]
        if not (inside or key in ours):
            if outside is not None:
                continue  # another program's, made meanwhile: not this run's to tell
            parts.append(
                "%s (%d bytes; held by no process, so perhaps another program's: kept)" % (name, size)
            )
            continue
        why = _kept_because(name, plain, outside)
        removed += why is None
        parts.append(
            "%s (%d bytes)" % (name, size) if why is None else "%s (%d bytes; %s)" % (name, size, why)
        )
    if not parts:
        return []
    shown = ", ".join(parts[:SHOWN]) + (" and %d more" % (len(parts) - SHOWN) if len(parts) > SHOWN else "")
    return ["left in /dev/shm: %s%s" % (shown, "; removed" if removed else "")]


def _new_entries(before):
    """(name, size, is a plain file, (device, inode)) of this user's entries not in ``before``."""
    if before is None:
        return []
    stamp, had = before
    try:
        if _stamp() == stamp:  # nothing made or removed there since
            return []
        new = [n for n in os.listdir(DIR) if n not in had]
    except OSError:
        return []
    found = []
    for name in sorted(new):
        try:
            st = os.lstat(os.path.join(DIR, name))
        except OSError:  # removed meanwhile (a resource tracker, the workload's own clean-up)
            continue
        if st.st_uid == os.getuid():
            found.append((name, st.st_size, stat.S_ISREG(st.st_mode), (st.st_dev, st.st_ino)))
    return found


def _kept_because(name, plain, holder):
    """Remove ``name`` unless it is held elsewhere or is not a plain file; None when removed, else why not."""
    if holder is not None:
        return "open in process %d, outside the run: kept" % holder
    if not plain:
        return "not a plain file: kept"
    try:
        os.unlink(os.path.join(DIR, name))
    except FileNotFoundError:  # unlinked meanwhile: gone all the same
        pass
    except OSError as exc:
        return "could not be removed: %s" % exc.strerror
    return None


def held_by(pids):
    """(device, inode) of every /dev/shm entry that one of ``pids`` has open or mapped."""
    try:
        device = os.stat(DIR).st_dev
    except OSError:
        return set()
    held = set()
    for pid in pids:
        try:
            held.update(key for key in _used_by(pid) if key[0] == device)
        except OSError:  # gone already
            continue
    return held


def _holders(found):
    """{(device, inode): (held by this process group or a process it started, the pid of a process
    outside that holds it, or None)} for the entries ``found`` (``_new_entries``).

    Matched by inode, not by path: ``sem_open`` makes a semaphore under a temporary name, maps it
    and only then links it to its own, so its maker's maps name the temporary file (deleted). By
    path, a named semaphore another sweep's spawned worker was about to open was removed under it
    ("FileNotFoundError" from ``SemLock._rebuild``, its run failed).
    """
    out = {f[3]: (False, None) for f in found}
    group, ours = os.getpgid(0), None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            held = [key for key in _used_by(pid) if key in out]
            if not held:
                continue
            if ours is None:
                ours = set(descendants())
            inside = pid in ours or os.getpgid(pid) == group
        except OSError:  # gone, or another user's (it cannot open this user's 0600 segments)
            continue
        for key in held:
            was_inside, outside = out[key]
            out[key] = (was_inside or inside, outside if inside or outside is not None else pid)
    return out


def _used_by(pid):
    """(device, inode) of each file ``pid`` has mapped or open, deleted or renamed ones too."""
    for line in read_proc("/proc/%d/maps" % pid).split(b"\n"):
        fields = line.split(None, 5)
        if len(fields) >= 5 and fields[4] != b"0":
            major, _, minor = fields[3].partition(b":")
            yield os.makedev(int(major, 16), int(minor, 16)), int(fields[4])
    for number in os.listdir("/proc/%d/fd" % pid):
        try:
            st = os.stat("/proc/%d/fd/%s" % (pid, number))
        except OSError:
            continue
        yield st.st_dev, st.st_ino

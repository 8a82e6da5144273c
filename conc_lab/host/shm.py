"""Shared memory a run left in /dev/shm: named on its row, and removed when it is clearly the run's.

A POSIX shared-memory segment (``multiprocessing.shared_memory.SharedMemory`` never unlinked,
a named semaphore, a plain file written there) outlives every process that used it: it holds
its memory until someone unlinks it or the machine reboots. multiprocessing's resource tracker
unlinks what was registered with it only when the tracker itself ends, and the host keeps one
for all its runs (and kills a run's own with the run's process group), so nothing else would.

The run's process lists /dev/shm when its request arrives (``names``: one ``os.listdir``) and,
before it replies (``left``), lists it again only if the directory changed (its mtime and size:
one ``os.stat``; 200 entries take 70 us to list). What appeared between the two, is still there
and is this user's was made during the run; it is removed unless a process outside the run's
process group has it open or mapped (another program that made one meanwhile): only then is
/proc read, once, for all of them.

Standard library only, Python 3.8 syntax: this runs inside the trial host.

>>> before = names()
>>> path = os.path.join(DIR, "conclab-doctest-%d" % os.getpid())
>>> with open(path, "wb") as f: _ = f.write(b"x" * 10)
>>> any(n.startswith("left in /dev/shm: ") and "-%d (10 bytes); removed" % os.getpid() in n
...     for n in left(before))
True
>>> os.path.exists(path)
False
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

    def left(self):
        """Notes on what appeared since ``mark`` (removed where nothing else holds it): ``left``."""
        notes = left(self.before, settle_s=SETTLE_S)
        self.before = names()
        return notes


#: How long the runner waits for the processes it just killed to let go of what they held: a
#: SIGKILLed process keeps its mappings until its exit is through, and one re-parented away from
#: the runner then looked like another program's, its segment kept and untold (seen in CI).
SETTLE_S = 1.0


def left(before, settle_s=0.0):
    """Notes on what appeared in /dev/shm since ``before`` (``names()``) and is still there.

    This user's entries are named with their size; a plain file no process outside this one's
    process group holds is removed, else the note says which of the run's processes holds it. One
    that a process which is not the run's holds is another program's, made meanwhile: left out.
    """
    if before is None:
        return []
    stamp, had = before
    try:
        if _stamp() == stamp:  # nothing made or removed there since
            return []
        new = [n for n in os.listdir(DIR) if n not in had]
    except OSError:
        return []
    found = []  # (name, size, is a plain file)
    for name in sorted(new):
        try:
            st = os.lstat(os.path.join(DIR, name))
        except OSError:  # removed meanwhile (a resource tracker, the workload's own clean-up)
            continue
        if st.st_uid == os.getuid():
            found.append((name, st.st_size, stat.S_ISREG(st.st_mode)))
    if not found:
        return []
    holders = _holders([name for name, _size, _plain in found])
    deadline = time.monotonic() + settle_s
    while holders and time.monotonic() < deadline:  # a killed process still exiting holds its maps
        time.sleep(0.02)
        holders = _holders([name for name, _size, _plain in found])
    if holders:  # held by a process that is not the run's (another program's, made meanwhile): not told
        ours = set(descendants())
        found = [f for f in found if holders.get(f[0]) in ours or f[0] not in holders]
    parts, removed = [], 0
    for name, size, plain in found:
        why = _kept_because(name, plain, holders.get(name))
        if why is None:
            removed += 1
            parts.append("%s (%d bytes)" % (name, size))
        else:
            parts.append("%s (%d bytes; %s)" % (name, size, why))
    shown = ", ".join(parts[:SHOWN]) + (" and %d more" % (len(parts) - SHOWN) if len(parts) > SHOWN else "")
    return ["left in /dev/shm: %s%s" % (shown, "; removed" if removed else "")]


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


def _holders(wanted):
    """{name: pid} for the names a process outside this one's process group has open or mapped.

    Matched by inode, not by path: ``sem_open`` makes a semaphore under a temporary name, maps it
    and only then links it to its own, so its maker's maps name the temporary file (deleted). By
    path, a named semaphore another sweep's spawned worker was about to open was removed under it
    ("FileNotFoundError" from ``SemLock._rebuild``, its run failed).
    """
    inodes = {}
    for name in wanted:
        try:
            st = os.lstat(os.path.join(DIR, name))
        except OSError:
            continue
        inodes[(st.st_dev, st.st_ino)] = name
    group, held = os.getpgid(0), {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if os.getpgid(pid) == group:
                continue
            for inode in _used_by(pid):
                if inode in inodes:
                    held.setdefault(inodes[inode], pid)
        except OSError:  # gone, or another user's (it cannot open this user's 0600 segments)
            continue
    return held


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

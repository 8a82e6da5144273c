"""The sweep folder's lock: one writer per sweep, released by the kernel however its owner dies."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from conc_lab.store.layout import LOCK, NOFOLLOW, SweepBusy, open_new


def lock(sweep_dir: Path) -> int:
    """Take the sweep folder's lock; the fd holds it until ``unlock``, or until this process dies.

    An ``flock``, so the kernel releases it when its owner dies however it dies (``kill -9``
    included), and a later ``--resume`` takes over; ``SweepBusy`` while the owner lives. The
    holder removes the lock file on release, so a finished sweep keeps no ``.lock``; a lock
    taken on a file that was removed meanwhile is not the lock, and is taken again. A
    ``.lock`` that is a symbolic link is refused (``StoreError``): the pid written into the
    lock would otherwise truncate the file it points to.
    """
    path = sweep_dir / LOCK
    while True:
        fd = open_new(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino:
                break
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise busy(sweep_dir, owner) from None
        except FileNotFoundError:  # released (and removed) by its holder just now
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    with contextlib.suppress(OSError):  # a full disk: the lock holds without the owner's pid
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def unlock(sweep_dir: Path, fd: int) -> None:
    with contextlib.suppress(OSError):  # removed with its folder (a merge), or a read-only copy
        os.unlink(sweep_dir / LOCK)
    os.close(fd)


@contextlib.contextmanager
def sweep_lock(sweep_dir: str | os.PathLike):
    """Hold a sweep folder's lock for the block (``SweepBusy`` if a live conclab holds it)."""
    fd = lock(Path(sweep_dir))
    try:
        yield
    finally:
        unlock(Path(sweep_dir), fd)


def busy(sweep_dir: Path, owner: str) -> SweepBusy:
    return SweepBusy(
        f"{sweep_dir}: this sweep is being written by another conclab (pid {owner}), still "
        "running; let it finish, or stop it, then resume"
    )


def live_owner(sweep_dir: str | os.PathLike) -> str | None:
    """The pid of the live conclab writing the sweep, or None; creates and removes nothing.

    A sweep whose state is ``running`` with no live owner was killed: ``--resume`` continues it.
    """
    try:
        fd = os.open(Path(sweep_dir) / LOCK, os.O_RDONLY | NOFOLLOW)
    except OSError:  # no lock file (or a link, which no writer made): no writer
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
    finally:
        os.close(fd)  # and with it the shared lock just taken
    return None


def is_live(sweep_dir: str | os.PathLike) -> bool:
    """Whether a live conclab holds the sweep (a ``running`` state without one: its owner died)."""
    return live_owner(sweep_dir) is not None

"""How a blocked read learns that the database changed, without burning CPU.

A backend has one `Waker`. Its own publishes and dead letters call `Waker.changed` at
once. Commits of other processes (and of other backends in this process) reach it through
a `WalWatch` where the platform has one: Linux inotify on the database's write-ahead log,
which every commit appends to, read by the event loop itself (``add_reader``): an idle
consumer costs nothing, and a commit wakes it within the loop's reaction time. Elsewhere
(and with ``wakeup=poll``) the blocked read polls: the session checks the database at
intervals that start at `POLL_MIN` after activity and double up to the backend's
``max_poll_interval``.

A wake-up is a hint, never a promise: the reader checks the database after each one (a
read-only query; a write transaction only when there is something to take).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import sys

__all__ = ["POLL_MIN", "SETTLE", "WalWatch", "Waker", "notify_available"]

log = logging.getLogger("conveyor.sqlite")

#: First pause of a polling read after activity (seconds); it doubles from there.
POLL_MIN = 0.001
#: After a notified check found nothing, check once more this much later: inotify reports
#: the log write a few microseconds before the commit becomes visible to readers.
SETTLE = 0.003

_IN_MODIFY = 0x00000002
_IN_IGNORED = 0x00008000


class Waker:
    """A generation counter and the futures of reads waiting for it to move."""

    def __init__(self) -> None:
        self.generation = 0
        self._waiters: set[asyncio.Future[bool]] = set()

    def changed(self) -> None:
        """The database may have changed: wake every waiting read."""
        self.generation += 1
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(True)

    async def wait(self, generation: int, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the generation to move past `generation`;
        True when it did (now or meanwhile), False on timeout."""
        if self.generation != generation:
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter)
        self._waiters.add(waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return libc if hasattr(libc, "inotify_init1") else None


_LIBC = _libc()


def notify_available() -> bool:
    """True where `WalWatch` works (Linux, with inotify)."""
    return _LIBC is not None


class WalWatch:
    """Linux inotify on a database's write-ahead log, read by the running event loop:
    every write to the log calls `on_change`.

    Raises:
        OSError: inotify is not available, or the log cannot be watched.
    """

    def __init__(self, wal: str) -> None:
        if _LIBC is None:
            raise OSError("inotify is not available on this platform")
        fd = int(_LIBC.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
        if fd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"inotify_init1: {os.strerror(errno)}")
        watch = int(_LIBC.inotify_add_watch(fd, os.fsencode(wal), _IN_MODIFY))
        if watch < 0:
            errno = ctypes.get_errno()
            os.close(fd)
            raise OSError(errno, f"inotify_add_watch {wal}: {os.strerror(errno)}")
        self.wal = wal
        self._fd = fd
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, waker: Waker) -> None:
        """Wake `waker` on every change, from the running loop."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._on_readable, waker)

    def _on_readable(self, waker: Waker) -> None:
        gone = False
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            except OSError as exc:  # the watch is unusable: fall back to timeouts
                log.warning("inotify on %s failed (%s): reads fall back to polling", self.wal, exc)
                gone = True
                break
            if not data:
                break
            gone = gone or _ignored(data)
        waker.changed()
        if gone:
            self.close()

    def close(self) -> None:
        """Stop watching. Idempotent."""
        if self._fd < 0:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1

    @property
    def active(self) -> bool:
        """True while the watch reports changes."""
        return self._fd >= 0


def _ignored(data: bytes) -> bool:
    """True when the kernel dropped the watch (``IN_IGNORED``: the log was deleted)."""
    offset = 0
    while offset + 16 <= len(data):
        mask = int.from_bytes(data[offset + 4 : offset + 8], sys.byteorder)
        length = int.from_bytes(data[offset + 12 : offset + 16], sys.byteorder)
        if mask & _IN_IGNORED:
            return True
        offset += 16 + length
    return False

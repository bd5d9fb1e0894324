"""A job's output log: an append-only file that any number of readers follow.

The job's combined stdout and stderr pipe is moved into the file with splice(2), so the bytes
never pass through Python and server memory does not grow with output size. Readers read the
file at their own pace with pread(2) and are woken by one event shared by all of them, which
the writer replaces each time bytes land: there is no per-reader queue and no polling.
"""

import errno
import logging
import os
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

import trio

from .errors import OutputUnavailable

log = logging.getLogger(__name__)

# One splice moves at most this much; the pipe holds at most this much too (see process.py).
ChunkSize = int | Callable[[], int]
"""The most bytes a reader takes at once: fixed, or asked for before each read (a server
that gives each of many busy streams less)."""
MOVE_SIZE = 1 << 20
# Output stops this short of filling the state dir's file system, so that the job records
# (SQLite, in the same directory) can still be written: 2% of it, between 256 KiB and 64 MiB.
RESERVE_MIN = 256 << 10
RESERVE_MAX = 64 << 20


class OutputLog:
    """The writer side belongs to one pump task; readers are independent async iterators."""

    def __init__(self, path: Path, fd: int, limit: int) -> None:
        self.path = path
        self._fd = fd
        self._limit = limit
        self._size = 0
        self._closed = False
        self._truncated = False
        self._error = ""
        self._disk_full = False
        self._splice = True
        self._appended = trio.Event()

    @classmethod
    def create(cls, path: Path, limit: int) -> "OutputLog":
        """Create the file (it must not exist yet), readable and writable by us alone."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        return cls(path, fd, limit)

    @classmethod
    def finished(cls, path: Path, size: int) -> "OutputLog":
        """The complete log of a job that has ended, for reading only."""
        log = cls(path, -1, size)
        log._size = size
        log._closed = True
        return log

    def discard(self) -> None:
        """Close and delete a log that never got a job (its start failed)."""
        self._close_fd()
        self.path.unlink(missing_ok=True)

    @property
    def size(self) -> int:
        return self._size

    @property
    def closed(self) -> bool:
        """True once the writer is done: no byte will ever be added."""
        return self._closed

    @property
    def truncated(self) -> bool:
        """True when output past the limit was dropped."""
        return self._truncated

    @property
    def disk_full(self) -> bool:
        """True when logging stopped because the file system was (nearly) full."""
        return self._disk_full

    @property
    def error(self) -> str:
        """Why writing the log failed (for example a full disk), or empty."""
        return self._error

    async def pump(self, src: int) -> None:
        """Move everything from the non-blocking pipe ``src`` into the log until EOF.

        Cancellation: ends at the next wait for the pipe; bytes still in the pipe are lost.
        """
        while True:
            await trio.lowlevel.wait_readable(src)
            try:
                moved = self._move(src)
            except BlockingIOError:
                continue
            if moved == 0:
                return

    def close(self) -> None:
        """Mark the log complete and wake every reader: no byte will be added."""
        self._close_fd()
        self._closed = True
        self._wake()

    def _move(self, src: int) -> int:
        """Move one batch out of the pipe; 0 means EOF."""
        room = self._limit - self._size
        if room <= 0 or self._error:
            dropped = _drop(src)
            if dropped and not self._error:
                self._truncated = True
            return dropped
        try:
            room = min(room, self._free_space())
            if room <= 0:
                raise OSError(errno.ENOSPC, "reserve reached")
            moved = self._append(src, min(MOVE_SIZE, room))
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                raise
            # A full disk or an I/O error ends logging, not the job: the job keeps running
            # and its further output is dropped, so that it never blocks on a full pipe.
            self._disk_full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            if self._disk_full:
                self._error = "the state dir's file system is full; later output was dropped"
            else:
                self._error = f"writing the output log failed: {os.strerror(exc.errno or 0)}"
            log.warning("%s: %s", self.path, self._error)
            return _drop(src)
        if moved:
            self._size += moved
            self._wake()
        return moved

    def _append(self, src: int, count: int) -> int:
        if self._splice:
            try:
                return os.splice(
                    src, self._fd, count, offset_dst=self._size, flags=os.SPLICE_F_NONBLOCK
                )
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # The file system does not take splice; copy through memory from now on.
                self._splice = False
        data = os.read(src, count)
        written = 0
        while written < len(data):
            written += os.pwrite(self._fd, data[written:], self._size + written)
        return written

    def _free_space(self) -> int:
        """Bytes we may still write to the file system before its reserve."""
        st = os.fstatvfs(self._fd)
        reserve = min(RESERVE_MAX, max(RESERVE_MIN, st.f_blocks * st.f_frsize // 50))
        return st.f_bavail * st.f_frsize - reserve

    def _wake(self) -> None:
        self._appended.set()
        self._appended = trio.Event()

    def _close_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    async def read(
        self, offset: int, *, follow: bool, chunk_size: ChunkSize
    ) -> AsyncGenerator[bytes, None]:
        """Yield the log's bytes from ``offset``, in chunks of at most ``chunk_size``.

        With ``follow``, wait for new bytes until the log is closed and everything has been
        read; without it, stop at the size the log had when reading began.
        Use under ``contextlib.aclosing`` so that the reader's fd is closed promptly.
        Raises OutputUnavailable if the log cannot be read.
        """
        end = -1 if follow else self._size
        fd = -1
        try:
            while True:
                available = self._size if end < 0 else end
                if offset < available:
                    try:
                        if fd < 0:
                            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                        size = chunk_size() if callable(chunk_size) else chunk_size
                        data = os.pread(fd, min(size, available - offset), offset)
                    except OSError as exc:
                        raise OutputUnavailable(f"cannot read the job's output: {exc}") from None
                    if not data:
                        return
                    offset += len(data)
                    await trio.lowlevel.checkpoint()
                    yield data
                elif self._closed or end >= 0:
                    return
                else:
                    await self._appended.wait()
        finally:
            if fd >= 0:
                os.close(fd)


def _drop(src: int) -> int:
    """Read and discard one batch from the pipe; 0 means EOF."""
    return len(os.read(src, MOVE_SIZE))

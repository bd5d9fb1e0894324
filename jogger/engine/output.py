"""A job's output log: an append-only file that any number of readers follow.

The job's supervisor writes it (supervise.c moves the job's pipe into it with splice(2), so
the bytes never pass through Python, or through the server at all). Readers read the file at
their own pace with pread(2) and are woken by one event shared by all of them, which is
replaced each time the supervisor says that bytes landed (``grew``): there is no per-reader
queue and no polling.
"""

import contextlib
import logging
import os
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

import trio

from .errors import OutputUnavailable
from .times import times_path

log = logging.getLogger(__name__)

ChunkSize = int | Callable[[], int]
"""The most bytes a reader takes at once: fixed, or asked for before each read (a server
that gives each of many busy streams less)."""
DISK_FULL = "the state dir's file system is full; later output was dropped"
WRITE_FAILED = "writing the output log failed"


class OutputLog:
    """The size and flags come from the supervisor; readers are independent async iterators."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self._limit = limit
        self._size = 0
        self.base = 0
        """The size the log had when this process began to watch it (an adopted job's)."""
        self._closed = False
        self._truncated = False
        self._error = ""
        self._appended = trio.Event()

    @classmethod
    def create(cls, path: Path, limit: int) -> tuple["OutputLog", int]:
        """Create the file (it must not exist yet), readable and writable by us alone; the
        log, and an fd open for writing it, for the supervisor (``close_fd`` it after)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        return cls(path, limit), fd

    @staticmethod
    def close_fd(fd: int) -> None:
        os.close(fd)

    @classmethod
    def running(cls, path: Path, limit: int) -> "OutputLog":
        """The log of a job whose supervisor a server before us started (it still writes)."""
        log = cls(path, limit)
        log.grew(truncated=False, error="")
        log.base = log.size
        return log

    @staticmethod
    async def nothing() -> AsyncGenerator[bytes, None]:
        """The output of a job that has not started (queued): none."""
        await trio.lowlevel.checkpoint()
        return
        yield  # an async generator, that yields nothing

    @classmethod
    def finished(cls, path: Path, size: int) -> "OutputLog":
        """The complete log of a job that has ended, for reading only."""
        log = cls(path, size)
        log._size = size
        log._closed = True
        return log

    def discard(self) -> None:
        """Delete a log that never got a job (its start failed), and its time index."""
        self.path.unlink(missing_ok=True)
        times_path(self.path).unlink(missing_ok=True)

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
    def error(self) -> str:
        """Why writing the log failed (for example a full disk), or empty."""
        return self._error

    def grew(self, *, truncated: bool, error: str) -> None:
        """The supervisor says the log has grown (or its flags changed): take the file's
        size (never the message's word for it), and wake every reader."""
        if self._closed:
            return
        try:
            size = os.stat(self.path).st_size
        except OSError as exc:
            log.warning("%s: %s", self.path, exc)
            return
        self._truncated = self._truncated or truncated
        self._error = self._error or error
        if size > self._size:
            self._size = size
            self._wake()

    def finish(self, size: int | None, truncated: bool, error: str) -> None:
        """The writer is done: the final size (None: whatever the file holds) and flags.
        Wakes every reader; no byte will be added."""
        if size is None:
            with contextlib.suppress(OSError):
                size = os.stat(self.path).st_size
        self._size = max(self._size, size or 0)
        self._truncated = truncated or self._truncated
        self._error = error or self._error
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        self._appended.set()
        self._appended = trio.Event()

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

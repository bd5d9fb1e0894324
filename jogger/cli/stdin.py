"""jog's stdin, read for a job's input: binary, in chunks, without blocking trio's loop and
without touching the file's flags.

Why not trio's FdStream: it sets O_NONBLOCK, and that flag belongs to the open file
description, which jog shares with its shell (a terminal) or with the other processes of a
pipeline. Left set (jog killed, or any exit path that forgets it) it breaks them: the shell's
next read fails with EAGAIN. Why not a read in a thread alone: a read abandoned at cancel
(the job ended) goes on in its thread and takes the next bytes, lost, and a terminal's next
keystroke with them.

So a pipe, a socket or a terminal is waited on with epoll (``wait_readable``: no flag is
changed) and then read with a plain blocking read, which returns at once with what is there,
at most CHUNK bytes. A cancel leaves nothing half-read. epoll refuses regular files and most
other devices (a file is always "ready"): those are read in a worker thread, where a read
never waits on anyone; a cancel abandons it, which costs nothing since jog is done with them.
"""

import contextlib
import errno
import fcntl
import os
import stat

import trio

CHUNK = 256 * 1024


def stdin_is_null(fd: int = 0) -> bool:
    """Whether ``fd`` is /dev/null or not open: the job can have /dev/null itself, with no
    input stream at all."""
    try:
        mine = os.fstat(fd)
    except OSError as exc:
        if exc.errno == errno.EBADF:
            return True
        raise
    if not stat.S_ISCHR(mine.st_mode):
        return False
    null = os.stat(os.devnull)
    return mine.st_rdev == null.st_rdev


class LocalInput:
    """Reads ``fd`` (jog's stdin) in chunks; one reader task at a time."""

    def __init__(self, fd: int = 0) -> None:
        self._fd = fd
        mode = os.fstat(fd).st_mode
        self._pollable = (
            stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or (stat.S_ISCHR(mode) and os.isatty(fd))
        )
        if stat.S_ISFIFO(mode):
            # A pipe of 64 KiB (the default) gives us 64 KiB per wake-up at best; a bigger
            # one lets a fast writer (tar, dd) hand over whole chunks. Best effort: the
            # limit for users is /proc/sys/fs/pipe-max-size, 1 MiB by default.
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 4 * CHUNK)

    async def read(self) -> bytes:
        """The next bytes, up to CHUNK; empty at the end (EOF, or a terminal that hung up).

        Cancellation: a pipe or terminal loses nothing; a file's read in flight is abandoned.
        """
        if not self._pollable:
            return await trio.to_thread.run_sync(_read, self._fd, abandon_on_cancel=True)
        while True:
            await trio.lowlevel.wait_readable(self._fd)
            try:
                return _read(self._fd)
            except BlockingIOError:
                # Someone else set O_NONBLOCK and another reader took the bytes: wait again.
                continue


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, CHUNK)
    except OSError as exc:
        if exc.errno == errno.EIO:
            return b""  # a terminal that hung up: the end of the input
        raise

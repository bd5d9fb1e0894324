"""Where supervisors tell the server that a job's log has grown: one datagram socket for all.

Each supervisor sends a note (the log's size and flags) to ``run/notify.sock`` after each
write to the log; the manager's listener wakes that job's followers. No ticker anywhere:
a follower is woken by the write itself. The socket is the server's, in the state dir's
0700 ``run`` directory, so only processes of the server's own user can send to it; and a
note is only a wake-up: the size is read from the file itself (OutputLog.grew).

A supervisor whose note finds no server (between two servers) drops it: the next server
reads each log's size when it adopts the job, after binding the socket, so no byte goes
unseen. A full queue (a server that is behind) makes the supervisor try again a few
milliseconds later, with its newest size: notes coalesce instead of piling up.
"""

import contextlib
import logging
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path

import trio

from .output import DISK_FULL, WRITE_FAILED, OutputLog

log = logging.getLogger("jogger.engine")

_NOTE = struct.Struct("=IIQ48s")
_MAGIC = 0x4A474E31
_TRUNCATED, _DISK_FULL, _ERROR = 1, 2, 4
_BATCH = 256
"""Notes read per pass before the loop gets a turn."""


class NoteListener:
    """The bound socket; ``run`` reads it until cancelled."""

    def __init__(self, run_dir: Path) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.setblocking(False)
            # A path relative to the directory's fd: the state dir's own path may be longer
            # than a socket address allows (108 bytes); supervisors do the same.
            dir_fd = os.open(run_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                path = f"/proc/self/fd/{dir_fd}/notify.sock"
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)  # left by the server before us (the state dir is locked)
                self._sock.bind(path)
            finally:
                os.close(dir_fd)
        except BaseException:
            self._sock.close()
            raise

    async def run(self, logs: Callable[[str], OutputLog | None]) -> None:
        """Wake the followers of each job a note names (``logs``: its log, if it runs)."""
        while True:
            await trio.lowlevel.wait_readable(self._sock)
            for _ in range(_BATCH):
                try:
                    data = self._sock.recv(_NOTE.size + 1)
                except BlockingIOError:
                    break
                if len(data) != _NOTE.size:
                    continue
                magic, flags, _, raw_id = _NOTE.unpack(data)
                if magic != _MAGIC:
                    continue
                job_log = logs(raw_id.rstrip(b"\0").decode("ascii", "replace"))
                if job_log is None:
                    continue
                error = ""
                if flags & _ERROR:
                    error = DISK_FULL if flags & _DISK_FULL else WRITE_FAILED
                job_log.grew(truncated=bool(flags & _TRUNCATED), error=error)
            await trio.lowlevel.checkpoint()

    def close(self) -> None:
        self._sock.close()

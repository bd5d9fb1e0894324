"""The audit log's file: append-only, mode 0600, the server's own, reopened for rotation.

Every line goes out in one write(2) on an O_APPEND descriptor, synchronously, from the event
loop. A line is a few hundred bytes (its fields are bounded) and lands in the page cache: a
few microseconds, less than handing it to a writer task would cost, and nothing is queued
that a crash could lose or a flood could grow. No fsync: the server's own log and the jobs'
records are not synced per line either, and a sync per Start would put a disk flush on the
start path. The file must therefore be on a local file system; an NFS mount that hangs would
hang the server with it.

What the server opens must be a file of its own and no one else's to read: a regular file
(not a FIFO, a device or a symbolic link: O_NOFOLLOW), owned by the server's user, with no
other hard link (a root server must not be talked into appending to /etc/shadow through a
link in a shared directory). One found readable or writable by group or others is made 0600,
with a warning, as the state dir is made 0700.
"""

import errno
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("jogger.server")

MODE = 0o600
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
"""O_NONBLOCK so that a FIFO at the path fails (ENXIO) instead of waiting for a reader; it
is cleared once the file is known to be a regular one."""

_WHY = {
    errno.ENOENT: "its directory does not exist",
    errno.ENOTDIR: "its directory does not exist",
    errno.EISDIR: "it is a directory",
    errno.ELOOP: "it is a symbolic link",
    errno.ENXIO: "it is not a regular file",
}


class AuditFileError(Exception):
    """The audit log's path cannot be used; ``str()`` names it and says why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"--audit-log {path}: {reason}")


def open_audit_file(path: Path) -> int:
    """A descriptor that appends to ``path``, created 0600 if it is not there; raises
    AuditFileError if it cannot be opened or is not a file the server may use."""
    try:
        fd = os.open(path, _FLAGS, MODE)
    except OSError as exc:
        raise AuditFileError(path, _WHY.get(exc.errno or 0, exc.strerror or str(exc))) from None
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise AuditFileError(path, "it is not a regular file")
        if found.st_uid != os.geteuid():
            raise AuditFileError(
                path, f"it is owned by uid {found.st_uid}, not by the server (uid {os.geteuid()})"
            )
        if found.st_nlink != 1:
            raise AuditFileError(path, f"it has {found.st_nlink} hard links; it must have one")
        mode = stat.S_IMODE(found.st_mode)
        if mode != MODE:
            os.fchmod(fd, MODE)
            if mode & 0o077:
                log.warning("--audit-log %s was mode %04o: made it %04o", path, mode, MODE)
        os.set_blocking(fd, True)
    except OSError as exc:
        os.close(fd)
        raise AuditFileError(path, exc.strerror or str(exc)) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


class AuditFile:
    """The audit log's open file. ``append`` writes whole lines; ``reopen`` moves to the file
    now at the path (after logrotate renamed the old one); ``close`` closes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = open_audit_file(path)
        self._torn = False
        """A write failed part-way: the file ends in part of a line, which the next write
        ends first, so that the next line is whole and on a line of its own."""

    def append(self, lines: str) -> None:
        """Append ``lines`` (ASCII, each ending in a newline); raises OSError (ENOSPC, EIO)."""
        if self._fd is None:
            raise OSError(errno.EBADF, "the audit log is closed")
        data = (b"\n" if self._torn else b"") + lines.encode("ascii")
        left = memoryview(data)
        try:
            while left:
                left = left[os.write(self._fd, left) :]
        except OSError:
            self._torn = self._torn or len(left) < len(data)
            raise
        self._torn = False

    def reopen(self) -> None:
        """Append to whatever file is at the path now. If it cannot be opened, keep the old
        one and log why; never raises (a SIGHUP reload action)."""
        try:
            fd = open_audit_file(self.path)
        except AuditFileError as exc:
            log.warning("cannot reopen the audit log, still writing to the old file: %s", exc)
            return
        old, self._fd, self._torn = self._fd, fd, False
        if old is not None:
            try:
                os.close(old)
            except OSError as exc:  # EIO: what was written is written; nothing to redo
                log.warning("closing the old audit log failed: %s", exc.strerror or exc)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

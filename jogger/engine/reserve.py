"""Space held back on the state dir's file system, so that the records can always be written.

A server that crashed while its file system was full must still start: recovery writes an
end record for every job that was running, and SQLite needs room for its journal to do it.
So the state dir keeps a ballast file (``reserve``, 4 MiB, or 1/32 of a small file
system). Start-up deletes it before it opens the records, and puts it back once recovery
is done. While it cannot be put back, the file system is full: new jobs are refused (their
records and output would have nowhere to go), and everything on record can still be read.
"""

import errno
import logging
import os
from pathlib import Path

log = logging.getLogger("jogger.engine")

MAX_BYTES = 4 << 20
NAME = "reserve"


def release(state_dir: Path) -> None:
    """Give the ballast's space back to the file system (for recovery)."""
    (state_dir / NAME).unlink(missing_ok=True)


def held(state_dir: Path) -> bool:
    """Whether the ballast is in place, putting it back first if it is not. An error other
    than a full disk is logged, and counts as held: let the start find out for itself."""
    try:
        return _held(state_dir)
    except OSError as exc:
        log.error("cannot keep space in reserve in %s: %s", state_dir, exc)
        return True


def _held(state_dir: Path) -> bool:
    path = state_dir / NAME
    if path.exists():
        return True
    st = os.statvfs(state_dir)
    size = min(MAX_BYTES, st.f_blocks * st.f_frsize // 32)
    tmp = path.with_name(NAME + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        os.close(fd)
        tmp.unlink()
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return False
        raise
    os.close(fd)
    tmp.rename(path)
    return True

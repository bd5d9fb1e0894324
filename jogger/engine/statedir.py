"""The state dir: made ours, and locked so that one manager at a time uses it.

It and its subdirectories are 0700; one that others may write, or that another user owns, is
refused. The lock is an flock on ``lock`` in it, a file that holds the pid of the manager
using the state dir and is emptied when that manager ends cleanly: the next one knows
whether the last one crashed.
"""

import errno
import fcntl
import os
import stat
from pathlib import Path

from .errors import InvalidRequest, StoreError


def lock(path: Path) -> tuple[int, bool]:
    """Take the state dir's lock, or say who holds it.

    The lock file holds the pid of the manager using the state dir, and is emptied when
    that manager ends cleanly; also returns whether the last one did.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise StoreError(
                f"{path.parent} is in use by another jogger (pid {holder or 'unknown'})"
            ) from None
        raise
    except BaseException:
        os.close(fd)
        raise
    clean = not os.pread(fd, 32, 0)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd, clean


def prepare_dir(path: Path, *, traversable: bool = False) -> None:
    """Make ``path`` (if need be) a directory of ours with mode 0700 (0711 if
    ``traversable``: others may pass through to a file they know the name of, and may not
    list it). One that others may write, or that another user owns, is refused: they may
    have put things in it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidRequest(f"{path} is not a directory")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise InvalidRequest(f"{path} is writable by other users; refusing to keep jobs there")
    if st.st_uid != os.geteuid():
        raise InvalidRequest(
            f"{path} belongs to uid {st.st_uid}, not to us (uid {os.geteuid()}); "
            "refusing to keep jobs there"
        )
    mode = 0o711 if traversable else 0o700
    if stat.S_IMODE(st.st_mode) & 0o077 != mode & 0o077:
        # Created beforehand by someone less careful (0755): others may not even read it.
        path.chmod(stat.S_IMODE(st.st_mode) & 0o700 | mode & 0o077)

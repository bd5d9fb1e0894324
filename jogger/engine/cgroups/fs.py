"""Small, careful file operations on cgroup filesystems, and inotify for cgroup.events."""

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

import trio


def write(path: Path, value: str) -> None:
    """Write one value to a cgroup control file, in one write(2) as the kernel expects."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def read(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 1 << 16).decode().strip()
    finally:
        os.close(fd)


def write_checked(path: Path, value: str, expected: str | None = None) -> None:
    """Write a limit and read it back (as runc's tests do): the kernel may round or refuse."""
    write(path, value)
    got = read(path)
    if got != (expected if expected is not None else value):
        raise OSError(errno.EIO, f"wrote {value!r} to {path} but it reads back {got!r}")


def keyed(path: Path) -> dict[str, int]:
    """A flat-keyed file such as memory.events or cpu.stat: ``key value`` per line."""
    result = {}
    for line in read(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            result[key] = int(value)
    return result


def procs(group: Path) -> list[int]:
    """The pids in ``group`` and every cgroup below it. Raises OSError (but not ENOENT)."""
    pids: list[int] = []
    for directory, _, _ in os.walk(group):
        try:
            pids += [int(pid) for pid in read(Path(directory) / "cgroup.procs").split()]
        except FileNotFoundError:
            continue  # removed meanwhile
    return pids


def procs_here(group: Path) -> list[int]:
    """The pids in ``group`` itself, not below it."""
    return [int(pid) for pid in read(group / "cgroup.procs").split()]


async def remove_tree(group: Path, *, attempts: int = 50) -> None:
    """rmdir ``group`` and any cgroups a job made below it, deepest first.

    A cgroup whose last process has just died can refuse rmdir with EBUSY for a moment:
    retry with a backoff. Raises OSError if it still refuses.
    """
    delay = 0.001
    for attempt in range(attempts):
        try:
            for directory, _, _ in sorted(os.walk(group), key=lambda w: -len(w[0])):
                with _missing_ok():
                    os.rmdir(directory)
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or attempt == attempts - 1:
                raise
        await trio.sleep(delay)
        delay = min(delay * 2, 0.1)


class _missing_ok:
    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: object, exc: object, tb: object) -> bool:
        return isinstance(exc, FileNotFoundError)


# inotify, for cgroup.events: the kernel signals a change of "populated" as a modification.
_IN_MODIFY = 0x2
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class Watch:
    """An inotify watch for modifications of one file. Use as a context manager."""

    def __init__(self, path: Path) -> None:
        fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._fd = fd
        if _libc.inotify_add_watch(fd, os.fsencode(path), _IN_MODIFY) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"inotify_add_watch {path} failed")

    async def changed(self) -> None:
        """Wait for the next modification (or return at once if one is pending)."""
        await trio.lowlevel.wait_readable(self._fd)
        try:
            while os.read(self._fd, 4096):
                pass
        except BlockingIOError:
            pass

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: object) -> None:
        trio.lowlevel.notify_closing(self._fd)
        os.close(self._fd)

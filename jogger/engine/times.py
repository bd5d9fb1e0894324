"""A job's time index: where each write into its output log began, and when.

The index is a file beside the log (``<logs>/<id>.times`` beside ``<id>.log``), written by
whoever writes the log: a local job's supervisor (times.h, ``note_time``) before each
write it moves into the log, and for a Slurm job the server's log watcher when it sees the
log grow (``append``; coarse times: when the growth was seen, to within a poll). It is a
sequence of fixed-size records, native byte order (the index is read on the host that
writes it):

    uint64 offset    the log's byte where a write began
    int64  wall_ns   CLOCK_REALTIME, in ns since the epoch, when that write was made

Both never go back from one record to the next (the writer holds the time still when the
wall clock steps back), so either may be searched by bisection. A byte's time is that of
the last record at or before it. The supervisor makes at most one record per write, none
when the last is under a millisecond old, and past 64 KiB plus 1/16 of the log, none when
the last is under a second old (so the index stays within that plus 16 bytes per second of
the job's run); a record it skips makes times coarser, never wrong.

A writer that dies mid-record (a crash, a full disk) leaves a torn or zeroed tail: the
readers here end the index at the first record that is short, zero, or goes back, found by
bisection (only a tail can be unsound), so that opening an index reads O(log n) records.
"""

import os
import struct
import time
from pathlib import Path

RECORD = struct.Struct("=Qq")
"""One record: (offset, wall_ns)."""


FLOOR = 64 * 1024
FRACTION = 16
"""The supervisor's size bound: TIMES_FLOOR + log / TIMES_FRACTION (times.h)."""
FINE_SPAN_NS = 2_000_000
SLOW_SPAN_NS = 1_002_000_000
"""How long after a record the writes it covers may go on (times.h's TIMES_EVERY_MS and
TIMES_SLOW_MS, each with a ms of margin for its whole-ms clock): the next record is made at
the first write after that."""


def span_ns(index: int, offset: int) -> int:
    """How long after record ``index`` (at ``offset``) the writes it covers went on at most,
    in a supervisor's index: the next record is made at the first write past FINE_SPAN_NS
    while within the size bound (the log was at least ``offset`` bytes when it was made),
    else past SLOW_SPAN_NS."""
    within = (index + 2) * RECORD.size <= FLOOR + offset // FRACTION
    return FINE_SPAN_NS if within else SLOW_SPAN_NS


def times_path(log_path: Path) -> Path:
    """The index of the log at ``log_path``."""
    return log_path.with_suffix(".times")


class TimeIndex:
    """A reader of one index, which its writer may still be appending to.

    Opening it reads O(log n) records, not the index (which may hold millions): records are
    fixed-size, so the end of the sound ones is found by bisection (see ``refresh``), and
    the searches below bisect too. Reads are single small preads of a local file (as the
    log's own reads are), cheap enough for the event loop.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._count = 0
        self._last: tuple[int, int] = (0, 0)
        self.bytes_read = 0
        """Bytes this reader has read from the index (what opening it costs shows here)."""
        self.refresh()

    @classmethod
    def open(cls, path: Path) -> "TimeIndex | None":
        """The index at ``path``; None if there is none. OSError if it cannot be read."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            return cls(fd)
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "TimeIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self._count

    def _pread(self, size: int, at: int) -> bytes:
        data = os.pread(self._fd, size, at)
        self.bytes_read += len(data)
        return data

    def refresh(self) -> int:
        """Count the whole, sound records there are now (a writer may have added some).

        The records before the count are sound already. Of the new ones, only a tail can be
        unsound (a writer that died mid-record: torn, zeroed, or garbage that goes back), so
        the end is found by bisection on "this record is non-zero and does not go back from
        the one before it", reading two records per step: O(log n) reads. A record in the
        middle that goes back (damage, not a torn tail) ends the index if the bisection
        meets it, and is otherwise not seen."""
        whole = os.fstat(self._fd).st_size // RECORD.size
        if whole <= self._count:
            return self._count
        low, high = self._count, whole
        last = self._last
        while low < high:
            middle = (low + high) // 2
            sound = self._sound(middle)
            if sound is not None:
                low, last = middle + 1, sound
            else:
                high = middle
        self._count, self._last = low, last
        return low

    def _sound(self, index: int) -> tuple[int, int] | None:
        """Record ``index`` if it is sound against the one before it (or the last known
        sound one); None if it is short, zero, or goes back."""
        if index > self._count:
            data = self._pread(2 * RECORD.size, (index - 1) * RECORD.size)
            if len(data) < 2 * RECORD.size:
                return None
            before, this = RECORD.unpack_from(data), RECORD.unpack_from(data, RECORD.size)
            if before[1] <= 0:
                return None
        else:
            data = self._pread(RECORD.size, index * RECORD.size)
            if len(data) < RECORD.size:
                return None
            before, this = self._last, RECORD.unpack(data)
        if this[1] <= 0 or this[0] < before[0] or this[1] < before[1]:
            return None
        if this[0] < self._last[0] or this[1] < self._last[1]:
            return None
        return this

    def record(self, index: int) -> tuple[int, int]:
        """Record ``index`` (0 to len - 1): (offset, wall_ns)."""
        data = self._pread(RECORD.size, index * RECORD.size)
        offset, wall = RECORD.unpack(data)
        return offset, wall

    def records(self, first: int, count: int) -> list[tuple[int, int]]:
        """Records ``first`` to ``first + count - 1`` (within len), read at once."""
        data = self._pread(count * RECORD.size, first * RECORD.size)
        return list(RECORD.iter_unpack(data[: len(data) // RECORD.size * RECORD.size]))

    def covering(self, offset: int) -> int:
        """The index of the last record at or before byte ``offset``; -1 if none is."""
        low, high = 0, self._count
        while low < high:
            middle = (low + high) // 2
            if self.record(middle)[0] <= offset:
                low = middle + 1
            else:
                high = middle
        return low - 1

    def first_since(self, wall_ns: int) -> int:
        """The index of the first record made at or after ``wall_ns``; len if none is."""
        low, high = 0, self._count
        while low < high:
            middle = (low + high) // 2
            if self.record(middle)[1] < wall_ns:
                low = middle + 1
            else:
                high = middle
        return low


def create(path: Path) -> int:
    """Make a new, empty index at ``path`` (it must not exist), readable and writable by us
    alone; an fd open for writing it, for its writer."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)


def append(path: Path, offset: int) -> None:
    """Record, now, that the log's bytes from ``offset`` on were written (the Slurm log
    watcher's record: it sees growth only after the fact). A record that would not come
    after the last sound one is left out; an unsound tail (torn, zeroed by a crash) is cut
    off first, so that readers, who stop there, see what comes after. OSError if the index
    cannot be written.

    Blocking, but small enough for the event loop: a stat, O(log n) preads of 32 bytes
    (the end is bisected, as readers do), one 16-byte pwrite and a truncate of a local
    file, once per watch poll of a job whose log grew."""
    wall = time.time_ns()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        count = len(TimeIndex(fd))  # (the fd is ours to close, not the reader's)
        if count * RECORD.size < os.fstat(fd).st_size:
            os.ftruncate(fd, count * RECORD.size)
        if count:
            last_offset, last_wall = RECORD.unpack(
                os.pread(fd, RECORD.size, (count - 1) * RECORD.size)
            )
            if offset <= last_offset:
                return
            wall = max(wall, last_wall)
        os.pwrite(fd, RECORD.pack(offset, wall), count * RECORD.size)
    finally:
        os.close(fd)

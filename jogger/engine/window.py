"""Windows on a job's output: where ``tail`` and ``since`` make it begin, and its bytes cut
where the time index (times.py) says their time changes, each piece with its time.

- **tail N**: the start of the last N lines of the log as it is when asked, found by reading
  it backwards in blocks of TAIL_BLOCK (never the whole log at once). A line ends at
  ``\\n``; a last line without one counts as a line. 0: the end (only what comes next).
  A log the output cap cut short (truncated) ends where the cap cut it, maybe mid-line:
  that part line is its last line.
- **since T**: never leaves out a byte written at or after T; may give bytes written a
  little before it (within their record's span: 2 ms, up to 1 s past the index's size
  bound, a poll for Slurm; barring a step of the wall clock forward between a record and
  the writes it covers). A record's time is a lower bound of its bytes' write times (the
  supervisor makes it before the write); an upper bound is the next record's time (made
  after), or sooner the record's own plus its span (times.span_ns: 2 ms, or 1 s past the
  size bound; the next record is made at the first write after it). So the bytes of a
  record may have been written at or after T unless that bound is before T; those of the
  last record, unless the moment they were read is (the index may have stopped). The stream
  begins at the record before the first made at or after T (bisection; the straddling
  one), and a piece is left out only when its upper bound is before T: so a follower with
  a T in the future gets nothing until then. (The Slurm watch's records are upper bounds
  themselves: the rule keeps their bytes too.)
- **timestamps**: every piece carries the time of its bytes (one time per piece).

The stream begins at the greatest of the caller's offset and those two. Lines are the
client's business: the engine neither splits nor joins them, and binary output passes
through unchanged.
"""

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from time import time_ns

import trio

from .errors import InvalidRequest, OutputUnavailable, TimesUnavailable
from .times import TimeIndex, span_ns, times_path

TAIL_BLOCK = 64 * 1024
"""Bytes read at once, backwards, to find the last lines."""
RECORD_BLOCK = 256
"""Index records a reader reads at once (4 KiB), as it moves through the log."""
MAX_TAIL = 1 << 32
"""The most lines a tail may ask for (a bound on the request, not on the work: a tail
longer than the log is all of it)."""


@dataclass(frozen=True)
class OutputWindow:
    """What part of the output to give, and how."""

    tail: int | None = None
    """The last this many lines of the output there is now; None: from the offset."""
    since_ns: int | None = None
    """Every byte written at or after this wall-clock time (ns since the epoch), and maybe
    some of the straddling record written just before (see the module doc)."""
    timestamps: bool = False
    """Each piece carries its time."""

    def check(self) -> None:
        """InvalidRequest for a bad window."""
        if self.tail is not None and not (isinstance(self.tail, int) and self.tail >= 0):
            raise InvalidRequest("tail must be a non-negative number of lines")
        if self.tail is not None and self.tail > MAX_TAIL:
            raise InvalidRequest(f"tail must be at most {MAX_TAIL} lines")
        if self.since_ns is not None and not isinstance(self.since_ns, int):
            raise InvalidRequest("since must be a time in ns since the epoch")

    @property
    def timed(self) -> bool:
        """Whether the time index is needed."""
        return self.since_ns is not None or self.timestamps


@dataclass(frozen=True)
class Piece:
    offset: int
    """Where ``data`` begins in the log."""
    data: bytes
    time_ns: int | None
    """When ``data`` was written (with timestamps; None without, or when unknown)."""


@asynccontextmanager
async def open_window(
    window: OutputWindow,
    log_path: Path,
    size: int,
    offset: int,
    chunks_from: Callable[[int], AsyncGenerator[bytes, None]],
) -> AsyncGenerator[tuple[int, AsyncIterator[Piece]], None]:
    """``window`` on the log at ``log_path``, of ``size`` bytes now, whose chunks from an
    offset ``chunks_from`` gives: where it begins, and its pieces. TimesUnavailable for a
    timed window on a log without an index; OutputUnavailable if either cannot be read.
    Leaving the block closes the chunks and the index."""
    index = open_index(log_path, size) if window.timed else None
    try:
        start = await start_of(window, log_path, size, offset, index)
        async with (
            aclosing(chunks_from(start)) as chunks,
            aclosing(pieces(chunks, start, window, index, log_path)) as stream,
        ):
            yield start, stream
    finally:
        if index is not None:
            index.close()


def open_index(log_path: Path, size: int) -> TimeIndex | None:
    """The time index of the log at ``log_path``, of ``size`` bytes: TimesUnavailable if it
    has none, OutputUnavailable if it cannot be read. None for a log with no bytes and no
    index: a job that has written nothing yet (its supervisor makes the index at its first
    record, before the first byte), or never started (dequeued, or its start failed);
    nothing to time yet, and pieces opens the index when bytes come. A few small preads (the index
    is bisected, not read): fine on the event loop, as the log's own reads are."""
    try:
        index = TimeIndex.open(times_path(log_path))
    except OSError as exc:
        raise OutputUnavailable(f"cannot read the output's time index: {exc}") from None
    if index is None and size == 0:
        return None
    if index is None:
        raise TimesUnavailable(
            "this job's output has no time index (it was started by an older server): "
            "--since and --timestamps cannot be served; --tail and --offset can"
        )
    return index


def tail_start(log_path: Path, end: int, lines: int) -> int:
    """The offset where the last ``lines`` lines of the log's first ``end`` bytes begin.
    Blocking (call it in a thread); OutputUnavailable if the log cannot be read."""
    if lines == 0 or end == 0:
        return end
    try:
        with open(log_path, "rb", buffering=0) as log:
            # A newline at the very end closes the last line; it does not begin another.
            log.seek(end - 1)
            stop = end - 1 if log.read(1) == b"\n" else end
            wanted = lines
            while stop > 0:
                begin = max(0, stop - TAIL_BLOCK)
                log.seek(begin)
                block = log.read(stop - begin)
                if len(block) < stop - begin:  # the file is shorter than its record says
                    return 0
                at = len(block)
                while True:
                    at = block.rfind(b"\n", 0, at)
                    if at < 0:
                        break
                    wanted -= 1
                    if wanted == 0:
                        return begin + at + 1
                stop = begin
    except OSError as exc:
        raise OutputUnavailable(f"cannot read the job's output: {exc}") from None
    return 0


async def start_of(
    window: OutputWindow, log_path: Path, size: int, offset: int, index: TimeIndex | None
) -> int:
    """Where the stream begins, the log having ``size`` bytes now.
    Cancellation: a tail's backward read finishes in its thread first (it reads at most the
    log once)."""
    start = offset
    if window.tail is not None:
        start = max(start, await trio.to_thread.run_sync(tail_start, log_path, size, window.tail))
    if window.since_ns is not None and index is not None:
        try:
            # The straddling record: the one before the first made at or after T (its bytes
            # may have been written after T). None: from the start.
            first = index.first_since(window.since_ns)
            since = index.record(first - 1)[0] if first > 0 else 0
        except OSError as exc:
            raise OutputUnavailable(f"cannot read the output's time index: {exc}") from None
        start = max(start, since)
    return start


class _Cursor:
    """Where a reader is in the index: the record that gives the current byte its time."""

    def __init__(self, index: TimeIndex, offset: int) -> None:
        self._index = index
        self._at = index.covering(offset)
        self._first = 0
        self._block: list[tuple[int, int]] = []
        """Records from ``_first`` on, read ahead of need: one pread per RECORD_BLOCK."""

    def _record(self, at: int) -> tuple[int, int]:
        if not self._first <= at < self._first + len(self._block):
            count = min(RECORD_BLOCK, len(self._index) - at)
            self._first, self._block = at, self._index.records(at, count)
        return self._block[at - self._first]

    def _next_offset(self) -> int | None:
        following = self._at + 1
        if following >= len(self._index) and self._index.refresh() <= following:
            return None
        return self._record(following)[0]

    def _bound(self) -> int:
        """When the bytes of the current record were written by: the next record's time,
        or sooner the current one's plus its span (times.span_ns). The next record exists.
        (A Slurm watch's record is an upper bound itself: this is at least that.)"""
        following = self._record(self._at + 1)[1]
        if self._at < 0:
            return following
        offset, time = self._record(self._at)
        return min(following, time + span_ns(self._at, offset))

    def split(self, offset: int, data: bytes) -> list[tuple[int, bytes, int | None, int | None]]:
        """``data``, at ``offset``, cut where a record begins: (offset, bytes, time, bound)s,
        ``bound`` the next record's time (by which the bytes were written), None if there
        is no next record yet. Every record before the end of ``data`` is on disk already:
        the writer makes a write's record before the write."""
        base, end = offset, offset + len(data)
        cuts = []
        while offset < end:
            following = self._next_offset()
            while following is not None and following <= offset:
                self._at += 1
                following = self._next_offset()
            cut = end if following is None else min(end, following)
            time = self._record(self._at)[1] if self._at >= 0 else None
            bound = None if following is None else self._bound()
            cuts.append((offset, data[offset - base : cut - base], time, bound))
            offset = cut
        return cuts


async def pieces(
    chunks: AsyncIterator[bytes],
    start: int,
    window: OutputWindow,
    index: TimeIndex | None,
    log_path: Path,
) -> AsyncGenerator[Piece, None]:
    """The log's chunks (from ``start``) as pieces: cut at the index's records when the
    window is timed, those surely written before ``since`` left out (see the module's
    doc). OutputUnavailable if the index cannot be read. A timed window with no ``index``
    (the log had no bytes yet) opens it when bytes come: its supervisor made it before it
    wrote the first of them (times.h), so none by then means none ever (TimesUnavailable)."""
    offset = start
    cursor = _Cursor(index, start) if index is not None and window.timed else None
    made: TimeIndex | None = None  # opened here, so closed here
    try:
        async for data in chunks:
            if cursor is None and window.timed:
                made = open_index(log_path, offset + len(data))
                assert made is not None  # (a log with bytes has an index, or it raised)
                cursor = _Cursor(made, offset)
            if cursor is None:
                yield Piece(offset, data, None)
                offset += len(data)
                continue
            try:
                cuts = cursor.split(offset, data)
            except OSError as exc:
                raise OutputUnavailable(f"cannot read the output's time index: {exc}") from None
            offset += len(data)
            read_at = time_ns()  # every byte of data was written by now
            for at, part, time, bound in cuts:
                if window.since_ns is not None and (read_at if bound is None else bound) < (
                    window.since_ns
                ):
                    continue
                yield Piece(at, part, time if window.timestamps else None)
    finally:
        if made is not None:
            made.close()

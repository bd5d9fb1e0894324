"""The time index's reader and the window's arithmetic, on files made here."""

import os
import time
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from jogger.engine import window
from jogger.engine.times import RECORD, TimeIndex, append
from jogger.engine.window import _Cursor, tail_start


def write_index(path: Path, records: list[tuple[int, int]], tail: bytes = b"") -> TimeIndex:
    path.write_bytes(b"".join(RECORD.pack(o, t) for o, t in records) + tail)
    return TimeIndex(os.open(path, os.O_RDONLY | os.O_CLOEXEC))


def test_an_empty_index_covers_nothing(tmp_path: Path) -> None:
    with write_index(tmp_path / "x.times", []) as index:
        assert len(index) == 0
        assert index.covering(0) == -1
        assert index.first_since(0) == 0


def test_a_torn_last_record_is_ignored(tmp_path: Path) -> None:
    records = [(0, 10), (5, 20)]
    with write_index(tmp_path / "x.times", records, RECORD.pack(9, 30)[:7]) as index:
        assert len(index) == 2
        assert index.covering(100) == 1


def test_a_zeroed_or_backward_tail_ends_the_index(tmp_path: Path) -> None:
    with write_index(tmp_path / "a.times", [(0, 10), (5, 20)], bytes(RECORD.size)) as index:
        assert len(index) == 2
    with write_index(tmp_path / "b.times", [(0, 10), (5, 20), (3, 30), (9, 40)]) as index:
        assert len(index) == 2
    with write_index(tmp_path / "c.times", [(0, 10), (5, 20), (7, 15)]) as index:
        assert len(index) == 2


def test_records_a_writer_adds_are_seen_on_refresh(tmp_path: Path) -> None:
    path = tmp_path / "x.times"
    with write_index(path, [(0, 10)]) as index:
        with path.open("ab") as more:
            more.write(RECORD.pack(4, 11) + RECORD.pack(8, 12)[:3])
        assert index.refresh() == 2
        with path.open("ab") as more:
            more.write(RECORD.pack(8, 12)[3:])
        assert index.refresh() == 3
        assert index.record(2) == (8, 12)


def test_bisection_finds_the_covering_record_and_the_first_since(tmp_path: Path) -> None:
    # Offsets 0, 10, 20, ... at times 1000, 1002, ...; two records share offset 500.
    records = [(10 * i, 1000 + 2 * i) for i in range(1000)]
    records.insert(51, (500, 1101))
    with write_index(tmp_path / "x.times", records) as index:
        assert len(index) == 1001
        assert index.covering(0) == 0
        assert index.covering(9) == 0
        assert index.covering(10) == 1
        assert index.covering(500) == 51  # the last at that offset: its bytes came after
        assert index.covering(10**9) == 1000
        assert index.first_since(0) == 0
        assert index.first_since(1000) == 0
        assert index.first_since(1001) == 1
        assert index.first_since(1101) == 51
        assert index.first_since(1102) == 52
        assert index.first_since(10**9) == 1001


def reference_tail(data: bytes, n: int) -> int:
    """The last n lines' start, the simple way."""
    if n == 0:
        return len(data)
    parts = data.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    return len(data) - sum(len(line) for line in lines[-n:]) if n < len(lines) else 0


@pytest.mark.parametrize("block", [1, 3, 7, 64 * 1024])
def test_tail_matches_a_whole_read_across_block_boundaries(
    tmp_path: Path, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(window, "TAIL_BLOCK", block)
    long_line = b"x" * 50 + b"\n"  # longer than most blocks here
    cases = [
        b"",
        b"\n",
        b"\n\n\n",
        b"no newline at all",
        b"one\ntwo\nthree\n",
        b"one\ntwo\nthree",
        b"a\n" + long_line + b"b\n" + long_line + b"tail",
        bytes(range(256)) * 3,  # binary: lines are what \n makes them
    ]
    for k, data in enumerate(cases):
        path = tmp_path / f"{k}.log"
        path.write_bytes(data)
        for n in range(8):
            assert tail_start(path, len(data), n) == reference_tail(data, n), (data, n)


def test_tail_counts_only_the_bytes_on_record(tmp_path: Path) -> None:
    # A log still growing: the tail is of the size the caller knows, not of the file.
    path = tmp_path / "x.log"
    path.write_bytes(b"a\nb\nc\nd\n")
    assert tail_start(path, 4, 1) == 2


def test_the_cursor_cuts_chunks_where_records_begin(tmp_path: Path) -> None:
    records = [(0, 100), (4, 200), (4, 250), (10, 300)]
    with write_index(tmp_path / "x.times", records) as index:
        cursor = _Cursor(index, 2)
        # Each piece's bound: the next record's time (its bytes were written by then).
        assert cursor.split(2, b"cdefgh") == [(2, b"cd", 100, 200), (4, b"efgh", 250, 300)]
        assert cursor.split(8, b"ijklmn") == [(8, b"ij", 250, 300), (10, b"klmn", 300, None)]


def test_bytes_before_the_first_record_have_no_time(tmp_path: Path) -> None:
    with write_index(tmp_path / "x.times", [(3, 100)]) as index:
        assert _Cursor(index, 0).split(0, b"abcdef") == [
            (0, b"abc", None, 100),
            (3, b"def", 100, None),
        ]


def test_the_watchers_records_only_go_forward_and_mend_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "x.times"
    append(path, 0)
    append(path, 0)  # no growth since: no record
    with path.open("ab") as torn:
        torn.write(b"\1\2\3")
    append(path, 7)
    with TimeIndex(os.open(path, os.O_RDONLY | os.O_CLOEXEC)) as index:
        assert len(index) == 2
        assert [index.record(i)[0] for i in range(2)] == [0, 7]
        assert index.record(0)[1] <= index.record(1)[1]
    assert path.stat().st_size == 2 * RECORD.size


@pytest.mark.parametrize("block", [1, 2, 3, 256])
def test_the_cursor_reads_records_in_blocks_and_finds_those_added_since(
    tmp_path: Path, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(window, "RECORD_BLOCK", block)
    path = tmp_path / "x.times"
    records = [(3 * i, 100 + i) for i in range(7)]
    with write_index(path, records) as index:
        cursor = _Cursor(index, 1)
        got = cursor.split(1, bytes(range(1, 20)))
        assert [(o, len(d), t) for o, d, t, _ in got] == [
            (1, 2, 100),
            (3, 3, 101),
            (6, 3, 102),
            (9, 3, 103),
            (12, 3, 104),
            (15, 3, 105),
            (18, 2, 106),
        ]
        with path.open("ab") as more:  # the writer goes on
            more.write(RECORD.pack(21, 200))
        got = cursor.split(20, b"abcd")
        assert got == [(20, b"a", 106, 200), (21, b"bcd", 200, None)]


def test_opening_a_large_index_reads_a_few_records_not_all(tmp_path: Path) -> None:
    # A million records (16 MiB), then a zeroed tail as a crashed host leaves: opening it
    # must find the end by bisection, reading some hundreds of bytes, not the 16 MiB.
    n = 1_000_000
    path = tmp_path / "x.times"
    with path.open("wb") as out:
        for first in range(0, n, 10_000):
            out.write(b"".join(RECORD.pack(7 * i, 1000 + i) for i in range(first, first + 10_000)))
        out.write(bytes(RECORD.size * 1000))
    with TimeIndex(os.open(path, os.O_RDONLY | os.O_CLOEXEC)) as index:
        assert len(index) == n
        assert index.bytes_read < 64 * 2 * RECORD.size
        assert index.first_since(1000 + 123_456) == 123_456
        assert index.covering(7 * 654_321 + 3) == 654_321
        assert index.bytes_read < 3 * 64 * 2 * RECORD.size


async def test_since_keeps_the_bytes_of_a_record_that_straddles_it(tmp_path: Path) -> None:
    # Record 0's bytes were written from t=1000 to at most its span (2 ms) later, since the
    # next record, at 5 s, was made only when a later write came.
    w = 1_000_000_000
    records = [(0, w), (4, w + 5_000_000_000)]

    async def chunks(start: int) -> AsyncGenerator[bytes, None]:
        yield b"abcdefgh"[start:]

    async def since(t: int) -> bytes:
        win = window.OutputWindow(since_ns=t)
        with write_index(tmp_path / "x.times", records) as index:
            start = await window.start_of(win, tmp_path / "x.log", 8, 0, index)
            got = window.pieces(chunks(start), start, win, index, tmp_path / "x.log")
            return b"".join([p.data async for p in got])

    assert await since(w + 1_000_000) == b"abcdefgh"  # "abcd" may be written after T
    assert await since(w + 3_000_000) == b"efgh"  # "abcd" surely was not
    # "efgh", the last record's, may be written up to when it is read; not in the future.
    assert await since(w + 6_000_000_000) == b"efgh"
    assert await since(time.time_ns() + 10**12) == b""


def test_the_watcher_cuts_a_zeroed_tail_before_it_appends(tmp_path: Path) -> None:
    # A host crash left zeroed records: readers stop there, so the next record must not be
    # written behind them.
    path = tmp_path / "x.times"
    path.write_bytes(RECORD.pack(0, 10) + RECORD.pack(4, 20) + bytes(3 * RECORD.size))
    append(path, 9)
    with TimeIndex(os.open(path, os.O_RDONLY | os.O_CLOEXEC)) as index:
        assert len(index) == 3
        assert index.record(2)[0] == 9
    assert path.stat().st_size == 3 * RECORD.size

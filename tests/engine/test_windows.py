"""Output windows through the engine: the supervisor's time index, tail, since, pieces."""

import os
import time
from pathlib import Path

import pytest
import trio

from jogger import JobManager, ManagerLimits
from jogger.engine import OutputWindow, TimesUnavailable
from jogger.engine.times import RECORD, TimeIndex, times_path
from tests.procs import PYTHON

# Three lines, a pause (seconds: argv[1]), three more.
TWO_GROUPS = """
import sys, time
for i in range(3): print('a%d' % i, flush=True)
time.sleep(float(sys.argv[1]))
for i in range(3): print('b%d' % i, flush=True)
"""

Pieces = list[tuple[int, bytes, int | None]]


async def windowed(jobs: JobManager, job_id: str, window: OutputWindow) -> Pieces:
    async with jobs.output_window("alice", job_id, window, follow=False) as (_, pieces):
        return [(p.offset, p.data, p.time_ns) async for p in pieces]


async def finished(jobs: JobManager, argv: list[str]) -> str:
    status = await jobs.start("alice", argv)
    with trio.fail_after(30):
        await jobs.wait("alice", status.id)
    return status.id


def index_of(log_path: Path) -> TimeIndex:
    return TimeIndex(os.open(times_path(log_path), os.O_RDONLY | os.O_CLOEXEC))


async def test_the_supervisor_records_each_group_of_writes_in_the_time_index(
    jobs: JobManager, tmp_path: Path
) -> None:
    before = time.time_ns()
    job_id = await finished(jobs, [PYTHON, "-c", TWO_GROUPS, "1"])
    after = time.time_ns()
    log_path = tmp_path / "state" / "logs" / f"{job_id}.log"
    with index_of(log_path) as index:
        records = [index.record(i) for i in range(len(index))]
    assert records[0][0] == 0
    assert all(before <= t <= after for _, t in records)
    assert times_path(log_path).stat().st_size == len(records) * RECORD.size
    # The first 'b' line's record is at least the pause after the first line's.
    b_at = log_path.read_bytes().index(b"b0")
    covering = [r for r in records if r[0] <= b_at][-1]
    assert covering[1] - records[0][1] >= 900_000_000


async def test_since_between_two_groups_gives_the_second_group(jobs: JobManager) -> None:
    job_id = await finished(jobs, [PYTHON, "-c", TWO_GROUPS, "1"])
    stamped = await windowed(jobs, job_id, OutputWindow(timestamps=True))
    assert all(t is not None for _, _, t in stamped)
    a_time = next(t for _, d, t in stamped if b"a0" in d)
    assert a_time is not None
    got = await windowed(jobs, job_id, OutputWindow(since_ns=a_time + 500_000_000))
    assert b"".join(d for _, d, _ in got) == b"b0\nb1\nb2\n"
    assert all(t is None for _, _, t in got)  # no timestamps asked for


async def test_tail_gives_the_last_lines(jobs: JobManager) -> None:
    job_id = await finished(jobs, ["sh", "-c", "printf 'one\\ntwo\\nthree\\nfour'"])
    for n, want in [(0, b""), (1, b"four"), (2, b"three\nfour"), (9, b"one\ntwo\nthree\nfour")]:
        got = await windowed(jobs, job_id, OutputWindow(tail=n))
        assert b"".join(d for _, d, _ in got) == want, n


async def test_a_truncated_log_tails_from_where_the_cap_cut_it(tmp_path: Path) -> None:
    async with JobManager(
        tmp_path / "capped", limits=ManagerLimits(max_jobs=4, max_output_bytes=12)
    ) as jobs:
        job_id = await finished(jobs, ["sh", "-c", "printf 'abc\\ndefgh\\nijklmn\\n'"])
        assert (await jobs.status("alice", job_id)).output_truncated
        # The cap cut "ijklmn" to "ij": that part line is the last line.
        got = await windowed(jobs, job_id, OutputWindow(tail=1, timestamps=True))
        assert b"".join(d for _, d, _ in got) == b"ij"
        got = await windowed(jobs, job_id, OutputWindow(tail=2))
        assert b"".join(d for _, d, _ in got) == b"defgh\nij"


async def test_a_job_without_an_index_refuses_since_and_timestamps_but_not_tail(
    jobs: JobManager, tmp_path: Path
) -> None:
    job_id = await finished(jobs, ["echo", "hi"])
    times_path(tmp_path / "state" / "logs" / f"{job_id}.log").unlink()
    assert await windowed(jobs, job_id, OutputWindow(tail=1)) == [(0, b"hi\n", None)]
    for window in (OutputWindow(since_ns=0), OutputWindow(timestamps=True)):
        with pytest.raises(TimesUnavailable, match="no time index"):
            await windowed(jobs, job_id, window)


# Past the index's size bound (4096 records for a short log), then a byte every 1.5 s.
PAST_THE_BOUND = """
import os, time
for i in range(4200):
    os.write(1, b'x')
    time.sleep(0.0015)
for c in b'abc':
    time.sleep(1.5)
    os.write(1, bytes([c]))
"""


async def test_a_slow_writer_past_the_size_bound_still_gets_a_record_a_second(
    jobs: JobManager, tmp_path: Path
) -> None:
    status = await jobs.start("alice", [PYTHON, "-c", PAST_THE_BOUND])
    with trio.fail_after(120):
        await jobs.wait("alice", status.id)
    log_path = tmp_path / "state" / "logs" / f"{status.id}.log"
    assert log_path.read_bytes().endswith(b"abc")
    with index_of(log_path) as index:
        assert len(index) * RECORD.size > 64 * 1024  # past the bound
        offsets = {index.record(i)[0] for i in range(len(index))}
    end = log_path.stat().st_size
    assert {end - 3, end - 2, end - 1} <= offsets
    # --since a moment before the last byte's record gives that byte, not more than 'bc'.
    with index_of(log_path) as index:
        last = index.record(len(index) - 1)[1]
    got = await windowed(jobs, status.id, OutputWindow(since_ns=last - 1_000_000))
    assert b"".join(d for _, d, _ in got) in (b"c", b"bc")


async def test_a_job_with_no_output_and_no_index_has_an_empty_window(
    jobs: JobManager, tmp_path: Path
) -> None:
    # As a job that never started (dequeued, or its start failed): no bytes, nothing to time.
    job_id = await finished(jobs, ["true"])
    times_path(tmp_path / "state" / "logs" / f"{job_id}.log").unlink()
    for window in (OutputWindow(since_ns=0), OutputWindow(timestamps=True, tail=3)):
        assert await windowed(jobs, job_id, window) == []


async def test_the_index_is_made_at_the_first_output_and_a_follower_before_it_times_it(
    jobs: JobManager, tmp_path: Path
) -> None:
    # The supervisor makes the index at its first record, not at the start (it is off the
    # start's path): a timed follower opened before the job's first byte opens it then.
    late = await jobs.start("alice", ["sh", "-c", "sleep 2; echo late"])
    assert not times_path(tmp_path / "state" / "logs" / f"{late.id}.log").exists()
    window = OutputWindow(timestamps=True)
    before = time.time_ns()
    with trio.fail_after(30):
        async with jobs.output_window("alice", late.id, window) as (start, pieces):
            got = [(p.offset, p.data, p.time_ns) async for p in pieces]
    assert start == 0
    assert [(offset, data) for offset, data, _ in got] == [(0, b"late\n")]
    stamp = got[0][2]
    assert stamp is not None
    assert stamp >= before

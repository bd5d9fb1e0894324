"""Output windows through the engine: the supervisor's time index, tail, since, pieces."""

import time
from pathlib import Path

import trio

from jogger import JobManager
from jogger.engine import OutputWindow
from jogger.engine.times import RECORD, TimeIndex, times_path
from tests.procs import PYTHON

# Two groups of lines, a pause between them.
TWO_GROUPS = """
import sys, time
for i in range(3): print('a%d' % i, flush=True)
time.sleep(float(sys.argv[1]))
for i in range(3): print('b%d' % i, flush=True)
"""


async def windowed(jobs: JobManager, job_id: str, window: OutputWindow) -> list[tuple[int, bytes, int | None]]:
    async with jobs.output_window("alice", job_id, window, follow=False) as (_, pieces):
        return [(p.offset, p.data, p.time_ns) async for p in pieces]


async def finished(jobs: JobManager, argv: list[str]) -> str:
    status = await jobs.start("alice", argv)
    with trio.fail_after(30):
        await jobs.wait("alice", status.id)
    return status.id


async def test_supervisor_records_each_group_of_writes_in_the_time_index(
    jobs: JobManager, tmp_path: Path
) -> None:
    before = time.time_ns()
    job_id = await finished(jobs, [PYTHON, "-c", TWO_GROUPS, "1"])
    after = time.time_ns()
    log_path = tmp_path / "state" / "logs" / f"{job_id}.log"
    with TimeIndex(os_open(times_path(log_path))) as index:
        records = [index.record(i) for i in range(len(index))]
    assert records, "no record"
    assert records[0][0] == 0
    assert all(before <= t <= after for _, t in records)
    assert [o for o, _ in records] == sorted(o for o, _ in records)
    # The first 'b' line is at its own record, at least the pause after the 'a's.
    b_at = log_path.read_bytes().index(b"b0")
    covering = [r for r in records if r[0] <= b_at][-1]
    assert covering[1] - records[0][1] >= 900_000_000
    assert times_path(log_path).stat().st_size % RECORD.size == 0


def os_open(path: Path) -> int:
    import os

    return os.open(path, os.O_RDONLY)


async def test_since_between_two_groups_gives_the_second_group(jobs: JobManager) -> None:
    job_id = await finished(jobs, [PYTHON, "-c", TWO_GROUPS, "1"])
    stamped = await windowed(jobs, job_id, OutputWindow(timestamps=True))
    a_time = next(t for _, d, t in stamped if b"a0" in d)
    assert a_time is not None
    got = await windowed(jobs, job_id, OutputWindow(since_ns=a_time + 500_000_000))
    assert b"".join(d for _, d, _ in got) == b"b0\nb1\nb2\n"


async def test_tail_gives_the_last_lines(jobs: JobManager) -> None:
    job_id = await finished(jobs, ["sh", "-c", "printf 'one\\ntwo\\nthree\\nfour'"])
    for n, want in [(0, b""), (1, b"four"), (2, b"three\nfour"), (9, b"one\ntwo\nthree\nfour")]:
        got = await windowed(jobs, job_id, OutputWindow(tail=n))
        assert b"".join(d for _, d, _ in got) == want, n

import os
from pathlib import Path

import pytest
import trio
import trio.testing

from jogger import InvalidRequest, JobManager, JobState, ManagerLimits, OutputUnavailable
from tests.procs import PYTHON, collect, rest_of, rss_kib, rss_peak_reset, task_count

# Writes 64 KiB blocks of every byte value, pausing now and then, then exits.
BINARY_WRITER = """
import os, sys, time
block = bytes(range(256)) * 256
for i in range(int(sys.argv[1])):
    os.write(1, block)
    if i % 8 == 0:
        time.sleep(0.005)
"""


def expected_binary(blocks: int) -> bytes:
    return bytes(range(256)) * 256 * blocks


async def test_stdout_and_stderr_interleave_in_write_order(jobs: JobManager) -> None:
    code = "import os\nfor i in range(200): os.write(1 + i % 2, b'%d,' % i)"
    status = await jobs.start("alice", [PYTHON, "-c", code])
    with trio.fail_after(10):
        out = await collect(jobs.output("alice", status.id))
    assert out == b"".join(b"%d," % i for i in range(200))


async def test_many_concurrent_readers_get_identical_binary_bytes(jobs: JobManager) -> None:
    status = await jobs.start("alice", [PYTHON, "-c", BINARY_WRITER, "64"])
    results: list[bytes] = []

    async def read(chunk_size: int) -> None:
        results.append(await collect(jobs.output("alice", status.id, chunk_size=chunk_size)))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(read, 1000 + 997 * i)
    assert len(results) == 20
    assert all(r == expected_binary(64) for r in results)


async def test_reader_joining_mid_run_gets_everything_from_byte_zero(jobs: JobManager) -> None:
    script = "echo first; read line < {fifo}; echo second"
    fifo = Path(os.environ.get("TMPDIR", "/tmp")) / f"jogger-test-{os.getpid()}"
    os.mkfifo(fifo)
    try:
        status = await jobs.start("alice", ["sh", "-c", script.format(fifo=fifo)])
        with trio.fail_after(10):
            async with jobs.output("alice", status.id) as early:
                assert await anext(early) == b"first\n"
                # The job is blocked in the middle of its run; a new reader joins now.
                async with jobs.output("alice", status.id) as late:
                    assert await anext(late) == b"first\n"
                    await trio.to_thread.run_sync(fifo.write_text, "go\n")
                    assert await rest_of(late) == b"second\n"
                assert await rest_of(early) == b"second\n"
    finally:
        fifo.unlink()


async def test_output_from_an_offset_and_without_follow(jobs: JobManager) -> None:
    status = await jobs.start("alice", ["sh", "-c", "printf 0123456789; sleep 30"])
    with trio.fail_after(10):
        seen = b""
        async with jobs.output("alice", status.id) as chunks:
            async for chunk in chunks:
                seen += chunk
                if len(seen) == 10:
                    break
        snapshot = await collect(jobs.output("alice", status.id, follow=False))
        tail = await collect(jobs.output("alice", status.id, offset=4, follow=False))
        past_end = await collect(jobs.output("alice", status.id, offset=100, follow=False))
    assert snapshot == b"0123456789"
    assert tail == b"456789"
    assert past_end == b""


async def test_bad_offset_or_chunk_size_is_rejected(jobs: JobManager) -> None:
    status = await jobs.start("alice", ["true"])
    with pytest.raises(InvalidRequest, match="offset"):
        async with jobs.output("alice", status.id, offset=-1):
            pass
    with pytest.raises(InvalidRequest, match="chunk_size"):
        async with jobs.output("alice", status.id, chunk_size=0):
            pass


async def test_output_of_a_finished_job_comes_from_its_log_file(
    jobs: JobManager, tmp_path: Path
) -> None:
    status = await jobs.start("alice", [PYTHON, "-c", BINARY_WRITER, "4"])
    with trio.fail_after(10):
        await collect(jobs.output("alice", status.id))
        final = await jobs.stop("alice", status.id)
    assert final.state is JobState.COMPLETED
    assert final.output_bytes == len(expected_binary(4))
    log = tmp_path / "state" / "logs" / f"{status.id}.log"
    assert log.read_bytes() == expected_binary(4)
    with trio.fail_after(10):
        again = await collect(jobs.output("alice", status.id))
    assert again == expected_binary(4)


@pytest.mark.timeout(30)
async def test_readers_are_woken_by_events_not_by_a_clock(
    jobs: JobManager, mock_clock: trio.testing.MockClock
) -> None:
    # Trio's clock is frozen: a reader that polled with sleep() would never see the second
    # line. Only the job's own (real) sleep passes.
    status = await jobs.start("alice", ["sh", "-c", "echo one; sleep 0.3; echo two"])
    async with jobs.output("alice", status.id) as output:
        chunks = [chunk async for chunk in output]
    assert b"".join(chunks) == b"one\ntwo\n"
    assert (await jobs.status("alice", status.id)).state is JobState.COMPLETED


async def test_stalled_reader_slows_neither_the_job_nor_other_readers(jobs: JobManager) -> None:
    status = await jobs.start("alice", [PYTHON, "-c", BINARY_WRITER, "400"])  # 25 MiB
    with trio.fail_after(30):
        async with jobs.output("alice", status.id) as stalled:
            await anext(stalled)  # takes one chunk, then never reads again
            everything = await collect(jobs.output("alice", status.id))
            final = await jobs.stop("alice", status.id)
    assert everything == expected_binary(400)
    assert final.state is JobState.COMPLETED


async def test_reader_that_leaves_costs_the_job_nothing(jobs: JobManager) -> None:
    status = await jobs.start("alice", ["sh", "-c", "echo hello; sleep 30"])
    await trio.testing.wait_all_tasks_blocked()
    baseline = task_count()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(collect, jobs.output("alice", status.id))
            await trio.testing.wait_all_tasks_blocked()
            assert task_count() >= baseline + 100  # each follower: our task and its stream task
            nursery.cancel_scope.cancel()  # every reader leaves at once
        await trio.testing.wait_all_tasks_blocked()
    assert task_count() == baseline
    assert (await jobs.status("alice", status.id)).state is JobState.RUNNING


async def test_output_past_the_limit_is_dropped_and_reported(tmp_path: Path) -> None:
    async with JobManager(tmp_path, limits=ManagerLimits(max_output_bytes=100_000)) as jobs:
        status = await jobs.start("alice", [PYTHON, "-c", BINARY_WRITER, "8"])
        with trio.fail_after(10):
            out = await collect(jobs.output("alice", status.id))
            final = await jobs.stop("alice", status.id)
    assert out == expected_binary(8)[:100_000]
    assert final.state is JobState.COMPLETED  # the job ran on to its end
    assert final.output_truncated
    assert final.output_bytes == 100_000


async def test_200_mb_of_output_keeps_our_memory_flat(jobs: JobManager) -> None:
    writer = "import os\nb = b'x' * 65536\nfor _ in range(3200): os.write(1, b)"
    rss_peak_reset()
    before = rss_kib("VmHWM")
    status = await jobs.start("alice", [PYTHON, "-c", writer])
    total = 0
    with trio.fail_after(60):
        async with jobs.output("alice", status.id) as chunks:
            async for chunk in chunks:
                total += len(chunk)
    assert total == 3200 * 65536
    grown_mib = (rss_kib("VmHWM") - before) / 1024
    assert grown_mib < 20, f"peak RSS grew by {grown_mib:.1f} MiB for 200 MiB of output"


async def test_output_of_exactly_the_limit_is_not_truncated(tmp_path: Path) -> None:
    async with JobManager(tmp_path, limits=ManagerLimits(max_output_bytes=65536 * 2)) as jobs:
        status = await jobs.start("alice", [PYTHON, "-c", BINARY_WRITER, "2"])
        with trio.fail_after(10):
            final = await jobs.wait("alice", status.id)
    assert final.output_bytes == 65536 * 2
    assert not final.output_truncated


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
async def test_a_full_disk_ends_logging_not_the_job(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir(mode=0o700)
    await trio.run_process(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", small])
    try:
        async with JobManager(small) as jobs:
            status = await jobs.start("alice", [PYTHON, "-c", BINARY_WRITER, "64"])  # 4 MiB
            with trio.fail_after(20):
                out = await collect(jobs.output("alice", status.id))
            final = await jobs.status("alice", status.id)
            # The job ran to its end; later jobs still start and are recorded.
            assert final.state is JobState.COMPLETED
            assert final.reason == "disk-full"
            assert final.output_error.startswith("the state dir's file system is full")
            assert 0 < final.output_bytes < 2 << 20
            assert out == expected_binary(64)[: final.output_bytes]
            after = await jobs.start("alice", ["true"])
            assert (await jobs.wait("alice", after.id)).state is JobState.COMPLETED
        # The disk-full end is on record, not lost with the space.
        async with JobManager(small) as again:
            assert await again.status("alice", status.id) == final
    finally:
        await trio.run_process(["umount", small])


async def test_a_reader_that_cannot_open_the_log_gets_an_error_and_harms_nothing(
    tmp_path: Path,
) -> None:
    # Failure injection: the log file vanishes under a running job (as if an operator
    # deleted it), so that opening it fails in the follower's stream task.
    async with JobManager(tmp_path / "state") as jobs:
        status = await jobs.start("alice", ["sh", "-c", "echo ready; sleep 300"])
        with trio.fail_after(10):
            async with jobs.output("alice", status.id) as chunks:
                async for _ in chunks:
                    break
            next(iter((tmp_path / "state").rglob(f"{status.id}.log"))).unlink()
            for follow in (True, False):
                with pytest.raises(OutputUnavailable, match="cannot read the job's output"):
                    await collect(jobs.output("alice", status.id, follow=follow))
            assert (await jobs.status("alice", status.id)).state is JobState.RUNNING
            final = await jobs.stop("alice", status.id)
        assert final.state is JobState.STOPPED

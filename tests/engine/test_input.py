"""A job's input: a stdin pipe written once, or a terminal written by one writer at a time.

Real supervisors, real pipes and pseudo-terminals; the writer is the manager's InputSink.
"""

import hashlib
import os
import re
import signal
from pathlib import Path

import pytest
import trio

from jogger import (
    Input,
    InputBusy,
    InputUnavailable,
    InvalidRequest,
    JobManager,
    JobState,
    ManagerLimits,
    WindowSize,
)
from tests.engine.test_accounts import nobody
from tests.procs import PYTHON, collect, eventually, my_children


async def feed(jobs: JobManager, job_id: str, data: bytes) -> int:
    async with jobs.input("alice", job_id) as sink:
        assert await sink.write(data)
        return sink.written


async def until_output(jobs: JobManager, job_id: str, pattern: bytes) -> bytes:
    """The job's output so far, once it matches ``pattern``."""
    seen = b""

    async def matches() -> bool:
        nonlocal seen
        async with jobs.output("alice", job_id, follow=False) as chunks:
            seen = b"".join([chunk async for chunk in chunks])
        return re.search(pattern, seen) is not None

    await eventually(matches)
    return seen


async def test_bytes_written_to_a_pipe_reach_the_job_exactly_and_the_end_is_its_eof(
    jobs: JobManager,
) -> None:
    status = await jobs.start("alice", ["cat"], input=Input.PIPE)
    assert status.input is Input.PIPE
    data = b"a\0b\xff" + os.urandom(3 << 20)
    with trio.fail_after(30):
        assert await feed(jobs, status.id, data) == len(data)
        out = await collect(jobs.output("alice", status.id))
        final = await jobs.wait("alice", status.id)
    assert hashlib.sha256(out).digest() == hashlib.sha256(data).digest()
    assert (final.state, final.input) == (JobState.COMPLETED, Input.PIPE)


async def test_a_pipe_is_written_once(jobs: JobManager) -> None:
    status = await jobs.start("alice", ["sleep", "300"], input=Input.PIPE)
    with trio.fail_after(10):
        async with jobs.input("alice", status.id) as sink:
            assert await sink.write(b"x")
        with pytest.raises(InputUnavailable, match="input has ended"):
            async with jobs.input("alice", status.id):
                pass


async def test_one_writer_at_a_time(jobs: JobManager) -> None:
    status = await jobs.start("alice", ["cat"], input=Input.TERMINAL)
    with trio.fail_after(10):
        async with jobs.input("alice", status.id):
            with pytest.raises(InputBusy):
                async with jobs.input("alice", status.id):
                    pass
        # Let go: the terminal stays for the next writer.
        async with jobs.input("alice", status.id) as sink:
            assert await sink.write(b"again\n")
        await until_output(jobs, status.id, b"again\r\n")


async def test_no_input_for_a_job_without_for_another_owner_or_once_ended(
    jobs: JobManager,
) -> None:
    plain = await jobs.start("alice", ["true"])
    piped = await jobs.start("alice", ["true"], input=Input.PIPE)
    with trio.fail_after(10):
        await jobs.wait("alice", piped.id)
        await jobs.wait("alice", plain.id)
        with pytest.raises(InputUnavailable, match="started without input"):
            async with jobs.input("alice", plain.id):
                pass
        with pytest.raises(InputUnavailable, match="has ended"):
            async with jobs.input("alice", piped.id):
                pass
        running = await jobs.start("alice", ["sleep", "300"], input=Input.PIPE)
        with pytest.raises(Exception, match="not found"):
            async with jobs.input("bob", running.id):
                pass


async def test_a_job_that_does_not_read_makes_the_writer_wait_not_memory_grow(
    jobs: JobManager,
) -> None:
    status = await jobs.start("alice", ["sleep", "300"], input=Input.PIPE)
    chunk = b"\0" * (1 << 20)
    async with jobs.input("alice", status.id) as sink:
        with trio.move_on_after(1) as waited:
            for _ in range(64):
                await sink.write(chunk)
        assert waited.cancelled_caught
        # What a pipe holds, and nothing more: the rest waits with the writer.
        assert sink.written <= 1 << 20
        with trio.fail_after(10):
            await jobs.stop("alice", status.id, grace=0)
            # The job is gone: a write waiting for it returns.
            assert not await sink.write(chunk)
            assert sink.closed


async def test_a_write_waiting_for_a_reader_outside_the_job_ends_with_the_job(
    jobs: JobManager,
) -> None:
    # The job ends; a process it left behind (killed with it) held the pipe and never read.
    status = await jobs.start("alice", ["sh", "-c", "sleep 300 & sleep 1"], input=Input.PIPE)
    with trio.fail_after(30):
        async with jobs.input("alice", status.id) as sink:
            while await sink.write(b"\0" * 65536):
                pass
            assert sink.closed
        assert (await jobs.wait("alice", status.id)).state is JobState.COMPLETED


async def test_a_terminal_is_the_jobs_controlling_terminal_of_the_size_asked(
    jobs: JobManager,
) -> None:
    script = "tty; stty size; read line; stty size; echo got $line"
    status = await jobs.start(
        "alice", ["sh", "-c", script], input=Input.TERMINAL, window=WindowSize(33, 101)
    )
    with trio.fail_after(20):
        await until_output(jobs, status.id, rb"/dev/pts/\d+\r\n33 101\r\n")
        async with jobs.input("alice", status.id) as sink:
            sink.resize(WindowSize(40, 120))
            assert await sink.write(b"hello\r")
        out = await collect(jobs.output("alice", status.id))
        final = await jobs.wait("alice", status.id)
    assert out.endswith(b"40 120\r\ngot hello\r\n")
    assert final.state is JobState.COMPLETED


async def test_ctrl_c_on_a_terminal_interrupts_the_job(jobs: JobManager) -> None:
    status = await jobs.start("alice", ["sleep", "300"], input=Input.TERMINAL)
    with trio.fail_after(20):
        await feed(jobs, status.id, b"\x03")
        final = await jobs.wait("alice", status.id)
    assert (final.state, final.signal) == (JobState.FAILED, signal.SIGINT)


async def test_a_resize_of_a_job_without_a_terminal_is_refused(jobs: JobManager) -> None:
    with pytest.raises(InvalidRequest, match="terminal"):
        await jobs.start("alice", ["true"], input=Input.PIPE, window=WindowSize(10, 10))
    with pytest.raises(InvalidRequest, match="window size"):
        await jobs.start("alice", ["true"], input=Input.TERMINAL, window=WindowSize(0, 10))
    status = await jobs.start("alice", ["sleep", "300"], input=Input.PIPE)
    with trio.fail_after(10):
        async with jobs.input("alice", status.id) as sink:
            with pytest.raises(InvalidRequest, match="no terminal"):
                sink.resize(WindowSize(10, 10))


async def test_a_terminal_outlives_the_manager_and_the_next_one_writes_to_it(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    limits = ManagerLimits(max_jobs=8)
    with trio.fail_after(30):
        async with JobManager(state, grace=1.0, limits=limits, on_shutdown="keep") as first:
            status = await first.start("alice", ["cat"], input=Input.TERMINAL)
            async with first.input("alice", status.id) as sink:
                assert await sink.write(b"before\r")
            await until_output(first, status.id, b"before\r\nbefore\r\n")
        async with JobManager(state, grace=1.0, limits=limits) as second:
            adopted = await second.status("alice", status.id)
            assert (adopted.state, adopted.input) == (JobState.RUNNING, Input.TERMINAL)
            async with second.input("alice", status.id) as sink:
                assert await sink.write(b"after\r")
            await until_output(second, status.id, b"after\r\nafter\r\n")
    assert my_children() == []


async def test_a_pipe_job_written_before_a_restart_runs_on_to_its_end(tmp_path: Path) -> None:
    # The input ended before the restart: the adopted job has read its EOF.
    state = tmp_path / "state"
    limits = ManagerLimits(max_jobs=8)
    code = "import sys; data = sys.stdin.buffer.read(); print(len(data))"
    with trio.fail_after(30):
        async with JobManager(state, grace=1.0, limits=limits, on_shutdown="keep") as first:
            status = await first.start("alice", [PYTHON, "-c", code], input=Input.PIPE)
            async with first.input("alice", status.id) as sink:
                assert await sink.write(b"12345")
        async with JobManager(state, grace=1.0, limits=limits) as second:
            final = await second.wait("alice", status.id)
            out = await collect(second.output("alice", status.id))
    assert (final.state, out) == (JobState.COMPLETED, b"5\n")


async def test_a_jobs_terminal_belongs_to_the_user_it_runs_as(jobs: JobManager) -> None:
    if os.geteuid() != 0:
        pytest.skip("running a job as another user needs root")
    account = nobody()
    status = await jobs.start(
        "alice", ["sh", "-c", "stat -c %U $(tty)"], input=Input.TERMINAL, account=account
    )
    with trio.fail_after(10):
        out = await collect(jobs.output("alice", status.id))
    assert out == f"{account.name}\r\n".encode()

"""Shutdown is the cancellation of the manager's scope; it must leave nothing behind."""

import os
import socket
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
import trio.testing

from jogger import JobManager, JobState, JobStatus, ManagerLimits
from jogger.engine.errors import ManagerClosed
from tests.engine.test_start import slow_spawns
from tests.procs import (
    PYTHON,
    SAYS_GOODBYE,
    Output,
    alive_in_groups,
    collect,
    my_children,
    open_fds,
    rest_of,
    task_count,
)

IGNORES_TERM = "trap '' TERM; echo ready; while :; do sleep 1; done"


async def read_line(output: Output) -> bytes:
    async with output as chunks:
        return await anext(chunks)


async def after_restart(state_dir: Path, *statuses: JobStatus) -> list[JobStatus]:
    """The jobs' records as a new manager on the same state dir sees them."""
    async with JobManager(state_dir) as again:
        return [await again.status("alice", s.id) for s in statuses]


async def test_shutdown_lets_a_start_under_way_finish_and_then_stops_its_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A spawn is never abandoned: its job joins the others, is recorded, and is stopped.
    slow_spawns(monkeypatch, 0.5)
    statuses: list[JobStatus] = []

    async def start(jobs: JobManager) -> None:
        statuses.append(await jobs.start("alice", ["sleep", "30"]))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            async with JobManager(tmp_path, grace=1) as jobs:
                nursery.start_soon(start, jobs)
                await trio.testing.wait_all_tasks_blocked()  # the start is in its spawn
            assert [s.state for s in statuses] == [JobState.RUNNING]  # done before the exit
        assert my_children() == []
        [final] = await after_restart(tmp_path, *statuses)
    assert final.state is JobState.STOPPED
    assert final.reason != "server-crash"


async def test_cancelling_the_manager_scope_leaves_no_process_task_or_fd(tmp_path: Path) -> None:
    await trio.testing.wait_all_tasks_blocked()
    fds, tasks = open_fds(), task_count()
    statuses: list[JobStatus] = []
    outside: list[bytes] = []

    async def follow_from_outside(jobs: JobManager, job_id: str) -> None:
        outside.append(await collect(jobs.output("alice", job_id)))

    with trio.fail_after(20):
        async with trio.open_nursery() as readers:
            with trio.CancelScope() as manager_scope:
                async with JobManager(tmp_path, grace=3) as jobs:
                    for argv in (
                        ["sh", "-c", IGNORES_TERM],
                        SAYS_GOODBYE,
                        ["sh", "-c", "sleep 300 & sleep 300"],
                    ):
                        statuses.append(await jobs.start("alice", argv))
                    big = [PYTHON, "-c", "print('x' * 10**6)"]
                    statuses.append(await jobs.start("alice", big))
                    for status in statuses[:2]:
                        assert await read_line(jobs.output("alice", status.id)) == b"ready\n"
                        readers.start_soon(follow_from_outside, jobs, status.id)
                    async with jobs.output("alice", statuses[2].id) as inside:
                        readers.start_soon(collect, jobs.output("alice", statuses[3].id))
                        await trio.testing.wait_all_tasks_blocked()
                        # Cancel the scope around the manager, as a caller's timeout or Ctrl-C
                        # would.
                        manager_scope.cancel()
                        await rest_of(inside)
            assert manager_scope.cancelled_caught

    assert sorted(outside) == [b"ready\n", b"ready\ngoodbye\n"]
    assert alive_in_groups({s.pid for s in statuses}) == []
    assert my_children() == []
    await trio.testing.wait_all_tasks_blocked()
    assert task_count() == tasks
    assert open_fds() == fds
    # The graceful shutdown is on record.
    recorded = await after_restart(tmp_path, *statuses)
    states = [s.state for s in recorded]
    assert states[:3] == [JobState.KILLED, JobState.STOPPED, JobState.STOPPED]
    assert states[3] in (JobState.COMPLETED, JobState.STOPPED)  # it may have finished first
    assert {s.reason for s in recorded[:3]} == {"server-shutdown"}


async def test_leaving_the_block_stops_jobs_and_drains_followers(tmp_path: Path) -> None:
    out: list[bytes] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery, JobManager(tmp_path) as jobs:
            status = await jobs.start("alice", SAYS_GOODBYE)
            assert await read_line(jobs.output("alice", status.id)) == b"ready\n"

            async def follow() -> None:
                out.append(await collect(jobs.output("alice", status.id)))

            nursery.start_soon(follow)
            await trio.testing.wait_all_tasks_blocked()
    assert out == [b"ready\ngoodbye\n"]
    [recorded] = await after_restart(tmp_path, status)
    assert recorded.state is JobState.STOPPED
    assert recorded.reason == "server-shutdown"


async def test_shutdown_does_not_wait_forever_for_a_follower_that_never_reads(
    tmp_path: Path,
) -> None:
    with trio.fail_after(20):
        # The follower is the stack's: it outlives the manager's block.
        async with AsyncExitStack() as readers:
            async with JobManager(tmp_path, grace=0.2, drain_timeout=0.2) as jobs:
                status = await jobs.start("alice", [PYTHON, "-c", "print('x' * 10**7)"])
                output = jobs.output("alice", status.id, chunk_size=1000)
                stalled = await readers.enter_async_context(output)
                await anext(stalled)
            # The block exited although the follower took one chunk of ten thousand; what
            # it reads next tells it that it was cut off, not that the output ends there.
            with pytest.raises(ManagerClosed, match="cut off before its end"):
                async for _ in stalled:
                    pass
    [recorded] = await after_restart(tmp_path, status)
    assert recorded.state.is_final


# Hands its stdout to whoever listens at the abstract address argv[1], then waits: the pipe
# outlives the job.
GIVES_AWAY_ITS_STDOUT = (
    "import socket, sys, time\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.connect('\\0' + sys.argv[1])\n"
    "socket.send_fds(s, [b'x'], [1])\n"
    "print('ready', flush=True)\n"
    "time.sleep(300)\n"
)


def take_fd(listener: socket.socket) -> int:
    connection, _ = listener.accept()
    with connection:
        _, fds, _, _ = socket.recv_fds(connection, 1, 1)
    return fds[0]


async def test_a_follower_cut_off_at_shutdown_is_told_so_not_given_an_end(
    tmp_path: Path,
) -> None:
    # A process outside the job holds its output pipe, so the log stays open (EOF_GRACE)
    # after the job's processes are dead, past the followers' drain deadline.
    address = f"jogger-test-{uuid.uuid4()}"
    outcome: list[bytes | ManagerClosed] = []
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind("\0" + address)
        listener.listen(1)
        listener.settimeout(20)
        held = -1
        try:
            with trio.fail_after(30):
                async with (
                    trio.open_nursery() as nursery,
                    JobManager(tmp_path, grace=0.1, drain_timeout=0.2) as jobs,
                ):
                    argv = [PYTHON, "-c", GIVES_AWAY_ITS_STDOUT, address]
                    status = await jobs.start("alice", argv)
                    held = await trio.to_thread.run_sync(take_fd, listener)
                    assert await read_line(jobs.output("alice", status.id)) == b"ready\n"

                    async def follow() -> None:
                        try:
                            outcome.append(await collect(jobs.output("alice", status.id)))
                        except ManagerClosed as exc:
                            outcome.append(exc)

                    nursery.start_soon(follow)
                    await trio.testing.wait_all_tasks_blocked()
        finally:
            if held >= 0:
                os.close(held)
    [cut] = outcome
    assert isinstance(cut, ManagerClosed), f"the follower got {cut!r} as the whole output"
    assert "cut off before its end" in str(cut)
    [recorded] = await after_restart(tmp_path, status)
    assert (recorded.state.is_final, recorded.reason) == (True, "server-shutdown")


async def test_an_exception_in_the_block_reaches_the_caller_unwrapped(tmp_path: Path) -> None:
    async def body() -> None:
        async with JobManager(tmp_path) as jobs:
            await jobs.start("alice", ["sleep", "300"])
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await body()
    assert my_children() == []


async def test_the_manager_runs_many_jobs_and_limits_apply(tmp_path: Path) -> None:
    async with JobManager(tmp_path, limits=ManagerLimits(max_jobs=100)) as jobs:
        started = [await jobs.start("alice", ["true"]) for _ in range(50)]
        with trio.fail_after(20):
            for status in started:
                await collect(jobs.output("alice", status.id))
                assert (await jobs.stop("alice", status.id)).state is JobState.COMPLETED
    assert my_children() == []


async def test_shutdown_cuts_a_longer_stop_under_way_to_the_managers_grace(
    tmp_path: Path,
) -> None:
    # A stop granted an hour is under way when the manager shuts down with a grace of 1 s:
    # the job must be killed within the manager's grace, not the stop's.
    results: list[JobStatus] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as outside, JobManager(tmp_path, grace=1) as jobs:
            status = await jobs.start("alice", ["sh", "-c", IGNORES_TERM])
            await read_line(jobs.output("alice", status.id))

            async def stop() -> None:
                results.append(await jobs.stop("alice", status.id, grace=3600))

            outside.start_soon(stop)
            await trio.sleep(0.2)  # the stop has sent SIGTERM and waits out its grace
    assert [r.state for r in results] == [JobState.KILLED]
    assert alive_in_groups({status.pid}) == []

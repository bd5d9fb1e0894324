"""open_job_manager owns the manager's nursery; ``async with JobManager(...)`` runs the same."""

from pathlib import Path

import pytest
import trio
import trio.testing

from jogger import (
    InvalidRequest,
    JobManager,
    JobNotFound,
    JobState,
    ManagerClosed,
    StoreError,
    open_job_manager,
)
from tests.procs import alive_in_groups, collect, task_count

UNKNOWN = "5b4c1f5e-2f0c-4c38-9d8e-7f5b8a1d2c3e"


async def test_open_job_manager_stops_its_jobs_when_the_block_ends(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with open_job_manager(tmp_path, grace=1) as jobs:
            assert isinstance(jobs, JobManager)
            status = await jobs.start("alice", ["sleep", "300"])
        with pytest.raises(ManagerClosed):
            await jobs.start("alice", ["true"])
        assert alive_in_groups({status.pid}) == []
        async with open_job_manager(tmp_path) as again:
            recorded = await again.status("alice", status.id)
    assert recorded.state is JobState.STOPPED
    assert recorded.reason == "server-shutdown"


async def test_an_error_in_the_block_comes_out_as_itself(tmp_path: Path) -> None:
    async def fail_with_a_job_running() -> None:
        async with open_job_manager(tmp_path, grace=1) as jobs:
            await jobs.start("alice", ["sleep", "300"])
            raise LookupError("mine")

    with trio.fail_after(20), pytest.raises(LookupError, match="mine") as info:
        await fail_with_a_job_running()
    assert type(info.value) is LookupError  # not an ExceptionGroup around it


async def test_open_job_manager_checks_its_arguments_as_job_manager_does(
    tmp_path: Path,
) -> None:
    with pytest.raises(InvalidRequest, match="grace"):
        async with open_job_manager(tmp_path, grace=-1):
            pytest.fail("entered a manager with a negative grace")
    with pytest.raises(InvalidRequest, match="grace"):
        JobManager(tmp_path, grace=-1)


async def test_a_second_entry_is_refused_and_leaves_the_first_running(tmp_path: Path) -> None:
    manager = JobManager(tmp_path)
    with trio.fail_after(20):
        async with manager as jobs:
            with pytest.raises(RuntimeError, match="only once"):
                async with manager:
                    pytest.fail("entered a running manager again")
            status = await jobs.start("alice", ["true"])
            assert (await jobs.wait("alice", status.id)).state is JobState.COMPLETED
    with pytest.raises(ManagerClosed):
        await manager.start("alice", ["true"])


async def test_output_refuses_on_entering_the_block(jobs: JobManager) -> None:
    with pytest.raises(JobNotFound):
        async with jobs.output("alice", UNKNOWN):
            pytest.fail("entered the output of a job that does not exist")


async def test_leaving_the_output_block_ends_the_follower_at_once(jobs: JobManager) -> None:
    status = await jobs.start("alice", ["sh", "-c", "echo hello; sleep 300"])
    with trio.fail_after(10):
        await trio.testing.wait_all_tasks_blocked()
        baseline = task_count()
        async with jobs.output("alice", status.id) as chunks:
            assert await anext(chunks) == b"hello\n"
            await trio.testing.wait_all_tasks_blocked()
            assert task_count() == baseline + 1  # the follower's stream task
        await trio.testing.wait_all_tasks_blocked()
        assert task_count() == baseline
        assert await collect(jobs.output("alice", status.id, follow=False)) == b"hello\n"
        await jobs.stop("alice", status.id, grace=0)


async def test_a_manager_whose_start_failed_may_start_later(tmp_path: Path) -> None:
    manager = JobManager(tmp_path)
    with trio.fail_after(20):
        async with open_job_manager(tmp_path):
            with pytest.raises(StoreError, match="in use by another jogger"):
                async with manager:
                    pytest.fail("entered a state dir another manager holds")
        async with manager as jobs:  # the holder has gone: the same object starts now
            status = await jobs.start("alice", ["true"])
            assert (await jobs.wait("alice", status.id)).exit_code == 0

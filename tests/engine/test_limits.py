from pathlib import Path

import pytest
import trio

from jogger import JobManager, LimitExceeded, ManagerLimits


async def test_per_owner_limit_refuses_and_frees_when_a_job_ends(tmp_path: Path) -> None:
    async with JobManager(tmp_path, limits=ManagerLimits(max_jobs_per_owner=2)) as jobs:
        first = await jobs.start("alice", ["sleep", "300"])
        await jobs.start("alice", ["sleep", "300"])
        with pytest.raises(LimitExceeded, match="2 of your jobs are running; the limit is 2"):
            await jobs.start("alice", ["sleep", "300"])
        await jobs.start("bob", ["sleep", "300"])  # other owners are not affected
        assert len((await jobs.list("alice")).jobs) == 2
        with trio.fail_after(10):
            await jobs.stop("alice", first.id)
        await jobs.start("alice", ["sleep", "300"])


async def test_manager_limit_counts_every_owner(tmp_path: Path) -> None:
    async with JobManager(tmp_path, limits=ManagerLimits(max_jobs=3)) as jobs:
        await jobs.start("alice", ["sleep", "300"])
        await jobs.start("bob", ["sleep", "300"])
        done = await jobs.start("carol", ["sleep", "300"])
        with pytest.raises(LimitExceeded, match="3 jobs are running; the limit is 3"):
            await jobs.start("dave", ["sleep", "300"])
        with trio.fail_after(10):
            await jobs.stop("carol", done.id, grace=0)
        await jobs.start("dave", ["sleep", "300"])
        assert (await jobs.list("dave")).jobs

import pytest
import trio

from jogger import InvalidRequest, JobManager, JobNotFound, JobState
from tests.procs import collect

UNKNOWN = "5b4c1f5e-2f0c-4c38-9d8e-7f5b8a1d2c3e"


async def test_another_owners_job_is_exactly_a_missing_job(jobs: JobManager) -> None:
    status = await jobs.start("alice", ["sleep", "300"])
    errors = []
    for job_id in (status.id, UNKNOWN):
        for call in (
            lambda job_id=job_id: jobs.status("mallory", job_id),
            lambda job_id=job_id: collect(jobs.output("mallory", job_id)),
        ):
            with pytest.raises(JobNotFound) as info:
                await call()
            errors.append(str(info.value).replace(job_id, "ID"))
        with pytest.raises(JobNotFound) as info:
            await jobs.stop("mallory", job_id, grace=0)
        errors.append(str(info.value).replace(job_id, "ID"))
    assert errors == ["job ID not found"] * 6
    assert (await jobs.status("alice", status.id)).state is JobState.RUNNING


async def test_list_shows_only_the_owners_jobs(jobs: JobManager) -> None:
    a1 = await jobs.start("alice", ["true"])
    b1 = await jobs.start("bob", ["true"])
    a2 = await jobs.start("alice", ["true"])
    assert [s.id for s in (await jobs.list("alice")).jobs] == [a2.id, a1.id]  # newest first
    assert [s.id for s in (await jobs.list("bob")).jobs] == [b1.id]
    assert (await jobs.list("carol")).jobs == []
    with trio.fail_after(10):
        for s in (a1, a2):
            await collect(jobs.output("alice", s.id))


async def test_a_malformed_job_id_is_an_invalid_request(jobs: JobManager) -> None:
    with pytest.raises(InvalidRequest, match="not a UUID"):
        await jobs.status("alice", "../../etc/passwd")

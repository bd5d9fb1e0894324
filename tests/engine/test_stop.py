import signal

import pytest
import trio

from jogger import InvalidRequest, JobManager, JobState
from tests.procs import PYTHON, SAYS_GOODBYE, alive_in_groups, collect, is_alive, my_children

IGNORES_TERM = "trap '' TERM; echo ready; while :; do sleep 1; done"
DOUBLE_FORK = "(sleep 300 & echo grandchild $!); echo ready; sleep 300"


async def wait_for_line(jobs: JobManager, job_id: str, line: bytes) -> bytes:
    seen = b""
    async for chunk in jobs.output("alice", job_id):
        seen += chunk
        if line in seen:
            return seen
    raise AssertionError(f"the job ended without printing {line!r}: {seen!r}")


async def test_stop_sends_sigterm_and_reports_stopped(jobs: JobManager) -> None:
    status = await jobs.start("alice", ["sleep", "300"])
    with trio.fail_after(10):
        final = await jobs.stop("alice", status.id)
    assert final.state is JobState.STOPPED
    assert final.signal == signal.SIGTERM
    assert final.exit_code is None
    assert final.ended_at is not None
    assert alive_in_groups({status.pid}) == []


async def test_stop_kills_a_job_that_ignores_sigterm_after_the_grace(jobs: JobManager) -> None:
    status = await jobs.start("alice", ["sh", "-c", IGNORES_TERM])
    with trio.fail_after(10):
        await wait_for_line(jobs, status.id, b"ready")
        start = trio.current_time()
        final = await jobs.stop("alice", status.id, grace=0.5)
    assert trio.current_time() - start >= 0.5
    assert final.state is JobState.KILLED
    assert final.signal == signal.SIGKILL
    assert alive_in_groups({status.pid}) == []


async def test_stop_kills_double_forked_grandchild(jobs: JobManager) -> None:
    status = await jobs.start("alice", ["sh", "-c", DOUBLE_FORK])
    with trio.fail_after(10):
        seen = await wait_for_line(jobs, status.id, b"ready")
        final = await jobs.stop("alice", status.id)
    grandchild = int(seen.split()[1])
    assert final.state is JobState.STOPPED
    assert not is_alive(grandchild)
    assert alive_in_groups({status.pid}) == []


async def test_stop_kills_children_that_ignore_sigterm_when_the_leader_obeys(
    jobs: JobManager,
) -> None:
    script = f'sh -c "{IGNORES_TERM}" & sleep 300'
    status = await jobs.start("alice", ["sh", "-c", script])
    with trio.fail_after(10):
        await wait_for_line(jobs, status.id, b"ready")
        final = await jobs.stop("alice", status.id)
        rest = await collect(jobs.output("alice", status.id, offset=final.output_bytes))
    assert final.state is JobState.STOPPED
    assert rest == b""
    assert alive_in_groups({status.pid}) == []


async def test_stopping_a_finished_job_reports_its_final_status(jobs: JobManager) -> None:
    status = await jobs.start("alice", ["sh", "-c", "exit 3"])
    with trio.fail_after(10):
        await collect(jobs.output("alice", status.id))
        first = await jobs.stop("alice", status.id)
        second = await jobs.stop("alice", status.id, grace=0)
    assert first == second
    assert first.state is JobState.FAILED
    assert first.exit_code == 3


async def test_a_shorter_grace_escalates_a_stop_under_way(jobs: JobManager) -> None:
    status = await jobs.start("alice", ["sh", "-c", IGNORES_TERM])
    results = []

    async def stop(grace: float) -> None:
        results.append(await jobs.stop("alice", status.id, grace=grace))

    with trio.fail_after(5):
        await wait_for_line(jobs, status.id, b"ready")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop, 60)
            await trio.sleep(0.1)
            nursery.start_soon(stop, 0)
    assert [r.state for r in results] == [JobState.KILLED, JobState.KILLED]


async def test_negative_grace_is_rejected(jobs: JobManager) -> None:
    status = await jobs.start("alice", ["sleep", "300"])
    with pytest.raises(InvalidRequest, match="grace"):
        await jobs.stop("alice", status.id, grace=-1)
    assert jobs.status("alice", status.id).state is JobState.RUNNING


async def test_exit_of_the_main_process_kills_what_it_left_in_its_group(
    jobs: JobManager,
) -> None:
    # The background sleep holds the output pipe: without the group kill, output would never
    # reach EOF and the sleep would outlive the job.
    status = await jobs.start("alice", ["sh", "-c", "sleep 300 & echo $!"])
    with trio.fail_after(10):
        out = await collect(jobs.output("alice", status.id))
        final = await jobs.stop("alice", status.id)
    assert final.state is JobState.COMPLETED
    assert not is_alive(int(out))
    assert alive_in_groups({status.pid}) == []


async def test_followers_get_what_a_job_writes_while_it_stops(jobs: JobManager) -> None:
    status = await jobs.start("alice", SAYS_GOODBYE)
    with trio.fail_after(10):
        await wait_for_line(jobs, status.id, b"ready")
        follower = jobs.output("alice", status.id)
        final = await jobs.stop("alice", status.id)
        out = await collect(follower)
    assert final.state is JobState.STOPPED
    assert final.exit_code == 0
    assert out == b"ready\ngoodbye\n"


async def test_every_job_process_is_reaped(jobs: JobManager) -> None:
    for argv in (["true"], ["false"], [PYTHON, "-c", "import os; os.kill(os.getpid(), 9)"]):
        status = await jobs.start("alice", argv)
        with trio.fail_after(10):
            await collect(jobs.output("alice", status.id))
            await jobs.stop("alice", status.id)
    assert my_children() == []

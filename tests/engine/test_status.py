import signal
from datetime import UTC, datetime

import trio

from jogger import JobManager, JobState, JobStatus
from tests.procs import PYTHON, collect


async def finish(jobs: JobManager, argv: list[str]) -> tuple[bytes, JobStatus]:
    status = await jobs.start("alice", argv)
    with trio.fail_after(10):
        out = await collect(jobs.output("alice", status.id))
        return out, await jobs.stop("alice", status.id)


async def test_exit_zero_is_completed_with_times_and_command(jobs: JobManager) -> None:
    before = datetime.now(UTC)
    status = await jobs.start("alice", ["sh", "-c", "sleep 0.1"])
    assert status.started_at >= before
    with trio.fail_after(10):
        await collect(jobs.output("alice", status.id))
    final = await jobs.status("alice", status.id)
    assert final.state is JobState.COMPLETED
    assert final.exit_code == 0
    assert final.signal is None
    assert final.reason == ""
    assert final.argv == ("sh", "-c", "sleep 0.1")
    assert final.owner == "alice"
    assert final.ended_at is not None
    assert final.ended_at > final.started_at
    assert final.ended_at <= datetime.now(UTC)


async def test_nonzero_exit_is_failed_with_its_code(jobs: JobManager) -> None:
    _, final = await finish(jobs, ["sh", "-c", "exit 42"])
    assert final.state is JobState.FAILED
    assert final.exit_code == 42


async def test_death_by_a_signal_we_did_not_send_is_failed_with_the_signal(
    jobs: JobManager,
) -> None:
    _, final = await finish(jobs, [PYTHON, "-c", "import os; os.abort()"])
    assert final.state is JobState.FAILED
    assert final.signal == signal.SIGABRT
    assert final.exit_code is None


async def test_status_counts_output_bytes(jobs: JobManager) -> None:
    out, final = await finish(jobs, ["printf", "%s", "x" * 1000])
    assert out == b"x" * 1000
    assert final.output_bytes == 1000
    assert not final.output_truncated


async def test_wait_returns_the_final_status_once_the_job_has_ended(jobs: JobManager) -> None:
    status = await jobs.start("alice", ["sh", "-c", "sleep 0.2; exit 7"])
    with trio.fail_after(10):
        final = await jobs.wait("alice", status.id)
    assert final.state is JobState.FAILED
    assert final.exit_code == 7
    assert final == (await jobs.status("alice", status.id))

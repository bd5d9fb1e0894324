"""A job's timeout: kept by its supervisor, which stops the job when it is up (SIGTERM, the
grace, SIGKILL), with a manager or without one, and recorded as FAILED, reason timeout."""

import math
import signal
from datetime import timedelta
from pathlib import Path

import pytest
import trio

from jogger import InvalidRequest, JobManager, JobState
from jogger.engine.validate import MAX_TIMEOUT
from jogger.rpc.jobs_api import MAX_TIMEOUT as API_MAX_TIMEOUT
from tests.procs import alive_in_groups, eventually

IGNORES_TERM = "trap '' TERM; echo ready; while :; do sleep 1; done"


async def test_a_job_past_its_timeout_is_stopped_and_fails_with_reason_timeout(
    jobs: JobManager,
) -> None:
    started = await jobs.start("alice", ["sleep", "300"], timeout=1.0)
    assert started.timeout == 1.0
    assert started.deadline == started.started_at + timedelta(seconds=1)
    with trio.fail_after(20):
        final = await jobs.wait("alice", started.id)
    assert (final.state, final.reason) == (JobState.FAILED, "timeout")
    assert (final.exit_code, final.signal) == (None, signal.SIGTERM)
    assert final.deadline == started.deadline
    assert alive_in_groups({started.pid}) == []


async def test_a_job_that_ignores_sigterm_is_killed_after_the_grace_when_it_times_out(
    jobs: JobManager,
) -> None:
    # Time enough for the shell to set its trap first.
    started = await jobs.start("alice", ["sh", "-c", IGNORES_TERM], timeout=3.0)
    with trio.fail_after(20):
        final = await jobs.wait("alice", started.id)
    assert (final.state, final.reason) == (JobState.FAILED, "timeout")
    assert final.signal == signal.SIGKILL
    assert alive_in_groups({started.pid}) == []


async def test_a_job_that_catches_sigterm_keeps_its_exit_code_and_still_timed_out(
    jobs: JobManager,
) -> None:
    catches = "trap 'exit 3' TERM; echo ready; while :; do sleep 0.1; done"
    started = await jobs.start("alice", ["sh", "-c", catches], timeout=3.0)
    with trio.fail_after(20):
        final = await jobs.wait("alice", started.id)
    assert (final.state, final.reason, final.exit_code) == (JobState.FAILED, "timeout", 3)


async def test_a_stop_during_the_timeouts_grace_leaves_the_reason_timeout(
    jobs: JobManager,
) -> None:
    says = "trap 'echo got-term' TERM; echo ready; while :; do sleep 0.1; done"
    started = await jobs.start("alice", ["sh", "-c", says], timeout=3.0)
    with trio.fail_after(20):
        async with jobs.output("alice", started.id) as chunks:
            seen = b""
            async for chunk in chunks:
                seen += chunk
                if b"got-term" in seen:
                    break
        final = await jobs.stop("alice", started.id, grace=0)
    assert (final.state, final.reason, final.signal) == (
        JobState.FAILED,
        "timeout",
        signal.SIGKILL,
    )


async def test_a_job_that_ends_before_its_timeout_is_unaffected(jobs: JobManager) -> None:
    started = await jobs.start("alice", ["echo", "hi"], timeout=300.0)
    with trio.fail_after(20):
        final = await jobs.wait("alice", started.id)
    assert (final.state, final.exit_code, final.reason) == (JobState.COMPLETED, 0, "")
    assert final.timeout == 300.0
    # As the record has it, too.
    assert (await jobs.list("alice")).jobs == [final]


async def test_a_stop_before_the_timeout_is_a_plain_stop(jobs: JobManager) -> None:
    started = await jobs.start("alice", ["sleep", "300"], timeout=300.0)
    with trio.fail_after(20):
        final = await jobs.stop("alice", started.id)
    assert (final.state, final.reason) == (JobState.STOPPED, "")


async def test_a_job_without_a_timeout_has_no_deadline(jobs: JobManager) -> None:
    started = await jobs.start("alice", ["true"])
    assert (started.timeout, started.deadline) == (None, None)


@pytest.mark.parametrize("seconds", [0.0, -1.0, math.nan, math.inf, MAX_TIMEOUT + 1])
async def test_a_timeout_that_is_not_above_0_or_is_over_a_year_is_refused(
    jobs: JobManager, seconds: float
) -> None:
    with pytest.raises(InvalidRequest, match="a timeout must be more than 0"):
        await jobs.start("alice", ["true"], timeout=seconds)
    assert (await jobs.list("alice")).jobs == []


def test_the_engine_and_the_api_agree_on_the_longest_timeout() -> None:
    assert MAX_TIMEOUT == API_MAX_TIMEOUT


async def test_the_supervisor_stops_a_timed_out_job_while_no_manager_runs(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    async with JobManager(state, grace=2.0, on_shutdown="keep") as first:
        started = await first.start("alice", ["sleep", "300"], timeout=1.0)
    end = state / "run" / f"{started.id}.end"

    async def ended() -> bool:
        await trio.lowlevel.checkpoint()
        return end.exists()

    # Nobody but the job's supervisor is there to keep the time.
    await eventually(ended)
    async with JobManager(state, grace=2.0) as second:
        final = await second.status("alice", started.id)
    assert (final.state, final.reason, final.signal) == (
        JobState.FAILED,
        "timeout",
        signal.SIGTERM,
    )
    assert (final.timeout, final.deadline) == (1.0, started.deadline)
    assert alive_in_groups({started.pid}) == []


async def test_an_adopted_job_keeps_its_deadline_and_times_out(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with JobManager(state, grace=2.0, on_shutdown="keep") as first:
        started = await first.start("alice", ["sleep", "300"], timeout=3.0)
    async with JobManager(state, grace=2.0) as second:
        adopted = await second.status("alice", started.id)
        assert adopted.state is JobState.RUNNING
        assert adopted.deadline == started.deadline
        with trio.fail_after(20):
            final = await second.wait("alice", started.id)
    assert (final.state, final.reason) == (JobState.FAILED, "timeout")
    assert final.deadline == started.deadline

import errno
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from jogger import InvalidRequest, JobManager, JobState
from jogger.engine.cgroups import fs
from jogger.engine.cgroups.base import JobGroup
from jogger.engine.cgroups.none import ProcessGroup
from jogger.engine.cgroups.v1 import V1Group
from jogger.engine.cgroups.v2 import V2Group
from tests.procs import (
    PYTHON,
    SAYS_GOODBYE,
    alive_in_groups,
    collect,
    is_alive,
    my_children,
    rest_of,
)

IGNORES_TERM = "trap '' TERM; echo ready; while :; do sleep 1; done"
DOUBLE_FORK = "(sleep 300 & echo grandchild $!); echo ready; sleep 300"


async def wait_for_line(jobs: JobManager, job_id: str, line: bytes) -> bytes:
    seen = b""
    async with jobs.output("alice", job_id) as chunks:
        async for chunk in chunks:
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
    # The leader obeyed, but its child needed SIGKILL once the grace period was over.
    assert final.state is JobState.KILLED
    assert final.signal == signal.SIGTERM
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


async def test_a_shorter_grace_escalates_a_stop_under_way(tmp_path: Path) -> None:
    # Every grace in play is a minute long, except the second stop's: only escalation can
    # end this within the deadline.
    async with JobManager(tmp_path / "state", grace=60) as jobs:
        status = await jobs.start("alice", ["sh", "-c", IGNORES_TERM])
        results = []

        async def stop(grace: float) -> None:
            results.append(await jobs.stop("alice", status.id, grace=grace))

        with trio.fail_after(10):
            await wait_for_line(jobs, status.id, b"ready")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stop, 60)
                await trio.sleep(0.1)
                nursery.start_soon(stop, 0)
        assert [r.state for r in results] == [JobState.KILLED, JobState.KILLED]


async def test_a_stop_may_grant_more_grace_than_the_managers_default(tmp_path: Path) -> None:
    # The job needs a moment to exit after SIGTERM: longer than the manager's grace.
    slow_exit = (
        "trap 'sleep 1; echo cleaned up; exit 0' TERM; echo ready; while :; do sleep 0.1; done"
    )
    async with JobManager(tmp_path / "state", grace=0.1) as jobs:
        status = await jobs.start("alice", ["sh", "-c", slow_exit])
        with trio.fail_after(20):
            await wait_for_line(jobs, status.id, b"ready")
            final = await jobs.stop("alice", status.id, grace=15)
            out = await collect(jobs.output("alice", status.id))
    assert final.state is JobState.STOPPED
    assert b"cleaned up" in out


async def test_the_grace_period_covers_children_that_handle_sigterm(jobs: JobManager) -> None:
    # The main process dies at once on SIGTERM; its child takes a moment to clean up. The
    # child must get its grace period, not a SIGKILL as soon as the main process is gone.
    child = (
        "import os, signal, sys, time\n"
        "def bye(*_):\n"
        "    time.sleep(0.5)\n"
        "    os.write(1, b'child cleaned up\\n')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "os.write(1, b'ready\\n')\n"
        "time.sleep(300)\n"
    )
    status = await jobs.start("alice", ["sh", "-c", f'"{PYTHON}" -c "$0" & wait', child])
    with trio.fail_after(20):
        await wait_for_line(jobs, status.id, b"ready")
        final = await jobs.stop("alice", status.id, grace=15)
        out = await collect(jobs.output("alice", status.id))
    assert b"child cleaned up" in out
    assert final.state is JobState.STOPPED
    assert alive_in_groups({status.pid}) == []


async def test_negative_grace_is_rejected(jobs: JobManager) -> None:
    status = await jobs.start("alice", ["sleep", "300"])
    with pytest.raises(InvalidRequest, match="grace"):
        await jobs.stop("alice", status.id, grace=-1)
    assert (await jobs.status("alice", status.id)).state is JobState.RUNNING


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
        async with jobs.output("alice", status.id) as follower:
            final = await jobs.stop("alice", status.id)
            out = await rest_of(follower)
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


async def test_a_job_ends_even_if_proc_cannot_be_read_for_a_while(
    jobs: JobManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Failure injection: listing the job's processes fails, as it would with the fd table
    # full. The job must still end (retrying), never leave stop() or shutdown waiting.
    # Up to three failures: how often _members() is asked depends on the backend, but at
    # least one must have been met and survived. (v2 waits on cgroup.events, unless it has
    # no inotify instance left: then it lists the processes too, which is made so here.)
    failures = iter([OSError(errno.EMFILE, "Too many open files")] * 3)
    injected: list[OSError] = []

    def no_inotify(path: Path) -> fs.Watch:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(fs, "Watch", no_inotify)
    for cls in (ProcessGroup, V1Group, V2Group):
        real = cls._members

        def flaky(self: JobGroup, real: Callable[[Any], list[int]] = real) -> list[int]:
            exc = next(failures, None)
            if exc is not None:
                injected.append(exc)
                raise exc
            return real(self)

        monkeypatch.setattr(cls, "_members", flaky)
    status = await jobs.start("alice", ["sh", "-c", DOUBLE_FORK])
    with trio.fail_after(20):
        await wait_for_line(jobs, status.id, b"ready")
        final = await jobs.stop("alice", status.id)
    assert final.state is JobState.STOPPED
    assert injected
    assert alive_in_groups({status.pid}) == []


async def test_a_stop_after_shutdown_capped_the_grace_keeps_the_cap(tmp_path: Path) -> None:
    # Shutdown caps every job's grace (limit_grace); a stop that arrives afterwards, asking
    # for an hour, must not lift the cap. (The manager calls limit_grace only at shutdown;
    # here it is called directly, so that the stop surely comes after it.)
    async with JobManager(tmp_path / "state", grace=60) as jobs:
        status = await jobs.start("alice", ["sh", "-c", IGNORES_TERM])
        with trio.fail_after(20):
            await wait_for_line(jobs, status.id, b"ready")
            jobs._jobs[status.id].limit_grace(0.5)
            final = await jobs.stop("alice", status.id, grace=3600)
    assert final.state is JobState.KILLED

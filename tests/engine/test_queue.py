"""The job queue: its order (queue.py), and the manager's queue on record (queued.py)."""

import dataclasses
import errno
import sqlite3
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio
import trio.testing

from jogger import (
    Account,
    Input,
    Isolation,
    JobLimits,
    JobManager,
    JobState,
    LimitExceeded,
    ManagerClosed,
    ManagerLimits,
    NotRestartable,
    StoreError,
    WindowSize,
)
from jogger.engine.executor import Spec
from jogger.engine.job import Job
from jogger.engine.queue import JobQueue, Queued
from jogger.engine.request import StartRequest, decode, encode, restartable
from jogger.engine.status import JobStatus
from tests.procs import collect

NOBODY_ARRIVING: Counter[str] = Counter()


def entry(owner: str, order: int) -> Queued:
    status = JobStatus(
        id=f"{owner}-{order}",
        owner=owner,
        argv=("true",),
        state=JobState.QUEUED,
        pid=0,
        started_at=datetime.now(UTC),
    )
    return Queued(status, StartRequest(), order)


def drain(queue: JobQueue, may_start: dict[str, bool] | None = None) -> list[str]:
    """The ids in the order the queue hands them out, each started as it is taken."""
    taken = []
    while (next_one := queue.pop_next(lambda o: (may_start or {}).get(o, True))) is not None:
        queue.started(next_one.owner)
        taken.append(next_one.id)
    return taken


def test_each_owners_jobs_leave_in_the_order_they_came() -> None:
    queue = JobQueue(100, 100)
    for order in (1, 2, 3):
        queue.push(entry("alice", order))
    assert drain(queue) == ["alice-1", "alice-2", "alice-3"]


def test_owners_take_turns_whoever_queued_more() -> None:
    queue = JobQueue(100, 100)
    for order in (1, 2, 3):
        queue.push(entry("alice", order))
    queue.push(entry("bob", 4))
    queue.push(entry("bob", 5))
    assert drain(queue) == ["alice-1", "bob-4", "alice-2", "bob-5", "alice-3"]


def test_the_owner_whose_last_start_is_longest_ago_goes_first() -> None:
    queue = JobQueue(100, 100)
    queue.started("bob")
    queue.started("alice")  # alice started last: bob's turn, though alice queued first
    queue.push(entry("alice", 1))
    queue.push(entry("bob", 2))
    assert drain(queue) == ["bob-2", "alice-1"]


def test_an_owner_held_back_by_their_own_limit_holds_nobody_else_back() -> None:
    queue = JobQueue(100, 100)
    queue.push(entry("alice", 1))
    queue.push(entry("bob", 2))
    assert drain(queue, {"alice": False}) == ["bob-2"]
    assert queue.position(queue.get("alice-1")) == 1  # type: ignore[arg-type]


def test_positions_count_within_the_owners_line_and_shift_on_removal() -> None:
    queue = JobQueue(100, 100)
    entries = [entry("alice", n) for n in (1, 2, 3)]
    for e in entries:
        queue.push(e)
    queue.push(entry("bob", 4))
    assert [queue.position(e) for e in entries] == [1, 2, 3]
    queue.remove(entries[1])
    assert [queue.position(e) for e in entries] == [1, 0, 2]
    # Put back (a start that could not be recorded): in its place, by order.
    queue.push(entries[1])
    assert [queue.position(e) for e in entries] == [1, 2, 3]


def test_the_queue_is_bounded_in_all_and_per_owner() -> None:
    queue = JobQueue(3, 2)
    queue.push(entry("alice", 1))
    queue.push(entry("alice", 2))
    with pytest.raises(LimitExceeded, match="2 of your jobs are queued; the limit is 2"):
        queue.check_room("alice", NOBODY_ARRIVING)
    queue.check_room("bob", NOBODY_ARRIVING)
    with pytest.raises(LimitExceeded, match="3 jobs are queued; the limit is 3"):
        queue.check_room("bob", Counter(bob=1))  # one of bob's being recorded counts too
    with pytest.raises(LimitExceeded, match="queues no jobs"):
        JobQueue(0, 10).check_room("alice", NOBODY_ARRIVING)


async def test_a_queued_job_starts_when_room_frees_and_its_status_says_where_it_stands(
    tmp_path: Path,
) -> None:
    async with JobManager(tmp_path / "state", limits=ManagerLimits(max_jobs=1)) as jobs:
        blocker = await jobs.start("alice", ["sleep", "300"])
        with pytest.raises(LimitExceeded):
            await jobs.start("alice", ["true"])
        queued = await jobs.start("alice", ["echo", "hi"], queue=True, env={"A": "1"})
        assert (queued.state, queued.reason, queued.queue_position) == (
            JobState.QUEUED,
            "capacity",
            1,
        )
        assert queued.deadline is None
        await jobs.stop("alice", blocker.id, grace=0)
        with trio.fail_after(20):
            final = await jobs.wait("alice", queued.id)
            assert await collect(jobs.output("alice", queued.id)) == b"hi\n"
        assert (final.state, final.queue_position) == (JobState.COMPLETED, 0)
        assert final.started_at > queued.started_at
        _, request = await jobs.request_of("alice", queued.id)
        assert request.env == {"A": "1"}


async def test_a_start_a_crash_cut_short_is_started_again_from_the_queue(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with JobManager(state, limits=ManagerLimits(max_jobs=1)) as jobs:
        blocker = await jobs.start("alice", ["sleep", "300"])
        queued = await jobs.start("alice", ["echo", "again"], queue=True)
        await jobs.stop("alice", blocker.id, grace=0)
        await jobs.wait("alice", queued.id)
    # As a crash between the spawn and the record leaves it: the row still queued, and the
    # log the killed attempt had begun.
    with sqlite3.connect(state / "jobs.db") as db:
        db.execute(
            "UPDATE jobs SET state = 'queued', reason = 'capacity', ended_at = NULL, "
            "exit_code = NULL WHERE id = ?",
            (queued.id,),
        )
    db.close()
    (state / "logs" / f"{queued.id}.log").write_bytes(b"half a start")
    async with JobManager(state, limits=ManagerLimits(max_jobs=1)) as jobs:
        with trio.fail_after(20):
            final = await jobs.wait("alice", queued.id)
            assert await collect(jobs.output("alice", queued.id)) == b"again\n"
        assert final.state is JobState.COMPLETED


async def test_a_queued_job_that_cannot_start_fails_and_says_why(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    async with JobManager(tmp_path / "state", limits=ManagerLimits(max_jobs=1)) as jobs:
        blocker = await jobs.start("alice", ["sleep", "300"])
        queued = await jobs.start("alice", ["true"], cwd=str(gone), queue=True)
        behind = await jobs.start("alice", ["true"], queue=True)
        gone.rmdir()
        await jobs.stop("alice", blocker.id, grace=0)
        with trio.fail_after(20):
            final = await jobs.wait("alice", queued.id)
            output = await collect(jobs.output("alice", queued.id))
            # Its room was given back: the job behind it starts, with nothing else ending.
            assert (await jobs.wait("alice", behind.id)).state is JobState.COMPLETED
        assert (final.state, final.reason) == (JobState.FAILED, "start-failed")
        assert output.startswith(b"jogger: the job could not start: ")


async def test_shutdown_leaves_queued_jobs_queued_and_tells_their_waiters(tmp_path: Path) -> None:
    state = tmp_path / "state"
    told: list[BaseException] = []

    async def waiter(jobs: JobManager, job_id: str) -> None:
        try:
            await jobs.wait("alice", job_id)
        except ManagerClosed as exc:
            told.append(exc)

    # The waiter's nursery outlives the manager, which shuts down while it waits.
    async with (
        trio.open_nursery() as outer,
        JobManager(state, limits=ManagerLimits(max_jobs=1)) as jobs,
    ):
        await jobs.start("alice", ["sleep", "300"])
        queued = await jobs.start("alice", ["true"], queue=True)
        outer.start_soon(waiter, jobs, queued.id)
        await trio.testing.wait_all_tasks_blocked()
    assert [str(exc) for exc in told] == [
        "the server is shutting down: the job stays queued for the next"
    ]
    async with JobManager(state, limits=ManagerLimits(max_jobs=1)) as jobs:
        with trio.fail_after(20):
            assert (await jobs.wait("alice", queued.id)).state is JobState.COMPLETED


def test_a_start_request_reads_back_as_written_and_a_damaged_one_is_refused() -> None:
    request = StartRequest(
        cwd="/srv/work",
        env={"A": "1", "SECRET": "x y"},
        limits=JobLimits(cpu=0.5, pids=32),
        input=Input.TERMINAL,
        window=WindowSize(40, 120),
        isolation=Isolation.parse("pid,net,read-only-root"),
        timeout=90.0,
        account=Account("nobody", 65534, 65534, (65534,), "/nonexistent"),
    )
    assert decode(encode(request)) == request
    assert decode(encode(StartRequest())) == StartRequest()
    # Keys a later server adds are ignored; keys an older one left out take their defaults.
    assert decode('{"names": ["x"], "env": {"A": "1"}}') == StartRequest(env={"A": "1"})
    for damaged in ('"text"', '{"env": {"A": 1}}', '{"limits": {"cpu": true}}', "{"):
        with pytest.raises(ValueError):  # noqa: PT011 - each has its own message
            decode(damaged)
    with pytest.raises(NotRestartable, match="before servers kept start requests"):
        restartable("some-id", None)


class FailingStarts:
    """Failure injection: the starts of the jobs in ``failing`` wait for ``release``, then
    fail as when the host is short of something (fds), before the job exists."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.failing: dict[str, int] = {}
        """Job id to how many of its starts fail."""
        self.attempts: list[str] = []
        self.attempted: dict[str, trio.Event] = {}
        self.release = trio.Event()
        real = Job.launch

        async def launch(executor: object, spec: Spec, *args: object, **kwargs: object) -> Job:
            self.attempts.append(spec.job_id)
            self.attempted.setdefault(spec.job_id, trio.Event()).set()
            if self.failing.get(spec.job_id, 0):
                self.failing[spec.job_id] -= 1
                await self.release.wait()
                raise OSError(errno.EMFILE, "injected: too many open files")
            return await real(executor, spec, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Job, "launch", launch)

    async def started(self, job_id: str) -> None:
        with trio.fail_after(20):
            await self.attempted.setdefault(job_id, trio.Event()).wait()


async def test_a_start_put_back_is_tried_again_and_a_stop_waiting_for_it_dequeues_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts = FailingStarts(monkeypatch)
    async with JobManager(tmp_path / "state", limits=ManagerLimits(max_jobs=1)) as jobs:
        blocker = await jobs.start("alice", ["sleep", "300"])
        stopped = await jobs.start("alice", ["true"], queue=True)
        starts.failing[stopped.id] = 5
        await jobs.stop("alice", blocker.id, grace=0)
        await starts.started(stopped.id)
        # A stop of the job being started waits for its start; the start fails and puts it
        # back: the stop takes it out of the queue.
        outcome: list[JobStatus] = []

        async def stop() -> None:
            outcome.append(await jobs.stop("alice", stopped.id))

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stop)
                await trio.testing.wait_all_tasks_blocked()
                starts.release.set()
        assert (outcome[0].state, outcome[0].reason) == (JobState.STOPPED, "dequeued")
        # A start put back is tried again though no job ends, once the host may have room.
        blocker = await jobs.start("alice", ["sleep", "300"])
        retried = await jobs.start("alice", ["echo", "later"], queue=True)
        starts.failing[retried.id] = 1
        await jobs.stop("alice", blocker.id, grace=0)
        with trio.fail_after(20):
            final = await jobs.wait("alice", retried.id)
        assert final.state is JobState.COMPLETED
        assert starts.attempts.count(retried.id) == 2


async def test_a_start_put_back_at_shutdown_tells_its_waiters_the_manager_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts = FailingStarts(monkeypatch)
    told: list[BaseException] = []

    async def waiter(jobs: JobManager, job_id: str) -> None:
        try:
            await jobs.wait("alice", job_id)
        except ManagerClosed as exc:
            told.append(exc)

    async def release_later() -> None:
        await trio.testing.wait_all_tasks_blocked()
        starts.release.set()

    with trio.fail_after(20):
        async with (
            trio.open_nursery() as outer,
            JobManager(tmp_path / "state", limits=ManagerLimits(max_jobs=1)) as jobs,
        ):
            blocker = await jobs.start("alice", ["sleep", "300"])
            queued = await jobs.start("alice", ["true"], queue=True)
            starts.failing[queued.id] = 1
            await jobs.stop("alice", blocker.id, grace=0)
            await starts.started(queued.id)
            outer.start_soon(waiter, jobs, queued.id)
            await trio.testing.wait_all_tasks_blocked()
            # The manager shuts down while the start is under way; it fails then.
            outer.start_soon(release_later)
    assert [str(exc) for exc in told] == [
        "the server is shutting down: the job stays queued for the next"
    ]


async def test_stopping_a_job_whose_failed_start_could_not_be_recorded_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    refused = trio.Event()

    async def full_disk(*args: object) -> None:
        refused.set()
        raise StoreError("injected: the disk is full")

    async with JobManager(tmp_path / "state", limits=ManagerLimits(max_jobs=1)) as jobs:
        blocker = await jobs.start("alice", ["sleep", "300"])
        queued = await jobs.start("alice", ["true"], cwd=str(gone), queue=True)
        gone.rmdir()
        monkeypatch.setattr(jobs._store, "end_queued", full_disk)
        await jobs.stop("alice", blocker.id, grace=0)
        with trio.fail_after(20):
            await refused.wait()
            # Queued on record, but out of the queue: an error, not a stop that never ends.
            with pytest.raises(StoreError, match="its failure could not be recorded"):
                await jobs.stop("alice", queued.id)


async def test_a_start_arriving_while_an_earlier_one_is_being_queued_goes_behind_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with JobManager(tmp_path / "state", limits=ManagerLimits(max_jobs=1)) as jobs:
        store = jobs._store
        real = store.record_queued
        recorded = trio.Event()
        release = trio.Event()

        async def slow(*args: object) -> int:
            seq = await real(*args)  # type: ignore[arg-type]
            if not recorded.is_set():
                recorded.set()
                await release.wait()
            return seq

        monkeypatch.setattr(store, "record_queued", slow)
        blocker = await jobs.start("alice", ["sleep", "300"])
        first: list[JobStatus] = []

        async def queue_first() -> None:
            first.append(await jobs.start("alice", ["true"], queue=True))

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(queue_first)
                await recorded.wait()
                # Room frees while the first is being recorded; the second must not take it.
                await jobs.stop("alice", blocker.id, grace=0)
                try:
                    second = await jobs.start("alice", ["true"], queue=True)
                finally:
                    release.set()  # the record is shielded: never leave it waiting
                assert second.state is JobState.QUEUED
            ahead = await jobs.wait("alice", first[0].id)
            behind = await jobs.wait("alice", second.id)
        assert ahead.ended_at is not None
        assert behind.started_at >= ahead.ended_at  # one at a time, the first first


async def test_a_queued_job_beyond_the_bounds_of_the_manager_that_starts_it_fails_saying_why(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    async with JobManager(state, limits=ManagerLimits(max_jobs=1)) as jobs:
        await jobs.start("alice", ["sleep", "300"])
        queued = await jobs.start("alice", ["true"], queue=True)
    # As a server with cgroups and higher maxima would have queued it: limits of 4096 pids.
    with sqlite3.connect(state / "jobs.db") as db:
        (text,) = db.execute("SELECT request FROM jobs WHERE id = ?", (queued.id,)).fetchone()
        request = encode(dataclasses.replace(decode(text), limits=JobLimits(pids=4096)))
        db.execute("UPDATE jobs SET request = ? WHERE id = ?", (request, queued.id))
    db.close()
    async with JobManager(
        state, limits=ManagerLimits(max_jobs=1), max_limits=JobLimits(pids=16)
    ) as jobs:
        with trio.fail_after(20):
            final = await jobs.wait("alice", queued.id)
            output = await collect(jobs.output("alice", queued.id))
    assert (final.state, final.reason) == (JobState.FAILED, "start-failed")
    assert output.startswith(
        b"jogger: the job could not start: it no longer fits this server's bounds: "
    )


async def test_jobs_a_manager_adopts_are_no_starts_of_its_own_for_the_turns(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    async with JobManager(state, on_shutdown="keep") as first:
        kept = await first.start("alice", ["sleep", "300"])
    async with JobManager(state, limits=ManagerLimits(max_jobs=1)) as jobs:
        # Neither has started a job since this manager began: the first queued goes first.
        ahead = await jobs.start("alice", ["true"], queue=True)
        behind = await jobs.start("bob", ["true"], queue=True)
        await jobs.stop("alice", kept.id, grace=0)
        with trio.fail_after(20):
            alices = await jobs.wait("alice", ahead.id)
            bobs = await jobs.wait("bob", behind.id)
    assert alices.ended_at is not None
    assert bobs.started_at >= alices.ended_at

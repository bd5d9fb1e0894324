"""Group commit: starts that queue up together share one SQLite commit, none is acknowledged
before it, and every acknowledged start survives the server's death; reads have a lane of
their own and do not wait behind writes."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime
from pathlib import Path

import trio
import trio.testing

from jogger import JobManager
from jogger.engine.errors import StoreError
from jogger.engine.rows import ProcessIdentity
from jogger.engine.status import JobState, JobStatus
from jogger.engine.store import JobStore

NOBODY = ProcessIdentity(0, 0, "")


def running(job_id: str) -> JobStatus:
    return JobStatus(
        id=job_id,
        owner="alice",
        argv=("true",),
        state=JobState.RUNNING,
        pid=1,
        started_at=datetime.now(UTC),
    )


def commits_seen(db: sqlite3.Connection) -> list[str]:
    """The COMMITs SQLite itself runs on ``db`` (its trace hook), as they happen."""
    seen: list[str] = []
    db.set_trace_callback(lambda sql: seen.append(sql) if sql.strip() == "COMMIT" else None)
    return seen


async def hold_writes(store: JobStore, nursery: trio.Nursery) -> threading.Event:
    """Occupy the writers' lane until the returned event is set."""
    gate = threading.Event()
    nursery.start_soon(store._call, lambda: gate.wait(10))
    await trio.testing.wait_all_tasks_blocked()
    return gate


async def test_starts_that_queue_up_together_share_one_commit_and_all_are_on_disk(
    store: JobStore, tmp_path: Path
) -> None:
    assert store._db is not None
    seen = commits_seen(store._db)
    before = store.commits
    acked: list[str] = []

    async def start(job_id: str) -> None:
        await store.record_start(running(job_id), NOBODY, NOBODY, "{}")
        acked.append(job_id)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            gate = await hold_writes(store, nursery)
            for k in range(32):
                nursery.start_soon(start, f"job-{k}")
            await trio.testing.wait_all_tasks_blocked()
            assert acked == []  # nothing is acknowledged before its commit
            gate.set()
    assert sorted(acked) == sorted(f"job-{k}" for k in range(32))
    assert store.commits - before == 1
    assert seen == ["COMMIT"]
    other = JobStore(tmp_path / "jobs.db")
    await other.open()
    try:
        assert await other.ids_among(acked) == set(acked)
    finally:
        await other.close()


async def test_a_write_that_fails_in_a_group_is_undone_alone(store: JobStore) -> None:
    await store.record_start(running("taken"), NOBODY, NOBODY, "{}")
    outcomes: dict[str, str] = {}

    async def start(job_id: str) -> None:
        try:
            await store.record_start(running(job_id), NOBODY, NOBODY, "{}")
            outcomes[job_id] = "ok"
        except StoreError as exc:
            outcomes[job_id] = str(exc)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            gate = await hold_writes(store, nursery)
            for job_id in ("first", "taken", "last"):
                nursery.start_soon(start, job_id)
                await trio.testing.wait_all_tasks_blocked()
            gate.set()
    assert outcomes["first"] == outcomes["last"] == "ok"
    assert "UNIQUE" in outcomes["taken"]
    assert await store.ids_among(["first", "taken", "last"]) == {"first", "taken", "last"}
    status = await store.get("taken")
    assert status is not None
    assert status.owner == "alice"


async def test_a_read_is_answered_while_a_write_holds_the_writer(store: JobStore) -> None:
    await store.record_start(running("there"), NOBODY, NOBODY, "{}")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            gate = await hold_writes(store, nursery)
            try:
                found = await store.get("there")
                page = await store.page(None, size=10, token="")
            finally:
                gate.set()
    assert found is not None
    assert found.id == "there"
    assert [job.id for job in page.jobs] == ["there"]


async def test_a_read_sees_every_write_acknowledged_before_it(store: JobStore) -> None:
    # The reads' connection must not keep an old snapshot open between reads (a statement
    # left unfinished would).
    for k in range(5):
        await store.record_start(running(f"job-{k}"), NOBODY, NOBODY, "{}")
        found = await store.get(f"job-{k}")
        assert found is not None
        page = await store.page(None, size=1, token="")
        assert [job.id for job in page.jobs] == [f"job-{k}"]
        assert await store.ids_among([f"job-{k}"]) == {f"job-{k}"}


async def test_a_store_in_memory_reads_through_its_one_connection() -> None:
    store = JobStore(None)
    await store.open()
    try:
        await store.record_start(running("there"), NOBODY, NOBODY, "{}")
        found = await store.get("there")
        assert found is not None
        assert found.id == "there"
    finally:
        await store.close()


_SERVER = textwrap.dedent(
    """
    import sys, trio
    from jogger import JobManager, ManagerLimits

    async def main(state_dir):
        limits = ManagerLimits(max_jobs=1000, max_jobs_per_owner=1000)
        async with JobManager(state_dir, limits=limits, cgroups="none") as jobs:
            async def start():
                status = await jobs.start("alice", ["/bin/true"])
                print(status.id, flush=True)  # acknowledged: on record

            async with trio.open_nursery() as nursery:
                for _ in range(64):
                    nursery.start_soon(start)
            print("commits", jobs._store.commits, flush=True)
            await trio.sleep_forever()

    trio.run(main, sys.argv[1])
    """
)


async def test_every_acknowledged_start_survives_the_manager_killed_right_after(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    acked: list[str] = []
    commits = -1
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-c", _SERVER, str(state)], stdout=subprocess.PIPE
        )
        try:
            assert process.stdout is not None
            pending = b""
            while commits < 0:
                chunk = await process.stdout.receive_some()
                assert chunk, "the manager ended before its starts were acknowledged"
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    word, _, count = line.decode().partition(" ")
                    if word == "commits":
                        commits = int(count)
                    else:
                        acked.append(word)
        finally:
            # kill -9: no shutdown, no flush; only what was committed is there.
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()
    assert len(acked) == 64
    # The starts went through group commits; how many shared one is up to timing here (the
    # first test pins it down).
    assert commits > 0
    async with JobManager(state, cgroups="none") as jobs:
        for job_id in acked:
            status = await jobs.status("alice", job_id)  # JobNotFound if it was lost
            assert status.id == job_id

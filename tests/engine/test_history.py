"""Job records in SQLite: they outlive the manager, page, expire, and survive damage."""

import errno
import hashlib
import logging
import os
import sqlite3
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from jogger import (
    Account,
    InvalidRequest,
    JobLimits,
    JobManager,
    JobNotFound,
    JobState,
    JobStatus,
    Retention,
    StoreError,
)
from jogger.engine.store import SCHEMA_VERSION
from tests.procs import PYTHON, collect, eventually, my_children

BINARY = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 1000); sys.stderr.write('e')"


async def run(jobs: JobManager, argv: list[str], owner: str = "alice") -> JobStatus:
    status = await jobs.start(owner, argv)
    with trio.fail_after(20):
        return await jobs.wait(owner, status.id)


async def test_finished_jobs_keep_status_and_output_across_a_restart(tmp_path: Path) -> None:
    async with JobManager(tmp_path) as jobs:
        done = await run(jobs, [PYTHON, "-c", BINARY])
        failed = await run(jobs, ["sh", "-c", "echo oops; exit 3"])
        output = await collect(jobs.output("alice", done.id))
    assert len(output) == 256_001
    async with JobManager(tmp_path) as again:
        assert await again.status("alice", done.id) == done
        assert await again.status("alice", failed.id) == failed
        assert failed.exit_code == 3
        assert await collect(again.output("alice", done.id)) == output
        assert await collect(again.output("alice", done.id, offset=1000)) == output[1000:]
        # Following an ended job gives its output and ends.
        with trio.fail_after(5):
            assert await collect(again.output("alice", failed.id, follow=True)) == b"oops\n"
        # Stopping and waiting for an ended job return its record.
        assert await again.stop("alice", done.id) == done
        assert await again.wait("alice", done.id) == done
        assert [s.id for s in (await again.list("alice")).jobs] == [failed.id, done.id]
        # Ownership holds for records as for live jobs.
        with pytest.raises(JobNotFound):
            await again.status("mallory", done.id)
        with pytest.raises(JobNotFound):
            await collect(again.output("mallory", done.id))
        assert await again.owner_of(done.id) == "alice"


def own_account() -> Account:
    """This process's own ids under a made-up name: running as it needs no switch, so no root
    (and the engine needs no passwd entry)."""
    return Account("jogger-own", os.getuid(), os.getgid(), tuple(os.getgroups()), "/")


async def test_the_account_a_job_runs_as_is_in_its_status_and_kept_across_a_restart(
    tmp_path: Path,
) -> None:
    async with JobManager(tmp_path) as jobs:
        started = await jobs.start("alice", ["true"], account=own_account())
        assert (started.run_as, started.run_as_uid) == ("jogger-own", os.getuid())
        with trio.fail_after(20):
            done = await jobs.wait("alice", started.id)
        plain = await run(jobs, ["true"])  # no account: the manager's own user, unnamed
    assert (done.state, done.run_as, done.run_as_uid) == (
        JobState.COMPLETED,
        "jogger-own",
        os.getuid(),
    )
    assert (plain.run_as, plain.run_as_uid) == ("", None)
    async with JobManager(tmp_path) as again:
        assert await again.status("alice", done.id) == done
        assert await again.status("alice", plain.id) == plain
        assert (await again.list("alice")).jobs == [plain, done]


async def test_the_state_dir_is_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with JobManager(state) as jobs:
        await run(jobs, ["echo", "hi"])
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "logs").stat().st_mode) == 0o700
    files = [p for p in state.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"jobs.db", "lock"}
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o600 for p in files}


async def test_a_state_dir_writable_by_others_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "shared"
    state.mkdir(mode=0o700)
    state.chmod(0o777)
    with pytest.raises(InvalidRequest, match="writable by other users"):
        async with JobManager(state):
            pass
    assert list(state.iterdir()) == []


async def test_one_manager_per_state_dir(tmp_path: Path) -> None:
    async with JobManager(tmp_path) as jobs:
        status = await jobs.start("alice", ["sleep", "300"])
        with pytest.raises(StoreError, match=f"in use by another jogger \\(pid {os.getpid()}\\)"):
            async with JobManager(tmp_path):
                pass
        # The refused manager touched nothing: the job still runs.
        assert (await jobs.status("alice", status.id)).state is JobState.RUNNING
        await jobs.stop("alice", status.id, grace=0)


async def test_list_pages_newest_first(tmp_path: Path) -> None:
    async with JobManager(tmp_path, durable=False) as jobs:
        started = [(await jobs.start("alice", ["true"])).id for _ in range(25)]
        await jobs.start("bob", ["true"])
        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            page = await jobs.list("alice", page_size=10, page_token=token)
            seen += [s.id for s in page.jobs]
            pages += 1
            token = page.next_token
            if not token:
                break
        assert seen == started[::-1]
        assert pages == 3
        assert len((await jobs.list(None, page_size=1000)).jobs) == 26
        for bad in ("x", "-1", "1" * 30, "\u00b2", "9" * 19):
            with pytest.raises(InvalidRequest, match="bad page token"):
                await jobs.list("alice", page_token=bad)
        for size in (0, 1001):
            with pytest.raises(InvalidRequest, match="page size"):
                await jobs.list("alice", page_size=size)
        with trio.fail_after(20):
            for job_id in started:
                await jobs.wait("alice", job_id)


async def test_running_jobs_are_listed_with_their_live_status(tmp_path: Path) -> None:
    async with JobManager(tmp_path) as jobs:
        status = await jobs.start("alice", ["sh", "-c", "echo hello; sleep 300"])
        with trio.fail_after(10):
            async with jobs.output("alice", status.id) as chunks:
                async for _ in chunks:
                    break
        [listed] = (await jobs.list("alice")).jobs
        assert listed.state is JobState.RUNNING
        assert listed.output_bytes == 6  # live, not the record written at start
        await jobs.stop("alice", status.id, grace=0)


def damage(db: Path, job_id: str, column: str, value: object) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE jobs SET {column} = ? WHERE id = ?", (value, job_id))
    conn.close()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("argv", '["echo", "half'),  # a half-written JSON text
        ("argv", "[]"),
        ("state", "exploded"),
        ("started_at", "yesterday"),
        ("limits", '{"cpu": 1, "colour": "red"}'),
        ("exit_code", b"\x00\x01"),
        ("owner", None),
        ("run_as_uid", 65534),  # a uid with no account name
        ("run_as", "nobody"),  # a name with no uid
        ("timeout", -5.0),
        ("timeout", "soon"),
    ],
)
async def test_a_damaged_record_is_reported_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, column: str, value: object
) -> None:
    async with JobManager(tmp_path) as jobs:
        good = await run(jobs, ["echo", "good"])
        bad = await run(jobs, ["echo", "bad"])
    if column == "owner":
        # NOT NULL: write the row as a buggy version might, without the constraint.
        with sqlite3.connect(tmp_path / "jobs.db") as conn:
            conn.execute("PRAGMA writable_schema = ON")
            conn.execute(
                "UPDATE sqlite_schema SET sql = replace(sql, 'owner            TEXT NOT NULL', "
                "'owner TEXT') WHERE name = 'jobs'"
            )
        conn.close()
    damage(tmp_path / "jobs.db", bad.id, column, value)
    caplog.set_level(logging.ERROR, logger="jogger.engine")
    async with JobManager(tmp_path) as again:
        assert [s.id for s in (await again.list("alice")).jobs] == [good.id]
        assert [s.id for s in (await again.list(None)).jobs] == [good.id]
        with pytest.raises(JobNotFound):
            await again.status("alice", bad.id)
        assert await again.status("alice", good.id) == good
        # Still serving: a new job starts and is recorded.
        new = await run(again, ["true"])
        assert (await again.status("alice", new.id)).state is JobState.COMPLETED
    reports = [r for r in caplog.records if "damaged job record" in r.getMessage()]
    assert len(reports) == 1  # once, however often the row is met
    assert bad.id in reports[0].getMessage()


def manager_cgroups(state_dir: Path) -> list[Path]:
    """The cgroups a manager on ``state_dir`` makes (named by the state dir's hash)."""
    digest = hashlib.sha256(os.fsencode(os.path.realpath(state_dir))).hexdigest()[:12]
    return list(Path("/sys/fs/cgroup").glob(f"*/**/jogger-{digest}"))


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 99])
async def test_a_database_from_a_newer_jogger_is_refused(tmp_path: Path, version: int) -> None:
    async with JobManager(tmp_path):
        pass
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        conn.execute(f"PRAGMA user_version = {version}")
    conn.close()
    refusal = f"newer jogger \\(schema {version}; this one knows {SCHEMA_VERSION}\\)"
    with pytest.raises(StoreError, match=refusal):
        async with JobManager(tmp_path):
            pass
    # The refused manager left no cgroup of its own behind, and the database as it was.
    assert manager_cgroups(tmp_path) == []
    assert schema_version(tmp_path / "jobs.db") == version


def schema_version(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    return version


# Schema 1 exactly as jogger wrote it (jogger/engine/store.py before schema 2).
SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    owner            TEXT NOT NULL,
    state            TEXT NOT NULL,
    argv             TEXT NOT NULL,
    reason           TEXT NOT NULL DEFAULT '',
    exit_code        INTEGER,
    signal           INTEGER,
    pid              INTEGER NOT NULL,
    pid_start        INTEGER NOT NULL DEFAULT 0,
    boot_id          TEXT NOT NULL DEFAULT '',
    started_at       REAL NOT NULL,
    ended_at         REAL,
    output_bytes     INTEGER NOT NULL DEFAULT 0,
    output_truncated INTEGER NOT NULL DEFAULT 0,
    output_error     TEXT NOT NULL DEFAULT '',
    cgroup           TEXT NOT NULL,
    limits           TEXT NOT NULL,
    cpu_seconds      REAL,
    memory_peak      INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, seq);
CREATE INDEX IF NOT EXISTS jobs_running ON jobs (seq) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS jobs_by_end ON jobs (ended_at) WHERE state != 'running';
CREATE INDEX IF NOT EXISTS jobs_untimed ON jobs (seq) WHERE state != 'running' AND NOT (typeof(ended_at) IN ('integer', 'real') AND ended_at > 0);
PRAGMA user_version = 1;
"""  # noqa: E501 - the index as schema 1 has it
OLD_DONE = "0f0e5a43-8a0b-4c4e-9a49-3f4d2b1c0a01"
OLD_RUNNING = "0f0e5a43-8a0b-4c4e-9a49-3f4d2b1c0a02"
OLD_START = datetime(2026, 1, 2, 3, 4, 5, 250_000, UTC)


def write_schema_1_database(state: Path) -> None:
    """A state dir as a schema 1 jogger left it: a finished job with its output, and a job
    it was still running when it crashed."""
    (state / "logs").mkdir(mode=0o700, parents=True)
    for job_id, output in ((OLD_DONE, b"hello\n"), (OLD_RUNNING, b"half")):
        log_file = state / "logs" / f"{job_id}.log"
        log_file.write_bytes(output)
        log_file.chmod(0o600)
    db = state / "jobs.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA_1)
        insert = (
            "INSERT INTO jobs (id, owner, state, argv, exit_code, pid, pid_start, boot_id, "
            "started_at, ended_at, output_bytes, cgroup, limits) "
            "VALUES (?, 'alice', ?, ?, ?, ?, 0, '', ?, ?, ?, 'none', '{}')"
        )
        start = OLD_START.timestamp()
        conn.execute(
            insert, (OLD_DONE, "completed", '["echo", "hello"]', 0, 4242, start, start + 1, 6)
        )
        conn.execute(
            insert, (OLD_RUNNING, "running", '["sleep", "600"]', None, 4243, start, None, 0)
        )
    conn.close()
    db.chmod(0o600)


async def test_a_schema_1_database_is_migrated_and_its_jobs_show_no_account(
    tmp_path: Path,
) -> None:
    write_schema_1_database(tmp_path)
    assert schema_version(tmp_path / "jobs.db") == 1
    async with JobManager(tmp_path) as jobs:
        old = await jobs.status("alice", OLD_DONE)
        assert old == JobStatus(
            id=OLD_DONE,
            owner="alice",
            argv=("echo", "hello"),
            state=JobState.COMPLETED,
            pid=4242,
            started_at=OLD_START,
            ended_at=OLD_START + timedelta(seconds=1),
            exit_code=0,
            output_bytes=6,
            containment="none",
            limits=JobLimits(),
        )
        assert (old.run_as, old.run_as_uid) == ("", None)
        assert await collect(jobs.output("alice", OLD_DONE)) == b"hello\n"
        # Left running by the crashed schema 1 server: resolved as usual.
        crashed = await jobs.status("alice", OLD_RUNNING)
        assert (crashed.state, crashed.reason, crashed.output_bytes) == (
            JobState.KILLED,
            "server-crash",
            4,
        )
        assert (crashed.run_as, crashed.run_as_uid) == ("", None)
        started = await jobs.start("alice", ["true"], account=own_account())
        with trio.fail_after(20):
            new = await jobs.wait("alice", started.id)
    assert schema_version(tmp_path / "jobs.db") == SCHEMA_VERSION
    async with JobManager(tmp_path) as again:  # now a schema 2 database: opened as it is
        assert (await again.list("alice")).jobs == [new, crashed, old]
        assert (new.run_as, new.run_as_uid) == ("jogger-own", os.getuid())


async def listed_at_most(jobs: JobManager, n: int) -> bool:
    return len((await jobs.list("alice")).jobs) <= n


async def test_retention_by_count_deletes_the_oldest_record_log_and_index(tmp_path: Path) -> None:
    async with JobManager(tmp_path, retention=Retention(max_jobs=3)) as jobs:
        running = await jobs.start("alice", ["sleep", "300"])
        ids = [(await run(jobs, ["echo", str(i)])).id for i in range(5)]
        await eventually(lambda: listed_at_most(jobs, 4))

        async def logs_gone() -> bool:
            # The records go first, then (in a worker thread) their logs and indexes.
            return not any(
                (tmp_path / "logs" / f"{gone}{kind}").exists()
                for gone in ids[:2]
                for kind in (".log", ".times")
            )

        await eventually(logs_gone)
        listed = [s.id for s in (await jobs.list("alice")).jobs]
        assert listed == [*ids[:1:-1], running.id]  # the three newest, and the running one
        for gone in ids[:2]:
            with pytest.raises(JobNotFound):
                await jobs.status("alice", gone)
            with pytest.raises(JobNotFound):
                await collect(jobs.output("alice", gone))
        assert (tmp_path / "logs" / f"{ids[2]}.log").exists()
        assert (tmp_path / "logs" / f"{ids[2]}.times").exists()
        await jobs.stop("alice", running.id, grace=0)


async def test_retention_by_age_and_by_size(tmp_path: Path) -> None:
    async with JobManager(tmp_path) as jobs:
        old = await run(jobs, ["echo", "old"])
        big = await run(jobs, [PYTHON, "-c", "print('x' * 300_000)"])
        new = await run(jobs, ["echo", "new"])
    week_ago = (datetime.now(UTC) - timedelta(days=7)).timestamp()
    damage(tmp_path / "jobs.db", old.id, "ended_at", week_ago)
    async with JobManager(tmp_path, retention=Retention(max_days=2)) as jobs:
        await eventually(lambda: listed_at_most(jobs, 2))
        assert [s.id for s in (await jobs.list("alice")).jobs] == [new.id, big.id]
    # The database is far below 300 kB, so only the big job's output is over.
    async with JobManager(tmp_path, retention=Retention(max_state_bytes=250_000)) as jobs:
        await eventually(lambda: listed_at_most(jobs, 1))
        assert [s.id for s in (await jobs.list("alice")).jobs] == [new.id]

        async def big_log_gone() -> bool:
            # The record goes first, then (in a worker thread) its log.
            return not (tmp_path / "logs" / f"{big.id}.log").exists()

        await eventually(big_log_gone)


async def test_bad_retention_is_refused() -> None:
    for bad in ({"max_jobs": -1}, {"max_days": float("nan")}, {"max_state_bytes": "1G"}):
        with pytest.raises(InvalidRequest, match="retention"):
            Retention(**bad)


def fill(fd: int) -> None:
    """Write zeros to ``fd`` until the file system is full."""
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
async def test_a_start_that_cannot_be_recorded_is_refused_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    small = tmp_path / "small"
    small.mkdir(mode=0o700)
    await trio.run_process(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", small])
    try:
        async with JobManager(small) as jobs:
            first = await run(jobs, ["echo", "fits"])
            # Fill the file system to the last block, as another program might.
            filler = os.open(small / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                fill(filler)
            finally:
                os.close(filler)
            with pytest.raises(StoreError, match="full"):
                await jobs.start("alice", ["sleep", "300"])
            assert my_children() == []
            assert [s.id for s in (await jobs.list("alice")).jobs] == [first.id]
            # The refused job's log and time index are gone; the first job's stay.
            assert sorted(p.name for p in (small / "logs").iterdir()) == [
                f"{first.id}.log",
                f"{first.id}.times",
            ]
            (small / "filler").unlink()
            # With room again, starts work.
            assert (await run(jobs, ["true"])).state is JobState.COMPLETED
    finally:
        await trio.run_process(["umount", small])


@pytest.mark.parametrize(
    ("column", "value"),
    [("ended_at", -1e300), ("ended_at", 1e300), ("ended_at", None), ("output_bytes", 1e308)],
)
async def test_damaged_times_and_sizes_do_not_upset_retention(
    tmp_path: Path, column: str, value: object
) -> None:
    async with JobManager(tmp_path) as jobs:
        bad = await run(jobs, ["echo", "bad"])
        good = await run(jobs, ["echo", "good"])
    damage(tmp_path / "jobs.db", bad.id, column, value)
    retention = Retention(max_jobs=1, max_days=1, max_state_bytes=10**9)
    async with JobManager(tmp_path, retention=retention) as jobs:
        await trio.sleep(0.3)  # the retainer's first rounds
        before = time.process_time()
        await trio.sleep(0.5)
        # No busy loop: the retainer sleeps while nothing it can delete is due.
        assert time.process_time() - before < 0.25
        new = await run(jobs, ["true"])
        listed = [s.id for s in (await jobs.list("alice")).jobs]
        assert new.id in listed
        assert bad.id not in listed
    assert good.id

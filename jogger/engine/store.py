"""The job history: one SQLite database in the state dir, written from one worker thread.

Every job has one row, written when it starts and again when it ends, each time before the
call that caused the change returns. The output itself stays in the job's log file; a row
holds what ``jog status`` shows, plus what recovery needs to find a job's processes after a
crash (the main pid, its start time and the boot it ran in).

The database is in WAL mode with ``synchronous=FULL``: a commit is on disk when it returns,
so an acknowledged start survives a power loss. Writes run on one lane (lane.py): a worker
thread, one batch at a time, first come first served; the writes of a batch share one
transaction and one commit (group commit), and none is acknowledged before that commit.
Reads of a file store run on a lane of their own, with a connection of their own (WAL lets
a reader go on beside a writer): a Status never waits behind a batch of starts. A store in
memory has one connection, so its reads take the writers' lane.

A row that cannot be read back (damaged by hand, by a bug or by the disk) is logged once and
skipped: it does not stop the server, and the job reads as not found.
"""

import logging
import math
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from .errors import InvalidRequest, StoreError
from .lane import Lane
from .listing import LIST_INDEXES, JobFilter, page_query
from .observer import NOBODY, EngineObserver
from .queue_rows import QueueRows
from .rows import (
    COLUMNS,
    INSERT_LABEL,
    SELECT,
    ProcessIdentity,
    status_from_row,
    time_or_none,
    transaction,
    values,
)
from .status import JobStatus

log = logging.getLogger("jogger.engine")

SCHEMA_VERSION = 9
BUSY_TIMEOUT = 5.0
"""Seconds a statement waits for a lock (only our own connection writes, so rarely)."""

_SCHEMA = (
    """
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
    memory_peak      INTEGER,
    run_as           TEXT NOT NULL DEFAULT '',
    run_as_uid       INTEGER,
    supervisor_pid   INTEGER NOT NULL DEFAULT 0,
    supervisor_start INTEGER NOT NULL DEFAULT 0,
    input            TEXT NOT NULL DEFAULT 'none',
    isolation        TEXT NOT NULL DEFAULT '',
    external_id      TEXT NOT NULL DEFAULT '',
    timeout          REAL,
    name             TEXT NOT NULL DEFAULT '',
    request          TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, seq);
CREATE INDEX IF NOT EXISTS jobs_running ON jobs (seq) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS jobs_by_end ON jobs (ended_at) WHERE state != 'running';
CREATE INDEX IF NOT EXISTS jobs_untimed ON jobs (seq) WHERE {untimed};
CREATE TABLE IF NOT EXISTS labels (
    seq   INTEGER NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (seq, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs (seq) WHERE state = 'queued';
"""
    + LIST_INDEXES
)
# What brings a database of schema N - 1 to schema N, keyed by N. A new database gets _SCHEMA
# whole; an older one gets each step in turn, in one transaction with the version bump, so it
# is never left half way. Steps only add columns, with defaults under which an old row reads
# as it did before.
_MIGRATIONS = {
    # 2: the account a job runs as; old rows have none on record.
    2: """
ALTER TABLE jobs ADD COLUMN run_as TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN run_as_uid INTEGER
""",
    # 3: the job's supervisor, which a new server adopts; old rows have none.
    3: """
ALTER TABLE jobs ADD COLUMN supervisor_pid INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN supervisor_start INTEGER NOT NULL DEFAULT 0
""",
    # 4: what the job's stdin is; old jobs all had /dev/null.
    4: """
ALTER TABLE jobs ADD COLUMN input TEXT NOT NULL DEFAULT 'none'
""",
    # 5: the namespaces the job runs in; old jobs had none.
    5: """
ALTER TABLE jobs ADD COLUMN isolation TEXT NOT NULL DEFAULT ''
""",
    # 6: the job's id in its executor (Slurm's); old jobs were all local.
    6: """
ALTER TABLE jobs ADD COLUMN external_id TEXT NOT NULL DEFAULT ''
""",
    # 7: the job's timeout in seconds (its deadline is started_at plus it); old jobs had none.
    7: """
ALTER TABLE jobs ADD COLUMN timeout REAL
""",
    # 8: the job's name; old jobs had none. (Its labels, a table of their own, and the
    # indexes a filtered list walks come with _SCHEMA: old jobs have no labels.)
    8: """
ALTER TABLE jobs ADD COLUMN name TEXT NOT NULL DEFAULT ''
""",
    # 9: the job's start request (request.py); old rows have none, and cannot be restarted.
    9: """
ALTER TABLE jobs ADD COLUMN request TEXT
""",
}
_INSERT = f"""
INSERT INTO jobs ({COLUMNS}, pid_start, boot_id, supervisor_pid, supervisor_start, request)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# Only a record still marked running is ended: never one whose start failed to be written,
# and never a final record twice.
_END = """
UPDATE jobs SET state = ?, reason = ?, exit_code = ?, signal = ?, ended_at = ?,
    output_bytes = ?, output_truncated = ?, output_error = ?, cpu_seconds = ?, memory_peak = ?
WHERE id = ? AND state = 'running'
"""
# A finished row whose ended_at is a plausible time (not damaged).
_TIMED = "typeof(ended_at) IN ('integer', 'real') AND ended_at > 0"
_ENDED = f"state != 'running' AND {_TIMED}"
_UNTIMED = f"state != 'running' AND NOT ({_TIMED})"
# Queued rows (queue.py) have not run, so have no end: never "damaged", never expired.
_NOT_QUEUED = "state != 'queued'"
_NUMBER_BYTES = "CASE typeof(output_bytes) WHEN 'integer' THEN output_bytes ELSE 0 END"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Unfinished:
    """A record still marked running when the store was opened: its server did not end it."""

    seq: int
    job_id: str
    containment: str
    process: ProcessIdentity
    """The job's main process."""
    supervisor: ProcessIdentity
    """Its supervisor (pid 0 on records of servers before supervisors)."""


@dataclass(frozen=True, slots=True)
class Page:
    jobs: list[JobStatus]
    next_token: str
    """Pass as ``page_token`` for the next (older) page; empty on the last page."""
    cursors: list[str]
    """For each job, the token that continues right after it: a caller that passes on only
    the first jobs of a page (to bound a message's size) continues with ``cursors[k]``."""


@dataclass(frozen=True, slots=True)
class Expired:
    job_ids: list[str]
    bytes_freed: int
    oldest_end: datetime | None
    """When the oldest finished job left ended."""


class JobStore(QueueRows):
    """The job records. ``path`` None keeps them in memory (for embedding and benchmarks)."""

    def __init__(self, path: Path | None, observer: EngineObserver = NOBODY) -> None:
        self.path = path
        self._observer = observer
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        """The reads' own connection (a file store's), on the reads' own lane."""
        self._writes = Lane(observer, lambda: self._db)
        self._reads = Lane(observer) if path is not None else self._writes
        self._reported: set[int] = set()
        self._reported_lock = threading.Lock()

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._db is not None

    async def open(self) -> None:
        """Open (creating if need be) the database. Raises StoreError, saying why."""
        await self._call(self._open)

    @property
    def commits(self) -> int:
        """Group commits of writes so far (one fsync each): what concurrent starts share."""
        return self._writes.commits

    async def close(self) -> None:
        if self._reader is not None:
            await self._reads.call(self._close_reader)
        if self._db is not None:
            await self._call(self._close)

    def _open(self) -> None:
        target = ":memory:" if self.path is None else str(self.path)
        if self.path is not None:
            # Created 0600 before SQLite opens it: the journal files inherit its mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        db = sqlite3.connect(
            target, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            # Before anything is written, WAL mode included: a newer jogger's file is left as is.
            _schema_version(db, target)
            if self.path is not None:
                mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal":
                    raise StoreError(f"{target}: cannot use WAL mode (got {mode})")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            with transaction(db):
                # Read again under the write lock: the first read was outside it.
                version = _schema_version(db, target)
                if version != 0:  # 0: a new database, made whole by _SCHEMA
                    for step in range(version + 1, SCHEMA_VERSION + 1):
                        _execute_script(db, _MIGRATIONS[step])
                _execute_script(db, _SCHEMA.format(untimed=_UNTIMED))
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            reader = None
            if self.path is not None:
                reader = sqlite3.connect(
                    target, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
                )
                try:
                    reader.execute("PRAGMA query_only = ON")
                except BaseException:
                    reader.close()
                    raise
        except BaseException:
            db.close()
            raise
        self._db = db
        self._reader = reader

    def _close_reader(self) -> None:
        assert self._reader is not None
        reader, self._reader = self._reader, None
        reader.close()

    def _close(self) -> None:
        assert self._db is not None
        db, self._db = self._db, None
        db.close()

    # --- writes ------------------------------------------------------------------------------

    async def record_start(
        self, status: JobStatus, process: ProcessIdentity, supervisor: ProcessIdentity, request: str
    ) -> None:
        """Insert the row of a job that has just started, with its main process's identity
        and its supervisor's (the boot id is the same), its start request's JSON
        (request.py), and its labels' rows."""
        row = (*values(status, process), supervisor.pid, supervisor.start_ticks, request)

        def insert() -> None:
            db = self._connection()
            with transaction(db):
                seq = db.execute(_INSERT, row).lastrowid
                if status.labels:
                    db.executemany(
                        INSERT_LABEL,
                        [(seq, key, value, status.owner) for key, value in status.labels.items()],
                    )

        await self._call(insert, grouped=True)

    async def record_end(self, status: JobStatus) -> bool:
        """Write how the job ended; False if it had no row still marked running."""
        row = values(status, None)
        # state, reason, exit_code, signal, ended_at, output_bytes, truncated, error, cpu, mem
        changes = (*row[2:3], *row[4:7], *row[9:13], *row[15:17], status.id)

        def update() -> bool:
            db = self._connection()
            with transaction(db):
                return db.execute(_END, changes).rowcount == 1

        return await self._call(update, grouped=True)

    async def resolve_unfinished(self, resolved: list[tuple[int, int, str]], now: datetime) -> None:
        """Mark the given (seq, output bytes, reason) records killed: nothing of them could
        be adopted (see recovery.py)."""

        def resolve() -> None:
            db = self._connection()
            with transaction(db):
                db.executemany(
                    "UPDATE jobs SET state = 'killed', reason = ?, ended_at = ?, "
                    "output_bytes = ? WHERE seq = ? AND state = 'running'",
                    [(reason, now.timestamp(), size, seq) for seq, size, reason in resolved],
                )

        await self._call(resolve, grouped=True)

    async def expire(
        self,
        *,
        keep_jobs: int | None,
        before: datetime | None,
        max_bytes: int | None,
        count: int,
        total: int,
        batch: int,
        keep: set[str],
    ) -> Expired:
        """Delete up to ``batch`` of the oldest finished records past any of the limits.

        Oldest means ended first; ``count`` and ``total`` are the finished jobs and their
        output bytes before deleting; the ids in ``keep`` (jobs still in use) are spared.
        Returns the deleted ids (their logs are the caller's to delete), the bytes they held,
        and when the oldest job left ended.
        """

        def expire() -> Expired:
            nonlocal count
            db = self._connection()
            with transaction(db):
                doomed: list[str] = []
                seqs: list[int] = []
                freed = 0
                # Damaged rows (no plausible end time) first, as the oldest; then by end,
                # along the index.
                limit = batch + len(keep)
                rows = db.execute(
                    f"SELECT seq, id, ended_at, {_NUMBER_BYTES}, 0 FROM jobs "
                    f"WHERE {_UNTIMED} AND {_NOT_QUEUED} LIMIT ?",
                    (limit,),
                ).fetchall()
                rows += db.execute(
                    f"SELECT seq, id, ended_at, {_NUMBER_BYTES}, 1 FROM jobs "
                    f"WHERE {_ENDED} ORDER BY ended_at LIMIT ?",
                    (limit,),
                ).fetchall()
                cutoff = before.timestamp() if before is not None else -math.inf
                for seq, job_id, ended_at, size, timed in rows:
                    if job_id in keep:
                        continue
                    over = (
                        (keep_jobs is not None and count > keep_jobs)
                        or (timed and ended_at < cutoff)
                        or (max_bytes is not None and total - freed > max_bytes)
                    )
                    if len(doomed) == batch or (not over and timed):
                        break  # the rest ended later still
                    if not over:
                        continue
                    seqs.append(seq)
                    doomed.append(str(job_id))
                    count -= 1
                    freed += size
                # Their labels first, in one statement: the cascade would find them one job
                # at a time, twice as slow (measured: 7 ms a batch of 100, against 4).
                marks = ",".join("?" * len(seqs))
                db.execute(f"DELETE FROM labels WHERE seq IN ({marks})", seqs)
                db.executemany("DELETE FROM jobs WHERE seq = ?", [(seq,) for seq in seqs])
                (oldest,) = db.execute(f"SELECT min(ended_at) FROM jobs WHERE {_ENDED}").fetchone()
                return Expired(doomed, freed, time_or_none(oldest))

        return await self._call(expire, grouped=True)

    # --- reads ---------------------------------------------------------------------------------

    async def unfinished(self) -> list[Unfinished]:
        """Records still marked running: left by a server that did not end them."""

        def query() -> list[Unfinished]:
            rows = self._reading().execute(
                "SELECT seq, id, cgroup, pid, pid_start, boot_id, supervisor_pid, "
                "supervisor_start FROM jobs WHERE state = 'running' ORDER BY seq"
            )
            found = []
            for seq, job_id, kind, pid, start, boot, spid, sstart in rows:
                ok = isinstance(pid, int) and isinstance(start, int) and isinstance(boot, str)
                process = ProcessIdentity(pid, start, boot) if ok else ProcessIdentity(0, 0, "")
                ok = ok and isinstance(spid, int) and isinstance(sstart, int)
                supervisor = (
                    ProcessIdentity(spid, sstart, boot) if ok else ProcessIdentity(0, 0, "")
                )
                found.append(Unfinished(seq, str(job_id), str(kind), process, supervisor))
            return found

        return await self._read(query)

    async def get(self, job_id: str, *, owner: str | None = None) -> JobStatus | None:
        """The job's record; with ``owner``, only if it is theirs (in the query itself, so
        that another owner's job takes exactly the path of a job that does not exist)."""

        def query() -> JobStatus | None:
            sql = f"SELECT {SELECT} FROM jobs WHERE jobs.id = ?"
            args: tuple[str, ...] = (job_id,)
            if owner is not None:
                sql += " AND jobs.owner = ?"
                args += (owner,)
            row = self._reading().execute(sql, args).fetchone()
            return None if row is None else self._parse(row)

        return await self._read(query)

    async def page(
        self, owner: str | None, *, size: int, token: str, wanted: JobFilter | None = None
    ) -> Page:
        """Up to ``size`` jobs, newest first, older than ``token`` (from the previous page),
        that pass ``wanted`` by their stored state (listing.py)."""
        before = _parse_token(token)
        sql, args = page_query(SELECT, owner, wanted or JobFilter(), before=before, limit=size + 1)

        def query() -> Page:
            rows = self._reading().execute(sql, args).fetchall()
            more = len(rows) > size
            rows = rows[:size]
            parsed = [(self._parse(row), str(row[0])) for row in rows]
            kept = [(status, cursor) for status, cursor in parsed if status is not None]
            return Page(
                [status for status, _ in kept],
                str(rows[-1][0]) if more else "",
                [cursor for _, cursor in kept],
            )

        return await self._read(query)

    async def oldest_end(self) -> datetime | None:
        """When the finished job that ended first ended."""

        def query() -> datetime | None:
            db = self._reading()
            (oldest,) = db.execute(f"SELECT min(ended_at) FROM jobs WHERE {_ENDED}").fetchone()
            return time_or_none(oldest)

        return await self._read(query)

    async def totals(self) -> tuple[int, int]:
        """(finished jobs, their output bytes) on record."""

        def query() -> tuple[int, int]:
            count, total = (
                self._reading()
                .execute(
                    f"SELECT count(*), total({_NUMBER_BYTES}) FROM jobs "
                    f"WHERE state != 'running' AND {_NOT_QUEUED}"
                )
                .fetchone()
            )
            return int(count), int(total)

        return await self._read(query)

    async def ids_among(self, job_ids: list[str]) -> set[str]:
        """Which of ``job_ids`` have a record."""

        def query() -> set[str]:
            db = self._reading()
            found: set[str] = set()
            for i in range(0, len(job_ids), 500):
                part = job_ids[i : i + 500]
                marks = ",".join("?" * len(part))
                found.update(
                    row[0] for row in db.execute(f"SELECT id FROM jobs WHERE id IN ({marks})", part)
                )
            return found

        return await self._read(query)

    # --- plumbing ------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the job store is closed")
        return self._db

    def _reading(self) -> sqlite3.Connection:
        """The connection reads use: the readers' own, or (in memory) the only one."""
        if self.path is None:
            return self._connection()
        if self._reader is None:
            raise StoreError("the job store is closed")
        return self._reader

    async def _call(self, fn: Callable[[], T], *, grouped: bool = False) -> T:
        """Run ``fn`` on the writers' lane (lane.py); ``grouped``: a write that may share
        its batch's commit. SQLite errors become StoreError. Cancellation: as Lane.call."""
        try:
            return await self._writes.call(fn, grouped=grouped)
        except (sqlite3.Error, OverflowError) as exc:
            raise self._failed(exc) from None

    async def _read(self, fn: Callable[[], T]) -> T:
        """Run ``fn``, which reads through ``_reading()``, on the readers' lane."""
        try:
            return await self._reads.call(fn)
        except (sqlite3.Error, OverflowError) as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: Exception) -> StoreError:
        # OverflowError: an integer SQLite cannot hold, or a damaged value we cannot.
        where = self.path if self.path is not None else "memory"
        return StoreError(f"job store {where}: {exc}")

    def _parse(self, row: tuple[object, ...]) -> JobStatus | None:
        try:
            return status_from_row(row[1:])
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            seq = row[0] if isinstance(row[0], int) else -1
            with self._reported_lock:
                first = seq not in self._reported
                self._reported.add(seq)
            if first:
                log.error("skipping damaged job record seq=%s id=%r: %s", seq, row[1], exc)
            return None


def _schema_version(db: sqlite3.Connection, target: str) -> int:
    """The database's schema version; StoreError if it is newer than ours."""
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{target} was written by a newer jogger (schema {version}; this one "
            f"knows {SCHEMA_VERSION})"
        )
    return version


def _execute_script(db: sqlite3.Connection, script: str) -> None:
    """Each statement of ``script`` in turn (``executescript`` would commit the transaction)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _parse_token(token: str) -> int:
    if not token:
        return 2**63 - 1
    if not (token.isascii() and token.isdigit()) or len(token) > 18:
        raise InvalidRequest(f"bad page token {token[:40]!r}")
    return int(token)

"""The job store's rows of queued jobs, and of start requests (a part of JobStore, apart so
that store.py stays readable).

A queued job (queue.py) has a row from the moment it is queued, in state ``queued``, with
its start request: the store's order (seq) is the queue's order of arrival, and a server
that starts again finds its queue there (``queued``). When room frees, the job is spawned
first, then its row turns ``running`` (``start_queued``), and only then is the start
committed (its supervisor told to let the job run). A crash between the two leaves the
row queued and the supervisor kills the job, whose start was never on record: the next
server starts it again from the queue. So a queued job is never lost and never runs twice
on record, but its command may have been exec'd for an instant by the attempt that died.
"""

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from .rows import COLUMNS, INSERT_LABEL, SELECT, ProcessIdentity, transaction, values
from .status import JobState, JobStatus

T = TypeVar("T")

_START = """
UPDATE jobs SET state = 'running', reason = '', pid = ?, started_at = ?, cgroup = ?,
    limits = ?, run_as = ?, run_as_uid = ?, external_id = ?, pid_start = ?, boot_id = ?,
    supervisor_pid = ?, supervisor_start = ?
WHERE id = ? AND state = 'queued'
"""
_END = """
UPDATE jobs SET state = ?, reason = ?, ended_at = ?, output_bytes = ?
WHERE id = ? AND state = 'queued'
"""


class QueueRows:
    """What JobStore does for the queue and for restarts."""

    if TYPE_CHECKING:

        async def _call(self, fn: Callable[[], T], *, grouped: bool = False) -> T: ...

        async def _read(self, fn: Callable[[], T]) -> T: ...

        def _connection(self) -> sqlite3.Connection: ...

        def _reading(self) -> sqlite3.Connection: ...

        def _parse(self, row: tuple[object, ...]) -> JobStatus | None: ...

    async def record_queued(self, status: JobStatus, request: str) -> int:
        """Insert the row of a job that has just been queued, with its start request's
        JSON; returns its seq, its place in the order of arrival."""
        row = list(values(status, None))
        row[2] = JobState.QUEUED.value  # values() keeps Slurm's waiting jobs as running

        def insert() -> int:
            db = self._connection()
            with transaction(db):
                cursor = db.execute(
                    f"INSERT INTO jobs ({COLUMNS}, pid_start, boot_id, request) "
                    f"VALUES ({', '.join('?' * (len(row) + 1))})",
                    (*row, request),
                )
                seq = int(cursor.lastrowid or 0)
                if status.labels:
                    db.executemany(
                        INSERT_LABEL,
                        [(seq, key, value, status.owner) for key, value in status.labels.items()],
                    )
                return seq

        return await self._call(insert, grouped=True)

    async def start_queued(
        self, status: JobStatus, process: ProcessIdentity, supervisor: ProcessIdentity
    ) -> bool:
        """Turn a queued job's row into a running one's, as record_start would have written
        it; False if it was not queued."""
        row = values(status, process)
        # pid, started_at, cgroup, limits, run_as, run_as_uid, external_id, pid_start, boot
        changes = (
            *row[7:9],
            *row[13:15],
            *row[17:19],
            row[21],
            *row[-2:],
            supervisor.pid,
            supervisor.start_ticks,
            status.id,
        )

        def update() -> bool:
            db = self._connection()
            with transaction(db):
                return db.execute(_START, changes).rowcount == 1

        return await self._call(update, grouped=True)

    async def end_queued(
        self, job_id: str, state: JobState, reason: str, ended_at: datetime, output_bytes: int
    ) -> bool:
        """End a job that never left the queue (stopped there, or its start failed); False
        if it was not queued."""
        changes = (state.value, reason, ended_at.timestamp(), output_bytes, job_id)

        def update() -> bool:
            db = self._connection()
            with transaction(db):
                return db.execute(_END, changes).rowcount == 1

        return await self._call(update, grouped=True)

    async def queued(self) -> list[tuple[int, JobStatus | None, str | None]]:
        """Every queued job's (seq, status, start request's JSON), in the order they were
        queued; the status None for a row that cannot be read (logged)."""

        def query() -> list[tuple[int, JobStatus | None, str | None]]:
            rows = self._reading().execute(
                f"SELECT {SELECT}, jobs.request FROM jobs WHERE jobs.state = 'queued' "
                "ORDER BY jobs.seq"
            )
            found = []
            for row in rows:
                seq, request = row[0], row[-1]
                found.append(
                    (
                        int(seq),
                        self._parse(row[:-1]),
                        request if isinstance(request, str) else None,
                    )
                )
            return found

        return await self._read(query)

    async def request_of(self, job_id: str, owner: str) -> tuple[JobStatus, str | None] | None:
        """The record of ``owner``'s job and its start request's JSON (None on records of
        servers before requests were kept); None if there is no such job of theirs."""

        def query() -> tuple[JobStatus, str | None] | None:
            row = (
                self._reading()
                .execute(
                    f"SELECT {SELECT}, jobs.request FROM jobs WHERE jobs.id = ? AND jobs.owner = ?",
                    (job_id, owner),
                )
                .fetchone()
            )
            if row is None:
                return None
            status = self._parse(row[:-1])
            if status is None:
                return None
            return status, row[-1] if isinstance(row[-1], str) else None

        return await self._read(query)

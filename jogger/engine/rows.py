"""A job's row in the jobs table: its JobStatus as values, and read back, every field checked.

A row that cannot be read back (damaged by hand, by a bug or by the disk) raises ValueError,
TypeError, KeyError or OverflowError; the store logs it once and skips it. The column
``cgroup`` holds JobStatus.containment. A job's labels have a table of their own (one row
each, see store.py); a row read back comes with them as a JSON object. Also the write
transaction every store write takes (``transaction``).
"""

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from .errors import InvalidRequest
from .isolation import Isolation
from .limits import JobLimits
from .status import Input, JobState, JobStatus

COLUMNS = (
    "id, owner, state, argv, reason, exit_code, signal, pid, started_at, ended_at, "
    "output_bytes, output_truncated, output_error, cgroup, limits, cpu_seconds, memory_peak, "
    "run_as, run_as_uid, input, isolation, external_id, timeout, name"
)
"""The columns of a JobStatus, in the order of ``values`` and ``status_from_row`` (which
takes its labels after them)."""
# A label's row keeps its job's owner, so that an owner's list walks only their own jobs'.
INSERT_LABEL = "INSERT INTO labels (seq, key, value, owner) VALUES (?, ?, ?, ?)"
# What a status is read from (status_from_row, after the seq): the row, then its labels as
# one JSON object.
_LABELS_OF = "(SELECT json_group_object(key, value) FROM labels WHERE labels.seq = jobs.seq)"
SELECT = ", ".join(["jobs.seq", *(f"jobs.{column}" for column in COLUMNS.split(", ")), _LABELS_OF])


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """What tells a job's main process apart from a later process with the same pid."""

    pid: int
    start_ticks: int
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot."""
    boot_id: str


def values(status: JobStatus, process: ProcessIdentity | None) -> tuple[object, ...]:
    """The row of ``status``, its labels aside: COLUMNS, then pid_start and boot_id (0 and
    "" without a ``process``)."""
    return (
        status.id,
        status.owner,
        # A job waiting in Slurm's queue is on record as running: the store's unfinished
        # jobs are those. (The manager's own queue writes "queued", see queue_rows.py.)
        JobState.RUNNING.value if status.state is JobState.QUEUED else status.state.value,
        json.dumps(list(status.argv)),
        status.reason,
        status.exit_code,
        status.signal,
        status.pid,
        status.started_at.timestamp(),
        status.ended_at.timestamp() if status.ended_at is not None else None,
        status.output_bytes,
        int(status.output_truncated),
        status.output_error,
        status.containment,  # the cgroup column
        json.dumps({k: v for k, v in asdict(status.limits).items() if v is not None}),
        status.cpu_seconds,
        status.memory_peak,
        status.run_as,
        status.run_as_uid,
        status.input.value,
        status.isolation.text(),
        status.external_id,
        status.timeout,
        status.name,
        process.start_ticks if process is not None else 0,
        process.boot_id if process is not None else "",
    )


def status_from_row(row: tuple[object, ...]) -> JobStatus:
    """The status of COLUMNS, then its labels as a JSON object."""
    (
        job_id,
        owner,
        state,
        argv,
        reason,
        exit_code,
        signal,
        pid,
        started_at,
        ended_at,
        output_bytes,
        output_truncated,
        output_error,
        cgroup,
        limits,
        cpu_seconds,
        memory_peak,
        run_as,
        run_as_uid,
        stdin,
        isolation,
        external_id,
        timeout,
        name,
        labels,
    ) = row
    args = json.loads(_text(argv))
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        raise ValueError("argv is not a list of strings")
    limit_fields = json.loads(_text(limits))
    if not isinstance(limit_fields, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in limit_fields.values()
    ):
        raise ValueError("limits is not an object of numbers")
    account = _text(run_as)
    if (account == "") != (run_as_uid is None):
        raise ValueError("run_as and run_as_uid are not both set or both empty")
    return JobStatus(
        id=_text(job_id),
        owner=_text(owner),
        argv=tuple(args),
        state=JobState(state),
        pid=_int(pid),
        started_at=_time(started_at),
        ended_at=None if ended_at is None else _time(ended_at),
        exit_code=None if exit_code is None else _int(exit_code),
        signal=None if signal is None else _int(signal),
        reason=_text(reason),
        output_bytes=_int(output_bytes),
        output_truncated=bool(_int(output_truncated)),
        output_error=_text(output_error),
        containment=_text(cgroup),
        limits=JobLimits(**limit_fields),
        cpu_seconds=None if cpu_seconds is None else float(_number(cpu_seconds)),
        memory_peak=None if memory_peak is None else _int(memory_peak),
        run_as=account,
        run_as_uid=None if run_as_uid is None else _int(run_as_uid),
        input=Input(_text(stdin)),
        isolation=_isolation(isolation),
        external_id=_text(external_id),
        timeout=None if timeout is None else _timeout(timeout),
        name=_text(name),
        labels=_labels(labels),
    )


def _labels(value: object) -> dict[str, str]:
    found = json.loads(_text(value))
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        raise ValueError("labels is not an object of strings")
    return dict(sorted(found.items()))


def _isolation(value: object) -> Isolation:
    try:
        return Isolation.parse(_text(value))
    except InvalidRequest as exc:
        raise ValueError(str(exc)) from None


def _timeout(value: object) -> float:
    seconds = _number(value)
    if not 0 < seconds < float("inf"):
        raise ValueError(f"timeout {seconds!r} is not a positive number of seconds")
    return seconds


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, found {type(value).__name__}")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected an integer, found {type(value).__name__}")
    return value


def _number(value: object) -> float:
    if not isinstance(value, int | float):
        raise TypeError(f"expected a number, found {type(value).__name__}")
    return float(value)


def _time(value: object) -> datetime:
    return datetime.fromtimestamp(_number(value), UTC)


def time_or_none(value: object) -> datetime | None:
    """A time from the database, or None where it is missing or not a plausible time."""
    try:
        return _time(value)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """A write transaction, taking the write lock at once; within one already open (a group
    commit, lane.py), a savepoint of it, which the group's COMMIT makes durable."""
    if db.in_transaction:
        db.execute("SAVEPOINT one")
        try:
            yield
        except BaseException:
            if db.in_transaction:  # some errors roll the whole transaction back
                db.execute("ROLLBACK TO one")
                db.execute("RELEASE one")
            raise
        db.execute("RELEASE one")
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")

"""How long finished jobs are kept: by count, by age and by the state dir's size.

The manager runs ``Retainer.run`` as a task of its nursery. It deletes the oldest finished
jobs (those that ended first), record, output log and the log's time index together, while
any limit is exceeded; then it sleeps until a job ends or the oldest finished job comes of
age. There is no polling. Running jobs are never deleted.
"""

import contextlib
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio

from .errors import InvalidRequest, StoreError
from .status import JobStatus
from .store import JobStore
from .times import times_path

log = logging.getLogger("jogger.engine")

BATCH = 100
"""Records deleted per transaction, so that other calls get the store in between: about
2 ms each with 100,000 jobs on record, about 5 when each has two or three labels (measured),
so a start never waits long behind it."""
RETRY = 60.0
"""Seconds before trying again when the store failed."""
MAX_DAYS = 36500


@dataclass(frozen=True, slots=True)
class Retention:
    """None means no limit of that kind. ``max_state_bytes`` counts the output logs of all
    jobs and the database; only finished jobs are deleted to meet it. The logs' time
    indexes (times.py) are not counted: their sizes are not recorded, and a stat per job
    at each expiry would cost too much with 100k jobs; each is at most 64 KiB plus 1/16 of
    its log plus 16 bytes per second of its run, usually far less (the README says so)."""

    max_jobs: int | None = None
    max_days: float | None = None
    max_state_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_jobs", "max_days", "max_state_bytes"):
            value = getattr(self, name)
            if value is None:
                continue
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not math.isfinite(value)
                or value < 0
            ):
                raise InvalidRequest(f"retention {name} must be a non-negative number")
        if self.max_days is not None and self.max_days > MAX_DAYS:
            raise InvalidRequest(f"retention max_days must be at most {MAX_DAYS}")

    @property
    def empty(self) -> bool:
        return self.max_jobs is None and self.max_days is None and self.max_state_bytes is None


class Retainer:
    """Deletes what ``Retention`` says is too old; wake it with ``job_ended``."""

    def __init__(
        self,
        retention: Retention,
        store: JobStore,
        *,
        logs_dir: Path,
        state_files: list[Path],
        live_bytes: Callable[[], int],
        live_ids: Callable[[], set[str]],
    ) -> None:
        self._retention = retention
        self._store = store
        self._logs_dir = logs_dir
        self._state_files = state_files
        self._live_bytes = live_bytes
        self._live_ids = live_ids
        """Jobs in memory: running, or ended with followers; never deleted."""
        self._wake = trio.Event()
        self._count = 0
        self._bytes = 0
        self._oldest: datetime | None = None

    def job_ended(self, status: JobStatus) -> None:
        """A finished job was recorded: count it, and check the limits again."""
        self._count += 1
        self._bytes += status.output_bytes
        if self._oldest is None:
            self._oldest = status.ended_at
        self._wake.set()

    async def run(self) -> None:
        if self._retention.empty:
            return
        # Counted once; from then on kept up to date here, so that a job's end costs no scan.
        while True:
            try:
                self._count, self._bytes = await self._store.totals()
                self._oldest = await self._store.oldest_end()
                break
            except StoreError as exc:
                log.error("counting finished jobs failed: %s; retrying in %.0f s", exc, RETRY)
                await trio.sleep(RETRY)
        while True:
            self._wake = trio.Event()
            wake_at = math.inf
            if self._due():
                try:
                    deleted = await self._expire_once()
                except (StoreError, OSError) as exc:
                    log.error("deleting old jobs failed: %s; retrying in %.0f s", exc, RETRY)
                    await trio.sleep(RETRY)
                    continue
                if deleted == BATCH:
                    continue  # more may be due; the store's limiter let others in meanwhile
                if deleted == 0:
                    # Due, yet nothing could go (all in use): look again when a job ends, or
                    # in a while, never in a busy loop.
                    wake_at = trio.current_time() + RETRY
            wake_at = min(wake_at, self._next_birthday())
            with trio.move_on_at(wake_at):
                await self._wake.wait()

    def _next_birthday(self) -> float:
        """When (trio time) the oldest finished job passes the age limit; inf if never."""
        if self._retention.max_days is None or self._oldest is None:
            return math.inf
        try:
            due = self._oldest + timedelta(days=self._retention.max_days)
        except OverflowError:
            return math.inf  # past the year 9999: a damaged time
        return trio.current_time() + max(0.0, (due - datetime.now(UTC)).total_seconds())

    def _budget(self) -> int | None:
        """What the finished jobs' output may take, after the live jobs and the database."""
        if self._retention.max_state_bytes is None:
            return None
        return self._retention.max_state_bytes - self._live_bytes() - _sizes(self._state_files)

    def _before(self) -> datetime | None:
        if self._retention.max_days is None:
            return None
        return datetime.now(UTC) - timedelta(days=self._retention.max_days)

    def _due(self) -> bool:
        r, budget, before = self._retention, self._budget(), self._before()
        return (
            (r.max_jobs is not None and self._count > r.max_jobs)
            or (budget is not None and self._bytes > budget)
            or (before is not None and self._oldest is not None and self._oldest < before)
        )

    async def _expire_once(self) -> int:
        expired = await self._store.expire(
            keep_jobs=self._retention.max_jobs,
            before=self._before(),
            max_bytes=self._budget(),
            count=self._count,
            total=self._bytes,
            batch=BATCH,
            keep=self._live_ids(),
        )
        # Subtracted, not assigned: jobs that ended meanwhile have been counted already.
        self._count -= len(expired.job_ids)
        self._bytes -= expired.bytes_freed
        self._oldest = expired.oldest_end
        if expired.job_ids:
            paths = [p for job_id in expired.job_ids for p in self._files_of(job_id)]
            # Shielded: the records are gone, so their logs must go too, even at shutdown
            # (a clean start does not look for orphans). Bounded: one unlink per record.
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_unlink_all, paths)
            log.info(
                "deleted %d old jobs; %d finished jobs (%d output bytes) kept",
                len(expired.job_ids),
                self._count,
                self._bytes,
            )
        return len(expired.job_ids)

    async def sweep_orphans(self) -> None:
        """Delete output logs (and time indexes) that have no job record: a crash came
        between deleting the record and its log, or between creating a job's log and
        recording its start."""
        names = await trio.to_thread.run_sync(_log_names, self._logs_dir)
        known = await self._store.ids_among(names)
        # A job that is starting has its log before its record: it is live, so kept.
        live = self._live_ids()
        orphans = [n for n in names if n not in known and n not in live]
        if orphans:
            log.warning("deleting %d output logs that have no job record", len(orphans))
            paths = [p for name in orphans for p in self._files_of(name)]
            await trio.to_thread.run_sync(_unlink_all, paths)

    def _files_of(self, job_id: str) -> list[Path]:
        """A job's files in the logs dir: its output log and the log's time index."""
        log_path = self._logs_dir / f"{job_id}.log"
        return [log_path, times_path(log_path)]


def _log_names(logs_dir: Path) -> list[str]:
    """The job ids the logs dir has files of (a log, or an index left without its log)."""
    names = {os.path.splitext(name) for name in os.listdir(logs_dir)}
    return sorted(stem for stem, suffix in names if suffix in (".log", ".times"))


def _sizes(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):  # not created yet
            total += path.stat().st_size
    return total


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot delete %s: %s", path, exc.strerror)

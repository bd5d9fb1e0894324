"""The job queue at work: jobs queued on record, started as room frees, stopped, reloaded.

The order is queue.py's; the rows are the store's (queue_rows.py, which says why a crash
never loses a queued job, nor runs one twice on record). A job is *pending* from the
moment it is queued until it has left the queue: started (the manager holds it as a
running job), stopped while queued (STOPPED, reason ``dequeued``), or failed to start
(FAILED, reason ``start-failed``; its output says why). A job being started has left the
order but is still pending: a stop or a follower waits for its start, then deals with the
running job.

Room is handed out synchronously (``pump``) whenever it may have freed: a job ended, a
start failed, a job was queued. So a start that does not queue never slips in ahead of
queued jobs that could have used the room. At shutdown the queued jobs stay queued on
record, for the next manager.
"""

import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import trio

from .capacity import Capacity
from .errors import JobError, ManagerClosed, StoreError
from .executor import Spec
from .queue import JobQueue, Queued
from .request import StartRequest, decode, encode
from .status import CAPACITY, JobState, JobStatus
from .store import JobStore

log = logging.getLogger("jogger.engine")

DEQUEUED = "dequeued"
START_FAILED = "start-failed"

RETRY_FIRST = 1.0
RETRY_MOST = 60.0
"""Bounds of the backoff before the queue tries again a start that failed for want of
something on the host (a full disk, fds): doubled after each failure, reset by a start."""

Launch = Callable[[Queued], Awaitable[None]]
"""Start a queued job whose room is reserved (Capacity.reserve), and hold it as running:
JobError if it cannot start."""


def queued_status(spec: Spec, containment: str) -> JobStatus:
    """The status of ``spec``'s job as it is queued: ``started_at`` is when it was
    queued, until it starts."""
    account = spec.account
    return JobStatus(
        id=spec.job_id,
        owner=spec.owner,
        argv=spec.argv,
        state=JobState.QUEUED,
        pid=0,
        started_at=datetime.now(UTC),
        reason=CAPACITY,
        containment=containment,
        limits=spec.limits,
        run_as=account.name if account is not None else "",
        run_as_uid=account.uid if account is not None else None,
        input=spec.input,
        isolation=spec.isolation,
        timeout=spec.timeout,
        name=spec.name,
        labels=spec.labels,
    )


class QueuedJobs:
    def __init__(
        self,
        store: JobStore,
        capacity: Capacity,
        order: JobQueue,
        *,
        logs_dir: Path,
    ) -> None:
        self.order = order
        self._store = store
        self._capacity = capacity
        self._logs_dir = logs_dir
        self._pending: dict[str, Queued] = {}
        self._arriving: Counter[str] = Counter()
        self._nursery: trio.Nursery | None = None
        self._launch: Launch | None = None
        self._closing = False
        self._stranded: set[str] = set()
        """Jobs that could not start, whose failure could not be recorded: queued on
        record, but no longer here."""
        self._retrying = False
        self._retry_delay = 0.0
        """The last backoff before a failed start was tried again; 0 once one started."""

    async def load(self) -> None:
        """Read the queue a manager before us left on record, in its order."""
        for seq, status, text in await self._store.queued():
            if status is None:
                continue  # damaged: logged by the store, and not found by anyone
            try:
                if text is None:
                    raise ValueError("no start request on record")
                request = decode(text)
            except (ValueError, TypeError, KeyError) as exc:
                log.error("queued job %s cannot be started: %s", status.id, exc)
                await self._fail(status.id, f"its start request cannot be read: {exc}")
                continue
            entry = Queued(dataclasses.replace(status, reason=CAPACITY), request, seq)
            self.order.push(entry)
            self._pending[entry.id] = entry
        if self._pending:
            log.info("%d queued jobs found on record", len(self._pending))

    def open(self, nursery: trio.Nursery, launch: Launch) -> None:
        """Start the queued jobs there is room for, in ``nursery``, and from now on each
        as room frees."""
        self._nursery = nursery
        self._launch = launch
        self.pump()

    def close(self) -> None:
        """Shutdown: start no more; the queued jobs stay queued on record, and whoever
        waits for one is told the manager closes (starts under way finish)."""
        self._closing = True
        self._nursery = None
        for entry in self.order:
            entry.left.set()

    def counts(self) -> dict[str, int]:
        """Jobs waiting in the queue, per owner (the metrics' gauge)."""
        return dict(Counter(entry.owner for entry in self.order))

    def find(self, job_id: str, owner: str) -> JobStatus | None:
        """The status of ``owner``'s pending job, with its position; None if there is none."""
        entry = self._pending.get(job_id)
        if entry is None or entry.owner != owner:
            return None
        return self.status(entry)

    def status(self, entry: Queued) -> JobStatus:
        return dataclasses.replace(entry.status, queue_position=self.order.position(entry))

    def live(self, status: JobStatus) -> JobStatus:
        """``status`` from the store, with the position of a job still pending."""
        entry = self._pending.get(status.id)
        return status if entry is None else self.status(entry)

    async def enqueue(self, status: JobStatus, request: StartRequest) -> JobStatus:
        """Queue the job ``status`` describes (state QUEUED), on record first. Raises
        LimitExceeded when the queue is full, StoreError if it cannot be recorded.
        Cancellation: deferred while it is recorded; a caller cancelled by then leaves a
        queued job."""
        self.order.check_room(status.owner, self._arriving)
        status = dataclasses.replace(status, state=JobState.QUEUED, reason=CAPACITY)
        self._arriving[status.owner] += 1
        try:
            try:
                # Shielded: a row written must be in the queue too, whatever becomes of the
                # caller. Bounded by the store's busy timeout and the disk.
                with trio.CancelScope(shield=True):
                    seq = await self._store.record_queued(status, encode(request))
            finally:
                self._arriving[status.owner] -= 1
                if not self._arriving[status.owner]:
                    del self._arriving[status.owner]
        except BaseException:
            self.pump()  # the owner's jobs it held back (``_may_start``) may start now
            raise
        entry = Queued(status, request, seq)
        self.order.push(entry)
        self._pending[entry.id] = entry
        if self._closing:
            entry.left.set()
        log.info("job queued id=%s owner=%s argv=%r", status.id, status.owner, status.argv)
        self.pump()  # room may have freed while it was recorded
        return self.status(entry)

    def pump(self) -> None:
        """Start as many queued jobs as there is room for, the fairest first (queue.py)."""
        while self._nursery is not None and self._launch is not None:
            entry = self.order.pop_next(self._may_start)
            if entry is None:
                return
            # Its owner's turn is taken now, once (not again when it runs: the turns
            # follow the order rooms were handed out in, not how long spawns took).
            self.order.started(entry.owner)
            self._capacity.reserve(entry.owner)
            self._nursery.start_soon(self._start, entry, self._launch)

    def waiting(self, owner: str) -> bool:
        """Whether ``owner`` has jobs queued, or being queued: a new one of theirs goes
        behind them."""
        return self.order.waiting(owner) or owner in self._arriving

    def _may_start(self, owner: str) -> bool:
        # Not while one of the owner's jobs is being queued: it may come before those
        # queued since (the store's order), and is pushed, and the queue pumped, once it
        # is on record.
        return owner not in self._arriving and self._capacity.allows(owner)

    async def _start(self, entry: Queued, launch: Launch) -> None:
        try:
            await launch(entry)
        except (StoreError, OSError) as exc:
            # Nothing could be recorded (a full disk), or the host is short of something
            # (fds): it stays queued, on record and here, and is tried again once room
            # frees next, after a backoff, or by the next manager. Not at once: that could
            # loop.
            log.error("queued job %s could not start, and stays queued: %s", entry.id, exc)
            self.order.push(entry)
            self._put_back(entry)
            return
        except JobError as exc:
            # The job itself cannot start (its cwd is gone, say): it fails, saying why.
            log.warning("queued job %s could not start: %s", entry.id, exc)
            try:
                await self._fail(entry.id, str(exc))
            except StoreError as error:
                # It stays queued on record, for the next manager to try (and fail) again.
                log.error("queued job %s: its failure could not be recorded: %s", entry.id, error)
                self._stranded.add(entry.id)
            self.pump()  # its room is free again
        else:
            self._retry_delay = 0.0  # it started: the host can start jobs again
        # Left: started, or failed on record.
        del self._pending[entry.id]
        entry.left.set()

    def _put_back(self, entry: Queued) -> None:
        """``entry``, whose start failed, is queued again: wake whoever waits for its start
        (a stop looks again, and finds it queued), and try the queue again later."""
        entry.left.set()
        if self._closing:
            return  # it stays queued for the next manager: its waiters are told so
        entry.left = trio.Event()  # those who wait from now on wait for its next start
        if self._retrying or self._nursery is None:
            return
        self._retrying = True
        self._retry_delay = min(RETRY_MOST, max(RETRY_FIRST, 2 * self._retry_delay))
        self._nursery.start_soon(self._retry, self._retry_delay)

    async def _retry(self, delay: float) -> None:
        """Pump the queue after ``delay`` seconds, for a start that failed for want of
        something (disk, fds) that may have come back though no job ended. Cancellation:
        the manager's shutdown ends it, harmlessly."""
        await trio.sleep(delay)
        self._retrying = False
        self.pump()

    async def stop(self, job_id: str) -> JobStatus | None:
        """Take a queued job out of the queue and record it stopped (reason ``dequeued``);
        None if it is no longer queued (it has started, or is starting: then it has once
        this returns, or is queued again). StoreError if it could not start and that could
        not be recorded. Cancellation: deferred while it is recorded."""
        entry = self._pending.get(job_id)
        if entry is None:
            await trio.lowlevel.checkpoint()
            if job_id in self._stranded:
                # Else its stopper would find it queued on record, and try again, forever.
                raise StoreError(
                    f"job {job_id} could not start, and its failure could not be recorded: "
                    "it stays queued on record until the server restarts"
                )
            return None
        if self.order.get(job_id) is None:  # being started
            await entry.left.wait()
            return None
        self.order.remove(entry)  # first: no pump may start it meanwhile
        now = datetime.now(UTC)
        try:
            # Shielded: as the end of a running job's, its record must not be half done.
            with trio.CancelScope(shield=True):
                await self._store.end_queued(job_id, JobState.STOPPED, DEQUEUED, now, 0)
        except BaseException:
            self.order.push(entry)
            raise
        del self._pending[job_id]
        entry.left.set()
        log.info("job dequeued id=%s owner=%s", job_id, entry.owner)
        return dataclasses.replace(
            entry.status, state=JobState.STOPPED, reason=DEQUEUED, ended_at=now
        )

    async def left(self, job_id: str) -> None:
        """Return once the pending job ``job_id`` has left the queue (at once if it has).
        ManagerClosed if it stays queued because the manager is shutting down."""
        entry = self._pending.get(job_id)
        if entry is not None and not self._closing:
            await entry.left.wait()
            return
        await trio.lowlevel.checkpoint()
        if self._closing:
            raise ManagerClosed("the server is shutting down: the job stays queued for the next")
        if entry is None:
            raise StoreError(f"job {job_id} is queued on record, but not in the queue")

    async def _fail(self, job_id: str, why: str) -> None:
        """Record a queued job that could not start as failed, with why in its output."""
        message = f"jogger: the job could not start: {why}\n".encode()
        path = self._logs_dir / f"{job_id}.log"
        try:
            # Small, once: not worth a thread. Readable by the server's user alone, as logs are.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, message)
            finally:
                os.close(fd)
            size = len(message)
        except OSError as exc:
            log.error("job %s: its start failure could not be written: %s", job_id, exc)
            size = 0
        now = datetime.now(UTC)
        await self._store.end_queued(job_id, JobState.FAILED, START_FAILED, now, size)

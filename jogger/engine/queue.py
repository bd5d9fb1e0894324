"""The order of the job queue: first in, first out for each owner, and fair between owners.

A job is queued when its owner asked for that (``start(queue=True)``) and a concurrency
limit (ManagerLimits.max_jobs or max_jobs_per_owner) refuses it now. When room frees, the
next job to start is chosen among the owners whose first queued job the limits let start:
the owner whose last start is longest ago goes first (an owner with no start since this
manager began, before any other), and between those that tie, the owner whose first job
was queued first. Each owner's jobs start in the order they were queued. So two owners
with queued jobs take turns, whoever queued more; and an owner held back by their own
limit holds nobody else back.

A job's position (``position``) is its place in its owner's line, from 1: the number of
that owner's jobs that start before it, plus one. It shrinks as the line moves. Where it
stands among every owner's jobs depends on who else queues later, so it is not told.

The queue is bounded: ``max_queued`` jobs in all, ``max_per_owner`` for one owner; past
either, LimitExceeded. This module is only the order, in memory; queued.py keeps it on
record and starts its jobs.
"""

import itertools
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import trio

from .errors import LimitExceeded
from .request import StartRequest
from .status import JobStatus


@dataclass(eq=False)
class Queued:
    """A queued job: its status as queued (state QUEUED) and its start request."""

    status: JobStatus
    request: StartRequest
    order: int = 0
    """Its place in the order of arrival (the store's seq)."""
    left: trio.Event = field(default_factory=trio.Event)
    """Set once it has left the queue: started (and in the manager's jobs), stopped, or
    failed to start; or the manager shuts down, and it stays queued for the next. A start
    that puts it back (queued.py) sets it too, to wake its waiters, and gives it a new one."""

    @property
    def id(self) -> str:
        return self.status.id

    @property
    def owner(self) -> str:
        return self.status.owner


class JobQueue:
    def __init__(self, max_queued: int, max_per_owner: int) -> None:
        self._max_queued = max_queued
        self._max_per_owner = max_per_owner
        self._lines: dict[str, deque[Queued]] = {}
        """Each owner's queued jobs, first first; an owner with none has no line."""
        self._by_id: dict[str, Queued] = {}
        self._starts = itertools.count(1)
        self._last_start: dict[str, int] = {}
        """When each owner last started a job, as a count of starts (0: not since we began)."""

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Queued]:
        return iter(list(self._by_id.values()))

    def check_room(self, owner: str, arriving: Counter[str]) -> None:
        """Raise LimitExceeded unless one more job of ``owner``'s may be queued, counting
        the jobs ``arriving`` (being queued, not yet pushed) too."""
        if self._max_queued == 0 or self._max_per_owner == 0:
            raise LimitExceeded("the job limit is reached, and this server queues no jobs")
        total = len(self._by_id) + arriving.total()
        if total >= self._max_queued:
            raise LimitExceeded(
                f"the job limit is reached, and the queue is full: {total} jobs are "
                f"queued; the limit is {self._max_queued}"
            )
        mine = len(self._lines.get(owner, ())) + arriving[owner]
        if mine >= self._max_per_owner:
            raise LimitExceeded(
                f"the job limit is reached, and {mine} of your jobs are queued; the limit "
                f"is {self._max_per_owner}"
            )

    def waiting(self, owner: str) -> bool:
        """Whether ``owner`` has jobs queued (a new one of theirs goes behind them)."""
        return owner in self._lines

    def push(self, entry: Queued) -> None:
        """Queue ``entry`` in its owner's line, by its ``order`` (room checked by the
        caller: jobs reloaded from the store, or put back, are queued whatever the bounds
        are now)."""
        line = self._lines.setdefault(entry.owner, deque())
        at = len(line)
        while at and line[at - 1].order > entry.order:
            at -= 1
        line.insert(at, entry)
        self._by_id[entry.id] = entry

    def get(self, job_id: str) -> Queued | None:
        return self._by_id.get(job_id)

    def remove(self, entry: Queued) -> None:
        """Take ``entry`` out of the queue (stopped, or shutdown)."""
        if self._by_id.pop(entry.id, None) is None:
            return
        line = self._lines[entry.owner]
        line.remove(entry)
        if not line:
            del self._lines[entry.owner]

    def position(self, entry: Queued) -> int:
        """``entry``'s place in its owner's line, from 1; 0 if it is not queued."""
        if entry.id not in self._by_id:
            return 0
        return self._lines[entry.owner].index(entry) + 1

    def started(self, owner: str) -> None:
        """A job of ``owner``'s started (queued or not): they go to the back of the turns."""
        self._last_start[owner] = next(self._starts)

    def pop_next(self, may_start: Callable[[str], bool]) -> Queued | None:
        """Take out the job to start next, among the owners ``may_start`` lets start one;
        None if there is none."""
        ready = [owner for owner in self._lines if may_start(owner)]
        if not ready:
            return None
        owner = min(ready, key=lambda o: (self._last_start.get(o, 0), self._lines[o][0].order))
        entry = self._lines[owner][0]
        self.remove(entry)
        return entry

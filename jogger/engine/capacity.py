"""The manager's capacity: jobs running per owner and in all, against its ManagerLimits.

A job counts from the start of its spawn, not from its end: other starts run while one
awaits its spawn, and must see it against the limits. It stops counting when it ends, or
when its start fails. Starts under way are tracked too, so that shutdown can let them
finish (a spawn is never abandoned) before it stops every job.
"""

from collections import Counter

import trio

from .errors import LimitExceeded
from .limits import ManagerLimits


class Capacity:
    def __init__(self, limits: ManagerLimits) -> None:
        self._limits = limits
        self._running: Counter[str] = Counter()
        """Jobs per owner, counted from the start of their spawn."""
        self._starting = 0
        """Starts past their checks and not yet on record."""
        self._started = trio.lowlevel.ParkingLot()
        """Where shutdown waits for them."""

    def check(self, owner: str) -> None:
        """Raise LimitExceeded unless ``owner`` may start one more job now."""
        total = self._running.total()
        if total >= self._limits.max_jobs:
            raise LimitExceeded(f"{total} jobs are running; the limit is {self._limits.max_jobs}")
        mine = self._running[owner]
        if mine >= self._limits.max_jobs_per_owner:
            raise LimitExceeded(
                f"{mine} of your jobs are running; the limit is {self._limits.max_jobs_per_owner}"
            )

    def allows(self, owner: str) -> bool:
        """Whether ``owner`` may start one more job now."""
        return (
            self._running.total() < self._limits.max_jobs
            and self._running[owner] < self._limits.max_jobs_per_owner
        )

    def reserve(self, owner: str) -> None:
        """Count a job of ``owner``'s from now on, and a start under way: ``start_done``
        once it is on record or has failed. Its end, or the failure of its start, must
        call ``ended``."""
        self._running[owner] += 1
        self._starting += 1

    def start_done(self) -> None:
        self._starting -= 1
        if not self._starting:
            self._started.unpark_all()

    def adopted(self, owner: str) -> None:
        """Count a running job of ``owner``'s that a server before us started."""
        self._running[owner] += 1

    def ended(self, owner: str) -> None:
        """A job of ``owner``'s has ended, or its start failed."""
        self._running[owner] -= 1
        if self._running[owner] == 0:
            del self._running[owner]

    async def starts_done(self) -> None:
        """Return once no start is under way. Cancellation: shielded (see below)."""
        # Shielded: the spawn and its record must finish whatever happens to us; bounded by
        # SPAWN_TIMEOUT and the store's busy timeout.
        with trio.CancelScope(shield=True):
            while self._starting:
                await self._started.park()

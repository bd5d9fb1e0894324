"""Rate limits for what a peer can make the server do many times: log a line, reset a stream.

Both are token buckets: ``burst`` at once, then ``per_second``. A log line that a peer
triggers (a refused handshake, a refused stream, a protocol error) goes through a
``LogThrottle``, so a peer that fails ten thousand times a second writes a few lines and a
count, not a flood.
"""

import logging
import time
from collections.abc import Callable

LOG_BURST = 20
"""Lines of one kind a peer may make the server log at once; the audit log's authentication
failures are held to the same rates."""
LOG_PER_SECOND = 1.0
"""Lines of one kind after the burst."""


class Allowance:
    """A token bucket: ``burst`` events at once, ``per_second`` after that."""

    def __init__(
        self, burst: float, per_second: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._burst = burst
        self._rate = per_second
        self._clock = clock
        self._tokens = burst
        self._last = clock()

    def take(self) -> bool:
        """Spend one token; False when none is left."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class LogThrottle:
    """Logs at most ``burst`` lines of one kind at once and ``per_second`` after that.

    The next line of a kind that had lines dropped says how many.
    """

    def __init__(
        self, logger: logging.Logger, burst: int = LOG_BURST, per_second: float = LOG_PER_SECOND
    ) -> None:
        self._logger = logger
        self._burst = burst
        self._rate = per_second
        self._kinds: dict[str, tuple[Allowance, int]] = {}

    def log(self, kind: str, level: int, message: str, *args: object) -> None:
        if not self._logger.isEnabledFor(level):
            return
        allowance, dropped = self._kinds.get(kind) or (Allowance(self._burst, self._rate), 0)
        if not allowance.take():
            self._kinds[kind] = (allowance, dropped + 1)
            return
        self._kinds[kind] = (allowance, 0)
        if dropped:
            message += " (%d similar lines dropped)"
            args = (*args, dropped)
        self._logger.log(level, message, *args, stacklevel=2)

"""When a followed output stream that dropped is tried again: which failures are drops, how
long to wait between attempts, and when to give up. Pure: no I/O, the caller's clock.

A drop is the connection breaking, a server that cannot be reached, or a call ended
UNAVAILABLE (a server shutting down ends its streams so). A refusal (NOT_FOUND, a rejected
certificate) is an answer, and asking again would get the same one.
"""

import random
from collections.abc import Callable, Iterator

from ..rpc.errors import RpcError, StatusCode
from ..rpc.failures import ServerCertificateRejected, TransportError

FIRST_DELAY = 0.1
MAX_DELAY = 2.0
JITTER = 0.1
"""Each wait is off by up to this fraction, so that the followers of a restarted server do
not all come back in the same instant."""

# How rpc/channel.py words a server that answered the TLS handshake and refused us, or one
# that broke the protocol: tests/cli/test_resume.py holds these to channel.py's words.
_REFUSALS = (
    "the server requires a client certificate",
    "the server rejected our client certificate",
    "the server sent a response we refuse",
)


def is_drop(exc: BaseException) -> bool:
    """Whether ``exc`` means that the connection dropped or the server is away, rather than
    that it refused us; for a group, whether every exception in it does."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_drop(inner) for inner in exc.exceptions)
    if isinstance(exc, RpcError):
        return exc.code is StatusCode.UNAVAILABLE
    if isinstance(exc, ServerCertificateRejected):
        return False
    if isinstance(exc, TransportError):
        return not str(exc).startswith(_REFUSALS)
    return False


def describe_drop(exc: BaseException) -> str:
    """What went wrong, in a few words, for the error that ends the waiting."""
    if isinstance(exc, BaseExceptionGroup):
        return describe_drop(exc.exceptions[0])
    if isinstance(exc, RpcError):
        return f"unavailable: {exc.message}"
    return str(exc)


def backoff(
    first: float = FIRST_DELAY,
    cap: float = MAX_DELAY,
    jitter: float = JITTER,
    uniform: Callable[[float, float], float] = random.uniform,
) -> Iterator[float]:
    """Delays: ``first``, doubling up to ``cap``, each scaled by 1 +/- up to ``jitter``."""
    delay = first
    while True:
        yield delay * uniform(1 - jitter, 1 + jitter)
        delay = min(delay * 2, cap)


def after_drop(outage: "Outage | None", timeout: float, now: float) -> "Outage":
    """The outage a drop at ``now`` is part of: a new one, or ``outage`` going on."""
    if outage is None:
        return Outage(timeout, now)
    outage.dropped(now)
    return outage


class Outage:
    """From a drop until the resumed stream delivers again.

    Only the time spent getting back (from a drop until the server answers) counts against
    ``timeout``: a stream that was back but quiet (a job that prints nothing for an hour)
    and then dropped again, before it delivered a byte, does not use up the time left.
    """

    def __init__(self, timeout: float, now: float, delays: Iterator[float] | None = None) -> None:
        self._timeout = timeout
        self._delays = backoff() if delays is None else delays
        self._spent = 0.0
        self._down_since = now
        self._up = False
        self._announced = False

    @property
    def deadline(self) -> float:
        """When this outage gives up, unless the server answers before."""
        return self._down_since + self._timeout - self._spent

    def wait(self, now: float) -> float | None:
        """Seconds to wait before the next attempt; None once the time is up."""
        left = self.deadline - now
        if left <= 0:
            return None
        return min(next(self._delays), left)

    def reconnected(self, now: float) -> bool:
        """The server answers again at ``now``; True the first time in this outage, when the
        user is to be told."""
        if not self._up:
            self._spent += now - self._down_since
            self._up = True
        first, self._announced = not self._announced, True
        return first

    def dropped(self, now: float) -> None:
        """Down again at ``now``, before the resumed stream delivered: the outage goes on,
        with the time it has left, and its backoff where it was."""
        if self._up:
            self._down_since = now
            self._up = False

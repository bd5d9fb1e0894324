"""How long a caller's job may run: jogger-server's ``--default-timeout`` and
``--max-timeout`` policy.

- A request that asks for a timeout gets it, unless it is over the maximum: then it is
  refused (INVALID_ARGUMENT), as a limit over ``--max-limits`` is, never cut down to the
  maximum, since a job that silently gets less time than asked for fails later and
  further from the cause.
- A request that does not ask gets the default: none unless set, and with only
  ``--max-timeout`` set, the maximum (else a job would get around it by not asking).
- Neither flag set: no timeout unless a job asks for one.

The engine keeps the time (the job's supervisor, or Slurm) and checks each value's sanity
(validate.check_timeout); this is only the policy.
"""

import math
from dataclasses import dataclass
from datetime import timedelta

from .._units import format_duration, parse_duration
from ..engine import InvalidRequest
from ..engine.validate import MAX_TIMEOUT, check_timeout


class TimeoutOverMaximum(Exception):
    """The caller asked for a longer timeout than the server allows."""


@dataclass(frozen=True)
class TimeoutPolicy:
    default: float | None = None
    """Seconds, for requests that do not say; None: no timeout."""
    maximum: float | None = None
    """Seconds a request may ask for at most; None: up to the engine's MAX_TIMEOUT. A job
    that does not ask gets the default, which is within it (checked by ``create``)."""

    @classmethod
    def create(cls, default: str | None, maximum: str | None) -> "TimeoutPolicy":
        """The policy from the flags' texts (``90s``, ``15m``, ``2h``, ``1h30m``; None:
        not given). ValueError, naming the flag, for a bad one, or a default over the
        maximum."""
        first = _seconds("--default-timeout", default)
        most = _seconds("--max-timeout", maximum)
        if most is None:
            return cls(first, None)
        if first is not None and first > most:
            raise ValueError(f"--default-timeout {default} is over --max-timeout {maximum}")
        return cls(most if first is None else first, most)

    def resolve(self, asked: float | None) -> float | None:
        """The timeout of a job that asks for ``asked`` seconds (None: it did not say).
        Raises TimeoutOverMaximum past the maximum (the engine checks the rest)."""
        if asked is None:
            return self.default
        if self.maximum is not None and asked > self.maximum:
            raise TimeoutOverMaximum(
                f"timeout {format_duration(asked)} is over the server's maximum of "
                f"{format_duration(self.maximum)}"
            )
        return asked

    def describe(self) -> str:
        """The policy, for the server's first log line."""
        return f"default_timeout={_text(self.default)} max_timeout={_text(self.maximum)}"


def _text(seconds: float | None) -> str:
    return "none" if seconds is None else format_duration(seconds)


def _seconds(flag: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        seconds = parse_duration(text) / timedelta(seconds=1)
    except ValueError as exc:
        raise ValueError(f"{flag}: {exc}") from None
    except OverflowError:  # past what a timedelta holds: too long, as below
        seconds = math.inf
    try:
        check_timeout(seconds)
    except InvalidRequest:
        raise ValueError(
            f"{flag} {text}: must be more than 0s and at most {format_duration(MAX_TIMEOUT)}"
        ) from None
    return seconds

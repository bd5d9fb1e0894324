"""What the Jobs API (proto/jogger/v1/jobs.proto) accepts, for both of its ends: jog checks
before it sends, the service when it serves. Light to import: jog loads it at every start."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..v1 import jobs_pb2

MAX_GRACE = 7 * 24 * 3600
"""The longest grace period a Stop may ask for, in seconds (a week); 0 to MAX_GRACE
inclusive."""

MAX_TIMEOUT = 366 * 24 * 3600
"""The longest timeout a Start may ask for, in seconds (a year; the engine's bound too,
validate.MAX_TIMEOUT); above 0 to MAX_TIMEOUT inclusive."""


def timeout_problem(seconds: float) -> str | None:
    """Why ``seconds`` is not a timeout a Start may ask for; None if it is one."""
    if not 0 < seconds <= MAX_TIMEOUT:
        return f"a timeout must be more than 0s and at most 366 days, not {seconds:.9g} s"
    return None


LIMIT_FIELDS = ("cpu", "cpu_weight", "memory", "io_weight", "pids")
"""The fields of a Limits message; a JobLimits has the same names."""


def limits_message(source: object) -> "jobs_pb2.Limits":
    """The Limits message of ``source``'s attributes of those names (a JobLimits, jog's
    parsed arguments); None there is 0 on the wire, proto3's "not set"."""
    from ..v1 import jobs_pb2  # noqa: PLC0415 - protobuf only when a message is made

    return jobs_pb2.Limits(**{name: getattr(source, name) or 0 for name in LIMIT_FIELDS})

"""Limits: what one job may use (JobLimits: what a caller may ask for, and what the server
allows), and what the manager holds all jobs to (ManagerLimits)."""

import math
from dataclasses import dataclass, fields, replace

from .._units import format_size, parse_size
from .errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class JobLimits:
    """A job's resource limits. None means no limit of that kind (or the server's default).

    ``cpu`` is in cores (0.5 is half of one core, as cpu.max or cfs_quota_us); ``cpu_weight``
    and ``io_weight`` are cgroup v2 weights, 1 to 10000, 100 being everyone's default;
    ``memory`` is the hard limit in bytes (past it the kernel's OOM killer ends the job);
    ``pids`` caps the processes and threads the job may have at once.
    """

    cpu: float | None = None
    cpu_weight: int | None = None
    memory: int | None = None
    io_weight: int | None = None
    pids: int | None = None

    def over(self, defaults: "JobLimits") -> "JobLimits":
        """These limits, with ``defaults`` filling in what is not set."""
        return replace(
            defaults,
            **{
                f.name: getattr(self, f.name)
                for f in fields(self)
                if getattr(self, f.name) is not None
            },
        )

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


@dataclass(frozen=True, slots=True)
class ManagerLimits:
    """What the manager enforces. Starting past a concurrency limit raises LimitExceeded;
    an argv past ``max_argv_bytes`` raises InvalidRequest; output past ``max_output_bytes``
    is dropped and the job's status says it was truncated."""

    max_jobs: int = 256
    """Jobs running at once, all owners together."""
    max_jobs_per_owner: int = 64
    """Jobs running at once for one owner."""
    max_argv_bytes: int = 128 * 1024
    """The encoded argv and env overrides together, with a NUL after each string."""
    max_output_bytes: int = 1 << 30
    """Bytes kept in each job's output log."""
    max_queued: int = 1000
    """Jobs waiting in the queue for room under the limits above, all owners together
    (queue.py); 0: no queue."""
    max_queued_per_owner: int = 100
    """Jobs waiting in the queue for one owner."""


MIN_MEMORY = 4 << 20
"""Below this a job cannot even exec a typical program."""


def check_limits(limits: JobLimits, maxima: JobLimits, *, what: str = "") -> None:
    """Raise InvalidRequest unless every limit is sane and within ``maxima``."""
    if limits.cpu is not None and not (
        isinstance(limits.cpu, int | float) and math.isfinite(limits.cpu) and limits.cpu >= 0.01
    ):
        raise InvalidRequest(f"{what}cpu must be at least 0.01 cores, not {limits.cpu!r}")
    for name in ("cpu_weight", "io_weight"):
        value = getattr(limits, name)
        if value is not None and not (isinstance(value, int) and 1 <= value <= 10000):
            raise InvalidRequest(f"{what}{name} must be from 1 to 10000, not {value!r}")
    if limits.memory is not None and not (
        isinstance(limits.memory, int) and limits.memory >= MIN_MEMORY
    ):
        raise InvalidRequest(f"{what}memory must be at least {MIN_MEMORY >> 20} MiB")
    if limits.pids is not None and not (isinstance(limits.pids, int) and limits.pids >= 1):
        raise InvalidRequest(f"{what}pids must be a positive integer, not {limits.pids!r}")
    for f in fields(limits):
        value, most = getattr(limits, f.name), getattr(maxima, f.name)
        if value is not None and most is not None and value > most:
            raise InvalidRequest(
                f"{what}{f.name} {format_limit(f.name, value)} is over the server's maximum "
                f"of {format_limit(f.name, most)}"
            )


def format_limit(name: str, value: float) -> str:
    if name == "memory":
        return format_size(int(value))
    if name == "cpu":
        return f"{value:g} cores"
    return f"{value:g}"


def parse_limits(text: str) -> JobLimits:
    """``cpu=1,memory=512M,pids=256,io-weight=100,cpu-weight=100``. ValueError if bad."""
    values: dict[str, float | int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        key = name.strip().replace("-", "_")
        if not sep or key not in {f.name for f in fields(JobLimits)}:
            raise ValueError(f"{item!r}: expected cpu=, cpu-weight=, memory=, io-weight= or pids=")
        try:
            if key == "memory":
                values[key] = parse_size(value)
            elif key == "cpu":
                values[key] = float(value)
            else:
                values[key] = int(value)
        except ValueError:
            raise ValueError(f"{item!r}: {value!r} is not a valid {name}") from None
    return JobLimits(**values)  # type: ignore[arg-type]

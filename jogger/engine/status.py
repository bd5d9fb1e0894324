"""What a caller can know about a job: its state and an immutable status snapshot."""

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .isolation import NONE, Isolation
from .limits import JobLimits

CAPACITY = "capacity"
"""The reason of a job that waits in the manager's queue (queue.py) for room."""


class JobState(enum.Enum):
    QUEUED = "queued"
    """Waiting to run: in the manager's queue for room under its job limits (reason
    ``capacity``, see queue.py), or started and waiting for a place in a cluster (Slurm's
    PENDING: reason says why)."""
    RUNNING = "running"
    COMPLETED = "completed"
    """Exited on its own with status 0."""
    FAILED = "failed"
    """Ended on its own with a non-zero status, or was killed by a signal we did not send."""
    STOPPED = "stopped"
    """Ended within the grace period after our SIGTERM."""
    KILLED = "killed"
    """Needed our SIGKILL."""

    @property
    def is_final(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


class Input(enum.Enum):
    """What a job's stdin is."""

    NONE = "none"
    """/dev/null."""
    PIPE = "pipe"
    """A pipe, which one writer feeds, once: its end is the job's EOF."""
    TERMINAL = "terminal"
    """A pseudo-terminal: the job's controlling terminal, and its stdin, stdout and stderr."""


@dataclass(frozen=True, slots=True)
class WindowSize:
    """A terminal's window, in characters (1 to 65535 each)."""

    rows: int
    cols: int


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A snapshot of one job. Times are timezone-aware UTC.

    Exactly one of ``exit_code`` and ``signal`` is set once the job has ended: ``exit_code`` when
    the main process exited, ``signal`` when a signal ended it. ``reason`` is empty unless
    something beyond the state explains the end: ``oom`` (the kernel's OOM killer),
    ``server-shutdown`` (stopped because the server shut down), ``capacity`` (queued:
    waiting for room under the job limits), ``dequeued`` (stopped while queued, never run),
    ``start-failed`` (queued, and could not start once there was room; its output says
    why), ``supervisor-lost`` (its
    supervisor died before it could record the end; killed), ``slurm-lost`` (Slurm forgot
    the job before its end was seen), ``timeout``, ``node-fail``, ``preempted``,
    ``boot-fail``, ``deadline``, ``cancelled`` (Slurm's words for its end; ``timeout`` is
    also a local job's that ran past its ``timeout``: then it is FAILED), ``host-reboot``
    (found running in the records of an earlier boot), ``server-crash`` (records of joggers before
    supervisors), ``disk-full`` or ``output-error`` (the output log could not be written;
    ``output_error`` says why).
    """

    id: str
    owner: str
    argv: tuple[str, ...]
    state: JobState
    pid: int
    started_at: datetime
    ended_at: datetime | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""
    output_bytes: int = 0
    output_truncated: bool = False
    output_error: str = ""
    containment: str = "none"
    """The containment backend: cgroup2, cgroup1 or none (the store's ``cgroup`` column, and
    the wire's ``cgroup`` field)."""
    limits: JobLimits = field(default_factory=JobLimits)
    """The limits in force (none at all with the "none" backend)."""
    cpu_seconds: float | None = None
    """CPU time used by the job's processes, from the cgroup; None without one."""
    memory_peak: int | None = None
    """The job's peak memory use in bytes, from the cgroup; None without one."""
    run_as: str = ""
    """The name of the local account the job runs as; "" when it was started with no account
    (so as the manager's own user), and on records written before accounts were kept."""
    run_as_uid: int | None = None
    """That account's uid: None exactly when ``run_as`` is "". Kept with the name because
    accounts are renamed, deleted and reused, and the uid is what owns the job's files."""
    input: Input = Input.NONE
    """What the job's stdin is."""
    isolation: Isolation = NONE
    """The namespaces the job runs in, and whether its root is read-only."""
    external_id: str = ""
    """The job's id in the executor that runs it: Slurm's job id; "" for local jobs."""
    timeout: float | None = None
    """Seconds the job may run, from ``started_at``; None: as long as it likes."""
    name: str = ""
    """What its owner calls the job (labels.py); "" for none, and on older records."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Its labels, key to value, in key order (labels.py); none on older records. Not to
    be changed: a status is a snapshot."""
    queue_position: int = 0
    """While in the manager's queue: its place in its owner's line, from 1 (queue.py); 0
    otherwise."""

    @property
    def deadline(self) -> datetime | None:
        """When the job's timeout ends it: ``started_at`` plus ``timeout``; fixed at the
        start, so a restarted server keeps it. None until it has left the manager's queue
        (``timeout`` is told meanwhile)."""
        if self.timeout is None or self.in_queue:
            return None
        return self.started_at + timedelta(seconds=self.timeout)

    @property
    def in_queue(self) -> bool:
        """Whether the job has yet to leave the manager's queue (at the head of it, it
        may be being started): ``started_at`` is when it was queued."""
        return self.state is JobState.QUEUED and self.reason == CAPACITY

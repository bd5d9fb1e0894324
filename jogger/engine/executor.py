"""The executor boundary: what runs a job's processes, as the manager and the job nursery
(job.py) see it. Small on purpose, as Nomad's is:

- **start** a job from its Spec (into a supervisor on this host, or into a cluster);
- **adopt** a job a server before us started (local: recovery.py finds its supervisor; Slurm:
  the job id on record);
- **stop** it (SIGTERM and a grace), or **kill** it now;
- and its **end**: an awaitable (``wait_exited``), then exit code or signal, usage and
  reason (``end``).

Two executors: the local one (local.py: a supervisor per job, supervisor.py and
supervise.c, and cgroups/) and Slurm (slurm/). The manager, the job nursery, the output log,
the store and retention do not change with the executor.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .account import Account
from .cgroups import JobGroup
from .isolation import NONE, Isolation
from .limits import JobLimits
from .rows import ProcessIdentity
from .status import Input, JobStatus, WindowSize
from .supervisor import End


@dataclass(frozen=True)
class Spec:
    """What a job is to run, checked already (validate.py): everything an executor needs."""

    job_id: str
    owner: str
    argv: tuple[str, ...]
    cwd: str | None
    env: Mapping[str, str]
    account: Account | None
    limits: JobLimits
    input: Input = Input.NONE
    window: WindowSize | None = None
    isolation: Isolation = NONE
    timeout: float | None = None
    """Seconds the job may run before it is stopped (its executor keeps the time); None:
    no limit."""
    name: str = ""
    """What its owner calls it (labels.py): for the record, not for the executor."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Its labels (labels.py): for the record, not for the executor."""


class Execution(Protocol):
    """One job as its executor runs it (supervisor.Supervisor, slurm.SlurmExecution)."""

    job_pid: int
    """The job's main process as this host numbers it; 0 where it runs elsewhere."""
    identity: ProcessIdentity
    """What the record keeps to find the executor's side again after a restart."""
    job_identity: ProcessIdentity
    external_id: str
    """The job's id in the executor (Slurm's job id); "" for the local one."""

    @property
    def exited(self) -> bool:
        """Whether the job's end is known (or its executor is gone)."""
        ...

    async def wait_exited(self) -> None:
        """Return once ``exited``."""
        ...

    def waiting(self) -> str | None:
        """Why the job has not started yet (a queue's reason), or None once it runs."""
        ...

    def committed(self) -> None:
        """The start is on record: from now on the job runs whatever becomes of us."""
        ...

    def abandon(self) -> None:
        """The start will not be on record: end the job, and record nothing."""
        ...

    def stop(self, grace: float) -> None:
        """SIGTERM to every process of the job; SIGKILL after ``grace`` if we do not say so
        sooner (kill_now) and cannot (we died mid-stop)."""
        ...

    def kill_now(self) -> None:
        """SIGKILL to every process of the job."""
        ...

    def end(self) -> End | None:
        """Once ``exited``: how the job ended; None if nothing recorded it (a supervisor
        killed, a cluster that forgot the job)."""
        ...

    async def kill_lost(self) -> None:
        """``end`` was None: kill whatever is left of the job, as far as can be proven
        to be its."""
        ...

    def close(self) -> None:
        """Release what we hold of it (fds, a child to reap)."""
        ...


class Executor(Protocol):
    """What starts jobs: LocalExecutor (local.py) or SlurmExecutor (slurm/)."""

    name: str

    @property
    def containment(self) -> str:
        """The JobStatus.containment of its jobs: cgroup2, cgroup1, none, or slurm."""
        ...

    def check(self, spec: Spec) -> None:
        """Raise InvalidRequest (or IsolationUnavailable) for what this executor cannot
        give the job, before anything is made."""
        ...

    def limits(self, requested: JobLimits, defaults: JobLimits) -> JobLimits:
        """The limits a job gets: ``requested`` (checked against the maxima already) over
        ``defaults``. InvalidRequest for a limit this executor cannot enforce."""
        ...

    def group(self, spec: Spec) -> JobGroup:
        """The job's containment on this host (a new cgroup; nothing for Slurm)."""
        ...

    def group_of(self, record: JobStatus) -> JobGroup:
        """The containment of a job on record that still runs, to adopt it."""
        ...

    async def run(self) -> None:
        """Whatever the executor does beside its jobs (Slurm: the watch), until cancelled
        once every job has ended."""
        ...

    async def start(self, spec: Spec, group: JobGroup, log_path: Path, log_fd: int) -> Execution:
        """Start the job, its output going to the new, empty log at ``log_path`` (open at
        ``log_fd``); return once it is running, or queued. SpawnError (and the like) if it
        cannot be; nothing is left then. Cancellation: deferred until the start is done."""
        ...

"""A job's start, from a checked Spec to a running job on record: spawn, hand over, record,
commit. The same for a start asked for now and for a queued job whose turn has come; only
how the start is recorded differs (a new row, or the queued row turned running). And the
same Job for one a manager before us started (``adopt``).

The order is what makes a start safe across crashes: the job is spawned first, and its
supervisor (or Slurm) lets it run on without us only once the start is on record
(``committed``). A start that cannot be recorded is killed, and a server that dies before
it is recorded leaves nothing running.
"""

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import trio

from . import reserve, validate
from .capacity import Capacity
from .errors import InvalidRequest, StoreError
from .executor import Executor, Spec
from .input import check_window
from .job import Job
from .labels import check_labels, check_name
from .limits import JobLimits, ManagerLimits, check_limits
from .observer import EngineObserver
from .output import OutputLog
from .queue import Queued
from .recovery import Adoptable
from .request import StartRequest, encode
from .status import Input, JobStatus
from .store import JobStore
from .times import times_path

log = logging.getLogger("jogger.engine")

Record = Callable[[Job, JobStatus], Awaitable[None]]
"""Write the start of ``job`` (its first status given) to the store; StoreError if not."""


@dataclass(frozen=True)
class Launcher:
    """What every start needs from the manager."""

    executor: Executor
    capacity: Capacity
    store: JobStore
    observer: EngineObserver
    state_dir: Path
    base_env: Mapping[str, str]
    """Every job's environment, under the account's and the request's."""
    limits: ManagerLimits
    default_limits: JobLimits
    max_limits: JobLimits
    grace: float
    on_end: Callable[[Job], Awaitable[None]]
    """The job's end: the manager's, which records it and releases its room."""
    hold: Callable[[Job], None]
    """Make the job the manager's: in its jobs, and running in its nursery."""

    def prepare(
        self, owner: str, argv: Sequence[str], asked: StartRequest
    ) -> tuple[Spec, StartRequest]:
        """A new job's Spec and its request, checked (validate.py, the limits, the
        executor's check, room to record it); InvalidRequest, IsolationUnavailable or
        StoreError if it cannot be had. ``asked``'s fields are as the caller gave them."""
        validate.check_owner(owner)
        args, overrides = validate.check_start(
            argv, asked.env, asked.cwd, asked.account, max_bytes=self.limits.max_argv_bytes
        )
        limits = self._resolve_limits(asked.limits)
        validate.check_timeout(asked.timeout)
        if asked.window is not None:
            if asked.input is not Input.TERMINAL:
                raise InvalidRequest("a window size is for a job with a terminal")
            check_window(asked.window)
        name = check_name(asked.name)
        labels = dict(sorted(check_labels(asked.labels).items()))
        request = replace(
            asked, env=overrides, limits=asked.limits or JobLimits(), name=name, labels=labels
        )
        spec = self.spec(str(uuid.uuid4()), owner, args, request, limits)
        self.executor.check(spec)
        self.check_room()
        return spec, request

    def _resolve_limits(self, requested: JobLimits | None) -> JobLimits:
        containment = self.executor.containment
        if requested is None or requested.empty:
            requested = JobLimits()
        elif containment == "none":
            raise InvalidRequest("this server has no cgroups, so it cannot enforce limits")
        check_limits(requested, self.max_limits)
        if containment == "none":
            return JobLimits()
        return self.executor.limits(requested, self.default_limits)

    def spec(
        self,
        job_id: str,
        owner: str,
        argv: tuple[str, ...],
        request: StartRequest,
        limits: JobLimits,
    ) -> Spec:
        """What the executor runs for ``request`` (checked already), with ``limits`` in force."""
        account = request.account
        # The account's HOME, USER and LOGNAME replace the base environment's (which may
        # describe the server's own user), and give way to what the request sets.
        login = account.environment() if account is not None else {}
        return Spec(
            job_id=job_id,
            owner=owner,
            argv=argv,
            cwd=request.cwd,
            env={**self.base_env, **login, **request.env, "JOGGER_JOB_ID": job_id},
            account=account,
            limits=limits,
            input=request.input,
            window=request.window,
            isolation=request.isolation,
            timeout=request.timeout,
            name=request.name,
            labels=dict(request.labels),
        )

    def check_room(self) -> None:
        """StoreError when the state dir's file system has no room to record a start."""
        if not reserve.held(self.state_dir):
            raise StoreError(
                f"the state dir's file system ({self.state_dir}) is full: no room to record "
                "a new job; jobs on record can still be read"
            )

    async def start_new(self, spec: Spec, request: StartRequest) -> JobStatus:
        """``launch`` a job asked for now: a new row, with its request."""

        async def record(job: Job, status: JobStatus) -> None:
            execution = job.execution
            await self.store.record_start(
                status, execution.job_identity, execution.identity, encode(request)
            )

        return await self.launch(spec, record)

    async def start_queued(self, entry: Queued) -> None:
        """``launch`` a queued job whose turn has come: its row turns running. InvalidRequest
        (or IsolationUnavailable) if it no longer fits this manager's bounds."""
        status = entry.status
        spec = self.spec(entry.id, entry.owner, status.argv, entry.request, status.limits)
        try:
            self.check_room()
            # It was checked when it was queued, maybe by a manager with other bounds (a
            # restart): it starts only within ours. (It keeps the limits it was queued with,
            # and the account and isolation: the server's policy of then, as a running job.)
            try:
                self._resolve_limits(entry.request.limits)
            except InvalidRequest as exc:
                raise InvalidRequest(f"it no longer fits this server's bounds: {exc}") from exc
            self.executor.check(spec)
            # A start of it that a crash cut short left its log and the log's time index
            # (created exclusively, so a retry would fail on it); it never ran on record.
            log_path = self.logs_dir / f"{entry.id}.log"
            log_path.unlink(missing_ok=True)
            times_path(log_path).unlink(missing_ok=True)
        except BaseException:
            self.capacity.ended(entry.owner)
            self.capacity.start_done()
            raise

        async def record(job: Job, status: JobStatus) -> None:
            execution = job.execution
            if not await self.store.start_queued(
                status, execution.job_identity, execution.identity
            ):
                raise StoreError(f"job {job.id} is no longer queued on record")

        await self.launch(spec, record)

    def adopt(self, found: Adoptable, executor: Executor) -> Job:
        """The job of ``found``, which a manager before us started and ``executor`` runs
        (recovery.py): as if we had started it."""
        record = found.record
        return Job.adopt(
            record,
            found.execution,
            executor.group_of(record),
            OutputLog.running(self.logs_dir / f"{record.id}.log", self.limits.max_output_bytes),
            grace=self.grace,
            run_dir=self.run_dir,
            on_end=self.on_end,
        )

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    async def launch(self, spec: Spec, record: Record) -> JobStatus:
        """Start ``spec``, whose room the caller has reserved (Capacity.reserve), and
        return its first status once it runs and is on record. On any error no job exists,
        nothing is left behind, and its room is released (``capacity.ended``).

        Cancellation: deferred while the process is being spawned (at most
        SPAWN_TIMEOUT) and recorded; a caller cancelled by then leaves a running,
        recorded job.
        """
        owner = spec.owner
        try:
            try:
                job = await Job.launch(
                    self.executor,
                    spec,
                    self.logs_dir / f"{spec.job_id}.log",
                    max_output_bytes=self.limits.max_output_bytes,
                    run_dir=self.run_dir,
                    grace=self.grace,
                    on_end=self.on_end,
                )
            except BaseException:
                self.capacity.ended(owner)
                raise
            # No checkpoint since the spawn: the job's supervisor is guaranteed to run, so
            # even a cancellation arriving now ends in the kill sequence, never an orphan.
            self.hold(job)
            status = job.status()
            try:
                # Shielded: the job runs, so it must be on record (or killed) whatever
                # happens to the caller; a caller that leaves now leaves a recorded job.
                # Bounded by the store's busy timeout and the disk.
                with trio.CancelScope(shield=True):
                    await record(job, status)
                job.execution.committed()
                self.observer.job_started(owner)
            except BaseException as exc:
                # A start that is not on record must not run (and its supervisor waits to
                # hear that it is): kill the job, then refuse. (Not a cancellation:
                # shielded.)
                log.error("job %s could not be recorded, so it is killed: %s", job.id, exc)
                await job.refuse()
                raise
        finally:
            self.capacity.start_done()
        log.info(
            "job started id=%s owner=%s user=%s pid=%d argv=%r",
            job.id,
            owner,
            spec.account.name if spec.account is not None else "-",
            job.pid,
            spec.argv,
        )
        return status

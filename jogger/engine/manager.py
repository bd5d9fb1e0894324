"""The job manager: the public face of the engine, and the root of its nursery tree.

    manager nursery
    ├── job nurseries, one per running job (see job.py)
    └── retainer: deletes finished jobs past the retention limits (see retention.py)

Every call takes the owner. A job is found by id and then checked against the owner, and a
job of someone else's is reported exactly as a job that does not exist.

Running jobs live in memory; every job also has a record in the store (store.py), written
when it starts and when it ends. Once a job has ended and its record is written, the record
is what status, list and output read.
"""

import errno
import fcntl
import hashlib
import logging
import math
import os
import re
import stat
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import trio

from .._exceptiongroups import single_errors
from . import reserve
from .account import Account
from .cgroups import Backend, CgroupMode, open_backend
from .errors import (
    InvalidRequest,
    JobNotFound,
    LimitExceeded,
    ManagerClosed,
    StoreError,
    shown,
)
from .job import Job
from .limits import JobLimits, check_limits
from .output import ChunkSize, OutputLog
from .process import JobProcess
from .recovery import identify, kill_session
from .retention import Retainer, Retention
from .status import JobStatus
from .store import JobStore, Page

log = logging.getLogger("jogger.engine")

_CGROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_PAGE = 1000


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


class JobManager:
    """Runs jobs for many owners. Use as ``async with JobManager(state_dir) as jobs:``.

    Leaving the ``async with`` block, or cancelling the scope around it, shuts down: every
    running job is stopped (SIGTERM, ``grace`` seconds, then SIGKILL of its whole process
    group), every follower gets the job's final bytes (waiting at most ``drain_timeout``
    seconds more for followers that do not read), and then the block exits.

    Jobs get the environment ``base_env`` (by default only PATH) plus the overrides given to
    ``start`` and ``JOGGER_JOB_ID``. Output logs are kept under ``state_dir/logs``.

    Job records are kept in ``state_dir/jobs.db`` (SQLite); with ``durable=False`` only in
    memory, lost at exit. On entry, jobs that a crashed manager left running are resolved:
    whatever is left of them is killed and they are recorded as killed with reason
    ``server-crash``. ``retention`` bounds how many finished jobs are kept, and for how long.
    One manager at a time may use a state dir (an flock on ``state_dir/lock``).

    ``cgroups`` picks how jobs are contained: "auto" (cgroup v2, else v1, else none),
    "cgroup2", "cgroup1" or "none". Job cgroups live under the process's own cgroup, in
    ``cgroup_name`` (by default ``jogger-`` and a hash of the state dir, so that two managers
    never touch each other's groups); on entry, groups left there by a crashed manager are
    killed and removed. ``default_limits`` fill in what a start does not ask for;
    ``max_limits`` bound what it may ask for. ``user_limits`` is each owner's budget for all
    their jobs together, ``total_limits`` that of all jobs (memory and pids); each owner's
    jobs also share one CPU weight. Without a cgroup backend, none of them is enforced.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        limits: ManagerLimits | None = None,
        grace: float = 10.0,
        drain_timeout: float = 5.0,
        base_env: Mapping[str, str] | None = None,
        cgroups: CgroupMode = "auto",
        cgroup_name: str | None = None,
        default_limits: JobLimits | None = None,
        max_limits: JobLimits | None = None,
        user_limits: JobLimits | None = None,
        total_limits: JobLimits | None = None,
        retention: Retention | None = None,
        durable: bool = True,
    ) -> None:
        _check_grace(grace)
        _check_grace(drain_timeout)
        _check_limits(limits or ManagerLimits())
        self._default_limits = default_limits or JobLimits()
        self._max_limits = max_limits or JobLimits()
        check_limits(self._max_limits, JobLimits(), what="maximum ")
        check_limits(self._default_limits, self._max_limits, what="default ")
        self._user_limits = user_limits or JobLimits()
        self._total_limits = total_limits or JobLimits()
        check_limits(self._user_limits, JobLimits(), what="user ")
        check_limits(self._total_limits, JobLimits(), what="total ")
        self._cgroups: CgroupMode = cgroups
        if cgroup_name is not None and not _CGROUP_NAME.fullmatch(cgroup_name):
            raise InvalidRequest(f"bad cgroup name {cgroup_name!r}")
        digest = hashlib.sha256(os.fsencode(os.path.realpath(state_dir))).hexdigest()[:12]
        self._cgroup_name = cgroup_name or f"jogger-{digest}"
        self._backend: Backend | None = None
        self._state_dir = Path(state_dir)
        self._logs_dir = self._state_dir / "logs"
        self._limits = limits or ManagerLimits()
        self._grace = grace
        self._drain_timeout = drain_timeout
        self._base_env = dict(base_env) if base_env is not None else {"PATH": DEFAULT_PATH}
        self._jobs: dict[str, Job] = {}
        """Jobs in memory: running, or ended and not yet (or never) recorded."""
        self._store = JobStore(self._state_dir / "jobs.db" if durable else None)
        self._retention = retention or Retention()
        self._retainer: Retainer | None = None
        self._lock_fd = -1
        self._live: set[Job] = set()
        self._running: Counter[str] = Counter()
        """Jobs per owner, counted from the start of their spawn."""
        self._starting = 0
        """Starts past their checks and not yet on record (see __aexit__)."""
        self._started = trio.lowlevel.ParkingLot()
        """Where shutdown waits for them."""
        self._nursery: trio.Nursery | None = None
        self._nursery_manager: AbstractAsyncContextManager[trio.Nursery] | None = None

    async def __aenter__(self) -> "JobManager":
        if self._nursery_manager is not None:
            raise RuntimeError("a JobManager can be entered only once")
        _prepare_dir(self._state_dir)
        _prepare_dir(self._logs_dir)
        self._lock_fd, clean = _lock(self._state_dir / "lock")
        try:
            self._backend = open_backend(
                self._cgroups,
                self._cgroup_name,
                user_limits=self._user_limits,
                total_limits=self._total_limits,
            )
            log.debug("job containment: %s", self._backend.describe())
            try:
                # Recovery after a crash on a full file system needs the ballast's room.
                reserve.release(self._state_dir)
                await self._store.open()
                await self._backend.cleanup_leftovers()
                await self._recover()
                retainer = Retainer(
                    self._retention,
                    self._store,
                    logs_dir=self._logs_dir,
                    state_files=[self._state_dir / n for n in ("jobs.db", "jobs.db-wal")],
                    live_bytes=lambda: sum(job.log.size for job in self._jobs.values()),
                    live_ids=lambda: set(self._jobs),
                )
                if not clean:  # orphaned logs come only from a crash
                    try:
                        await retainer.sweep_orphans()
                    except (StoreError, OSError) as exc:
                        log.error("looking for output logs without a record failed: %s", exc)
                self._retainer = retainer
                if not self._space_held():
                    log.warning(
                        "the state dir's file system is full: new jobs are refused until "
                        "there is room again; jobs on record can be read"
                    )
                self._nursery_manager = trio.open_nursery()
                self._nursery = await self._nursery_manager.__aenter__()
            except BaseException:
                # Shielded: a failed start leaves neither the database open nor our cgroup.
                with trio.CancelScope(shield=True):
                    try:
                        await self._store.close()
                    finally:
                        await self._backend.aclose()
                raise
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._nursery.start_soon(self._retainer.run)
        return self

    def _space_held(self) -> bool:
        """Whether the reserve is in place (or could be put back): see reserve.py."""
        try:
            return reserve.held(self._state_dir)
        except OSError as exc:
            log.error("cannot keep space in reserve in %s: %s", self._state_dir, exc)
            return True  # not a full disk: let the start find out for itself

    async def _recover(self) -> None:
        """Resolve the jobs a crashed manager left marked running (see recovery.py)."""
        unfinished = await self._store.unfinished()
        if not unfinished:
            return
        resolved = []
        for record in unfinished:
            # Also for jobs that had a cgroup: if this manager uses another backend (or none),
            # their groups were not cleaned up above. The checks make it safe either way.
            try:
                killed = await kill_session(record.process)
            except OSError as exc:
                log.error("job %s: cannot look for its leftover processes: %s", record.job_id, exc)
                killed = 0
            try:
                size = (self._logs_dir / f"{record.job_id}.log").stat().st_size
            except OSError:
                size = 0
            resolved.append((record.seq, size))
            log.warning(
                "job %s was running when its server died: recorded as killed (server-crash); "
                "%d leftover processes killed",
                record.job_id,
                killed,
            )
        await self._store.resolve_unfinished(resolved, datetime.now(UTC))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._nursery is not None
        assert self._nursery_manager is not None
        nursery, self._nursery = self._nursery, None  # from here on start() refuses
        # Starts under way are let finish (a spawn is never abandoned), so that their jobs
        # are in the nursery and on record before it shuts down, and are stopped with the
        # rest. Shielded: the spawn and its record must finish whatever happens to us;
        # bounded by SPAWN_TIMEOUT and the store's busy timeout.
        with trio.CancelScope(shield=True):
            while self._starting:
                await self._started.park()
        deadline = trio.current_time() + self._grace + self._drain_timeout
        for job in self._live:
            # A stop under way with a longer grace must not hold shutdown up beyond ours.
            job.limit_grace(self._grace)
            job.limit_streams(deadline)
        # Shutdown is cancel-scope propagation: each job's supervisor turns this cancellation
        # into SIGTERM, grace, SIGKILL, and the pumps and streams drain under their shields.
        nursery.cancel_scope.cancel()
        # Job tasks turn every failure into a job state, so a group here carries what the
        # body of the ``async with`` raised; give the caller that exception itself.
        try:
            with single_errors():
                suppress: bool | None = await self._nursery_manager.__aexit__(exc_type, exc, tb)
        finally:
            assert self._backend is not None
            # Shielded: the jobs' groups are gone; their parent must not be left behind.
            with trio.CancelScope(shield=True):
                try:
                    await self._backend.aclose()
                finally:
                    try:
                        # Ends the store refused earlier (a full disk, say) get one more try.
                        for job in list(self._jobs.values()):
                            if job.ended.is_set() and not (job.recorded or job.refused):
                                await self._record_end(job)
                        await self._store.close()
                        os.ftruncate(self._lock_fd, 0)  # empty: this manager ended cleanly
                    finally:
                        os.close(self._lock_fd)
        return suppress

    @property
    def containment(self) -> str:
        """The backend in use: "cgroup2", "cgroup1" or "none" (once entered)."""
        return self._backend.containment if self._backend is not None else "none"

    def describe_containment(self) -> str:
        """The backend in use and where its groups are, in words (once entered)."""
        return self._backend.describe() if self._backend is not None else "not entered"

    def _resolve_limits(self, requested: JobLimits | None) -> JobLimits:
        if requested is None or requested.empty:
            requested = JobLimits()
        elif self.containment == "none":
            raise InvalidRequest("this server has no cgroups, so it cannot enforce limits")
        check_limits(requested, self._max_limits)
        if self.containment == "none":
            return JobLimits()
        return requested.over(self._default_limits)

    async def start(
        self,
        owner: str,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        limits: JobLimits | None = None,
        account: Account | None = None,
    ) -> JobStatus:
        """Start ``argv`` for ``owner`` and return its status once the command is running.

        ``argv[0]`` is looked up on PATH like execvp; there is no shell. stdin is /dev/null;
        stdout and stderr share one pipe into the job's output log. ``cwd`` must be absolute.
        ``limits``: resource limits, within the manager's maxima; what is not given comes from
        the manager's defaults. ``account``: the local user the job runs as (which needs
        root, unless it is this process's own); its HOME, USER and LOGNAME are set unless
        ``env`` sets them, and with no ``cwd`` the job starts in its home (or /). None: the
        job runs as this process's user, with neither. Raises InvalidRequest, SpawnError (the
        command could not be executed, its user not taken on, or its cgroup not set up, or
        it did not reach exec within process.SPAWN_TIMEOUT), LimitExceeded or ManagerClosed;
        on any error no job exists and nothing is left behind.

        Cancellation: deferred while the process is being spawned (at most SPAWN_TIMEOUT) and
        recorded; a caller cancelled by then leaves a running, recorded job.
        """
        await trio.lowlevel.checkpoint()
        nursery = self._open_nursery()
        _check_owner(owner)
        args, overrides = self._check_request(argv, env, cwd, account)
        job_limits = self._resolve_limits(limits)
        self._check_capacity(owner)
        if not self._space_held():
            raise StoreError(
                f"the state dir's file system ({self._state_dir}) is full: no room to record "
                "a new job; jobs on record can still be read"
            )

        job_id = str(uuid.uuid4())
        # The account's HOME, USER and LOGNAME replace the base environment's (which may
        # describe the server's own user), and give way to what the request sets.
        login = account.environment() if account is not None else {}
        full_env = {**self._base_env, **login, **overrides, "JOGGER_JOB_ID": job_id}
        # Counted from now, not from the end of the spawn: other starts run while this one
        # awaits it, and must see it against the limits.
        self._running[owner] += 1
        self._starting += 1
        try:
            return await self._launch(
                nursery,
                job_id=job_id,
                owner=owner,
                args=args,
                cwd=cwd,
                env=full_env,
                account=account,
                limits=job_limits,
            )
        finally:
            self._starting -= 1
            if not self._starting:
                self._started.unpark_all()

    async def _launch(
        self,
        nursery: trio.Nursery,
        *,
        job_id: str,
        owner: str,
        args: tuple[str, ...],
        cwd: str | None,
        env: dict[str, str],
        account: Account | None,
        limits: JobLimits,
    ) -> JobStatus:
        """The rest of start(), with the job counted in ``_running``: until the job exists,
        a failure takes it back off; once it does, its end does."""
        assert self._backend is not None
        try:
            group = self._backend.create(owner, job_id, limits)
            try:
                output = OutputLog.create(
                    self._logs_dir / f"{job_id}.log", self._limits.max_output_bytes
                )
            except BaseException:
                group.discard()
                raise
            try:
                process = await JobProcess.spawn(
                    args,
                    cwd=cwd,
                    env=env,
                    placement=group.placement(),
                    cgroup_fd=group.birthplace(),
                    account=account,
                )
            except BaseException:
                output.discard()
                group.discard()
                raise
        except BaseException:
            self._running[owner] -= 1
            if self._running[owner] == 0:
                del self._running[owner]
            raise
        group.attach(process.pid)
        identity = identify(process.pid)
        job = Job(
            job_id=job_id,
            owner=owner,
            argv=args,
            account=account,
            process=process,
            log=output,
            group=group,
            grace=self._grace,
            on_end=self._job_ended,
        )
        self._jobs[job_id] = job
        self._live.add(job)
        # No checkpoint since the spawn: the job's supervisor is guaranteed to run, so even a
        # cancellation arriving now ends in the kill sequence, never in an orphan.
        nursery.start_soon(self._run, job)
        status = job.status()
        try:
            # Shielded: the job runs, so it must be on record (or killed) whatever happens to
            # the caller; a caller that leaves now leaves a recorded job. Bounded by the
            # store's busy timeout and the disk.
            with trio.CancelScope(shield=True):
                await self._store.record_start(status, identity)
        except StoreError as exc:
            # A start that is not on record must not run: kill the job, then refuse.
            log.error("job %s could not be recorded, so it is killed: %s", job_id, exc)
            job.refused = True
            job.request_stop(0)
            # Shielded: the caller learns of the failure only once the job is gone; SIGKILL
            # makes that prompt, and the job bounds the wait (KILL_TIMEOUT).
            with trio.CancelScope(shield=True):
                await job.ended.wait()
            raise
        log.info(
            "job started id=%s owner=%s user=%s pid=%d argv=%r",
            job_id,
            owner,
            account.name if account is not None else "-",
            process.pid,
            args,
        )
        return status

    def _check_request(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        cwd: str | None,
        account: Account | None,
    ) -> tuple[tuple[str, ...], dict[str, str]]:
        args = _check_argv(argv)
        overrides = _check_env(env or {})
        if cwd is not None and (not isinstance(cwd, str) or not os.path.isabs(cwd) or "\0" in cwd):
            raise InvalidRequest("cwd must be an absolute path (and contain no NUL)")
        if account is not None and not isinstance(account, Account):
            raise InvalidRequest("account must be an Account")
        size = sum(len(s.encode()) + 1 for s in args)
        size += sum(len(k.encode()) + len(v.encode()) + 2 for k, v in overrides.items())
        size += len(cwd.encode()) + 1 if cwd is not None else 0
        if size > self._limits.max_argv_bytes:
            raise InvalidRequest(
                f"argv, env and cwd take {size} bytes; the limit is {self._limits.max_argv_bytes}"
            )
        return args, overrides

    async def stop(self, owner: str, job_id: str, *, grace: float | None = None) -> JobStatus:
        """Stop a job and return its final status once its processes are all gone.

        SIGTERM goes to the job's process group; after ``grace`` seconds (the manager's by
        default) SIGKILL follows. Stopping a job that has ended is not an error: it returns
        the final status. Cancellation: the stop goes on without the caller.
        """
        if grace is not None:
            _check_grace(grace)
        job = await self._lookup(owner, job_id)
        if isinstance(job, JobStatus):
            return job  # ended and on record
        job.request_stop(self._grace if grace is None else grace)
        await job.ended.wait()
        return job.status()

    async def wait(self, owner: str, job_id: str) -> JobStatus:
        """Wait until the job has ended and all its processes are gone; return its status."""
        job = await self._lookup(owner, job_id)
        if isinstance(job, JobStatus):
            return job
        await job.ended.wait()
        return job.status()

    async def status(self, owner: str, job_id: str) -> JobStatus:
        """The job's current status."""
        job = await self._lookup(owner, job_id)
        return job if isinstance(job, JobStatus) else job.status()

    async def list(self, owner: str | None, *, page_size: int = 100, page_token: str = "") -> Page:
        """The owner's jobs, newest first, a page at a time; every owner's with ``None`` (for
        administrators). ``page_token`` is the previous page's ``next_token``."""
        if owner is not None:
            _check_owner(owner)
        if not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE:
            raise InvalidRequest(f"page size must be 1 to {MAX_PAGE}")
        if not isinstance(page_token, str):
            raise InvalidRequest("page token must be a string")
        await trio.lowlevel.checkpoint()
        self._check_records()
        page = await self._store.page(owner, size=page_size, token=page_token)
        # The records of running jobs were written at start: their live status is newer.
        jobs = [
            self._jobs[s.id].status() if not s.state.is_final and s.id in self._jobs else s
            for s in page.jobs
        ]
        return Page(jobs, page.next_token, page.cursors)

    async def owner_of(self, job_id: str) -> str:
        """Who owns the job, for callers entitled to every job (administrators)."""
        self._check_job_id(job_id)
        job = self._jobs.get(job_id)
        if job is not None:
            await trio.lowlevel.checkpoint()
            return job.owner
        self._check_records()
        status = await self._store.get(job_id)
        if status is None:
            raise JobNotFound(job_id)
        return status.owner

    async def output(
        self,
        owner: str,
        job_id: str,
        *,
        offset: int = 0,
        follow: bool = True,
        chunk_size: ChunkSize = 64 * 1024,
    ) -> AsyncGenerator[bytes, None]:
        """The job's combined stdout and stderr, from byte ``offset``, in chunks.

        With ``follow``, new output is yielded as it is written, until the job has ended and
        everything has been read; without it, the output there is now. Raises JobNotFound or
        InvalidRequest when awaited, before iteration. Cancellation: a reader may leave at
        any time; it costs the job nothing.
        """
        if not isinstance(offset, int) or offset < 0:
            raise InvalidRequest("offset must be a non-negative integer")
        if not callable(chunk_size) and (not isinstance(chunk_size, int) or chunk_size <= 0):
            raise InvalidRequest("chunk_size must be a positive integer, or a function")
        job = await self._lookup(owner, job_id)
        if isinstance(job, Job):
            return job.output(offset, follow=follow, chunk_size=chunk_size)
        log_file = OutputLog.finished(self._logs_dir / f"{job.id}.log", job.output_bytes)
        return _read_all(log_file, offset, chunk_size)

    def _check_records(self) -> None:
        # Records stay readable while shutting down, until the store closes: a follower
        # that outlives its job asks for the final status from there.
        if self._nursery_manager is None or not self._store.is_open:
            raise ManagerClosed("the job manager is not running")

    def _open_nursery(self) -> trio.Nursery:
        if self._nursery is None:
            raise ManagerClosed("the job manager is not running")
        return self._nursery

    async def _lookup(self, owner: str, job_id: str) -> Job | JobStatus:
        """The job in memory, or the record of an ended one."""
        _check_owner(owner)
        self._check_job_id(job_id)
        job = self._jobs.get(job_id)
        if job is not None and job.owner == owner:
            await trio.lowlevel.checkpoint()
            return job
        # Another owner's job, running or not, takes the path of one that does not exist: the
        # same query, with the same answer (timing would otherwise tell them apart).
        self._check_records()
        status = await self._store.get(job_id, owner=owner)
        if status is None:
            raise JobNotFound(job_id)
        return status

    @staticmethod
    def _check_job_id(job_id: str) -> None:
        if not isinstance(job_id, str):
            raise InvalidRequest("job id must be a string")
        try:
            uuid.UUID(job_id)
        except ValueError:
            raise InvalidRequest(f"job id {shown(job_id, 40)} is not a UUID") from None

    def _check_capacity(self, owner: str) -> None:
        total = self._running.total()
        if total >= self._limits.max_jobs:
            raise LimitExceeded(f"{total} jobs are running; the limit is {self._limits.max_jobs}")
        mine = self._running[owner]
        if mine >= self._limits.max_jobs_per_owner:
            raise LimitExceeded(
                f"{mine} of your jobs are running; the limit is {self._limits.max_jobs_per_owner}"
            )

    async def _job_ended(self, job: Job) -> None:
        """Called by the job once it has ended, before anyone can see that: record it."""
        s = job.status()
        log.info(
            "job ended id=%s owner=%s state=%s exit_code=%s signal=%s reason=%s output_bytes=%d",
            s.id,
            s.owner,
            s.state.value,
            s.exit_code,
            s.signal,
            s.reason or "-",
            s.output_bytes,
        )
        self._running[job.owner] -= 1
        if self._running[job.owner] == 0:
            del self._running[job.owner]
        if job.refused:
            return
        await self._record_end(job)

    async def _record_end(self, job: Job) -> None:
        s = job.status()
        try:
            if not await self._store.record_end(s):
                log.error("job %s: no record was waiting for its end", s.id)
        except StoreError as exc:
            # The status stays in memory, and the write is tried again at shutdown.
            log.error("job %s: its end could not be recorded: %s", s.id, exc)
            return
        job.recorded = True
        if self._retainer is not None:
            self._retainer.job_ended(s)

    async def _run(self, job: Job) -> None:
        try:
            await job.run()
        finally:
            self._live.discard(job)
            if job.recorded or job.refused:
                del self._jobs[job.id]
            if job.refused:
                job.log.path.unlink(missing_ok=True)


async def _read_all(
    log_file: OutputLog, offset: int, chunk_size: ChunkSize
) -> AsyncGenerator[bytes, None]:
    async with aclosing(log_file.read(offset, follow=False, chunk_size=chunk_size)) as chunks:
        async for chunk in chunks:
            yield chunk


def _lock(path: Path) -> tuple[int, bool]:
    """Take the state dir's lock, or say who holds it.

    The lock file holds the pid of the manager using the state dir, and is emptied when
    that manager ends cleanly; also returns whether the last one did.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise StoreError(
                f"{path.parent} is in use by another jogger (pid {holder or 'unknown'})"
            ) from None
        raise
    except BaseException:
        os.close(fd)
        raise
    clean = not os.pread(fd, 32, 0)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd, clean


def _prepare_dir(path: Path) -> None:
    """Make ``path`` (if need be) a directory of ours with mode 0700. One that others may
    write, or that another user owns, is refused: they may have put things in it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidRequest(f"{path} is not a directory")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise InvalidRequest(f"{path} is writable by other users; refusing to keep jobs there")
    if st.st_uid != os.geteuid():
        raise InvalidRequest(
            f"{path} belongs to uid {st.st_uid}, not to us (uid {os.geteuid()}); "
            "refusing to keep jobs there"
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        # Created beforehand by someone less careful (0755): others may not even read it.
        path.chmod(stat.S_IMODE(st.st_mode) & 0o700)


def _check_limits(limits: ManagerLimits) -> None:
    for name in ("max_jobs", "max_jobs_per_owner", "max_argv_bytes", "max_output_bytes"):
        value = getattr(limits, name)
        if not isinstance(value, int) or value < (0 if name == "max_output_bytes" else 1):
            raise InvalidRequest(f"ManagerLimits.{name} must be a positive integer, not {value!r}")


def _check_grace(seconds: float) -> None:
    if not isinstance(seconds, int | float) or math.isnan(seconds) or seconds < 0:
        raise InvalidRequest("a grace period must be a non-negative number of seconds")


def _check_owner(owner: str) -> None:
    if not isinstance(owner, str) or not owner or not owner.isprintable():
        raise InvalidRequest("owner must be a non-empty printable string")


def _check_argv(argv: Sequence[str]) -> tuple[str, ...]:
    if isinstance(argv, str | bytes) or not isinstance(argv, Sequence):
        raise InvalidRequest("argv must be a list of strings")
    args = tuple(argv)
    if not args:
        raise InvalidRequest("argv must not be empty")
    for arg in args:
        if not isinstance(arg, str):
            raise InvalidRequest("argv must be a list of strings")
        if "\0" in arg:
            raise InvalidRequest("argv strings must not contain NUL")
        _check_encodable(arg, "argv")
    if not args[0]:
        raise InvalidRequest("argv[0] must not be empty")
    return args


def _check_env(env: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(env, Mapping):
        raise InvalidRequest("env must be a mapping of strings to strings")
    checked: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidRequest("env must be a mapping of strings to strings")
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise InvalidRequest(f"invalid environment variable name or value: {shown(key)}")
        _check_encodable(key, "env")
        _check_encodable(value, "env")
        checked[key] = value
    return checked


def _check_encodable(text: str, what: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError:
        raise InvalidRequest(f"{what} strings must be valid UTF-8") from None

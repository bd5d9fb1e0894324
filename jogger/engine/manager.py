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

import hashlib
import inspect
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Literal, ParamSpec

import trio

from .._exceptiongroups import single_errors
from . import reserve, validate
from .account import Account
from .capacity import Capacity
from .cgroups import Backend, CgroupMode, open_backend
from .errors import (
    InputUnavailable,
    InvalidRequest,
    JobNotFound,
    ManagerClosed,
    NotRestartable,
    StoreError,
)
from .executor import Execution, Executor
from .input import WITHOUT_INPUT, InputSink
from .isolation import NONE, Isolation
from .job import Job
from .launch import Launcher
from .limits import JobLimits, ManagerLimits
from .listing import JobFilter
from .local import LocalExecutor
from .notes import NoteListener
from .observer import NOBODY, EngineGauges, EngineObserver
from .output import ChunkSize, OutputLog
from .queue import JobQueue
from .queued import QueuedJobs, queued_status
from .recovery import Adoptable, recover
from .request import StartRequest, restartable
from .retention import Retainer, Retention
from .slurm.executor import SlurmExecutor, SlurmOptions
from .statedir import lock, prepare_dir
from .status import Input, JobState, JobStatus, WindowSize
from .store import JobStore, Page
from .supervisor import PROGRAM, Supervisor, forget_end
from .window import OutputWindow, Piece, open_window

log = logging.getLogger("jogger.engine")

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
P = ParamSpec("P")
OnShutdown = Literal["stop", "keep"]
ExecutorName = Literal["local", "slurm"]
"""What shutdown does to running jobs: stop them, or leave them to the next manager."""


class JobManager:
    """Runs jobs for many owners. Open one with ``open_job_manager``, which takes the same
    arguments and owns the manager's nursery::

        import trio
        import jogger

        async def main() -> None:
            async with jogger.open_job_manager("/tmp/jogger-state") as jobs:
                job = await jobs.start("alice", ["sh", "-c", "echo hello; sleep 1; echo oops >&2"])
                async with jobs.output("alice", job.id) as chunks:  # from byte 0, then live
                    async for chunk in chunks:
                        print(chunk)
                print(await jobs.wait("alice", job.id))  # final JobStatus

                sleeper = await jobs.start("alice", ["sleep", "600"])
                status = await jobs.stop("alice", sleeper.id, grace=2.0)
                print(status.state)  # JobState.STOPPED

        trio.run(main)

    ``async with JobManager(state_dir, ...) as jobs:`` runs the same code, for callers that
    hold the object first; a manager runs once.

    Every job has a supervisor process of its own (``jogger-supervise``, built on install
    next to the package; ``supervisor`` names another), which is its parent and writes its
    log, so that jobs outlive the manager: on entry, the jobs a manager before left running
    (a crash, or ``on_shutdown="keep"``) are adopted, and run on as if started here.

    Leaving the ``async with`` block, or cancelling the scope around it, shuts down. With
    ``on_shutdown="keep"`` the jobs are left running for the next manager on this state
    dir; with "stop" (the default) every running job is stopped (SIGTERM, ``grace``
    seconds, then SIGKILL of all its processes), every follower gets the job's final bytes
    (waiting at most ``drain_timeout`` seconds more for followers that do not read), and
    then the block exits. An exception raised in the block comes out as itself, not in
    an ExceptionGroup.

    Jobs get the environment ``base_env`` (by default only PATH) plus the overrides given to
    ``start`` and ``JOGGER_JOB_ID``. Output logs are kept under ``state_dir/logs``.

    Job records are kept in ``state_dir/jobs.db`` (SQLite); with ``durable=False`` only in
    memory, lost at exit. On entry, jobs left running that cannot be adopted are resolved:
    whatever is left of them is killed and they are recorded as killed, with reason
    ``host-reboot`` or ``supervisor-lost`` (see recovery.py). ``retention`` bounds how many
    finished jobs are kept, and for how long. One manager at a time may use a state dir (an
    flock on ``state_dir/lock``).

    ``cgroups`` picks how jobs are contained: "auto" (cgroup v2, else v1, else none),
    "cgroup2", "cgroup1" or "none". Job cgroups live under the process's own cgroup, in
    ``cgroup_name`` (by default ``jogger-`` and a hash of the state dir, so that two managers
    never touch each other's groups); on entry, groups left there by a crashed manager are
    killed and removed. ``default_limits`` fill in what a start does not ask for;
    ``max_limits`` bound what it may ask for. ``user_limits`` is each owner's budget for all
    their jobs together, ``total_limits`` that of all jobs (memory and pids); each owner's
    jobs also share one CPU weight. Without a cgroup backend, none of them is enforced.

    ``observer`` hears of each job's start and end and of each store call (observer.py);
    ``gauges()`` tells the levels: jobs running, supervisors alive, bytes written.
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
        on_shutdown: OnShutdown = "stop",
        supervisor: str | os.PathLike[str] | None = None,
        executor: ExecutorName = "local",
        slurm: SlurmOptions | None = None,
        observer: EngineObserver | None = None,
    ) -> None:
        validate.check_grace(grace)
        validate.check_grace(drain_timeout)
        validate.check_manager_limits(limits or ManagerLimits())
        self._default_limits = default_limits or JobLimits()
        self._max_limits = max_limits or JobLimits()
        self._user_limits = user_limits or JobLimits()
        self._total_limits = total_limits or JobLimits()
        validate.check_limit_sets(
            self._default_limits, self._max_limits, self._user_limits, self._total_limits
        )
        self._cgroups: CgroupMode = cgroups
        if cgroup_name is not None:
            validate.check_cgroup_name(cgroup_name)
        digest = hashlib.sha256(os.fsencode(os.path.realpath(state_dir))).hexdigest()[:12]
        self._cgroup_name = cgroup_name or f"jogger-{digest}"
        self._backend: Backend | None = None
        self._local: LocalExecutor | None = None
        self._executor: Executor | None = None
        if on_shutdown not in ("stop", "keep"):
            raise InvalidRequest(f"on_shutdown must be 'stop' or 'keep', not {on_shutdown!r}")
        self._on_shutdown: OnShutdown = on_shutdown
        if executor not in ("local", "slurm"):
            raise InvalidRequest(f"executor must be 'local' or 'slurm', not {executor!r}")
        self._executor_name: ExecutorName = executor
        self._slurm = slurm or SlurmOptions()
        self._program = Path(supervisor) if supervisor is not None else PROGRAM
        self._state_dir = Path(state_dir)
        self._logs_dir = self._state_dir / "logs"
        self._run_dir = self._state_dir / "run"
        self._limits = limits or ManagerLimits()
        self._grace = grace
        self._drain_timeout = drain_timeout
        self._base_env = dict(base_env) if base_env is not None else {"PATH": DEFAULT_PATH}
        self._jobs: dict[str, Job] = {}
        """Jobs in memory: running, or ended and not yet (or never) recorded."""
        self._observer = observer or NOBODY
        self._store = JobStore(self._state_dir / "jobs.db" if durable else None, self._observer)
        self._output_done = 0
        """Bytes written by jobs no longer in memory, while this manager ran (gauges)."""
        self._retention = retention or Retention()
        self._retainer: Retainer | None = None
        self._live: set[Job] = set()
        self._capacity = Capacity(self._limits)
        self._queued = QueuedJobs(
            self._store,
            self._capacity,
            JobQueue(self._limits.max_queued, self._limits.max_queued_per_owner),
            logs_dir=self._logs_dir,
        )
        self._launcher: Launcher | None = None
        self._entered = False
        self._serving = False
        """Set once entered: from then until the store closes, the records are readable."""
        self._nursery: trio.Nursery | None = None  # the manager's, while it takes new jobs
        self._holder: trio.Nursery | None = None  # the same, until it exits: jobs run in it
        self._context: AbstractAsyncContextManager[JobManager] | None = None  # async with

    async def __aenter__(self) -> "JobManager":
        context = self._run()
        jobs = await context.__aenter__()
        self._context = context  # only now: a second entry must not replace the first
        return jobs

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._context is not None
        return await self._context.__aexit__(exc_type, exc, tb)

    @asynccontextmanager
    async def _run(self) -> AsyncGenerator["JobManager", None]:
        """The manager's lifetime: what open_job_manager and ``async with`` both run."""
        if self._entered:
            raise RuntimeError("a JobManager can be entered only once")
        # Slurm opens a job's log as the job's account: the way to it must let that through
        # (0711: no one else may list the directories).
        shared = self._executor_name == "slurm"
        prepare_dir(self._state_dir, traversable=shared)
        prepare_dir(self._logs_dir, traversable=shared)
        prepare_dir(self._run_dir)
        lock_fd, clean = lock(self._state_dir / "lock")
        self._entered = True  # no checkpoint since the check: no second entry slips in
        running = False
        notes: NoteListener | None = None
        try:
            self._backend = open_backend(
                # Under Slurm, the cluster's cgroups; ours are for local jobs a server
                # before us left running, if any.
                "none" if self._executor_name == "slurm" else self._cgroups,
                self._cgroup_name,
                user_limits=self._user_limits,
                total_limits=self._total_limits,
            )
            log.debug("job containment: %s", self._backend.describe())
            self._open_executors(self._backend)
            try:
                # Bound before any job is adopted: every write after that is heard.
                notes = NoteListener(self._run_dir)
                retainer, adoptable = await self._open_records(clean)
            except BaseException:
                # Shielded: a failed start leaves neither the database open nor our cgroup.
                with trio.CancelScope(shield=True):
                    try:
                        await self._store.close()
                    finally:
                        await self._backend.aclose()
                raise
            try:
                # Job tasks turn every failure into a job state, so an ExceptionGroup here
                # carries what the body of the ``async with`` raised; give the caller that
                # exception itself.
                with single_errors():
                    async with self._serve(notes, retainer, adoptable):
                        running = True
                        yield self
            finally:
                # Shielded: the jobs' groups are gone; their parent must not be left behind.
                with trio.CancelScope(shield=True):
                    try:
                        if not any(job.detached for job in self._jobs.values()):
                            await self._backend.aclose()
                    finally:
                        # Ends the store refused earlier (a full disk, say) get one more try.
                        for job in list(self._jobs.values()):
                            if job.ended.is_set() and not (job.recorded or job.refused):
                                await self._record_end(job)
                        await self._store.close()
                        os.ftruncate(lock_fd, 0)  # empty: this manager ended cleanly
        finally:
            if notes is not None:
                notes.close()
            os.close(lock_fd)
            self._entered = running  # a start that failed leaves it new, to try again

    @asynccontextmanager
    async def _serve(
        self, notes: NoteListener, retainer: Retainer, adoptable: list[Adoptable]
    ) -> AsyncIterator[None]:
        """The manager's nurseries, with the adopted jobs in; shut down on the way out."""
        async with trio.open_nursery() as outer:
            # The listener outlives the jobs' nursery: followers of jobs that are being
            # stopped at shutdown get their bytes live.
            outer.start_soon(notes.run, self._live_log)
            assert self._executor is not None
            outer.start_soon(self._executor.run)
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = self._holder = nursery
                    nursery.start_soon(retainer.run)
                    for found in adoptable:
                        self._adopt(found)
                    assert self._launcher is not None
                    self._queued.open(nursery, self._launcher.start_queued)
                    try:
                        yield
                    finally:
                        await self._shut_down(nursery)
            finally:
                # Cancelled: every job has ended (or been detached); nobody is left to hear
                # of a write.
                outer.cancel_scope.cancel()

    async def _open_records(self, clean: bool) -> tuple[Retainer, list[Adoptable]]:
        """Open the store, sort out what the manager before us left, make the retainer."""
        assert self._backend is not None
        # Recovery after a crash on a full file system needs the ballast's room.
        reserve.release(self._state_dir)
        await self._store.open()
        retainer = Retainer(
            self._retention,
            self._store,
            logs_dir=self._logs_dir,
            state_files=[self._state_dir / n for n in ("jobs.db", "jobs.db-wal")],
            live_bytes=lambda: sum(job.log.size for job in self._jobs.values()),
            live_ids=lambda: set(self._jobs),
        )
        started = trio.current_time()
        adoptable = await recover(
            self._store,
            self._backend,
            retainer,
            self._logs_dir,
            self._run_dir,
            crashed=not clean,
            adopt_external=self._adopt_external,
            observer=self._observer,
        )
        await self._queued.load()
        if adoptable:
            log.info(
                "adopted %d running jobs in %.3f s",
                len(adoptable),
                trio.current_time() - started,
            )
        self._retainer = retainer
        if not reserve.held(self._state_dir):
            log.warning(
                "the state dir's file system is full: new jobs are refused until "
                "there is room again; jobs on record can be read"
            )
        self._serving = True
        return retainer, adoptable

    def _adopt(self, found: Adoptable) -> None:
        """Run a job a manager before us started, as if we had."""
        assert self._launcher is not None
        assert self._local is not None
        executor = self._launcher.executor if found.record.external_id else self._local
        self._capacity.adopted(found.record.owner)
        self._hold(self._launcher.adopt(found, executor))

    def _open_executors(self, backend: Backend) -> None:
        """The local executor (for this manager's jobs, or those a local one before it
        left), and the one that starts new jobs."""
        self._local = LocalExecutor(
            backend,
            program=self._program,
            run_dir=self._run_dir,
            max_output_bytes=self._limits.max_output_bytes,
            stop_timeout=self._grace,
        )
        self._executor = self._local
        if self._executor_name == "slurm":
            self._executor = SlurmExecutor(
                self._slurm, run_dir=self._run_dir, grew=self._slurm_log_grew
            )
        self._launcher = Launcher(
            self._executor,
            self._capacity,
            self._store,
            self._observer,
            self._state_dir,
            self._base_env,
            self._limits,
            self._default_limits,
            self._max_limits,
            self._grace,
            on_end=self._job_ended,
            hold=self._hold,
        )

    def _adopt_external(self, record: JobStatus) -> Execution | None:
        """The execution of a job on record that an executor elsewhere runs (Slurm), if
        this manager uses that executor."""
        if isinstance(self._executor, SlurmExecutor):
            return self._executor.adopt(record, self._logs_dir / f"{record.id}.log")
        return None

    def _slurm_log_grew(self, job_id: str) -> None:
        found = self._live_log(job_id)
        if found is not None:
            found.grew(truncated=False, error="")

    def _live_log(self, job_id: str) -> OutputLog | None:
        job = self._jobs.get(job_id)
        return job.log if job is not None else None

    async def _shut_down(self, nursery: trio.Nursery) -> None:
        """Stop (or leave) every job: leaving the block, or the scope around it cancelled."""
        self._nursery = None  # from here on start() refuses
        self._queued.close()  # and the queue starts no more
        # Starts under way are let finish (a spawn is never abandoned), so that their jobs
        # are in the nursery and on record before it shuts down, and are stopped with the
        # rest.
        await self._capacity.starts_done()
        deadline = trio.current_time() + self._grace + self._drain_timeout
        for job in self._live:
            if self._on_shutdown == "keep":
                job.detach()
                continue
            # A stop under way with a longer grace must not hold shutdown up beyond ours.
            job.limit_grace(self._grace)
            job.limit_streams(deadline)
        # Shutdown is cancel-scope propagation: each job's stopper turns this cancellation
        # into SIGTERM, grace, SIGKILL (or, detached, just lets go), and the streams drain
        # under their shields.
        nursery.cancel_scope.cancel()

    @property
    def containment(self) -> str:
        """The backend in use: "cgroup2", "cgroup1" or "none" (once entered); "slurm" for
        the Slurm executor."""
        return self._executor.containment if self._executor is not None else "none"

    def gauges(self) -> EngineGauges:
        """The jobs running, per owner; supervisors alive; bytes written by jobs so far; the
        containment. Cheap enough for each scrape: one pass over the jobs in memory."""
        running: dict[str, int] = {}
        supervisors = 0
        written = self._output_done
        for job in self._jobs.values():
            written += job.log.size - job.log.base
            if not job.ended.is_set():
                running[job.owner] = running.get(job.owner, 0) + 1
                supervisors += isinstance(job.execution, Supervisor) and job.execution.alive
        return EngineGauges(running, supervisors, written, self.containment, self._queued.counts())

    def describe_containment(self) -> str:
        """The backend in use and where its groups are, in words (once entered)."""
        if self._executor_name == "slurm":
            return "slurm (the cluster's cgroups, on its nodes)"
        return self._backend.describe() if self._backend is not None else "not entered"

    async def start(
        self,
        owner: str,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        limits: JobLimits | None = None,
        account: Account | None = None,
        input: Input = Input.NONE,
        window: WindowSize | None = None,
        isolation: Isolation = NONE,
        timeout: float | None = None,  # noqa: ASYNC109 - the job's run time, not this call's
        name: str = "",
        labels: Mapping[str, str] | None = None,
        queue: bool = False,
    ) -> JobStatus:
        """Start ``argv`` for ``owner`` and return its status once the command is running.

        ``argv[0]`` is looked up on PATH like execvp; there is no shell. stdout and stderr
        share one pipe into the job's output log. ``input``: stdin is /dev/null (NONE), a
        pipe (PIPE), or a pseudo-terminal of ``window``'s size (TERMINAL; 24x80 without),
        which is also the job's controlling terminal, stdout and stderr; the job's owner
        writes to either through ``input()``. ``cwd`` must be absolute.
        ``limits``: resource limits, within the manager's maxima; what is not given comes from
        the manager's defaults. ``account``: the local user the job runs as (which needs
        root, unless it is this process's own); its HOME, USER and LOGNAME are set unless
        ``env`` sets them, and with no ``cwd`` the job starts in its home (or /). None: the
        job runs as this process's user, with neither. ``isolation``: the namespaces it runs
        in (isolation.py); they need root, else IsolationUnavailable and no job.
        ``timeout``: seconds after which the job is stopped as stop() would (reason
        ``timeout``, state FAILED), kept by its supervisor (or Slurm), so it holds across
        managers; its deadline (JobStatus.deadline) is fixed now. ``name`` and ``labels``:
        what its owner calls it, and key=value pairs to find it by (``list``); their
        bounds are in labels.py.
        ``queue``: if a job limit (ManagerLimits.max_jobs, max_jobs_per_owner) refuses the
        job now, or the owner has jobs queued already, queue it (queue.py) and return its
        status, QUEUED, with its position; it starts once there is room, and follows the
        owner's jobs queued before it. Raises InvalidRequest, SpawnError (the
        command could not be executed, its user not taken on, or its cgroup not set up, or
        it did not reach exec within process.SPAWN_TIMEOUT), LimitExceeded (with ``queue``:
        the queue is full), StoreError or ManagerClosed;
        on any error no job exists and nothing is left behind.

        Cancellation: deferred while the process is being spawned (at most SPAWN_TIMEOUT) and
        recorded; a caller cancelled by then leaves a running, recorded job.
        """
        await trio.lowlevel.checkpoint()
        self._open_nursery()
        assert self._launcher is not None
        asked = StartRequest(
            cwd, env or {}, limits, input, window, isolation, timeout, account, name, labels or {}
        )
        spec, request = self._launcher.prepare(owner, argv, asked)
        if queue and (self._queued.waiting(owner) or not self._capacity.allows(owner)):
            return await self._queued.enqueue(queued_status(spec, self.containment), request)
        self._capacity.check(owner)
        # Counted from now (see capacity.py): until the job exists, a failure takes it back
        # off; once it does, its end does. A start for the queue's turns too, as a pump's.
        self._capacity.reserve(owner)
        self._queued.order.started(owner)
        try:
            return await self._launcher.start_new(spec, request)
        except BaseException:
            self._queued.pump()  # its room is free again
            raise

    def _hold(self, job: Job) -> None:
        """A job that has just started is ours: in memory, and running in our nursery."""
        assert self._holder is not None
        self._jobs[job.id] = job
        # The bytes written before it was found here, whose notes may have come too soon:
        # from now on each note finds it.
        job.log.grew(truncated=False, error="")
        self._live.add(job)
        self._holder.start_soon(self._run_job, job)

    async def stop(self, owner: str, job_id: str, *, grace: float | None = None) -> JobStatus:
        """Stop a job and return its final status once its processes are all gone.

        SIGTERM goes to the job's process group and to every other process of the job (its
        supervisor's descendants);
        after ``grace`` seconds (the manager's by default) SIGKILL follows, to all of them.
        Stopping a job that has ended is not an error: it returns the final status. A job
        in the queue leaves it, never run: STOPPED, reason ``dequeued``.
        Cancellation: the stop goes on without the caller.
        """
        if grace is not None:
            validate.check_grace(grace)
        job = await self._lookup(owner, job_id)
        while isinstance(job, JobStatus) and job.state is JobState.QUEUED:
            dequeued = await self._queued.stop(job_id)
            if dequeued is not None:
                return dequeued
            job = await self._lookup(owner, job_id)  # it started meanwhile
        if isinstance(job, JobStatus):
            return job  # ended and on record
        job.request_stop(self._grace if grace is None else grace)
        await job.ended.wait()
        return job.status()

    async def wait(self, owner: str, job_id: str) -> JobStatus:
        """Wait until the job has ended and all its processes are gone; return its status.
        A queued job is waited for through its run."""
        job = await self._started(owner, job_id)
        if isinstance(job, JobStatus):
            return job
        await job.ended.wait()
        return job.status()

    async def status(self, owner: str, job_id: str) -> JobStatus:
        """The job's current status."""
        job = await self._lookup(owner, job_id)
        return job if isinstance(job, JobStatus) else job.status()

    async def list(
        self,
        owner: str | None,
        *,
        page_size: int = 100,
        page_token: str = "",
        wanted: JobFilter | None = None,
    ) -> Page:
        """The owner's jobs, newest first, a page at a time; every owner's with ``None`` (for
        administrators). ``page_token`` is the previous page's ``next_token``. ``wanted``:
        only the jobs that pass it (listing.py); a page may then hold fewer than
        ``page_size`` jobs, none even, with more to follow (``next_token`` says)."""
        if owner is not None:
            validate.check_owner(owner)
        validate.check_page(page_size, page_token)
        wanted = wanted or JobFilter()
        wanted.check()
        await trio.lowlevel.checkpoint()
        self._check_records()
        page = await self._store.page(owner, size=page_size, token=page_token, wanted=wanted)
        # The records of running jobs were written at start, and of queued ones when they
        # were queued: their live status (a position) is newer, and it is the live state
        # that a filter's states are about.
        found = [
            (
                self._jobs[s.id].status()
                if not s.state.is_final and s.id in self._jobs
                else self._queued.live(s),
                c,
            )
            for s, c in zip(page.jobs, page.cursors, strict=True)
        ]
        kept = [(s, c) for s, c in found if wanted.admits(s)]
        return Page([s for s, _ in kept], page.next_token, [c for _, c in kept])

    async def owner_of(self, job_id: str) -> str:
        """Who owns the job, for callers entitled to every job (administrators)."""
        validate.check_job_id(job_id)
        job = self._jobs.get(job_id)
        if job is not None:
            await trio.lowlevel.checkpoint()
            return job.owner
        self._check_records()
        status = await self._store.get(job_id)
        if status is None:
            raise JobNotFound(job_id)
        return status.owner

    @asynccontextmanager
    async def input(self, owner: str, job_id: str) -> AsyncGenerator[InputSink, None]:
        """The job's input, its stdin pipe or its terminal, for its owner to write to:
        ``async with jobs.input(owner, job_id) as sink: await sink.write(data)``.

        One writer at a time: InputBusy for a second. Leaving the block ends a pipe's input
        (the job reads EOF; a pipe is written once) and lets go of a terminal (another
        writer may come). ``sink.write`` waits while the job does not read, and returns
        False once it has closed its input or ended. Raises JobNotFound, InputUnavailable
        (started without input, its pipe's input has ended, or the job has ended),
        InputBusy, ManagerClosed, or SupervisorUnreachable (its supervisor did not hand the
        input over) on entering the block. Cancellation: leaving at any time is
        leaving the block.
        """
        validate.check_owner(owner)
        job = await self._started(owner, job_id)
        if not isinstance(job, Job):
            if job.input is Input.NONE:
                raise InputUnavailable(WITHOUT_INPUT)
            raise InputUnavailable("the job has ended")
        if self._nursery is None:
            raise ManagerClosed("the job manager is shutting down")
        async with job.open_input() as sink:
            yield sink

    @asynccontextmanager
    async def output(
        self,
        owner: str,
        job_id: str,
        *,
        offset: int = 0,
        follow: bool = True,
        chunk_size: ChunkSize = 64 * 1024,
    ) -> AsyncGenerator[AsyncIterator[bytes], None]:
        """The job's combined stdout and stderr, from byte ``offset``, in chunks:
        ``async with jobs.output(owner, job_id) as chunks: async for chunk in chunks: ...``.

        With ``follow``, new output is yielded as it is written, until the job has ended and
        everything has been read (a queued job's once it has started); without it, the
        output there is now. Raises JobNotFound or
        InvalidRequest on entering the block; OutputUnavailable from the iteration, and
        ManagerClosed there if shutdown ends a follower's stream before its end (the job
        is kept running, or the drain deadline passed). Leaving
        the block closes the reader (its file, and the stream task of a follower of a live
        job). Cancellation: a reader may leave at any time; it costs the job nothing.
        """
        validate.check_read(offset, chunk_size)
        job = await (self._started if follow else self._lookup)(owner, job_id)
        async with aclosing(
            self._chunks(job, offset, follow=follow, chunk_size=chunk_size)
        ) as chunks:
            yield chunks

    @asynccontextmanager
    async def output_window(
        self,
        owner: str,
        job_id: str,
        window: OutputWindow,
        *,
        offset: int = 0,
        follow: bool = True,
        chunk_size: ChunkSize = 64 * 1024,
    ) -> AsyncGenerator[tuple[int, AsyncIterator[Piece]], None]:
        """As ``output``, through ``window`` (window.py): where the stream begins (past
        ``offset`` for a tail or a since), and its pieces, cut where their time changes.

        Raises as ``output`` does, and TimesUnavailable on entering the block for a timed
        window on a job whose output has no time index. Cancellation: as ``output``.
        """
        validate.check_read(offset, chunk_size)
        window.check()
        job = await (self._started if follow else self._lookup)(owner, job_id)
        if isinstance(job, JobStatus) and job.state is JobState.QUEUED:
            # Not started (and not followed): no output, and no index yet to find times in.
            async with aclosing(OutputLog.nothing()) as nothing:
                yield offset, (Piece(offset, data, None) async for data in nothing)
            return
        size = job.log.size if isinstance(job, Job) else job.output_bytes
        log_path = self._logs_dir / f"{job.id}.log"
        chunks = partial(self._chunks, job, follow=follow, chunk_size=chunk_size)
        async with open_window(window, log_path, size, offset, chunks) as opened:
            yield opened

    def _chunks(
        self, job: Job | JobStatus, offset: int, *, follow: bool, chunk_size: ChunkSize
    ) -> AsyncGenerator[bytes, None]:
        if isinstance(job, Job):
            return job.output(offset, follow=follow, chunk_size=chunk_size)
        if job.state is JobState.QUEUED:
            return OutputLog.nothing()  # not started: no output yet
        log_file = OutputLog.finished(self._logs_dir / f"{job.id}.log", job.output_bytes)
        return log_file.read(offset, follow=False, chunk_size=chunk_size)

    def _check_records(self) -> None:
        # Records stay readable while shutting down, until the store closes: a follower
        # that outlives its job asks for the final status from there.
        if not self._serving or not self._store.is_open:
            raise ManagerClosed("the job manager is not running")

    def _open_nursery(self) -> trio.Nursery:
        if self._nursery is None:
            raise ManagerClosed("the job manager is not running")
        return self._nursery

    async def _lookup(self, owner: str, job_id: str) -> Job | JobStatus:
        """The job in memory, or the record of an ended one."""
        validate.check_owner(owner)
        validate.check_job_id(job_id)
        job = self._jobs.get(job_id)
        if job is not None and job.owner == owner:
            await trio.lowlevel.checkpoint()
            return job
        queued = self._queued.find(job_id, owner)
        if queued is not None:
            await trio.lowlevel.checkpoint()
            return queued
        # Another owner's job, running or not, takes the path of one that does not exist: the
        # same query, with the same answer (timing would otherwise tell them apart).
        self._check_records()
        status = await self._store.get(job_id, owner=owner)
        if status is None:
            raise JobNotFound(job_id)
        return status

    async def _started(self, owner: str, job_id: str) -> Job | JobStatus:
        """As _lookup, once a queued job has left the queue (ManagerClosed at shutdown)."""
        job = await self._lookup(owner, job_id)
        while isinstance(job, JobStatus) and job.state is JobState.QUEUED:
            await self._queued.left(job_id)
            job = await self._lookup(owner, job_id)
        return job

    async def request_of(self, owner: str, job_id: str) -> tuple[JobStatus, StartRequest]:
        """The record of the owner's job that has ended, and the request it was started
        with, to start it again. Raises JobNotFound, or NotRestartable: the job has not
        ended, or was recorded before servers kept start requests."""
        job = await self._lookup(owner, job_id)
        status = job.status() if isinstance(job, Job) else job
        if not status.state.is_final:
            raise NotRestartable(
                f"job {job_id} is still {status.state.value}: stop it first (jog stop), or "
                "wait for its end"
            )
        found = await self._store.request_of(job_id, owner)
        if found is None:
            raise JobNotFound(job_id)
        return found[0], restartable(job_id, found[1])

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
        self._capacity.ended(job.owner)
        self._queued.pump()  # its room is free
        if job.refused:
            return
        self._observer.job_ended(s.state.value, s.reason)
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
        # In a worker thread: three unlinks, each of which waits on a busy loaded machine
        # for the GIL back from the worker threads (2.7 ms a job in the start bench's
        # profile). Shielded: a leftover end record would stay in run/ for good.
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(forget_end, self._run_dir, job.id)
        if self._retainer is not None:
            self._retainer.job_ended(s)

    async def _run_job(self, job: Job) -> None:
        try:
            await job.run()
        finally:
            self._live.discard(job)
            if job.recorded or job.refused:
                self._output_done += job.log.size - job.log.base
                del self._jobs[job.id]
            if job.refused:
                job.log.discard()


def _owning(
    manager: Callable[P, JobManager],
) -> Callable[P, AbstractAsyncContextManager[JobManager]]:
    # open_job_manager takes JobManager's own arguments, typed (and shown by help()) as such.
    @asynccontextmanager
    async def open_job_manager(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[JobManager]:
        """``async with open_job_manager(state_dir, ...) as jobs:``: a JobManager, given the
        same arguments, running until the block ends; its nursery is the block's. See
        JobManager. Cancellation: cancelling the block shuts the manager down, as leaving it
        does."""
        async with manager(*args, **kwargs)._run() as jobs:
            yield jobs

    open_job_manager.__signature__ = inspect.signature(manager)  # type: ignore[attr-defined]
    return open_job_manager


open_job_manager = _owning(JobManager)

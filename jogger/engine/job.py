"""One job: its execution, its output log, its cgroup watcher and its followers, in one nursery.

    job nursery
    ├── stopper         waits for the job's end (its supervisor's exit, or Slurm's word);
    │                   on stop or shutdown: SIGTERM, grace, SIGKILL, through the executor
    │                   (executor.py) and the cgroup
    ├── cgroup watcher
    └── streams         one per following reader: log -> that reader's channel

The job's processes are not ours: the local executor's are children of the job's supervisor
(supervisor.py), which writes the log and outlives this server if need be; a Slurm job's are
Slurm's (slurm/). The manager tells the job when the log has grown (notes.py, or the Slurm
executor's watch of the file); the job ends when its execution says it has, its end known.

Stopping a job cancels the stopper's scope; shutting down cancels the manager's scope, and
with it every job nursery. Either way the stopper turns the cancellation into the kill
sequence, shielded so that it always completes, unless the job was ``detach``-ed first
(``--on-shutdown keep``): then the nursery just ends, and the job runs on for the next
server. The streams are shielded too, so that every follower gets the last bytes a dying job
writes; deadlines, not flags, bound how long they may take.
"""

import logging
import math
import signal
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import trio

from .account import Account
from .cgroups import KILL_TIMEOUT, REMOVE_TIMEOUT, JobGroup, Usage
from .errors import InputBusy, InputUnavailable, ManagerClosed, OutputUnavailable
from .executor import Execution, Executor, Spec
from .input import WITHOUT_INPUT, InputSink, take_input
from .isolation import NONE, Isolation
from .output import ChunkSize, OutputLog
from .status import Input, JobState, JobStatus
from .supervisor import EOF_GRACE, End

logger = logging.getLogger(__name__)


class Job:
    def __init__(
        self,
        *,
        job_id: str,
        owner: str,
        argv: tuple[str, ...],
        account: Account | None,
        execution: Execution,
        log: OutputLog,
        group: JobGroup,
        grace: float,
        run_dir: Path,
        on_end: Callable[["Job"], Awaitable[None]],
        started_at: datetime | None = None,
        run_as: tuple[str, int | None] | None = None,
        input: Input = Input.NONE,
        isolation: Isolation = NONE,
        timeout: float | None = None,
        name: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.id = job_id
        self.name = name
        self.labels = labels or {}
        self.input = input
        self.isolation = isolation
        self.timeout = timeout
        """Kept by the executor (the supervisor stops the job, Slurm ends it); here for
        the status."""
        self._sink: InputSink | None = None
        """The writer of the job's input, while there is one (open_input): one at a time."""
        self.owner = owner
        self.argv = argv
        self.execution = execution
        self.pid = execution.job_pid
        self._run_as = run_as or (
            (account.name, account.uid) if account is not None else ("", None)
        )
        self.log = log
        self._group = group
        self._run_dir = run_dir
        self._usage: Usage | None = None
        # Shielded: whatever ends the job, its group must be found empty and removed; the
        # deadline is set once the job has ended (see _end), and detach() cancels it.
        self._watch_scope = trio.CancelScope(shield=True)
        self._grace = grace
        self._grace_cap = math.inf
        """Set by limit_grace (shutdown): no later stop may ask for more."""
        self._on_end = on_end
        self.recorded = False
        """Set by the manager once the job's final record is in the store."""
        self.refused = False
        """Set by the manager when the job's start could not be recorded: it is killed."""
        self.detached = False
        """Set by detach(): the server leaves, and the job runs on without it."""
        self._started_at = started_at or datetime.now(UTC)
        self._ended_at: datetime | None = None
        self._state = JobState.RUNNING
        self._exit_code: int | None = None
        self._signal: int | None = None
        self._reason = ""
        self._sent_term = False
        self._sent_kill = False
        self.ended = trio.Event()
        self._stop_scope = trio.CancelScope()
        self._grace_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._running = trio.Event()
        self._streams: set[trio.CancelScope] = set()
        self._stream_deadline = math.inf

    @classmethod
    async def launch(
        cls,
        executor: Executor,
        spec: Spec,
        log_path: Path,
        *,
        max_output_bytes: int,
        run_dir: Path,
        grace: float,
        on_end: Callable[["Job"], Awaitable[None]],
    ) -> "Job":
        """Start the job through ``executor``, in a new group of its, with its output going
        to a new log at ``log_path``. On any error neither is left behind: the log is
        deleted and the group discarded. Cancellation: as the executor's start."""
        group = executor.group(spec)
        try:
            output, log_fd = OutputLog.create(log_path, max_output_bytes)
        except BaseException:
            group.discard()
            raise
        try:
            execution = await executor.start(spec, group, log_path, log_fd)
        except BaseException:
            output.discard()
            group.discard()
            raise
        finally:
            OutputLog.close_fd(log_fd)
        group.attach(execution.job_pid)
        return cls(
            job_id=spec.job_id,
            owner=spec.owner,
            argv=spec.argv,
            account=spec.account,
            execution=execution,
            log=output,
            group=group,
            grace=grace,
            run_dir=run_dir,
            on_end=on_end,
            input=spec.input,
            isolation=spec.isolation,
            timeout=spec.timeout,
            name=spec.name,
            labels=spec.labels,
        )

    @classmethod
    def adopt(
        cls,
        record: JobStatus,
        execution: Execution,
        group: JobGroup,
        log: OutputLog,
        *,
        grace: float,
        run_dir: Path,
        on_end: Callable[["Job"], Awaitable[None]],
    ) -> "Job":
        """The job of ``record``, which a server before us started and which still runs
        (its supervisor, or its Slurm job): as if we had started it."""
        group.attach(execution.job_pid)
        return cls(
            job_id=record.id,
            owner=record.owner,
            argv=record.argv,
            account=None,
            execution=execution,
            log=log,
            group=group,
            grace=grace,
            run_dir=run_dir,
            on_end=on_end,
            started_at=record.started_at,
            run_as=(record.run_as, record.run_as_uid),
            input=record.input,
            isolation=record.isolation,
            timeout=record.timeout,
            name=record.name,
            labels=record.labels,
        )

    def status(self) -> JobStatus:
        usage = self._usage if self._usage is not None else self._group.usage()
        run_as, run_as_uid = self._run_as
        state, reason = self._state, self._reason
        waiting = self.execution.waiting() if state is JobState.RUNNING else None
        if waiting is not None:
            state, reason = JobState.QUEUED, waiting
        return JobStatus(
            id=self.id,
            owner=self.owner,
            argv=self.argv,
            state=state,
            pid=self.pid,
            started_at=self._started_at,
            ended_at=self._ended_at,
            exit_code=self._exit_code,
            signal=self._signal,
            reason=reason,
            output_bytes=self.log.size,
            output_truncated=self.log.truncated,
            output_error=self.log.error,
            containment=self._group.containment,
            limits=self._group.limits,
            cpu_seconds=usage.cpu_seconds,
            memory_peak=usage.memory_peak,
            run_as=run_as,
            run_as_uid=run_as_uid,
            input=self.input,
            isolation=self.isolation,
            external_id=self.execution.external_id,
            timeout=self.timeout,
            name=self.name,
            labels=self.labels,
        )

    async def run(self) -> None:
        """Run the job's nursery until the job has ended and every follower has finished
        (or until it is detached)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._supervise)
            nursery.start_soon(self._watch)
            self._running.set()

    def detach(self) -> None:
        """Leave the job running without us (``--on-shutdown keep``): when the manager's
        scope is cancelled next, this job's nursery ends without stopping it, its record
        stays "running", and the next server adopts it. Followers are cut off now; their
        clients resume from their offset on the next server."""
        if self.ended.is_set() or self._stop_scope.cancel_called:
            return  # ending, or being stopped by a user: that finishes first
        self.detached = True
        self._stream_deadline = -math.inf  # and any follower that comes now
        # Cancelled: the group outlives us, watched by the next server.
        self._watch_scope.cancel()
        for scope in self._streams:
            # Cancelled: the follower's client reconnects to the next server.
            scope.cancel()

    def request_stop(self, grace: float) -> None:
        """Begin SIGTERM, ``grace`` seconds, SIGKILL. A shorter grace shortens a stop under way."""
        if self._state.is_final:
            return
        if self._stop_scope.cancel_called:
            self._grace = min(self._grace, grace)
        else:
            self._grace = grace
        self._grace = min(self._grace, self._grace_cap)
        if self._grace_scope is not None:
            self._grace_scope.deadline = min(
                self._grace_scope.deadline, trio.current_time() + grace
            )
        # Stop is cancel-scope propagation: the supervisor catches this and runs the kill sequence.
        self._stop_scope.cancel()

    async def refuse(self) -> None:
        """Kill a job whose start could not be recorded; return once it is gone."""
        self.refused = True
        self.execution.abandon()  # it kills the job at once, and records nothing
        self.request_stop(0)
        # Shielded: the caller learns of the failure only once the job is gone; SIGKILL
        # makes that prompt, and the job bounds the wait (KILL_TIMEOUT).
        with trio.CancelScope(shield=True):
            await self.ended.wait()

    def limit_grace(self, grace: float) -> None:
        """Shorten the grace period of a stop under way (or to come) to at most ``grace``."""
        self._grace_cap = min(self._grace_cap, grace)
        self._grace = min(self._grace, grace)
        if self._grace_scope is not None:
            self._grace_scope.deadline = min(
                self._grace_scope.deadline, trio.current_time() + grace
            )

    def limit_streams(self, deadline: float) -> None:
        """Give every follower until ``deadline`` to take its final bytes (used at shutdown)."""
        self._stream_deadline = min(self._stream_deadline, deadline)
        for scope in self._streams:
            scope.deadline = min(scope.deadline, deadline)

    async def output(
        self, offset: int, *, follow: bool, chunk_size: ChunkSize
    ) -> AsyncGenerator[bytes, None]:
        if follow and not self.log.closed:
            await self._running.wait()  # a job started a moment ago may not have its nursery yet
        if not follow or self.log.closed:
            # Nothing will be added (or the caller asked for no more): read the file directly.
            async with aclosing(self.log.read(offset, follow=follow, chunk_size=chunk_size)) as it:
                async for chunk in it:
                    yield chunk
            return
        # A follower of a live job is a task of the job's nursery, handing over one chunk at a
        # time: a reader that stalls holds at most one chunk and never slows the job.
        # While the log is open the job has not ended, so its nursery is open.
        assert self._nursery is not None
        send, receive = trio.open_memory_channel[bytes | OutputUnavailable | None](0)
        # Shielded so that shutdown does not cut the follower off before the job's last
        # bytes; limit_streams() gives it a deadline then. Registered here, not when the task
        # first runs, so that a shutdown beginning in between still limits it.
        scope = trio.CancelScope(shield=True, deadline=self._stream_deadline)
        self._streams.add(scope)
        self._nursery.start_soon(self._stream, scope, send, offset, chunk_size)
        complete = False
        try:
            with receive:
                async for item in receive:
                    if isinstance(item, OutputUnavailable):
                        raise item
                    if item is None:
                        complete = True  # the stream task read the closed log to its end
                        continue
                    yield item
            if self.detached:
                # Not the end of the output: the job runs on, for the next server.
                raise ManagerClosed("the server is shutting down; the job runs on")
            if not complete:
                # Nor here: shutdown's drain deadline (limit_streams) cut the stream before
                # its end (the job's, or the last bytes to a slow reader). Ending as if
                # complete would pass for the whole output, and have the caller take the
                # job's status then, maybe still running, for its final one.
                raise ManagerClosed(
                    "the server is shutting down; the job's output stream was cut off "
                    "before its end"
                )
        finally:
            # The reader is done or gone: end its stream task now, not at its next send.
            scope.cancel()

    @asynccontextmanager
    async def open_input(self) -> AsyncGenerator[InputSink, None]:
        """The job's input, for one writer at a time (InputBusy for a second); leaving the
        block ends a pipe's input and lets go of a terminal. InputUnavailable if the job
        takes none, or no more. SupervisorUnreachable if its supervisor cannot hand it
        over."""
        if self.input is Input.NONE:
            raise InputUnavailable(WITHOUT_INPUT)
        if self._sink is not None:
            raise InputBusy("another client is writing to the job: one writer at a time")
        if self._state.is_final:
            raise InputUnavailable("the job has ended")
        # Held from here, so that a second writer asking meanwhile is refused.
        self._sink = sink = InputSink(self.input)
        try:
            sink.attach(await take_input(self._run_dir, self.id, self.input))
            if self._state.is_final:
                sink.job_ended()
            yield sink
        finally:
            self._sink = None
            sink.close()

    async def _stream(
        self,
        scope: trio.CancelScope,
        send: trio.MemorySendChannel[bytes | OutputUnavailable | None],
        offset: int,
        chunk_size: ChunkSize,
    ) -> None:
        """Hand the log's chunks to the reader, then None once it has them all (the log is
        closed, and read to its end): without that None, the reader was cut off."""
        try:
            with send, scope:
                try:
                    chunks = self.log.read(offset, follow=True, chunk_size=chunk_size)
                    async with aclosing(chunks) as it:
                        async for chunk in it:
                            await send.send(chunk)
                    await send.send(None)
                except OutputUnavailable as exc:
                    # The reader's failure, not the job's: hand it over rather than letting
                    # it escape into the job's nursery.
                    await send.send(exc)
        except trio.BrokenResourceError:
            pass  # the reader closed its end; it has cancelled our scope as well
        finally:
            self._streams.discard(scope)

    async def _watch(self) -> None:
        with self._watch_scope:
            await self._group.watch(self.ended)

    async def _supervise(self) -> None:
        """The stopper: wait for the supervisor to exit; on stop or shutdown, end the job."""
        try:
            with self._stop_scope:
                await self.execution.wait_exited()
        except BaseException:
            # Only the manager's scope ending (shutdown) gets here: our own stop scope
            # swallows its own cancellation.
            if self.detached:
                self.execution.close()
                raise  # the job runs on; the next server adopts it
            self._reason = self._reason or "server-shutdown"
            try:
                await self._terminate()
            finally:
                await self._end()
            raise
        try:
            if self._stop_scope.cancelled_caught:
                await self._terminate()
        finally:
            await self._end()

    async def _terminate(self) -> None:
        # Shielded: once a kill sequence begins it must finish, or the job's processes could
        # outlive it. It is bounded by the grace period plus the time SIGKILL takes.
        with trio.CancelScope(shield=True):
            if self.execution.exited:
                return
            # SIGTERM: the supervisor sends it to the job's process group and to every other
            # process of the job (each descends from it, in a cgroup or not).
            self.execution.stop(self._grace)
            self._sent_term = True
            # The grace period is for the whole job: children that handle SIGTERM get it
            # too, even after the main process has exited. The supervisor exits once the
            # whole job has.
            with trio.move_on_after(self._grace) as self._grace_scope:
                await self.execution.wait_exited()
            if self._grace_scope.cancelled_caught:
                self._sent_kill = True
                self.execution.kill_now()  # SIGKILL, to every process
                await self._kill_all()
                # Bounded: a process in uninterruptible sleep outlives SIGKILL (the
                # supervisor gives up on it after KILL_TIMEOUT, and ends).
                with trio.move_on_after(KILL_TIMEOUT + EOF_GRACE + 5):
                    await self.execution.wait_exited()

    async def _kill_all(self) -> None:
        try:
            await self._group.kill()
        except OSError as exc:
            # Out of fds, or the cgroup fs misbehaving: every other process of the cgroup
            # that can still be listed gets it (and the supervisor kills its own).
            logger.warning("job %s: killing its cgroup failed: %s", self.id, exc)
            self._group.signal(signal.SIGKILL)

    async def _end(self) -> None:
        """The supervisor has exited (or never will, or must not be waited for): read the
        job's end, kill whatever is left, record it.

        Runs even if the kill sequence failed (out of fds, say): the job is then recorded as
        ended, so that stop(), followers and shutdown never wait for it forever.
        """
        end: End | None = None
        try:
            # Shielded: the job is not over, and stop() must not return, until its
            # processes are gone; SIGKILL makes that prompt, and the waits are bounded.
            with trio.CancelScope(shield=True):
                if self.execution.exited:
                    end = self.execution.end()
                if end is not None and end.note:
                    logger.warning("job %s: %s", self.id, end.note)
                if end is None and not self.refused:
                    # The supervisor was killed (an admin, the OOM killer), or hangs: the
                    # job has nobody to record it, so it is killed, all of it.
                    logger.error(
                        "job %s: its executor %s; the job is killed",
                        self.id,
                        "ended without recording its end"
                        if self.execution.exited
                        else "does not end",
                    )
                    self._reason = "slurm-lost" if self.execution.external_id else "supervisor-lost"
                if end is None:
                    await self._kill_all()
                    await self.execution.kill_lost()
                # Like systemd's KillMode=control-group: whatever is left in the group dies
                # with the job (the supervisor has done that already, unless a process
                # outlived its SIGKILL).
                with trio.move_on_after(KILL_TIMEOUT) as timer:
                    await self._group.emptied.wait()
                if timer.cancelled_caught:
                    await self._kill_all()
                    logger.warning(
                        "job %s: processes survived SIGKILL for %.0f s (uninterruptible sleep?)",
                        self.id,
                        KILL_TIMEOUT,
                    )
        finally:
            self.execution.close()
            self._take_end(end)
            if self._sink is not None:
                self._sink.job_ended()  # a writer waiting for it must not wait on
            self._watch_scope.deadline = trio.current_time() + KILL_TIMEOUT + REMOVE_TIMEOUT
            # Shielded: nobody may see the job as ended before its end is on record (a stop
            # returns only then). Bounded by the store's write.
            with trio.CancelScope(shield=True):
                try:
                    await self._on_end(self)
                finally:
                    self.ended.set()

    def _take_end(self, end: End | None) -> None:
        """The job's final state, from its supervisor's end record (None: there is none)."""
        self._ended_at = end.ended_at if end is not None else datetime.now(UTC)
        usage = self._group.usage()
        if end is not None and usage.cpu_seconds is None:
            usage = Usage(end.cpu_seconds, end.memory_peak, usage.oom_killed)
        self._usage = usage
        if end is None:
            self._state = JobState.KILLED
            self.log.finish(None, False, "")
            return
        self._exit_code, self._signal = end.exit_code, end.signal
        self._state = end.state()
        self._sent_kill = end.killed(self._sent_kill)
        timed_out = end.cause == "timeout"
        if self._sent_kill and not timed_out:
            self._state = JobState.KILLED
        if usage.oom_killed:
            self._reason = "oom"
        elif timed_out or not self._reason:
            # The timeout's stop came first: a stop or a shutdown during its grace is not
            # why the job ended.
            self._reason = end.reason(oom=False)
        self.log.finish(end.output_bytes, end.output_truncated, end.output_error)

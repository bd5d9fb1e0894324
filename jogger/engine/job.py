"""One job: its process, its output log, its cgroup watcher and its followers, in one nursery.

    job nursery
    ├── supervisor      waits for the main process; on stop or shutdown: SIGTERM, grace, SIGKILL
    ├── pump            pipe -> output log, until EOF
    ├── cgroup watcher
    └── streams         one per following reader: log -> that reader's channel

Stopping a job cancels the supervisor's scope; shutting down cancels the manager's scope, and
with it every job nursery. Either way the supervisor turns the cancellation into the kill
sequence, shielded so that it always completes. The pump and the streams are shielded too,
so that the last bytes a dying job writes still reach the log and every follower; deadlines,
not flags, bound how long they may take.
"""

import logging
import math
import os
import signal
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from datetime import UTC, datetime
from pathlib import Path

import trio

from .account import Account
from .cgroups import KILL_TIMEOUT, REMOVE_TIMEOUT, JobGroup, Usage
from .errors import OutputUnavailable
from .output import ChunkSize, OutputLog
from .process import Exit, JobProcess
from .status import JobState, JobStatus

# Once the job's processes are all dead the pipe is at EOF at once; if it is not, something
# that left the job (its cgroup, or its process group) still holds it, and the log is closed
# after this long.
EOF_GRACE = 2.0

logger = logging.getLogger(__name__)


class Job:
    def __init__(
        self,
        *,
        job_id: str,
        owner: str,
        argv: tuple[str, ...],
        account: Account | None,
        process: JobProcess,
        log: OutputLog,
        group: JobGroup,
        grace: float,
        on_end: Callable[["Job"], Awaitable[None]],
    ) -> None:
        self.id = job_id
        self.owner = owner
        self.argv = argv
        self.pid = process.pid
        self._account = account
        self.log = log
        self._process = process
        self._group = group
        self._usage: Usage | None = None
        # Shielded: whatever ends the job, its group must be found empty and removed; the
        # deadline is set once the job has ended (see _end).
        self._watch_scope = trio.CancelScope(shield=True)
        self._grace = grace
        self._grace_cap = math.inf
        """Set by limit_grace (shutdown): no later stop may ask for more."""
        self._on_end = on_end
        self.recorded = False
        """Set by the manager once the job's final record is in the store."""
        self.refused = False
        """Set by the manager when the job's start could not be recorded: it is killed."""
        self._started_at = datetime.now(UTC)
        self._ended_at: datetime | None = None
        self._state = JobState.RUNNING
        self._exit: Exit | None = None
        self._reason = ""
        self._sent_term = False
        self._sent_kill = False
        self.ended = trio.Event()
        self._stop_scope = trio.CancelScope()
        self._grace_scope: trio.CancelScope | None = None
        # Shielded so that shutdown does not cut off output; bounded by EOF_GRACE (see _end).
        self._pump_scope = trio.CancelScope(shield=True)
        self._drained = trio.Event()
        """Set once the pump has reached EOF (or given up): output_bytes is final."""
        self._nursery: trio.Nursery | None = None
        self._running = trio.Event()
        self._streams: set[trio.CancelScope] = set()
        self._stream_deadline = math.inf

    @classmethod
    async def launch(
        cls,
        group: JobGroup,
        log_path: Path,
        *,
        max_output_bytes: int,
        job_id: str,
        owner: str,
        argv: tuple[str, ...],
        cwd: str | None,
        env: Mapping[str, str],
        account: Account | None,
        grace: float,
        on_end: Callable[["Job"], Awaitable[None]],
    ) -> "Job":
        """Spawn the job's main process into ``group`` (new, empty), with its output going to
        a new log at ``log_path``. On any error neither is left behind: the log is deleted
        and the group discarded. Cancellation: as JobProcess.spawn's."""
        try:
            output = OutputLog.create(log_path, max_output_bytes)
        except BaseException:
            group.discard()
            raise
        try:
            process = await JobProcess.spawn(
                argv,
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
        group.attach(process.pid)
        return cls(
            job_id=job_id,
            owner=owner,
            argv=argv,
            account=account,
            process=process,
            log=output,
            group=group,
            grace=grace,
            on_end=on_end,
        )

    def status(self) -> JobStatus:
        exit_ = self._exit
        usage = self._usage if self._usage is not None else self._group.usage()
        return JobStatus(
            id=self.id,
            owner=self.owner,
            argv=self.argv,
            state=self._state,
            pid=self.pid,
            started_at=self._started_at,
            ended_at=self._ended_at,
            exit_code=exit_.exit_code if exit_ else None,
            signal=exit_.signal if exit_ else None,
            reason=self._reason,
            output_bytes=self.log.size,
            output_truncated=self.log.truncated,
            output_error=self.log.error,
            containment=self._group.containment,
            limits=self._group.limits,
            cpu_seconds=usage.cpu_seconds,
            memory_peak=usage.memory_peak,
            run_as=self._account.name if self._account is not None else "",
            run_as_uid=self._account.uid if self._account is not None else None,
        )

    async def run(self) -> None:
        """Run the job's nursery until the job has ended and every follower has finished."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._supervise)
            nursery.start_soon(self._pump)
            nursery.start_soon(self._watch)
            self._running.set()

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
        # While the log is open the pump runs, so the job's nursery is open.
        assert self._nursery is not None
        send, receive = trio.open_memory_channel[bytes | OutputUnavailable](0)
        # Shielded so that shutdown does not cut the follower off before the job's last
        # bytes; limit_streams() gives it a deadline then. Registered here, not when the task
        # first runs, so that a shutdown beginning in between still limits it.
        scope = trio.CancelScope(shield=True, deadline=self._stream_deadline)
        self._streams.add(scope)
        self._nursery.start_soon(self._stream, scope, send, offset, chunk_size)
        try:
            with receive:
                async for item in receive:
                    if isinstance(item, OutputUnavailable):
                        raise item
                    yield item
        finally:
            # The reader is done or gone: end its stream task now, not at its next send.
            scope.cancel()

    async def _stream(
        self,
        scope: trio.CancelScope,
        send: trio.MemorySendChannel[bytes | OutputUnavailable],
        offset: int,
        chunk_size: ChunkSize,
    ) -> None:
        try:
            with send, scope:
                try:
                    chunks = self.log.read(offset, follow=True, chunk_size=chunk_size)
                    async with aclosing(chunks) as it:
                        async for chunk in it:
                            await send.send(chunk)
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

    async def _pump(self) -> None:
        try:
            try:
                with self._pump_scope:
                    await self.log.pump(self._process.output)
            finally:
                self._drained.set()
            # The pipe can reach EOF a moment before the main process becomes a zombie.
            # Followers end only once the job has, so whoever has seen the end of the
            # output also sees the final status. Shielded, so that shutdown does not close
            # the log early: _end sets ``ended`` in bounded time once the pump has drained.
            with trio.CancelScope(shield=True):
                await self.ended.wait()
        finally:
            trio.lowlevel.notify_closing(self._process.output)
            os.close(self._process.output)
            self.log.close()

    async def _supervise(self) -> None:
        try:
            with self._stop_scope:
                await self._process.wait_exited()
        except BaseException:
            # Only the manager's scope ending (shutdown) gets here: our own stop scope
            # swallows its own cancellation.
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
            if self._process.poll() is not None:
                return
            self._group.signal(signal.SIGTERM)
            self._sent_term = True
            # The grace period is for the whole job: children that handle SIGTERM get it
            # too, even after the main process has exited.
            with trio.move_on_after(self._grace) as self._grace_scope:
                await self._process.wait_exited()
                await self._group.emptied.wait()
            if self._grace_scope.cancelled_caught:
                await self._kill_all()
                self._sent_kill = True
                # Bounded: a process in uninterruptible sleep outlives SIGKILL (see _end).
                with trio.move_on_after(KILL_TIMEOUT):
                    await self._process.wait_exited()

    async def _kill_all(self) -> None:
        try:
            await self._group.kill()
        except OSError as exc:
            # Out of fds, or the cgroup fs misbehaving: the process group still gets it, and so
            # does every other process of the cgroup that can still be listed.
            logger.warning("job %s: killing its cgroup failed: %s", self.id, exc)
            self._group.signal(signal.SIGKILL)

    async def _end(self) -> None:
        """The main process has exited: kill what it left behind, reap it, record the end.

        Runs even if the kill sequence failed (out of fds, say): the job is then recorded as
        ended, so that stop(), followers and shutdown never wait for it forever.
        """
        try:
            # Like systemd's KillMode=control-group, and like Nomad's executor, whatever the
            # job left running dies with it (the whole cgroup, or the process group, whose id
            # stays ours while the main process is an unreaped zombie). Shielded: the job is
            # not over, and stop() must not return, until they are gone; SIGKILL makes that
            # prompt, and the wait is bounded.
            with trio.CancelScope(shield=True):
                await self._kill_all()
                with trio.move_on_after(KILL_TIMEOUT) as timer:
                    await self._group.emptied.wait()
                if not timer.cancelled_caught:
                    with trio.move_on_after(KILL_TIMEOUT) as timer:
                        await self._process.wait_exited()
            if timer.cancelled_caught:
                logger.warning(
                    "job %s: processes survived SIGKILL for %.0f s (uninterruptible sleep?)",
                    self.id,
                    KILL_TIMEOUT,
                )
        finally:
            self._exit = self._process.reap()
            self._ended_at = datetime.now(UTC)
            self._usage = self._group.usage()
            if self._usage.oom_killed:
                self._reason = "oom"
            if self._sent_kill:
                self._state = JobState.KILLED
            elif self._sent_term:
                self._state = JobState.STOPPED
            elif self._exit.exit_code == 0:
                self._state = JobState.COMPLETED
            else:
                self._state = JobState.FAILED
            self._pump_scope.deadline = trio.current_time() + EOF_GRACE
            self._watch_scope.deadline = trio.current_time() + KILL_TIMEOUT + REMOVE_TIMEOUT
            # Shielded: nobody may see the job as ended before its end is on record (a stop
            # returns only then). Bounded by EOF_GRACE and the store's write.
            with trio.CancelScope(shield=True):
                try:
                    await self._drained.wait()
                    if not self._reason and self.log.error:
                        self._reason = "disk-full" if self.log.disk_full else "output-error"
                    await self._on_end(self)
                finally:
                    self.ended.set()

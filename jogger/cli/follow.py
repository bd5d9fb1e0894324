"""Following a job's output to stdout, through restarts of the server.

When the connection drops (resume.is_drop) while the output streams, jog connects again with
backoff, for at most the reconnect timeout, and asks for the output from the byte it had
reached: the offset of the last chunk plus its bytes. So the user sees each byte once, and
one line on stderr per restart. A window (jog output --tail, --since, --timestamps) is asked
for again on every connection but its tail, which is applied once: the server's first
message says where the window begins, and from then on that offset is what counts.

    follow(client)   the stream on one connection, with ``beside`` next to it (jog run's stop)
    resume(dial)     after a drop: wait, connect, ask the job's status (the server is back
                     and serves the job: say so), follow again; until the job's final status
"""

import math
import sys
from collections.abc import Awaitable, Callable

import trio

from .._exceptiongroups import single_errors
from ..rpc.client import JobsClient
from ..rpc.errors import RpcError, StatusCode
from ..rpc.failures import TransportError
from ..v1 import jobs_pb2
from . import stdout
from .connect import Dialer
from .exits import CliError, Exit
from .resume import Outage, after_drop, describe_drop, is_drop
from .stamps import Stamper
from .window_args import WHOLE, Window

Beside = Callable[[JobsClient], Awaitable[None]]
"""A task that runs next to the stream on each connection; its drop is the stream's."""

Write = Callable[[bytes], Awaitable[None]]
"""Where the output goes: stdout, or one host's lines among others' (cli/merge.py)."""


async def to_stdout(data: bytes) -> None:
    """Write ``data`` to stdout untouched (cli/stdout.py)."""
    stdout.write(data)


class GaveUp(CliError):
    """The connection did not come back within the reconnect timeout."""

    def __init__(self, lost: str, hint: str) -> None:
        super().__init__(f"{lost}; {hint}", Exit.UNREACHABLE)
        self.lost = lost
        """The first half of the message: what was lost, for how long, and the last error."""


class Follower:
    """Copies one job's output from ``offset`` to ``write`` (stdout), and knows how far it
    got. ``name``: the host, in its lines on stderr, when there are several."""

    def __init__(
        self,
        job_id: str,
        *,
        offset: int = 0,
        reconnect_timeout: float,
        beside: Beside | None = None,
        write: Write = to_stdout,
        name: str | None = None,
        window: Window = WHOLE,
    ) -> None:
        self.job_id = job_id
        self.offset = offset
        """The next byte to ask for: where the last chunk ended."""
        self._window = window
        self._stamper = Stamper() if window.timestamps else None
        self._timeout = reconnect_timeout
        self._beside = beside
        self._write = write
        self._said = f"jog: {name}: " if name else "jog: "
        """How our lines on stderr begin: with the host's name, when there are several."""
        self._outage: Outage | None = None
        self._why = ""
        """The last failure seen, for the error that ends the waiting (an attempt cut short
        by the deadline, a connect that hung, has none of its own)."""

    async def run(self, dial: Dialer) -> jobs_pb2.JobStatus:
        """Connect, follow, and resume after every drop; return the job's final status."""
        async with dial() as client:
            final = await self.follow(client)
        return final if final is not None else await self.resume(dial)

    async def follow(self, client: JobsClient) -> jobs_pb2.JobStatus | None:
        """Copy the output on this connection until the job's final status, and return it.

        None if the connection dropped and a reconnect timeout is set: call ``resume``
        (outside this connection's block). Any other failure is raised.
        """
        try:
            with single_errors():
                async with trio.open_nursery() as nursery:
                    if self._beside is not None:
                        nursery.start_soon(self._beside, client)
                    final = await self._copy(client)
                    # The job has ended: what ran beside its output has nothing left to do.
                    nursery.cancel_scope.cancel()
        except (TransportError, RpcError, BaseExceptionGroup) as exc:
            if self._timeout <= 0 or not is_drop(exc):
                raise
            self._why = describe_drop(exc)
            self._outage = after_drop(self._outage, self._timeout, trio.current_time())
            return None
        return final

    async def resume(self, dial: Dialer) -> jobs_pb2.JobStatus:
        """After ``follow`` returned None: connect again and follow on, as often as the
        connection drops, until the job's final status.

        Raises GaveUp when an outage outlasts the reconnect timeout.
        Cancellation: between attempts, or in one; nothing is left to clean up.
        """
        while True:
            assert self._outage is not None
            delay = self._outage.wait(trio.current_time())
            if delay is None:
                raise self._gave_up(dial)
            await trio.sleep(delay)
            final = await self._attempt(dial, self._outage)
            if final is not None:
                return final

    async def _attempt(self, dial: Dialer, outage: Outage) -> jobs_pb2.JobStatus | None:
        """Connect and follow on; None if the server did not answer in time, or dropped."""
        with trio.move_on_at(outage.deadline) as getting_back:
            try:
                async with dial() as client:
                    # An answer means that the server is back and still serves the job.
                    await client.status(self.job_id)
                    # Back: from here the stream may stay quiet for as long as the job does.
                    getting_back.deadline = math.inf
                    if outage.reconnected(trio.current_time()):
                        print(
                            f"{self._said}the server restarted; resumed job {self.job_id} "
                            f"at byte {self.offset}",
                            file=sys.stderr,
                        )
                    return await self.follow(client)
            except (TransportError, RpcError, BaseExceptionGroup) as exc:
                if not is_drop(exc):
                    raise
                self._why = describe_drop(exc)
        return None

    async def _copy(self, client: JobsClient) -> jobs_pb2.JobStatus:
        final = None
        window = self._window
        async with client.output(
            self.job_id,
            offset=self.offset,
            follow=True,
            tail=window.tail,
            since_ns=window.since_ns,
            timestamps=window.timestamps,
        ) as chunks:
            async for chunk in chunks:
                # The stream delivers: whatever outage there was is over.
                self._outage = None
                # Where the window begins is known now (its first message): a tail is not
                # applied again after a reconnect, which resumes from the offset.
                self._window = Window(None, window.since_ns, window.timestamps)
                if chunk.HasField("final"):
                    final = chunk.final
                # Taken once: each access to a bytes field copies it out of the message.
                data = chunk.data
                await self._write(self._stamper(chunk) if self._stamper else data)
                self.offset = chunk.offset + len(data)
        if final is None:
            raise RpcError(StatusCode.INTERNAL, "the output ended without the job's status")
        return final

    def _gave_up(self, dial: Dialer) -> GaveUp:
        return GaveUp(
            f"{dial.where}: lost the connection, and it did not come back within "
            f"{self._timeout:g} s ({self._why})",
            f"to read on: jog output --offset {self.offset} {self.job_id}",
        )

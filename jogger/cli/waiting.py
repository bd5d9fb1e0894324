"""Waiting for jobs to end (``jog wait``), through restarts of the server.

A job's end comes from the server, not from polling: each job has a followed Output stream
asked for from past the end of any log (``PAST_THE_END``), which carries no byte of output,
only the job's final status once it has ended (proto/jogger/v1/jobs.proto, rpc Output).
Every call shares one connection, at most MAX_CALLS at a time.

Each round on a connection asks for the status of every job still waited on (a job that
ended meanwhile is reported from there), then follows the rest. When the connection drops
(cli/resume.is_drop) jog connects again, with the backoff and the reconnect timeout of
``jog output`` (cli/follow.py). An outage is over once the server has answered every
job's status: these streams deliver nothing until the end, and a wait may outlast many
restarts, each with the whole reconnect timeout to come back in. The first round's
statuses are not retried: an unknown job, or a server that cannot be reached, is the usual
error at once, before anything is waited on.
"""

import math
import sys
from collections.abc import Callable

import trio

from .._exceptiongroups import single_errors
from ..rpc.client import JobsClient
from ..rpc.errors import RpcError, StatusCode
from ..rpc.failures import TransportError
from ..v1 import jobs_pb2
from .connect import Dialer
from .follow import GaveUp
from .resume import Outage, after_drop, describe_drop, is_drop

PAST_THE_END = (1 << 64) - 1
"""The largest offset there is: past the end of any job's output."""
MAX_CALLS = 64
"""Calls in flight on the one connection: half of what the server allows on a connection
(rpc/protocol.py, SERVER_MAX_STREAMS), well under its default per user (1024). Jobs past
this many are waited on as others end."""

Ended = Callable[[jobs_pb2.JobStatus], None]
"""Called with each job's final status, as it comes."""


def has_ended(status: jobs_pb2.JobStatus) -> bool:
    return status.HasField("ended_at")


class Waiter:
    """Waits until every job of ``job_ids`` has ended, or with ``first_only`` one of them,
    and hands each final status to ``ended``: at once for those that have ended already (in
    the order given), the others as they end."""

    def __init__(
        self,
        job_ids: list[str],
        *,
        ended: Ended,
        reconnect_timeout: float,
        first_only: bool = False,
    ) -> None:
        self.pending = list(dict.fromkeys(job_ids))
        """The jobs not known to have ended, in the order given."""
        self._ended = ended
        self._timeout = reconnect_timeout
        self._first_only = first_only
        self._limit = trio.CapacityLimiter(MAX_CALLS)
        self._scope = trio.CancelScope()
        """Around the whole wait: it gets the caller's deadline once the first statuses are
        in."""
        self._followers: trio.CancelScope | None = None
        """The calls that follow the jobs on the current connection."""
        self._deadline = math.inf
        self._started = False
        """Whether the first statuses are in: from then on a drop is retried."""
        self._finished = False
        self._outage: Outage | None = None
        self._why = ""

    async def run(self, dial: Dialer, deadline: float = math.inf) -> bool:
        """Wait; True when done, False if ``deadline`` came first. The deadline counts once
        the first statuses are in: an unknown job is an error even then, and the jobs that
        have already ended are reported.

        Raises what the first round meets (RpcError, TransportError), an RpcError that is
        not a drop, and GaveUp when the connection did not come back within the reconnect
        timeout. Cancellation: at any point; each call ends with its block.
        """
        self._deadline = deadline
        with self._scope:
            while True:
                if self._outage is not None:
                    delay = self._outage.wait(trio.current_time())
                    if delay is None:
                        raise self._gave_up(dial)
                    await trio.sleep(delay)
                try:
                    await self._attempt(dial)
                except (TransportError, RpcError, BaseExceptionGroup) as exc:
                    if not self._started or self._timeout <= 0 or not is_drop(exc):
                        raise
                    self._why = describe_drop(exc)
                    self._outage = after_drop(self._outage, self._timeout, trio.current_time())
                if self._finished:
                    break
        return self._finished

    async def _attempt(self, dial: Dialer) -> None:
        """One round on a new connection, until every job has ended; returns early if the
        server was not back by the outage's deadline. A drop is raised."""
        outage = self._outage
        with trio.move_on_at(math.inf if outage is None else outage.deadline) as getting_back:
            async with dial() as client:
                statuses = await self._statuses(client)
                # An answer for every job: the server is back, and serves them all. From here
                # the calls may stay quiet for as long as the jobs run.
                getting_back.deadline = math.inf
                if outage is not None:
                    if outage.reconnected(trio.current_time()):
                        print(f"jog: the server restarted; {self._still()}", file=sys.stderr)
                    self._outage = None  # over (see the module's docstring)
                if not self._started:
                    self._started = True
                    self._scope.deadline = self._deadline
                for status in statuses:
                    if has_ended(status):
                        self._report(status)
                if self._finished:
                    return
                with single_errors():
                    async with trio.open_nursery() as nursery:
                        self._followers = nursery.cancel_scope
                        for job_id in list(self.pending):
                            nursery.start_soon(self._follow, client, job_id)

    async def _statuses(self, client: JobsClient) -> list[jobs_pb2.JobStatus]:
        """The status of every pending job, asked for at once; the first error in the jobs'
        order (an unknown job) is raised, whichever came first."""
        results: list[jobs_pb2.JobStatus | RpcError | None] = [None] * len(self.pending)

        async def ask(at: int, job_id: str) -> None:
            async with self._limit:
                try:
                    results[at] = await client.status(job_id)
                except RpcError as exc:
                    results[at] = exc

        with single_errors():
            async with trio.open_nursery() as nursery:
                for at, job_id in enumerate(self.pending):
                    nursery.start_soon(ask, at, job_id)
        errors = [r for r in results if isinstance(r, RpcError)]
        drops = [e for e in errors if e.code is StatusCode.UNAVAILABLE]
        if drops:
            raise drops[0]
        if errors:
            raise errors[0]
        return [r for r in results if isinstance(r, jobs_pb2.JobStatus)]

    async def _follow(self, client: JobsClient, job_id: str) -> None:
        final = None
        async with (
            self._limit,
            client.output(job_id, offset=PAST_THE_END, follow=True) as chunks,
        ):
            async for chunk in chunks:
                if chunk.HasField("final"):
                    final = chunk.final
        if final is None:
            raise RpcError(StatusCode.INTERNAL, "the output ended without the job's status")
        self._report(final)

    def _report(self, status: jobs_pb2.JobStatus) -> None:
        if self._finished or status.job_id not in self.pending:
            return
        self.pending.remove(status.job_id)
        self._ended(status)
        if not self.pending or self._first_only:
            self._finished = True
            if self._followers is not None:
                # Nothing left to wait for: end the other jobs' calls, and so the round.
                self._followers.cancel()

    def _still(self) -> str:
        if len(self.pending) == 1:
            return f"still waiting for job {self.pending[0]}"
        return f"still waiting for {len(self.pending)} jobs"

    def _gave_up(self, dial: Dialer) -> GaveUp:
        return GaveUp(
            f"{dial.where}: lost the connection, and it did not come back within "
            f"{self._timeout:g} s ({self._why})",
            f"to wait on: jog wait {' '.join(self.pending)}",
        )

"""The Jobs service's unary calls, typed, on either client: trio's (client.py, channel.py)
or the blocking one for one-shot commands (blocking.py). Nothing here imports trio."""

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

from google.protobuf.message import Message

from ..v1 import jobs_pb2

JOBS = "/jogger.v1.Jobs/"
PAGE = 1000
"""Jobs asked for per List call when paging through many."""

M = TypeVar("M", bound=Message)


class UnaryChannel(Protocol):
    async def unary(
        self, path: str, request: Message, response_type: type[M], *, deadline: float | None = None
    ) -> M:
        """One request, one response. ``deadline`` (seconds) is sent as grpc-timeout."""
        ...


class JobsCalls:
    """The Jobs service's unary calls (and health's), on any channel that makes unary calls:
    trio's (``JobsClient``, which adds the streaming calls) or the blocking one
    (blocking.py)."""

    def __init__(self, channel: UnaryChannel) -> None:
        self._channel = channel

    async def start(
        self,
        argv: list[str],
        *,
        cwd: str = "",
        env: dict[str, str] | None = None,
        limits: jobs_pb2.Limits | None = None,
        input: int = jobs_pb2.INPUT_NONE,
        term: str = "",
        window: tuple[int, int] | None = None,
        isolation: jobs_pb2.Isolation | None = None,
        network: int = jobs_pb2.NETWORK_UNSPECIFIED,
        read_only_root: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - the job's run time, not this call's
        name: str = "",
        labels: Mapping[str, str] | None = None,
        queue: bool = False,
    ) -> jobs_pb2.JobStatus:
        """Start a job. ``input``: a jobs_pb2.Input; with INPUT_TERMINAL, ``term`` is its
        TERM (empty: the server's "dumb") and ``window`` its first (rows, cols).
        ``isolation``: its namespaces (None: the server's default; an empty message: none);
        ``network``: a jobs_pb2.Network over them; ``read_only_root``: over either.
        ``timeout``: seconds it may run (None: the server's default). ``name`` and
        ``labels``: what to call it, and key=value pairs to find it by. ``queue``: wait in
        the server's queue if a job limit is reached (the answer is then QUEUED)."""
        request = jobs_pb2.StartRequest(
            argv=argv,
            cwd=cwd,
            env=env or {},
            limits=limits,
            input=input,  # type: ignore[arg-type]
            term=term,
            isolation=isolation,
            network=network,  # type: ignore[arg-type]
            read_only_root=read_only_root,
            name=name,
            labels=labels or {},
            queue=queue,
        )
        if window is not None:
            request.window.rows, request.window.cols = window
        if timeout is not None:
            request.timeout.FromNanoseconds(round(timeout * 1e9))
        return await self._channel.unary(JOBS + "Start", request, jobs_pb2.JobStatus)

    async def restart(self, job_id: str, *, queue: bool = False) -> jobs_pb2.JobStatus:
        """Start a new job as ``job_id`` (ended) was started; the new job's status."""
        request = jobs_pb2.RestartRequest(job_id=job_id, queue=queue)
        return await self._channel.unary(JOBS + "Restart", request, jobs_pb2.JobStatus)

    async def stop(self, job_id: str, *, grace: float | None = None) -> jobs_pb2.JobStatus:
        request = jobs_pb2.StopRequest(job_id=job_id)
        if grace is not None:
            request.grace.FromNanoseconds(round(grace * 1e9))
        return await self._channel.unary(JOBS + "Stop", request, jobs_pb2.JobStatus)

    async def status(self, job_id: str) -> jobs_pb2.JobStatus:
        request = jobs_pb2.StatusRequest(job_id=job_id)
        return await self._channel.unary(JOBS + "Status", request, jobs_pb2.JobStatus)

    async def list(
        self,
        *,
        all_users: bool = False,
        limit: int | None = None,
        labels: Mapping[str, str] | None = None,
        states: Sequence[int] = (),
        name: str = "",
    ) -> tuple[list[jobs_pb2.JobStatus], bool]:
        """Jobs newest first, up to ``limit`` (all with None), and whether there are more;
        only those that pass the filters (as list_page)."""
        jobs: list[jobs_pb2.JobStatus] = []
        token = ""
        while limit is None or len(jobs) < limit:
            want = PAGE if limit is None else min(PAGE, limit - len(jobs))
            page = await self.list_page(
                all_users=all_users,
                page_size=want,
                page_token=token,
                labels=labels,
                states=states,
                name=name,
            )
            jobs.extend(page.jobs)
            token = page.next_page_token
            if not token:
                return jobs, False
        return jobs, True

    async def list_page(
        self,
        *,
        all_users: bool = False,
        page_size: int = 0,
        page_token: str = "",
        labels: Mapping[str, str] | None = None,
        states: Sequence[int] = (),
        name: str = "",
    ) -> jobs_pb2.ListResponse:
        """One page of jobs, newest first; pass ``next_page_token`` on for the next (a page
        may be short, or empty, and still have one). Filters, applied by the server: every
        one of ``labels``, one of ``states`` (jobs_pb2.JobState values; any when empty),
        and ``name``, a pattern of the whole name (``*``, ``?``, ``\\``; see the proto)."""
        request = jobs_pb2.ListRequest(
            all_users=all_users,
            page_size=page_size,
            page_token=page_token,
            labels=labels or {},
            states=states,  # type: ignore[arg-type]
            name=name,
        )
        return await self._channel.unary(JOBS + "List", request, jobs_pb2.ListResponse)

    async def health(self) -> int:
        """The server's health.v1 serving status (1 is SERVING)."""
        # Here, not at the top: its descriptor pool of its own is not every jog start's.
        from ..standard.grpc.health.v1 import health_pb2  # noqa: PLC0415

        response = await self._channel.unary(
            "/grpc.health.v1.Health/Check",
            health_pb2.HealthCheckRequest(),
            health_pb2.HealthCheckResponse,
        )
        return int(response.status)


Dial = Callable[[], AbstractAsyncContextManager[JobsCalls]]
"""How a command gets a connection for its calls: ``async with dial() as client``."""

"""A typed client of the Jobs service, for trio programs and the ``jog`` CLI."""

import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from ..standard.grpc.health.v1 import health_pb2
from ..v1 import jobs_pb2
from .channel import CONNECT_TIMEOUT, Channel, ClientStream, open_channel
from .tls import client_context

_JOBS = "/jogger.v1.Jobs/"
PAGE = 1000
"""Jobs asked for per List call when paging through many."""
WRITE_CHUNK = 256 << 10
"""The most bytes one Write message carries (the server takes messages of up to 1 MiB):
small enough that a job that reads slowly is fed as it reads."""


class InputClosed(Exception):
    """The job stopped taking input (it closed its stdin, or ended) before all of it was
    written. ``response`` is the server's answer: ``closed`` set, ``written`` the bytes the
    job took."""

    def __init__(self, response: jobs_pb2.WriteResponse) -> None:
        super().__init__(f"the job stopped taking input after {response.written} bytes")
        self.response = response


class InputWriter:
    """Writes to a job's input: its stdin pipe, or its terminal (``JobsClient.writer``).

    Once the server has answered the call before its end (an error, or a job that stopped
    taking input), ``write()`` and ``resize()`` raise: RpcError for an error status,
    InputClosed for a job that no longer takes input.
    """

    def __init__(self, call: ClientStream[jobs_pb2.WriteResponse]) -> None:
        self._call = call

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the job, in order. Waits while the job does not read: the server
        takes a message only once the job has taken the one before (flow control).

        Cancellation: a write cancelled half-way leaves the writer unusable; leave the
        block, which resets the call (for a pipe, that ends the job's input).
        """
        view = memoryview(data)
        for start in range(0, len(view), WRITE_CHUNK):
            await self._send(jobs_pb2.WriteRequest(data=bytes(view[start : start + WRITE_CHUNK])))

    async def resize(self, rows: int, cols: int) -> None:
        """Tell the job's terminal its new window size (the job gets SIGWINCH)."""
        await self._send(jobs_pb2.WriteRequest(resize=jobs_pb2.WindowSize(rows=rows, cols=cols)))

    async def close(self) -> jobs_pb2.WriteResponse:
        """End the input (a pipe's job reads EOF; a terminal is let go of) and return the
        server's answer: the bytes the job took, and ``closed`` if it stopped taking them
        before the end. RpcError for a call that failed (NOT_FOUND, ABORTED, ...)."""
        return await self._call.close()

    async def _send(self, request: jobs_pb2.WriteRequest) -> None:
        if not await self._call.send(request):
            raise InputClosed(await self._call.close())  # close() raises an error status


class JobsClient:
    def __init__(self, channel: Channel) -> None:
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
        return await self._channel.unary(_JOBS + "Start", request, jobs_pb2.JobStatus)

    async def restart(self, job_id: str, *, queue: bool = False) -> jobs_pb2.JobStatus:
        """Start a new job as ``job_id`` (ended) was started; the new job's status."""
        request = jobs_pb2.RestartRequest(job_id=job_id, queue=queue)
        return await self._channel.unary(_JOBS + "Restart", request, jobs_pb2.JobStatus)

    async def stop(self, job_id: str, *, grace: float | None = None) -> jobs_pb2.JobStatus:
        request = jobs_pb2.StopRequest(job_id=job_id)
        if grace is not None:
            request.grace.FromNanoseconds(round(grace * 1e9))
        return await self._channel.unary(_JOBS + "Stop", request, jobs_pb2.JobStatus)

    async def status(self, job_id: str) -> jobs_pb2.JobStatus:
        request = jobs_pb2.StatusRequest(job_id=job_id)
        return await self._channel.unary(_JOBS + "Status", request, jobs_pb2.JobStatus)

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
        return await self._channel.unary(_JOBS + "List", request, jobs_pb2.ListResponse)

    @asynccontextmanager
    async def output(
        self,
        job_id: str,
        *,
        offset: int = 0,
        follow: bool = True,
        tail: int | None = None,
        since_ns: int | None = None,
        timestamps: bool = False,
    ) -> AsyncGenerator[AsyncIterator[jobs_pb2.OutputChunk], None]:
        """The job's output chunks; leaving the block early cancels the stream. ``tail``,
        ``since_ns`` (ns since the epoch), ``timestamps``: a window (proto: OutputRequest)."""
        request = jobs_pb2.OutputRequest(
            job_id=job_id, offset=offset, follow=follow, tail=tail, timestamps=timestamps
        )
        if since_ns is not None:
            request.since.FromNanoseconds(since_ns)
        async with self._channel.stream(_JOBS + "Output", request, jobs_pb2.OutputChunk) as it:
            yield it

    @asynccontextmanager
    async def writer(self, job_id: str) -> AsyncGenerator[InputWriter, None]:
        """A writer to the job's input, for the block. ``close()`` ends the input and returns
        the server's answer; leaving the block without it (an exception, a cancellation)
        resets the call, which for a pipe also ends the job's input.

        The job is named at once, so that the server's patience for a first message does not
        run out while the caller has nothing to write yet (a terminal nobody types into).
        """
        path = _JOBS + "Write"
        async with self._channel.client_stream(
            path, jobs_pb2.WriteRequest, jobs_pb2.WriteResponse
        ) as call:
            writer = InputWriter(call)
            await writer._send(jobs_pb2.WriteRequest(job_id=job_id))
            yield writer

    async def health(self) -> int:
        """The server's health.v1 serving status (1 is SERVING)."""
        response = await self._channel.unary(
            "/grpc.health.v1.Health/Check",
            health_pb2.HealthCheckRequest(),
            health_pb2.HealthCheckResponse,
        )
        return int(response.status)


@asynccontextmanager
async def open_client(
    host: str,
    port: int,
    *,
    ca: Path,
    cert: Path,
    key: Path,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> AsyncGenerator[JobsClient, None]:
    """Connect over mutual TLS. Raises TransportError when that fails, RpcError on calls.

    Reading the certificate files raises OSError or ssl.SSLError, before any connection.
    """
    context = client_context(ca, cert, key)
    async with connect(host, port, context, connect_timeout=connect_timeout) as client:
        yield client


@asynccontextmanager
async def connect(
    host: str, port: int, context: ssl.SSLContext, *, connect_timeout: float = CONNECT_TIMEOUT
) -> AsyncGenerator[JobsClient, None]:
    """Like ``open_client``, with a TLS context from ``jogger.rpc.tls.client_context``."""
    async with open_channel(host, port, context, connect_timeout=connect_timeout) as channel:
        yield JobsClient(channel)

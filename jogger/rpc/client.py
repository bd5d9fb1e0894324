"""A typed client of the Jobs service, for trio programs and the ``jog`` CLI."""

import ssl
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from ..v1 import jobs_pb2
from .calls import JOBS, JobsCalls
from .channel import CONNECT_TIMEOUT, Channel, ClientStream, open_channel
from .tls import client_context

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


class JobsClient(JobsCalls):
    """The Jobs service's calls, the streaming ones too, on trio."""

    def __init__(self, channel: Channel) -> None:
        super().__init__(channel)
        self._streams = channel

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
        async with self._streams.stream(JOBS + "Output", request, jobs_pb2.OutputChunk) as it:
            yield it

    @asynccontextmanager
    async def writer(self, job_id: str) -> AsyncGenerator[InputWriter, None]:
        """A writer to the job's input, for the block. ``close()`` ends the input and returns
        the server's answer; leaving the block without it (an exception, a cancellation)
        resets the call, which for a pipe also ends the job's input.

        The job is named at once, so that the server's patience for a first message does not
        run out while the caller has nothing to write yet (a terminal nobody types into).
        """
        path = JOBS + "Write"
        async with self._streams.client_stream(
            path, jobs_pb2.WriteRequest, jobs_pb2.WriteResponse
        ) as call:
            writer = InputWriter(call)
            await writer._send(jobs_pb2.WriteRequest(job_id=job_id))
            yield writer


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

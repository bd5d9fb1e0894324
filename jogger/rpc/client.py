"""A typed client of the Jobs service, for trio programs and the ``jog`` CLI."""

import ssl
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from ..v1 import health_pb2, jobs_pb2
from .channel import CONNECT_TIMEOUT, Channel, open_channel
from .tls import client_context

_JOBS = "/jogger.v1.Jobs/"
PAGE = 1000
"""Jobs asked for per List call when paging through many."""


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
    ) -> jobs_pb2.JobStatus:
        request = jobs_pb2.StartRequest(argv=argv, cwd=cwd, env=env or {}, limits=limits)
        return await self._channel.unary(_JOBS + "Start", request, jobs_pb2.JobStatus)

    async def stop(self, job_id: str, *, grace: float | None = None) -> jobs_pb2.JobStatus:
        request = jobs_pb2.StopRequest(job_id=job_id)
        if grace is not None:
            request.grace.FromNanoseconds(round(grace * 1e9))
        return await self._channel.unary(_JOBS + "Stop", request, jobs_pb2.JobStatus)

    async def status(self, job_id: str) -> jobs_pb2.JobStatus:
        request = jobs_pb2.StatusRequest(job_id=job_id)
        return await self._channel.unary(_JOBS + "Status", request, jobs_pb2.JobStatus)

    async def list(
        self, *, all_users: bool = False, limit: int | None = None
    ) -> tuple[list[jobs_pb2.JobStatus], bool]:
        """Jobs newest first, up to ``limit`` (all with None), and whether there are more."""
        jobs: list[jobs_pb2.JobStatus] = []
        token = ""
        while limit is None or len(jobs) < limit:
            want = PAGE if limit is None else min(PAGE, limit - len(jobs))
            page = await self.list_page(all_users=all_users, page_size=want, page_token=token)
            jobs.extend(page.jobs)
            token = page.next_page_token
            if not token:
                return jobs, False
        return jobs, True

    async def list_page(
        self, *, all_users: bool = False, page_size: int = 0, page_token: str = ""
    ) -> jobs_pb2.ListResponse:
        """One page of jobs, newest first; pass ``next_page_token`` on for the next."""
        request = jobs_pb2.ListRequest(
            all_users=all_users, page_size=page_size, page_token=page_token
        )
        return await self._channel.unary(_JOBS + "List", request, jobs_pb2.ListResponse)

    @asynccontextmanager
    async def output(
        self, job_id: str, *, offset: int = 0, follow: bool = True
    ) -> AsyncGenerator[AsyncIterator[jobs_pb2.OutputChunk], None]:
        """The job's output chunks; leaving the block early cancels the stream."""
        request = jobs_pb2.OutputRequest(job_id=job_id, offset=offset, follow=follow)
        async with self._channel.stream(_JOBS + "Output", request, jobs_pb2.OutputChunk) as it:
            yield it

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

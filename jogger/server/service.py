"""The Jobs and Health services: authorization, conversion and error mapping, nothing else.

Handlers act as the user named by the caller's certificate. An administrator (OU=admin) may
also list and read (status, output) every user's jobs; stopping stays with the owner. Which
local account runs a caller's job is the ``--run-as`` policy's answer (accounts.py).
"""

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from functools import partial

from ..engine import (
    InvalidRequest,
    JobError,
    JobManager,
    JobNotFound,
    JobState,
    JobStatus,
    LimitExceeded,
    ManagerClosed,
    OutputUnavailable,
    SpawnError,
    StoreError,
)
from ..engine.limits import JobLimits
from ..rpc.errors import RpcError, StatusCode
from ..rpc.jobs_api import MAX_GRACE, limits_message
from ..rpc.server import Call, Method
from ..v1 import health_grpc, health_pb2, jobs_grpc, jobs_pb2
from .accounts import AccountRefused, RunAs

OUTPUT_CHUNK = 1024 * 1024
"""Bytes per OutputChunk: big enough that per-message cost does not dominate."""
DEFAULT_PAGE = 100
MAX_LIST_BYTES = 1 << 20
"""A List page holds jobs up to this many bytes (and always one)."""

_STATES = {
    JobState.RUNNING: jobs_pb2.JOB_STATE_RUNNING,
    JobState.COMPLETED: jobs_pb2.JOB_STATE_COMPLETED,
    JobState.FAILED: jobs_pb2.JOB_STATE_FAILED,
    JobState.STOPPED: jobs_pb2.JOB_STATE_STOPPED,
    JobState.KILLED: jobs_pb2.JOB_STATE_KILLED,
}
_CODES: dict[type[JobError], StatusCode] = {
    InvalidRequest: StatusCode.INVALID_ARGUMENT,
    SpawnError: StatusCode.INVALID_ARGUMENT,
    JobNotFound: StatusCode.NOT_FOUND,
    LimitExceeded: StatusCode.RESOURCE_EXHAUSTED,
    ManagerClosed: StatusCode.UNAVAILABLE,
    OutputUnavailable: StatusCode.UNAVAILABLE,
    StoreError: StatusCode.UNAVAILABLE,
}


def status_to_proto(status: JobStatus) -> jobs_pb2.JobStatus:
    message = jobs_pb2.JobStatus(
        job_id=status.id,
        owner=status.owner,
        argv=status.argv,
        state=_STATES[status.state],
        reason=status.reason,
        output_bytes=status.output_bytes,
        output_truncated=status.output_truncated,
        output_error=status.output_error,
        pid=status.pid,
    )
    message.cgroup = status.containment
    message.limits.CopyFrom(limits_message(status.limits))
    if status.cpu_seconds is not None:
        message.cpu_time.FromNanoseconds(round(status.cpu_seconds * 1e9))
    message.memory_peak = status.memory_peak or 0
    message.started_at.FromDatetime(status.started_at)
    if status.ended_at is not None:
        message.ended_at.FromDatetime(status.ended_at)
    if status.exit_code is not None:
        message.exit_code = status.exit_code
    elif status.signal is not None:
        message.signal = status.signal
    if status.run_as_uid is not None:
        message.run_as.name = status.run_as
        message.run_as.uid = status.run_as_uid
    return message


def limits_from_proto(message: jobs_pb2.Limits) -> JobLimits:
    """0 is "not set" on the wire (proto3); None in the engine."""
    return JobLimits(
        cpu=message.cpu or None,
        cpu_weight=message.cpu_weight or None,
        memory=message.memory or None,
        io_weight=message.io_weight or None,
        pids=message.pids or None,
    )


@contextmanager
def _engine_errors() -> Iterator[None]:
    """An engine error leaves the block as the fixed status its class maps to (_CODES), with
    the engine's message."""
    try:
        yield
    except JobError as exc:
        raise RpcError(_CODES[type(exc)], str(exc)) from None


class JobsService:
    def __init__(self, jobs: JobManager, run_as: RunAs | None = None) -> None:
        self._jobs = jobs
        self._run_as = run_as or RunAs()

    def methods(self) -> dict[str, Method]:
        """Our handlers, keyed by gRPC path, with the message types the generated code names."""
        handlers = {
            "Start": Method(jobs_pb2.StartRequest, unary=self.start),
            "Stop": Method(jobs_pb2.StopRequest, unary=self.stop),
            "Status": Method(jobs_pb2.StatusRequest, unary=self.status),
            "List": Method(jobs_pb2.ListRequest, unary=self.list),
            "Output": Method(jobs_pb2.OutputRequest, stream=self.output),
        }
        return _check_against_generated(jobs_grpc.JobsServicer(), handlers)

    async def start(self, call: Call, request: jobs_pb2.StartRequest) -> jobs_pb2.JobStatus:
        with _engine_errors():
            try:
                account = await self._run_as.account_for(call.identity)
            except AccountRefused as exc:
                raise RpcError(StatusCode.PERMISSION_DENIED, str(exc)) from None
            status = await self._jobs.start(
                call.identity.user,
                list(request.argv),
                cwd=request.cwd or None,
                env=dict(request.env),
                limits=limits_from_proto(request.limits),
                account=account,
            )
        return status_to_proto(status)

    async def stop(self, call: Call, request: jobs_pb2.StopRequest) -> jobs_pb2.JobStatus:
        grace = None
        if request.HasField("grace"):
            # Not ToTimedelta(): it overflows on a Duration of 2**63 seconds.
            grace = request.grace.seconds + request.grace.nanos / 1e9
            if not 0 <= grace <= MAX_GRACE:
                raise RpcError(
                    StatusCode.INVALID_ARGUMENT,
                    f"grace must be from 0 to {MAX_GRACE} seconds, not {grace:.9g}",
                )
        with _engine_errors():
            status = await self._jobs.stop(call.identity.user, request.job_id, grace=grace)
        return status_to_proto(status)

    async def status(self, call: Call, request: jobs_pb2.StatusRequest) -> jobs_pb2.JobStatus:
        with _engine_errors():
            owner = await self._reader(call, request.job_id)
            return status_to_proto(await self._jobs.status(owner, request.job_id))

    async def list(self, call: Call, request: jobs_pb2.ListRequest) -> jobs_pb2.ListResponse:
        if request.all_users and not call.identity.admin:
            raise RpcError(StatusCode.PERMISSION_DENIED, "listing every user's jobs is for admins")
        owner = None if request.all_users else call.identity.user
        with _engine_errors():
            page = await self._jobs.list(
                owner, page_size=request.page_size or DEFAULT_PAGE, page_token=request.page_token
            )
        # A page ends early once it holds MAX_LIST_BYTES: argv may take 128 KiB a job, and a
        # thousand of those would pass any client's message size limit (grpcio's: 4 MiB).
        response = jobs_pb2.ListResponse(next_page_token=page.next_token)
        total = 0
        for k, status in enumerate(page.jobs):
            job = status_to_proto(status)
            size = job.ByteSize()
            if k and total + size > MAX_LIST_BYTES:
                response.next_page_token = page.cursors[k - 1]
                break
            response.jobs.append(job)
            total += size
        return response

    async def output(
        self, call: Call, request: jobs_pb2.OutputRequest
    ) -> AsyncIterator[jobs_pb2.OutputChunk]:
        offset = request.offset
        # Opening the output, and reading it (OutputUnavailable mid-stream), both map.
        with _engine_errors():
            async with self._jobs.output(
                await self._reader(call, request.job_id),
                request.job_id,
                offset=request.offset,
                follow=request.follow,
                chunk_size=partial(call.message_size, OUTPUT_CHUNK),
            ) as chunks:
                async for data in chunks:
                    yield jobs_pb2.OutputChunk(offset=offset, data=data)
                    offset += len(data)
        if request.follow:
            # A followed stream ends only once the job has, so this status is final.
            with _engine_errors():
                owner = await self._reader(call, request.job_id)
                final = await self._jobs.status(owner, request.job_id)
            yield jobs_pb2.OutputChunk(offset=offset, final=status_to_proto(final))

    async def _reader(self, call: Call, job_id: str) -> str:
        """Whose job to read: the caller's own, or for an admin, the job's owner."""
        if call.identity.admin:
            return await self._jobs.owner_of(job_id)
        return call.identity.user


class HealthService:
    """grpc.health.v1.Health: SERVING to every check that reaches it.

    It does not ask the job manager (which has no public flag for it). The server passes
    checks on until it drains at shutdown, after its jobs have been stopped, and from then on
    refuses them with UNAVAILABLE, as every call.
    """

    async def check(
        self, call: Call, request: health_pb2.HealthCheckRequest
    ) -> health_pb2.HealthCheckResponse:
        if request.service not in ("", "jogger.v1.Jobs"):
            raise RpcError(StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    def methods(self) -> dict[str, Method]:
        handlers = {"Check": Method(health_pb2.HealthCheckRequest, unary=self.check)}
        return _check_against_generated(health_grpc.HealthServicer(), handlers)


def _check_against_generated(servicer: object, handlers: dict[str, Method]) -> dict[str, Method]:
    """Key our handlers by path, checking names, types and streaming against the generated code."""
    service = servicer.service  # type: ignore[attr-defined]
    if set(service.methods) != set(handlers):
        raise RuntimeError(f"{service.name}: handlers do not match the proto")
    for name, method in handlers.items():
        signature = service.methods[name].signature
        streaming = signature.cardinality.name == "UNARY_STREAM"
        if signature.request_type is not method.request_type or streaming != (
            method.stream is not None
        ):
            raise RuntimeError(f"{service.name}.{name}: handler does not match the proto")
    return {f"/{service.name}/{name}": method for name, method in handlers.items()}

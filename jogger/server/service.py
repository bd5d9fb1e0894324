"""The Jobs service: authorization, conversion and error mapping, nothing else.

Handlers act as the user named by the caller's certificate. An administrator (OU=admin) may
also list and read (status, output) every user's jobs; stopping and writing to a job's input
stay with the owner. Which
local account runs a caller's job is the ``--run-as`` policy's answer (accounts.py),
which namespaces it runs in the isolation policy's (isolation.py), and how long it may run
the timeout policy's (timeouts.py); a Restart applies them as they are now (restart.py).
What the audit log is told (audit.py): every Start, Restart and Stop, an administrator's
reads of others' jobs, and refusals.
"""

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from ..engine import (
    Account,
    Input,
    InputBusy,
    InputUnavailable,
    InvalidRequest,
    Isolation,
    IsolationUnavailable,
    JobError,
    JobManager,
    JobNotFound,
    JobState,
    JobStatus,
    LimitExceeded,
    ManagerClosed,
    Namespace,
    NotRestartable,
    OutputUnavailable,
    SpawnError,
    StoreError,
    SupervisorUnreachable,
    TimesUnavailable,
    WindowSize,
)
from ..engine.isolation import hostname
from ..engine.limits import JobLimits
from ..rpc.errors import RpcError, StatusCode
from ..rpc.jobs_api import MAX_GRACE, limits_message, timeout_problem
from ..rpc.method import Call, Method, service_methods
from ..v1 import jobs_pb2
from .accounts import AccountRefused, RunAs
from .audit import AuditLog
from .filters import filter_from_proto
from .isolation import IsolationPolicy, IsolationRefused, Network
from .restart import restart_arguments
from .timeouts import TimeoutOverMaximum, TimeoutPolicy
from .windows import chunk_of, window_of

JOBS = jobs_pb2.DESCRIPTOR.services_by_name["Jobs"]
"""The service, as its proto declares it."""
OUTPUT_CHUNK = 1024 * 1024
"""Bytes per OutputChunk: big enough that per-message cost does not dominate."""
DEFAULT_PAGE = 100
MAX_LIST_BYTES = 1 << 20
"""A List page holds jobs up to this many bytes (and always one)."""
DEFAULT_TERM = "dumb"
"""A terminal's TERM when the Start names none."""

_STATES = {
    JobState.QUEUED: jobs_pb2.JOB_STATE_QUEUED,
    JobState.RUNNING: jobs_pb2.JOB_STATE_RUNNING,
    JobState.COMPLETED: jobs_pb2.JOB_STATE_COMPLETED,
    JobState.FAILED: jobs_pb2.JOB_STATE_FAILED,
    JobState.STOPPED: jobs_pb2.JOB_STATE_STOPPED,
    JobState.KILLED: jobs_pb2.JOB_STATE_KILLED,
}
_INPUTS = {
    Input.NONE: jobs_pb2.INPUT_NONE,
    Input.PIPE: jobs_pb2.INPUT_PIPE,
    Input.TERMINAL: jobs_pb2.INPUT_TERMINAL,
}
_INPUTS_FROM_PROTO = {wire: engine for engine, wire in _INPUTS.items()}
_NAMESPACES = {
    Namespace.PID: jobs_pb2.NAMESPACE_PID,
    Namespace.MOUNT: jobs_pb2.NAMESPACE_MOUNT,
    Namespace.NET: jobs_pb2.NAMESPACE_NET,
    Namespace.IPC: jobs_pb2.NAMESPACE_IPC,
    Namespace.UTS: jobs_pb2.NAMESPACE_UTS,
}
"""In the order a JobStatus lists them."""
_NAMESPACES_FROM_PROTO = {wire: engine for engine, wire in _NAMESPACES.items()}
_NETWORKS = {
    jobs_pb2.NETWORK_UNSPECIFIED: None,
    jobs_pb2.NETWORK_NONE: Network.NONE,
    jobs_pb2.NETWORK_HOST: Network.HOST,
}
_CODES: dict[type[JobError], StatusCode] = {
    InputBusy: StatusCode.ABORTED,
    InputUnavailable: StatusCode.FAILED_PRECONDITION,
    SupervisorUnreachable: StatusCode.UNAVAILABLE,
    InvalidRequest: StatusCode.INVALID_ARGUMENT,
    IsolationUnavailable: StatusCode.FAILED_PRECONDITION,
    SpawnError: StatusCode.INVALID_ARGUMENT,
    JobNotFound: StatusCode.NOT_FOUND,
    LimitExceeded: StatusCode.RESOURCE_EXHAUSTED,
    ManagerClosed: StatusCode.UNAVAILABLE,
    NotRestartable: StatusCode.FAILED_PRECONDITION,
    OutputUnavailable: StatusCode.UNAVAILABLE,
    StoreError: StatusCode.UNAVAILABLE,
    TimesUnavailable: StatusCode.FAILED_PRECONDITION,
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
        input=_INPUTS[status.input],
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
    message.isolation.CopyFrom(isolation_to_proto(status.isolation, status.id))
    message.external_id = status.external_id
    if status.timeout is not None:
        # Told while the job is queued too; its deadline is set only once it starts.
        message.timeout.FromNanoseconds(round(status.timeout * 1e9))
    if status.deadline is not None:
        message.deadline.FromDatetime(status.deadline)
    message.name = status.name
    message.labels.update(status.labels)
    message.queue_position = status.queue_position
    return message


def timeout_from_proto(request: jobs_pb2.StartRequest) -> float | None:
    """The timeout ``request`` asks for, in seconds; None when unset (the server's default).
    INVALID_ARGUMENT for one that is not above 0, or over a year (MAX_TIMEOUT)."""
    if not request.HasField("timeout"):
        return None
    # Not ToTimedelta(): it overflows on a Duration of 2**63 seconds.
    seconds = request.timeout.seconds + request.timeout.nanos / 1e9
    problem = timeout_problem(seconds)
    if problem is not None:
        raise RpcError(StatusCode.INVALID_ARGUMENT, problem)
    return seconds


def isolation_to_proto(isolation: Isolation, job_id: str) -> jobs_pb2.Isolation:
    """The isolation of job ``job_id``: its namespaces, in a fixed order, and the hostname
    it has with a UTS namespace."""
    return jobs_pb2.Isolation(
        namespaces=[wire for kind, wire in _NAMESPACES.items() if kind in isolation.namespaces],
        read_only_root=isolation.read_only_root,
        hostname=hostname(job_id) if Namespace.UTS in isolation.namespaces else "",
    )


def limits_from_proto(message: jobs_pb2.Limits) -> JobLimits:
    """0 is "not set" on the wire (proto3); None in the engine."""
    return JobLimits(
        cpu=message.cpu or None,
        cpu_weight=message.cpu_weight or None,
        memory=message.memory or None,
        io_weight=message.io_weight or None,
        pids=message.pids or None,
    )


def window_from_proto(message: jobs_pb2.WindowSize) -> WindowSize:
    """The engine checks the size (InvalidRequest: INVALID_ARGUMENT)."""
    return WindowSize(rows=message.rows, cols=message.cols)


def input_arguments(request: jobs_pb2.StartRequest) -> dict[str, Any]:
    """JobManager.start's input arguments for ``request``; the engine checks the window
    (its size, and that the job has a terminal; without one, 24x80)."""
    try:
        kind = _INPUTS_FROM_PROTO[request.input]
    except KeyError:
        raise RpcError(
            StatusCode.INVALID_ARGUMENT, f"unknown input kind {int(request.input)}"
        ) from None
    window = window_from_proto(request.window) if request.HasField("window") else None
    return {"input": kind, "window": window}


def isolation_from_proto(
    request: jobs_pb2.StartRequest,
) -> tuple[Isolation | None, Network | None, bool]:
    """What ``request`` asks for: its isolation (None when the field is unset: the server's
    default), its network (None: as the isolation says) and whether a read-only root over
    either. INVALID_ARGUMENT for a
    namespace or network this server does not know, and for a hostname, which is the
    server's to give."""
    try:
        network = _NETWORKS[request.network]
    except KeyError:
        raise RpcError(
            StatusCode.INVALID_ARGUMENT, f"unknown network {int(request.network)}"
        ) from None
    if not request.HasField("isolation"):
        return None, network, request.read_only_root
    asked = request.isolation
    if asked.hostname:
        raise RpcError(
            StatusCode.INVALID_ARGUMENT,
            "a job's hostname is the server's to give: leave isolation.hostname empty",
        )
    kinds = set()
    for wire in asked.namespaces:
        try:
            kinds.add(_NAMESPACES_FROM_PROTO[wire])
        except KeyError:
            raise RpcError(StatusCode.INVALID_ARGUMENT, f"unknown namespace {int(wire)}") from None
    return Isolation(frozenset(kinds), asked.read_only_root), network, request.read_only_root


def _write_request(request: jobs_pb2.WriteRequest, job_id: str) -> WindowSize | None:
    """The resize a Write message asks for, if any; INVALID_ARGUMENT for a message that names
    another job (the sink checks the size)."""
    if request.job_id not in ("", job_id):
        raise RpcError(
            StatusCode.INVALID_ARGUMENT, "a later message must name the first one's job, or none"
        )
    return window_from_proto(request.resize) if request.HasField("resize") else None


@contextmanager
def _engine_errors() -> Iterator[None]:
    """An engine error leaves the block as the fixed status its class maps to (_CODES), with
    the engine's message."""
    try:
        yield
    except JobError as exc:
        raise RpcError(_CODES[type(exc)], str(exc)) from None


class JobsService:
    def __init__(
        self,
        jobs: JobManager,
        run_as: RunAs | None = None,
        isolation: IsolationPolicy | None = None,
        audit: AuditLog | None = None,
        *,
        streamed: Callable[[str, int], None] | None = None,
        timeouts: TimeoutPolicy | None = None,
        queue_by_default: bool = False,
    ) -> None:
        self._jobs = jobs
        self._run_as = run_as or RunAs()
        self._isolation = isolation or IsolationPolicy()
        self._audit = audit or AuditLog(None)
        self._streamed = streamed or (lambda user, size: None)
        """Told the size of each chunk of output sent, and to whom (metrics.py)."""
        self._timeouts = timeouts or TimeoutPolicy()
        self._queue_by_default = queue_by_default
        """--queue-by-default: Start and Restart queue whether they ask or not."""

    def methods(self) -> dict[str, Method]:
        """Our handlers, keyed by gRPC path, with the message types the generated code names."""
        handlers = {
            "Start": Method(jobs_pb2.StartRequest, unary=self._audit.recorded("start", self.start)),
            "Restart": Method(
                jobs_pb2.RestartRequest, unary=self._audit.recorded("restart", self.restart)
            ),
            "Stop": Method(jobs_pb2.StopRequest, unary=self._audit.recorded("stop", self.stop)),
            "Status": Method(jobs_pb2.StatusRequest, unary=self.status),
            "List": Method(jobs_pb2.ListRequest, unary=self.list),
            "Output": Method(jobs_pb2.OutputRequest, stream=self.output),
            "Write": Method(jobs_pb2.WriteRequest, client_stream=self.write),
        }
        return service_methods(JOBS, handlers)

    async def start(self, call: Call, request: jobs_pb2.StartRequest) -> jobs_pb2.JobStatus:
        with _engine_errors():
            account = await self._account(call)
            inputs = input_arguments(request)
            try:
                isolation = self._isolation.resolve(*isolation_from_proto(request))
            except IsolationRefused as exc:
                raise RpcError(StatusCode.PERMISSION_DENIED, str(exc)) from None
            try:
                timeout = self._timeouts.resolve(timeout_from_proto(request))
            except TimeoutOverMaximum as exc:
                # As a limit over --max-limits: the request is wrong, not the caller's rights.
                raise RpcError(StatusCode.INVALID_ARGUMENT, str(exc)) from None
            env = dict(request.env)
            if inputs.get("input") is Input.TERMINAL:
                env.setdefault("TERM", request.term or DEFAULT_TERM)
            status = await self._jobs.start(
                call.identity.user,
                list(request.argv),
                cwd=request.cwd or None,
                env=env,
                limits=limits_from_proto(request.limits),
                account=account,
                isolation=isolation,
                timeout=timeout,
                name=request.name,
                labels=dict(request.labels),
                queue=request.queue or self._queue_by_default,
                **inputs,
            )
        return status_to_proto(status)

    async def restart(self, call: Call, request: jobs_pb2.RestartRequest) -> jobs_pb2.JobStatus:
        user = call.identity.user
        with _engine_errors():
            old, asked = await self._jobs.request_of(user, request.job_id)
            arguments = restart_arguments(
                asked, await self._account(call), self._isolation, self._timeouts
            )
            queue = request.queue or self._queue_by_default
            status = await self._jobs.start(user, old.argv, queue=queue, **arguments)
        return status_to_proto(status)

    async def _account(self, call: Call) -> Account | None:
        """The account the caller's jobs run as now; PERMISSION_DENIED if none may."""
        try:
            return await self._run_as.account_for(call.identity)
        except AccountRefused as exc:
            raise RpcError(StatusCode.PERMISSION_DENIED, str(exc)) from None

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
            denied = RpcError(
                StatusCode.PERMISSION_DENIED, "listing every user's jobs is for admins"
            )
            raise self._audit.refused(call, None, denied)
        if request.all_users:
            self._audit.admin_read(call, None, None)
        owner = None if request.all_users else call.identity.user
        with _engine_errors():
            page = await self._jobs.list(
                owner,
                page_size=request.page_size or DEFAULT_PAGE,
                page_token=request.page_token,
                wanted=filter_from_proto(request),
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
        window = window_of(request)
        chunk_size = partial(call.message_size, OUTPUT_CHUNK)
        # Opening the output, and reading it (OutputUnavailable mid-stream), both map.
        with _engine_errors():
            owner = await self._reader(call, request.job_id)
            if window is None:
                async with self._jobs.output(
                    owner,
                    request.job_id,
                    offset=request.offset,
                    follow=request.follow,
                    chunk_size=chunk_size,
                ) as chunks:
                    async for data in chunks:
                        yield jobs_pb2.OutputChunk(offset=offset, data=data)
                        offset += len(data)
                        self._streamed(call.identity.user, len(data))
            else:
                async with self._jobs.output_window(
                    owner,
                    request.job_id,
                    window,
                    offset=request.offset,
                    follow=request.follow,
                    chunk_size=chunk_size,
                ) as (start, pieces):
                    # Where the window begins, before any byte: a client that reconnects
                    # resumes from there (proto: OutputRequest).
                    yield jobs_pb2.OutputChunk(offset=start)
                    offset = start
                    async for piece in pieces:
                        yield chunk_of(piece)
                        offset = piece.offset + len(piece.data)
                        self._streamed(call.identity.user, len(piece.data))
        if request.follow:
            # A followed stream ends only once the job has, so this status is final.
            with _engine_errors():
                final = await self._jobs.status(owner, request.job_id)
            yield jobs_pb2.OutputChunk(offset=offset, final=status_to_proto(final))

    async def write(
        self, call: Call, requests: AsyncIterator[jobs_pb2.WriteRequest]
    ) -> jobs_pb2.WriteResponse:
        request = await anext(requests, None)
        if request is None or not request.job_id:
            raise RpcError(StatusCode.INVALID_ARGUMENT, "the first message must name the job")
        job_id = request.job_id
        resize = _write_request(request, job_id)
        with _engine_errors():
            owner = await self._writer(call, job_id)
            async with self._jobs.input(owner, job_id) as sink:
                # The next message is asked for only once the job has taken this one's
                # data: until then the client's stream waits, on HTTP/2 flow control.
                while True:
                    if resize is not None:
                        sink.resize(resize)
                    if request.data and not await sink.write(request.data):
                        return jobs_pb2.WriteResponse(written=sink.written, closed=True)
                    request = await anext(requests, None)
                    if request is None:
                        return jobs_pb2.WriteResponse(written=sink.written)
                    resize = _write_request(request, job_id)

    async def _writer(self, call: Call, job_id: str) -> str:
        """Whose job to write to: the caller's own, and only that. Another user's job does
        not exist for a user; an administrator, who may see it, is told it is not theirs."""
        if call.identity.admin and await self._jobs.owner_of(job_id) != call.identity.user:
            denied = RpcError(
                StatusCode.PERMISSION_DENIED, "only the job's owner may write to its input"
            )
            raise self._audit.refused(call, job_id, denied)
        return call.identity.user

    async def _reader(self, call: Call, job_id: str) -> str:
        """Whose job to read: the caller's own, or for an admin, the job's owner."""
        if call.identity.admin:
            owner = await self._jobs.owner_of(job_id)
            self._audit.admin_read(call, job_id, owner)
            return owner
        return call.identity.user

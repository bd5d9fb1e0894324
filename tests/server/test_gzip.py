"""gzip with stock grpcio clients: a channel whose default compression is gzip uses every
method; a gzip bomb is refused and the server carries on; responses to a gzip call go gzip on
the wire (seen by a raw HTTP/2 client)."""

import gzip
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import trio

from jogger.rpc.errors import StatusCode
from jogger.standard.grpc.health.v1 import health_pb2
from jogger.v1 import jobs_pb2
from tests.procs import PYTHON
from tests.rpc.raw_h2 import message, raw_connection
from tests.rpc.test_grpcio_interop import credentials
from tests.servers import Server

JOBS = "/jogger.v1.Jobs/"
TEXT = "import sys\nfor i in range(20_000): print('line', i, 'of some output')"
"""A job whose output is worth compressing: some 400 KB of text."""
TIMEOUT = 30


def gzip_channel(server: Server) -> Any:
    return grpc.secure_channel(
        f"localhost:{server.port}",
        credentials(server, "alice"),
        compression=grpc.Compression.Gzip,
    )


def unary(channel: Any, method: str, response: Any) -> Callable[..., Any]:
    return channel.unary_unary(  # type: ignore[no-any-return]
        JOBS + method,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response.FromString,
    )


def every_method(server: Server) -> dict[str, Any]:
    """Each method of Jobs and Health through one gzip channel (grpcio's sync API)."""
    seen: dict[str, Any] = {}
    with gzip_channel(server) as channel:
        start = unary(channel, "Start", jobs_pb2.JobStatus)
        seen["start"] = job = start(
            jobs_pb2.StartRequest(argv=[PYTHON, "-c", TEXT]), timeout=TIMEOUT
        )
        output = channel.unary_stream(
            JOBS + "Output",
            request_serializer=jobs_pb2.OutputRequest.SerializeToString,
            response_deserializer=jobs_pb2.OutputChunk.FromString,
        )
        seen["output"] = list(
            output(jobs_pb2.OutputRequest(job_id=job.job_id, follow=True), timeout=TIMEOUT)
        )
        status = unary(channel, "Status", jobs_pb2.JobStatus)
        seen["status"] = status(jobs_pb2.StatusRequest(job_id=job.job_id), timeout=TIMEOUT)
        seen["list"] = unary(channel, "List", jobs_pb2.ListResponse)(
            jobs_pb2.ListRequest(), timeout=TIMEOUT
        )
        cat = start(jobs_pb2.StartRequest(argv=["cat"], input=jobs_pb2.INPUT_PIPE), timeout=TIMEOUT)
        write = channel.stream_unary(
            JOBS + "Write",
            request_serializer=jobs_pb2.WriteRequest.SerializeToString,
            response_deserializer=jobs_pb2.WriteResponse.FromString,
        )

        def requests() -> Iterator[jobs_pb2.WriteRequest]:
            yield jobs_pb2.WriteRequest(job_id=cat.job_id, data=b"hello " * 1000)
            yield jobs_pb2.WriteRequest(data=b"world\n")

        seen["write"] = write(requests(), timeout=TIMEOUT)
        seen["cat"] = b"".join(
            chunk.data
            for chunk in output(
                jobs_pb2.OutputRequest(job_id=cat.job_id, follow=True), timeout=TIMEOUT
            )
        )
        seen["stop"] = unary(channel, "Stop", jobs_pb2.JobStatus)(
            jobs_pb2.StopRequest(job_id=job.job_id), timeout=TIMEOUT
        )
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        seen["health"] = check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
    return seen


async def test_a_grpcio_gzip_channel_uses_every_method(server: Server) -> None:
    with trio.fail_after(60):
        seen = await trio.to_thread.run_sync(every_method, server)
    job_id = seen["start"].job_id
    expected = "".join(f"line {i} of some output\n" for i in range(20_000)).encode()
    assert b"".join(chunk.data for chunk in seen["output"]) == expected
    final = seen["output"][-1].final
    assert final.state == jobs_pb2.JOB_STATE_COMPLETED
    assert seen["status"] == final
    assert [job.job_id for job in seen["list"].jobs] == [job_id]
    assert seen["write"].written == 6006
    assert seen["cat"] == b"hello " * 1000 + b"world\n"
    assert seen["stop"].state == jobs_pb2.JOB_STATE_COMPLETED  # it had ended already
    assert seen["health"].status == health_pb2.HealthCheckResponse.SERVING


def bomb_then_list(server: Server) -> tuple[Any, str, int]:
    """A Start whose request grpcio compresses from 16 MiB of zeros to some 16 KB (the
    serializer ignores the message), then a List on the same channel."""
    with gzip_channel(server) as channel:
        bomb = channel.unary_unary(
            JOBS + "Start",
            request_serializer=lambda _: bytes(16 << 20),
            response_deserializer=jobs_pb2.JobStatus.FromString,
        )
        try:
            bomb(jobs_pb2.StartRequest(), timeout=TIMEOUT)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()
        else:
            raise AssertionError("the bomb was taken")
        listed = unary(channel, "List", jobs_pb2.ListResponse)(
            jobs_pb2.ListRequest(), timeout=TIMEOUT
        )
    return code, details, len(listed.jobs)


async def test_a_gzip_bomb_from_grpcio_is_refused_and_the_server_carries_on(
    server: Server,
) -> None:
    with trio.fail_after(60):
        code, details, jobs = await trio.to_thread.run_sync(bomb_then_list, server)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details == "a compressed message inflates past the limit of 1048576 bytes"
    assert jobs == 0  # nothing was started
    async with server.connect() as client:
        assert await client.health() == health_pb2.HealthCheckResponse.SERVING


def messages(data: bytes) -> Iterator[tuple[bool, bytes]]:
    """The length-prefixed messages of a response body: (compressed, payload)."""
    while data:
        size = int.from_bytes(data[1:5], "big")
        yield bool(data[0]), data[5 : 5 + size]
        data = data[5 + size :]


async def test_output_to_a_gzip_call_is_gzip_on_the_wire(server: Server) -> None:
    async with server.connect() as client:
        job = await client.start([PYTHON, "-c", TEXT])
        with trio.fail_after(30):
            async with client.output(job.job_id) as chunks:
                expected = b"".join([chunk.data async for chunk in chunks])
    request = jobs_pb2.OutputRequest(job_id=job.job_id).SerializeToString()
    with trio.fail_after(30):
        async with raw_connection(server) as conn:
            done = await conn.call(
                JOBS + "Output",
                message(request),  # (a message may go uncompressed in a gzip call)
                extra=[("grpc-encoding", "gzip"), ("grpc-accept-encoding", "identity,gzip")],
            )
    assert done.grpc_status == StatusCode.OK.value
    assert done.headers["grpc-encoding"] == "gzip"
    received = list(messages(done.data))
    assert all(compressed for compressed, _ in received)
    data = b"".join(
        jobs_pb2.OutputChunk.FromString(gzip.decompress(payload)).data for _, payload in received
    )
    assert data == expected
    assert len(done.data) < len(expected) / 3

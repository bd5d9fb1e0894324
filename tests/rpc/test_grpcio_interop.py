"""The official grpcio client (grpc.aio, run under trio through trio-asyncio) against our
server, over mutual TLS, for every RPC, including a live Output stream."""

from collections.abc import Callable
from typing import Any

import grpc
import pytest
import trio
import trio_asyncio
from google.protobuf.duration_pb2 import Duration

from jogger.engine import JobManager
from jogger.standard.grpc.health.v1 import health_pb2
from jogger.v1 import jobs_pb2
from tests.servers import Server


def credentials(server: Server, user: str) -> Any:
    pair = server.pki.user(user)
    return grpc.ssl_channel_credentials(
        root_certificates=server.pki.ca.read_bytes(),
        private_key=pair.key.read_bytes(),
        certificate_chain=pair.cert.read_bytes(),
    )


def unary(channel: Any, path: str, request: Any, response: Any) -> Callable[..., Any]:
    return channel.unary_unary(  # type: ignore[no-any-return]
        path,
        request_serializer=request.SerializeToString,
        response_deserializer=response.FromString,
    )


async def every_rpc(server: Server) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    async with grpc.aio.secure_channel(
        f"localhost:{server.port}", credentials(server, "alice")
    ) as channel:
        jobs = "/jogger.v1.Jobs/"
        start = unary(channel, jobs + "Start", jobs_pb2.StartRequest, jobs_pb2.JobStatus)
        job = await start(
            jobs_pb2.StartRequest(argv=["sh", "-c", "echo one; sleep 0.3; echo two; sleep 300"])
        )
        seen["start"] = job
        output = channel.unary_stream(
            jobs + "Output",
            request_serializer=jobs_pb2.OutputRequest.SerializeToString,
            response_deserializer=jobs_pb2.OutputChunk.FromString,
        )
        stop = unary(channel, jobs + "Stop", jobs_pb2.StopRequest, jobs_pb2.JobStatus)
        chunks = []
        async for chunk in output(jobs_pb2.OutputRequest(job_id=job.job_id, follow=True)):
            chunks.append(chunk)
            if b"two" in b"".join(c.data for c in chunks) and "stop" not in seen:
                # Live: the job is still running while we read; stop it from this client.
                seen["stop"] = await stop(
                    jobs_pb2.StopRequest(job_id=job.job_id, grace=Duration(seconds=1))
                )
        seen["output"] = chunks
        status = unary(channel, jobs + "Status", jobs_pb2.StatusRequest, jobs_pb2.JobStatus)
        seen["status"] = await status(jobs_pb2.StatusRequest(job_id=job.job_id))
        listing = unary(channel, jobs + "List", jobs_pb2.ListRequest, jobs_pb2.ListResponse)
        seen["list"] = await listing(jobs_pb2.ListRequest())
        check = unary(
            channel,
            "/grpc.health.v1.Health/Check",
            health_pb2.HealthCheckRequest,
            health_pb2.HealthCheckResponse,
        )
        seen["health"] = await check(health_pb2.HealthCheckRequest())
        try:
            await status(jobs_pb2.StatusRequest(job_id="5b4c1f5e-2f0c-4c38-9d8e-7f5b8a1d2c3e"))
        except grpc.aio.AioRpcError as exc:
            seen["missing"] = (exc.code(), exc.details())
    return seen


async def test_grpcio_client_drives_every_rpc(server: Server) -> None:
    with trio.fail_after(30):
        async with trio_asyncio.open_loop():
            seen = await trio_asyncio.aio_as_trio(every_rpc)(server)
    job_id = seen["start"].job_id
    assert seen["start"].state == jobs_pb2.JOB_STATE_RUNNING
    data = b"".join(chunk.data for chunk in seen["output"])
    assert data == b"one\ntwo\n"
    assert seen["output"][-1].final.state == jobs_pb2.JOB_STATE_STOPPED
    assert seen["stop"].state == jobs_pb2.JOB_STATE_STOPPED
    assert seen["status"] == seen["stop"]
    assert [j.job_id for j in seen["list"].jobs] == [job_id]
    assert seen["health"].status == health_pb2.HealthCheckResponse.SERVING
    assert seen["missing"] == (
        grpc.StatusCode.NOT_FOUND,
        "job 5b4c1f5e-2f0c-4c38-9d8e-7f5b8a1d2c3e not found",
    )


async def list_with(server: Server, user: str) -> tuple[Any, str]:
    async with grpc.aio.secure_channel(
        f"localhost:{server.port}", credentials(server, user)
    ) as channel:
        listing = unary(
            channel, "/jogger.v1.Jobs/List", jobs_pb2.ListRequest, jobs_pb2.ListResponse
        )
        try:
            await listing(jobs_pb2.ListRequest(), timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize(
    ("user", "code", "details"),
    [
        # Our post-handshake check refuses it with a gRPC status that says why.
        (
            "no-eku",
            grpc.StatusCode.UNAUTHENTICATED,
            "client certificate rejected: client certificate has no ExtendedKeyUsage extension",
        ),
        # OpenSSL refuses it in the handshake: grpcio reports the connection failure.
        ("other-ca", grpc.StatusCode.UNAVAILABLE, "failed to connect"),
    ],
)
async def test_grpcio_client_with_a_bad_certificate_is_refused(
    server: Server, user: str, code: Any, details: str
) -> None:
    with trio.fail_after(30):
        async with trio_asyncio.open_loop():
            got_code, got_details = await trio_asyncio.aio_as_trio(list_with)(server, user)
    assert got_code == code
    assert details in got_details


async def write_to_cat(server: Server) -> tuple[Any, bytes]:
    """Start `cat` with a stdin pipe, write to it through Write, read back its output."""
    sent = [b"one\n", b"\0\xff binary\n", b"x" * 100_000, b"end\n"]
    async with grpc.aio.secure_channel(
        f"localhost:{server.port}", credentials(server, "alice")
    ) as channel:
        jobs = "/jogger.v1.Jobs/"
        start = unary(channel, jobs + "Start", jobs_pb2.StartRequest, jobs_pb2.JobStatus)
        job = await start(jobs_pb2.StartRequest(argv=["cat"], input=jobs_pb2.INPUT_PIPE))
        write = channel.stream_unary(
            jobs + "Write",
            request_serializer=jobs_pb2.WriteRequest.SerializeToString,
            response_deserializer=jobs_pb2.WriteResponse.FromString,
        )

        async def requests() -> Any:
            yield jobs_pb2.WriteRequest(job_id=job.job_id, data=sent[0])
            for data in sent[1:]:
                yield jobs_pb2.WriteRequest(data=data)

        response = await write(requests())
        output = channel.unary_stream(
            jobs + "Output",
            request_serializer=jobs_pb2.OutputRequest.SerializeToString,
            response_deserializer=jobs_pb2.OutputChunk.FromString,
        )
        data = b""
        async for chunk in output(jobs_pb2.OutputRequest(job_id=job.job_id, follow=True)):
            data += chunk.data  # until cat has read EOF (the end of the stream) and exited
    assert data == b"".join(sent)
    return response, data


@pytest.mark.skipif(
    not hasattr(JobManager, "input"), reason="needs the engine's job input (JobManager.input)"
)
async def test_grpcio_client_writes_to_a_jobs_stdin(server: Server) -> None:
    with trio.fail_after(30):
        async with trio_asyncio.open_loop():
            response, data = await trio_asyncio.aio_as_trio(write_to_cat)(server)
    assert response.written == len(data)
    assert not response.closed

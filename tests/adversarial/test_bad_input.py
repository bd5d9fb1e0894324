"""Bad input over the real RPC: each gets a clear gRPC error, changes
nothing, and the server still answers a normal Start afterwards."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import cast

import pytest
import trio
from google.protobuf.message import Message

from jogger.rpc.channel import Channel, open_channel
from jogger.rpc.client import JobsClient
from jogger.rpc.errors import RpcError, StatusCode
from jogger.rpc.tls import client_context
from jogger.v1 import jobs_pb2
from tests.procs import my_children
from tests.servers import Server

UNKNOWN = "5b4c1f5e-2f0c-4c38-9d8e-7f5b8a1d2c3e"


class Raw:
    """A request whose bytes are whatever we say, not a valid message."""

    DESCRIPTOR = jobs_pb2.StatusRequest.DESCRIPTOR  # what the request headers name

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:
        return self.data


@asynccontextmanager
async def channel_of(server: Server, user: str = "alice") -> AsyncIterator[Channel]:
    pair = server.pki.user(user)
    context = client_context(server.pki.ca, pair.cert, pair.key)
    async with open_channel("localhost", server.port, context) as channel:
        yield channel


async def refused(call: Awaitable[object]) -> RpcError:
    with trio.fail_after(20), pytest.raises(RpcError) as info:
        await call
    return info.value


async def assert_unchanged_and_serving(client: JobsClient) -> None:
    """No job came of the bad requests, no process was left, and a good Start works."""
    assert await client.list() == ([], False)
    assert my_children() == []
    job = await client.start(["echo", "fine"])
    async with client.output(job.job_id) as chunks:
        assert [c.data async for c in chunks if c.data] == [b"fine\n"]


async def read_all(client: JobsClient, job_id: str) -> None:
    async with client.output(job_id) as chunks:
        async for _ in chunks:
            pass


START_CASES: list[tuple[str, list[str], str]] = [
    ("empty argv", [], "argv must not be empty"),
    ("empty argv[0]", [""], "argv[0] must not be empty"),
    ("NUL in argv[0]", ["ec\0ho"], "NUL"),
    ("NUL in an arg", ["echo", "a\0b"], "NUL"),
    ("argv over the size limit", ["echo", "x" * 200_000], "the limit is"),
    ("100,000 args", ["true", *["a"] * 100_000], "the limit is"),
]


@pytest.mark.parametrize(
    ("argv", "message"), [c[1:] for c in START_CASES], ids=[c[0] for c in START_CASES]
)
async def test_bad_argv_is_invalid_argument(server: Server, argv: list[str], message: str) -> None:
    async with server.connect() as client:
        error = await refused(client.start(argv))
        assert error.code == StatusCode.INVALID_ARGUMENT
        assert message in error.message
        await assert_unchanged_and_serving(client)


async def test_bad_env_and_cwd_are_invalid_argument(server: Server) -> None:
    async with server.connect() as client:
        for kwargs, message in (
            ({"cwd": "/no/such/dir"}, "/no/such/dir"),
            ({"cwd": "relative"}, "absolute"),
            ({"env": {"A=B": "c"}}, "environment"),
            ({"env": {"A": "c\0d"}}, "environment"),
        ):
            error = await refused(client.start(["true"], **kwargs))
            assert error.code == StatusCode.INVALID_ARGUMENT, kwargs
            assert message in error.message, (kwargs, error.message)
        await assert_unchanged_and_serving(client)


@pytest.mark.parametrize(
    ("job_id", "code"),
    [
        ("", StatusCode.INVALID_ARGUMENT),
        ("not-a-uuid", StatusCode.INVALID_ARGUMENT),
        ("a" * 10_000, StatusCode.INVALID_ARGUMENT),
        ("../../etc/passwd", StatusCode.INVALID_ARGUMENT),
        (UNKNOWN, StatusCode.NOT_FOUND),
    ],
    ids=["empty", "not a UUID", "10 KB", "a path", "unknown"],
)
async def test_bad_job_ids(server: Server, job_id: str, code: StatusCode) -> None:
    async with server.connect() as client:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: client.status(job_id),
            lambda: client.stop(job_id, grace=0),
        ]
        for call in calls:
            assert (await refused(call())).code == code
        error = await refused(read_all(client, job_id))
        assert error.code == code
        assert len(error.message) < 200  # a 10 KB id is not echoed back whole
        await assert_unchanged_and_serving(client)


async def test_another_users_job_id_is_not_found(server: Server) -> None:
    async with server.connect("alice") as alice, server.connect("bob") as bob:
        job = await alice.start(["sleep", "300"])
        assert (await refused(bob.status(job.job_id))).code == StatusCode.NOT_FOUND
        assert (await refused(bob.stop(job.job_id, grace=0))).code == StatusCode.NOT_FOUND
        assert (await alice.status(job.job_id)).state == jobs_pb2.JOB_STATE_RUNNING
        await alice.stop(job.job_id, grace=0)


async def test_an_offset_past_the_end_gives_nothing_and_ends(server: Server) -> None:
    async with server.connect() as client:
        job = await client.start(["echo", "short"])
        async with client.output(job.job_id) as chunks:
            assert [c.data async for c in chunks if c.data] == [b"short\n"]
        with trio.fail_after(10):
            async with client.output(job.job_id, offset=10**12, follow=False) as chunks:
                assert [c.data async for c in chunks if c.data] == []


async def test_stop_with_a_negative_grace_is_invalid_and_stops_nothing(server: Server) -> None:
    async with server.connect() as client:
        job = await client.start(["sleep", "300"])
        error = await refused(client.stop(job.job_id, grace=-1))
        assert error.code == StatusCode.INVALID_ARGUMENT
        assert "grace" in error.message
        assert (await client.status(job.job_id)).state == jobs_pb2.JOB_STATE_RUNNING
        await client.stop(job.job_id, grace=0)


async def test_unknown_methods_are_unimplemented(server: Server) -> None:
    async with channel_of(server) as channel:
        for path in ("/jogger.v1.Jobs/Delete", "/no.Such/Thing", "/jogger.v1.Jobs/start"):
            error = await refused(channel.unary(path, jobs_pb2.StatusRequest(), jobs_pb2.JobStatus))
            assert error.code == StatusCode.UNIMPLEMENTED, path
        await assert_unchanged_and_serving(JobsClient(channel))


@pytest.mark.parametrize(
    "data",
    [b"\xff\xff\xff\xff", b"\x0a\x05ab", b"\x0a\xff\xff\xff\xff\x0f", b"\x08"],
    ids=["garbage", "truncated string", "huge length", "truncated varint"],
)
async def test_malformed_protobuf_is_invalid_argument(server: Server, data: bytes) -> None:
    async with channel_of(server) as channel:
        for path in ("/jogger.v1.Jobs/Start", "/jogger.v1.Jobs/Status", "/jogger.v1.Jobs/List"):
            error = await refused(channel.unary(path, cast(Message, Raw(data)), jobs_pb2.JobStatus))
            assert error.code == StatusCode.INVALID_ARGUMENT, (path, error)
        await assert_unchanged_and_serving(JobsClient(channel))

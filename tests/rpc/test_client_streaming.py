"""Client-streaming calls over real TLS: order, flow control end to end (a handler that stops
taking requests makes the client wait, and holds one stream window), cancellation, deadlines.

A test-only method stands in for Jobs.Write, whose engine side is not needed here; it is
served at Write's own path, so that JobsClient.writer drives it too.
"""

import gc
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import trio
import trio.testing
import trio_asyncio

from jogger.rpc.admission import TransportLimits
from jogger.rpc.channel import Channel, open_channel
from jogger.rpc.client import InputClosed, InputWriter, JobsClient
from jogger.rpc.credentials import TlsHolder, load_server_tls
from jogger.rpc.errors import RpcError, StatusCode
from jogger.rpc.method import Call, Method
from jogger.rpc.server import open_rpc_server
from jogger.rpc.tls import client_context
from jogger.rpc.wire import (
    INITIAL_WINDOW_FACTOR,
    SERVER_MAX_MESSAGE,
    SERVER_QUEUED_REQUESTS,
    Connection,
)
from jogger.v1 import jobs_pb2
from tests.pki import Pki
from tests.procs import task_count

WRITE = "/jogger.v1.Jobs/Write"
PING = "/jogger.v1.Jobs/Status"
STREAM_WINDOW = INITIAL_WINDOW_FACTOR * SERVER_MAX_MESSAGE
CHUNK = 64 << 10

Request = jobs_pb2.WriteRequest
Response = jobs_pb2.WriteResponse


@dataclass
class Service:
    """What the test handler does with the requests it takes (``handle``), and what it saw."""

    handle: Callable[[AsyncIterator[Any]], Any] | None = None
    taken: list[bytes] = field(default_factory=list)
    cancelled: trio.Event = field(default_factory=trio.Event)
    started: trio.Event = field(default_factory=trio.Event)
    connections: list[Connection] = field(default_factory=list)

    async def write(self, call: Call, requests: AsyncIterator[Any]) -> Any:
        self.started.set()
        try:
            if self.handle is not None:
                return await self.handle(requests)
            written = 0
            async for request in requests:
                self.taken.append(request.data)
                written += len(request.data)
            return Response(written=written)
        except trio.Cancelled:
            self.cancelled.set()
            raise

    async def ping(self, call: Call, request: Any) -> Any:
        return jobs_pb2.JobStatus(job_id=request.job_id)

    def held(self) -> int:
        """Bytes of client data the server has not given back, over its connections."""
        return sum(c.protocol.held() for c in self.connections)


@pytest.fixture
async def service(
    pki: Pki, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Service, int]]:
    found = Service()

    class Recorded(Connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if not kwargs["client_side"]:
                found.connections.append(self)

    monkeypatch.setattr("jogger.rpc.server.Connection", Recorded)
    methods = {
        WRITE: Method(Request, client_stream=found.write),
        PING: Method(jobs_pb2.StatusRequest, unary=found.ping),
    }
    tls = TlsHolder(load_server_tls(pki.ca, pki.server.cert, pki.server.key))
    limits = TransportLimits(request_timeout=0.5)
    async with open_rpc_server(tls, methods, limits=limits, drain_timeout=0.1) as server:
        bound = await nursery.start(server.listen, [("127.0.0.1", 0)])
        yield found, bound[0][1]


@asynccontextmanager
async def channel(pki: Pki, port: int) -> AsyncIterator[Channel]:
    pair = pki.user("alice")
    context = client_context(pki.ca, pair.cert, pair.key)
    async with open_channel("localhost", port, context) as opened:
        yield opened


def writing(ch: Channel) -> Any:
    return ch.client_stream(WRITE, Request, Response)


async def test_a_client_stream_carries_many_binary_messages_in_order(
    service: tuple[Service, int], pki: Pki
) -> None:
    found, port = service
    rng = random.Random(7)
    sent = [b"\0", b"\xff" * 3, b"", *(rng.randbytes(rng.randrange(1, 5000)) for _ in range(500))]
    with trio.fail_after(30):
        async with channel(pki, port) as ch, writing(ch) as call:
            for data in sent:
                assert await call.send(Request(data=data))
            response = await call.close()
    assert found.taken == sent
    assert response.written == sum(map(len, sent))


async def stalled(found: Service) -> tuple[trio.Event, list[int]]:
    """Make the handler take one message and then wait; send until flow control stops the
    client. Returns the event that lets the handler go on, and the sizes sent so far."""
    release = trio.Event()

    async def take_one_then_wait(requests: AsyncIterator[Any]) -> Any:
        first = await anext(requests)
        found.taken.append(first.data)
        await release.wait()
        async for request in requests:
            found.taken.append(request.data)
        return Response(written=sum(map(len, found.taken)))

    found.handle = take_one_then_wait
    return release, []


async def test_a_handler_that_stops_taking_makes_the_writer_wait_holding_one_window(
    service: tuple[Service, int], pki: Pki
) -> None:
    found, port = service
    with trio.fail_after(30):
        async with channel(pki, port) as ch, trio.open_nursery() as nursery, writing(ch) as call:
            release, sent = await stalled(found)

            async def writer() -> None:
                for k in range(200):  # 12.5 MiB: far more than any window
                    assert await call.send(Request(data=bytes([k]) * CHUNK))
                    sent.append(CHUNK)

            nursery.start_soon(writer)
            # Until the server holds a whole stream window that it does not give back.
            await until(lambda: found.held() >= STREAM_WINDOW - CHUNK)
            await trio.testing.wait_all_tasks_blocked(0.2)
            assert len(found.taken) == 1
            assert found.held() <= STREAM_WINDOW
            assert sum(sent) <= STREAM_WINDOW + CHUNK  # the writer waits on flow control
            assert len(sent) < 200

            # The connection still carries other calls: a unary call, another client stream.
            status = await ch.unary(PING, jobs_pb2.StatusRequest(job_id="j"), jobs_pb2.JobStatus)
            assert status.job_id == "j"
            found.handle = None
            async with writing(ch) as other:
                for _ in range(40):  # 2.5 MiB: more than the first stream leaves of a window
                    assert await other.send(Request(data=b"\xff" * CHUNK))
                assert (await other.close()).written == 40 * CHUNK

            release.set()
            await until(lambda: len(sent) == 200)
            await call.close()
    first = [data for data in found.taken if data[:1] != b"\xff"]
    assert first == [bytes([k]) * CHUNK for k in range(200)]
    assert found.held() == 0


async def test_tiny_messages_piling_up_past_the_count_bound_end_the_call(
    service: tuple[Service, int], pki: Pki
) -> None:
    # Empty messages cost 5 bytes of window each, but an event apiece at the server: their
    # count is bounded too, and passing it ends the call, not the connection.
    found, port = service
    release, _ = await stalled(found)
    with trio.fail_after(60):
        async with channel(pki, port) as ch:

            async def pile_up() -> None:
                async with writing(ch) as call:
                    for _ in range(SERVER_QUEUED_REQUESTS + 100):
                        if not await call.send(Request(data=b"")):
                            break
                    await call.close()

            with pytest.raises(RpcError) as refused:
                await pile_up()
            assert refused.value.code is StatusCode.RESOURCE_EXHAUSTED
            assert f"more than {SERVER_QUEUED_REQUESTS}" in refused.value.message
            release.set()
            # The connection, and its budget, are whole again.
            async with writing(ch) as other:
                assert await other.send(Request(data=b"after"))
                assert (await other.close()).written == 5
    assert found.held() == 0


async def wait_forever(requests: AsyncIterator[Any]) -> Any:
    await anext(requests)
    await trio.sleep_forever()


async def test_a_client_leaving_a_client_stream_cancels_its_handler(
    service: tuple[Service, int], pki: Pki
) -> None:
    found, port = service

    found.handle = wait_forever
    with trio.fail_after(30):
        async with channel(pki, port) as ch:
            await settle()
            before = task_count()
            with trio.CancelScope() as scope:
                async with writing(ch) as call:
                    await call.send(Request(job_id="j"))
                    await found.started.wait()
                    scope.cancel()  # the client gives up: its RST_STREAM must end the handler
            await found.cancelled.wait()
            await settle()
            assert task_count() == before
            assert found.held() == 0


async def test_a_client_that_disconnects_cancels_its_handler(
    service: tuple[Service, int], pki: Pki
) -> None:
    found, port = service

    found.handle = wait_forever
    with trio.fail_after(30):
        await settle()
        before = task_count()
        with trio.CancelScope() as scope:
            async with channel(pki, port) as ch, writing(ch) as call:
                await call.send(Request(job_id="j"))
                await found.started.wait()
                scope.cancel()  # leaves the channel too: the connection closes
        await found.cancelled.wait()
        await settle()
        assert task_count() == before


async def write_until_answered(writer: InputWriter) -> None:
    """Each write goes through until the server's answer has arrived."""
    while True:
        await writer.write(b"z")
        await trio.sleep(0.01)


async def until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition``: the server's flow control state, which no event reports."""
    while True:
        if condition():
            return
        await trio.sleep(0.01)


async def settle() -> None:
    for _ in range(5):
        await trio.sleep(0.05)
        await trio.testing.wait_all_tasks_blocked(0.01)
    gc.collect()


async def test_the_first_message_must_come_within_the_request_timeout(
    service: tuple[Service, int], pki: Pki
) -> None:
    found, port = service
    with trio.fail_after(10):
        async with channel(pki, port) as ch, writing(ch) as call:
            await trio.sleep(1)  # the fixture's request_timeout is 0.5 s
            assert not await call.send(Request(job_id="j"))  # answered: not sent
            with pytest.raises(RpcError) as raised:
                await call.close()
    assert raised.value.code == StatusCode.DEADLINE_EXCEEDED
    assert not found.started.is_set()


async def test_later_messages_may_take_their_time(service: tuple[Service, int], pki: Pki) -> None:
    found, port = service
    with trio.fail_after(10):
        async with channel(pki, port) as ch, writing(ch) as call:
            assert await call.send(Request(data=b"a"))
            await trio.sleep(1)  # twice the request timeout: a person pausing at a terminal
            assert await call.send(Request(data=b"b"))
            assert (await call.close()).written == 2
    assert found.taken == [b"a", b"b"]


async def test_a_stream_closed_with_no_message_is_invalid(
    service: tuple[Service, int], pki: Pki
) -> None:
    _, port = service
    with trio.fail_after(10):
        async with channel(pki, port) as ch, writing(ch) as call:
            with pytest.raises(RpcError) as raised:
                await call.close()
    assert raised.value.code == StatusCode.INVALID_ARGUMENT


async def test_a_writer_waiting_on_flow_control_learns_of_an_early_answer(
    service: tuple[Service, int], pki: Pki
) -> None:
    found, port = service
    release = trio.Event()

    async def take_one_then_stop(requests: AsyncIterator[Any]) -> Any:
        await anext(requests)
        await release.wait()
        return Response(written=1, closed=True)  # the job closed its stdin

    found.handle = take_one_then_stop
    with trio.fail_after(20):
        async with channel(pki, port) as ch:
            async with JobsClient(ch).writer("j") as writer:
                raised: list[InputClosed] = []

                async def write() -> None:
                    with pytest.raises(InputClosed) as closed:
                        await writer.write(b"y" * (8 << 20))
                    raised.append(closed.value)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(write)
                    await until(lambda: found.held() >= STREAM_WINDOW - CHUNK)
                    release.set()  # the writer is blocked in write(): it must not hang
                assert raised[0].response.closed
                assert raised[0].response.written == 1
                with pytest.raises(InputClosed):
                    await writer.write(b"more")
                assert (await writer.close()).closed
            # The call is over on both ends: the connection carries more.
            status = await ch.unary(PING, jobs_pb2.StatusRequest(job_id="k"), jobs_pb2.JobStatus)
            assert status.job_id == "k"
    assert found.held() == 0


async def test_a_writer_learns_of_an_error_status_at_its_next_write(
    service: tuple[Service, int], pki: Pki
) -> None:
    found, port = service

    async def refuse(requests: AsyncIterator[Any]) -> Any:
        await anext(requests)
        raise RpcError(StatusCode.NOT_FOUND, "job j not found")

    found.handle = refuse
    with trio.fail_after(10):
        async with channel(pki, port) as ch, JobsClient(ch).writer("j") as writer:
            with pytest.raises(RpcError) as raised:
                await write_until_answered(writer)
            assert raised.value.code == StatusCode.NOT_FOUND
            with pytest.raises(RpcError):
                await writer.close()


async def grpcio_write(pki: Pki, port: int, chunks: list[bytes]) -> Any:
    pair = pki.user("alice")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=pair.key.read_bytes(),
        certificate_chain=pair.cert.read_bytes(),
    )
    async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as ch:
        write = ch.stream_unary(
            WRITE,
            request_serializer=Request.SerializeToString,
            response_deserializer=Response.FromString,
        )

        async def requests() -> Any:
            for data in chunks:
                yield Request(job_id="j", data=data)

        return await write(requests())


async def test_a_grpcio_client_streams_through_flow_control(
    service: tuple[Service, int], pki: Pki
) -> None:
    found, port = service
    release = trio.Event()

    async def take_slowly(requests: AsyncIterator[Any]) -> Any:
        written = 0
        async for request in requests:
            if written == 0:
                await release.wait()  # grpcio's writes wait meanwhile
            found.taken.append(request.data)
            written += len(request.data)
        return Response(written=written)

    found.handle = take_slowly
    chunks = [bytes([k % 256]) * CHUNK for k in range(100)]  # 6.25 MiB: past every window
    with trio.fail_after(30):
        async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:

            async def go_on() -> None:
                await until(lambda: found.held() >= STREAM_WINDOW - CHUNK)
                release.set()

            nursery.start_soon(go_on)
            response = await trio_asyncio.aio_as_trio(grpcio_write)(pki, port, chunks)
    assert found.taken == chunks
    assert response.written == len(chunks) * CHUNK

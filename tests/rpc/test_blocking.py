"""The blocking client (rpc/blocking.py, which jog's one-shot commands use): against the real
server it answers as the trio client does, and fails in the same words; against a hostile
server (plain h2, in a thread) it ends the call with a clear error."""

import errno
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import pytest
import trio

from jogger.rpc.blocking import open_blocking
from jogger.rpc.calls import JobsCalls
from jogger.rpc.client import open_client
from jogger.rpc.errors import RpcError
from jogger.rpc.failures import TransportError
from jogger.rpc.tcp import connect_first
from jogger.rpc.tls import client_context
from jogger.v1 import jobs_pb2
from tests.pki import Pki
from tests.procs import eventually
from tests.servers import Server

T = TypeVar("T")
UNKNOWN = "6c1f6d8e-6a8e-4c55-9d55-3f1f4a1c2b7e"


def run_to_end(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("a blocking call suspended")


def blocking(
    port: int,
    ca: Path,
    cert: Path,
    key: Path,
    call: Callable[[JobsCalls], Coroutine[Any, Any, T]],
    *,
    connect_timeout: float = 10.0,
    context: ssl.SSLContext | None = None,
) -> T | BaseException:
    """The call's result on the blocking client, or what it raised."""
    try:
        with open_blocking(
            "localhost",
            port,
            context or client_context(ca, cert, key),
            connect_timeout=connect_timeout,
        ) as client:
            return run_to_end(call(client))
    except (TransportError, RpcError) as exc:
        return exc


async def on_trio(
    port: int, ca: Path, cert: Path, key: Path, call: Callable[[JobsCalls], Any]
) -> Any:
    try:
        async with open_client("localhost", port, ca=ca, cert=cert, key=key) as client:
            return await call(client)
    except (TransportError, RpcError) as exc:
        return exc


def said(result: object) -> tuple[str, str]:
    return type(result).__name__, str(result)


async def test_it_answers_as_the_trio_client_does(server: Server) -> None:
    alice = server.pki.user("alice")
    files = (server.pki.ca, alice.cert, alice.key)
    async with server.connect() as client:
        job = await client.start(["true"])

        async def ended() -> bool:
            return bool((await client.status(job.job_id)).ended_at.ToNanoseconds())

        await eventually(ended)
    ended = await on_trio(server.port, *files, lambda c: c.status(job.job_id))
    status = await trio.to_thread.run_sync(
        blocking, server.port, *files, lambda c: c.status(job.job_id)
    )
    assert status == ended
    listed = await trio.to_thread.run_sync(blocking, server.port, *files, lambda c: c.list())
    assert listed == ([ended], False)
    started = await trio.to_thread.run_sync(
        blocking, server.port, *files, lambda c: c.start(["echo", "x" * 100_000])
    )
    assert isinstance(started, jobs_pb2.JobStatus)
    assert started.argv == ["echo", "x" * 100_000]
    for call in (
        lambda c: c.status(UNKNOWN),
        lambda c: c.status("not-a-uuid"),
        lambda c: c.stop(UNKNOWN),
    ):
        refused = await trio.to_thread.run_sync(blocking, server.port, *files, call)
        assert isinstance(refused, RpcError)
        assert said(refused) == said(await on_trio(server.port, *files, call))


@pytest.mark.parametrize("name", ["other-ca", "expired", "server-only", "no-eku", "bad-cn"])
async def test_a_refused_client_certificate_reads_as_on_trio(server: Server, name: str) -> None:
    pair = server.pki.user(name)
    files = (server.pki.ca, pair.cert, pair.key)
    refused = await trio.to_thread.run_sync(blocking, server.port, *files, lambda c: c.list())
    assert isinstance(refused, TransportError | RpcError)
    assert said(refused) == said(await on_trio(server.port, *files, lambda c: c.list()))


async def test_a_server_of_another_ca_reads_as_on_trio(server: Server) -> None:
    alice = server.pki.user("alice")
    files = (server.pki.ca.with_name("other-ca.pem"), alice.cert, alice.key)
    refused = await trio.to_thread.run_sync(blocking, server.port, *files, lambda c: c.list())
    assert said(refused)[1].startswith("we rejected the server's certificate: ")
    assert said(refused) == said(await on_trio(server.port, *files, lambda c: c.list()))


async def test_no_client_certificate_and_no_server_read_as_on_trio(server: Server) -> None:
    context = ssl.create_default_context(cafile=str(server.pki.ca))
    context.set_alpn_protocols(["h2"])
    alice = server.pki.user("alice")
    files = (server.pki.ca, alice.cert, alice.key)
    refused = await trio.to_thread.run_sync(
        lambda: blocking(server.port, *files, lambda c: c.list(), context=context)
    )
    assert said(refused) == (
        "TransportError",
        "the server requires a client certificate and got none",
    )
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        refused = await trio.to_thread.run_sync(blocking, port, *files, lambda c: c.list())
        assert said(refused) == said(await on_trio(port, *files, lambda c: c.list()))
    assert said(refused)[1].startswith("cannot connect: ")


def test_a_server_that_never_does_tls_times_out(pki: Pki) -> None:
    alice = pki.user("alice")
    with socket.create_server(("127.0.0.1", 0)) as silent:
        result = blocking(
            silent.getsockname()[1],
            pki.ca,
            alice.cert,
            alice.key,
            lambda c: c.list(),
            connect_timeout=0.5,
        )
    assert said(result) == (
        "TransportError",
        "connected, but the TLS handshake did not finish within 0.5 s",
    )


# A hostile server: TLS and HTTP/2 done right, gRPC answers as its behaviour says.

Behaviour = Callable[[h2.connection.H2Connection, int], None]


def message(payload: bytes) -> bytes:
    return b"\0" + len(payload).to_bytes(4, "big") + payload


def headers(conn: h2.connection.H2Connection, stream_id: int) -> None:
    conn.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc")])


def trailers(conn: h2.connection.H2Connection, stream_id: int, code: int = 0) -> None:
    conn.send_headers(stream_id, [("grpc-status", str(code))], end_stream=True)


def two_messages(conn: h2.connection.H2Connection, stream_id: int) -> None:
    headers(conn, stream_id)
    status = jobs_pb2.JobStatus(job_id=UNKNOWN).SerializeToString()
    conn.send_data(stream_id, message(status) + message(status))
    trailers(conn, stream_id)


def no_message(conn: h2.connection.H2Connection, stream_id: int) -> None:
    headers(conn, stream_id)
    trailers(conn, stream_id)


def garbage(conn: h2.connection.H2Connection, stream_id: int) -> None:
    headers(conn, stream_id)
    conn.send_data(stream_id, message(b"\xff\xff\xff"))
    trailers(conn, stream_id)


def reset(conn: h2.connection.H2Connection, stream_id: int) -> None:
    conn.reset_stream(stream_id)


def answer(conn: h2.connection.H2Connection, stream_id: int) -> None:
    headers(conn, stream_id)
    conn.send_data(stream_id, message(jobs_pb2.JobStatus(job_id=UNKNOWN).SerializeToString()))
    trailers(conn, stream_id)


@contextmanager
def hostile(pki: Pki, behaviour: Behaviour, *, window: int | None = None) -> Iterator[int]:
    """A TLS server on loopback, for one connection, answering each call's end with
    ``behaviour``; ``window``: the stream window it opens (HTTP/2's 65,535 by default)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(pki.server.cert, pki.server.key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        # The hostile server's own end (the client went away mid-write) is not the test's.
        with suppress(OSError, h2.exceptions.ProtocolError):
            accepted, _ = listener.accept()
            with context.wrap_socket(accepted, server_side=True) as tls:
                tls.settimeout(10)
                conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
                conn.initiate_connection()
                if window is not None:
                    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
                tls.sendall(conn.data_to_send())
                while data := tls.recv(1 << 16):
                    for event in conn.receive_data(data):
                        if isinstance(event, h2.events.DataReceived):
                            conn.acknowledge_received_data(
                                event.flow_controlled_length, event.stream_id
                            )
                        if isinstance(event, h2.events.StreamEnded):
                            behaviour(conn, event.stream_id)
                    tls.sendall(conn.data_to_send())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(10)
        listener.close()


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        (two_messages, ("RpcError", "INTERNAL: expected one response message")),
        (no_message, ("RpcError", "INTERNAL: expected one response message")),
        (garbage, ("RpcError", "INTERNAL: malformed response message")),
        (reset, ("TransportError", "the server closed the connection")),
    ],
)
def test_a_hostile_servers_answer_ends_the_call_clearly(
    pki: Pki, behaviour: Behaviour, expected: tuple[str, str]
) -> None:
    alice = pki.user("alice")
    with hostile(pki, behaviour) as port:
        result = blocking(port, pki.ca, alice.cert, alice.key, lambda c: c.status(UNKNOWN))
    assert said(result) == expected


def test_a_request_bigger_than_the_servers_window_waits_for_it(pki: Pki) -> None:
    alice = pki.user("alice")
    with hostile(pki, answer, window=1000) as port:
        result = blocking(
            port, pki.ca, alice.cert, alice.key, lambda c: c.start(["echo", "x" * 50_000])
        )
    assert isinstance(result, jobs_pb2.JobStatus), result
    assert result.job_id == UNKNOWN


def test_an_address_that_never_answers_does_not_take_the_whole_deadline() -> None:
    # A listener whose queue is full drops new SYNs: to a client, a route that loses packets.
    with (
        socket.create_server(("127.0.0.1", 0), backlog=0) as full,
        socket.create_server(("127.0.0.1", 0)) as good,
    ):
        fillers = []
        try:
            for _ in range(4):
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(full.getsockname())
                fillers.append(filler)
            with socket.socket() as probe:
                probe.settimeout(0.5)
                if probe.connect_ex(full.getsockname()) == 0:
                    pytest.skip("this kernel answers a full listener's SYNs")
            addresses = [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", full.getsockname()),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", good.getsockname()),
            ]
            # One deadline for both: had the first address had it all, the second would
            # never have been tried.
            with connect_first(addresses, timeout=5.0) as sock:
                assert sock.getpeername() == good.getsockname()
                assert sock.getblocking()
        finally:
            for filler in fillers:
                filler.close()


def test_no_address_answering_is_a_timeout_and_refusals_are_each_named() -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=0) as full:
        fillers = [socket.socket() for _ in range(4)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(full.getsockname())
            address = (socket.AF_INET, socket.SOCK_STREAM, 6, "", full.getsockname())
            with pytest.raises(TimeoutError):
                connect_first([address], timeout=0.5).close()
        finally:
            for filler in fillers:
                filler.close()
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        address = (socket.AF_INET, socket.SOCK_STREAM, 6, "", unused.getsockname())
        with pytest.raises(ExceptionGroup) as info:
            connect_first([address, address], timeout=5.0).close()
    refusals = info.value.exceptions
    assert [e.errno for e in refusals if isinstance(e, OSError)] == [errno.ECONNREFUSED] * 2

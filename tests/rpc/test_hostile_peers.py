"""What a peer sends can end its own call, at worst its own connection; never the server."""

import gzip
import logging
import socket
import struct
import zlib
from pathlib import Path
from typing import Any

import h2.errors
import pytest
import trio

from jogger.rpc.client import open_client
from jogger.rpc.errors import StatusCode
from jogger.rpc.failures import TransportError
from jogger.rpc.tls import client_context
from jogger.server.main import serve
from jogger.v1 import jobs_pb2
from tests.pki import Pki
from tests.rpc.raw_h2 import RawConnection, message, raw_connection
from tests.servers import Server, server_config

LIST = "/jogger.v1.Jobs/List"
START = "/jogger.v1.Jobs/Start"
EMPTY_LIST = message(jobs_pb2.ListRequest().SerializeToString())


async def still_serves(server: Server, conn: RawConnection) -> None:
    """The same connection, and a new one, still carry calls."""
    assert (await conn.call(LIST, EMPTY_LIST)).grpc_status == StatusCode.OK.value
    assert not conn.terminated
    async with server.connect() as client:
        assert await client.list() == ([], False)


@pytest.mark.parametrize("value", ["abcS", "-5S", "999999999S", "1", "S", "1.5S", "5x"])
async def test_a_malformed_grpc_timeout_fails_only_its_call(server: Server, value: str) -> None:
    with trio.fail_after(10):
        async with raw_connection(server) as conn:
            bad = await conn.call(LIST, EMPTY_LIST, extra=[("grpc-timeout", value)])
            assert bad.grpc_status == StatusCode.INVALID_ARGUMENT.value
            assert "grpc-timeout" in bad.message
            await still_serves(server, conn)


@pytest.mark.parametrize("encoding", ["snappy", "deflate", "br", "gzip, identity"])
async def test_an_encoding_we_do_not_read_is_unimplemented_and_we_say_which_we_do(
    server: Server, encoding: str
) -> None:
    body = message(b"\x00garbage that is not " + encoding.encode(), compressed=True)
    with trio.fail_after(10):
        async with raw_connection(server) as conn:
            bad = await conn.call(LIST, body, extra=[("grpc-encoding", encoding)])
            assert bad.grpc_status == StatusCode.UNIMPLEMENTED.value
            assert bad.message.endswith("is not supported; supported: identity,gzip")
            assert bad.headers["grpc-accept-encoding"] == "identity,gzip"
            await still_serves(server, conn)


async def test_a_compressed_message_without_an_encoding_fails_only_its_call(
    server: Server,
) -> None:
    body = message(gzip.compress(b""), compressed=True)
    with trio.fail_after(10):
        async with raw_connection(server) as conn:
            bad = await conn.call(LIST, body)
            assert bad.grpc_status == StatusCode.UNIMPLEMENTED.value
            assert "a compressed message on a call whose grpc-encoding is 'identity'" in (
                bad.message
            )
            await still_serves(server, conn)


@pytest.mark.parametrize(
    "payload", [b"\x00garbage that is not gzip", zlib.compress(b"zlib, not gzip")]
)
async def test_a_gzip_message_that_is_not_gzip_fails_only_its_call(
    server: Server, payload: bytes
) -> None:
    with trio.fail_after(10):
        async with raw_connection(server) as conn:
            bad = await conn.call(
                LIST, message(payload, compressed=True), extra=[("grpc-encoding", "gzip")]
            )
            assert bad.grpc_status == StatusCode.INVALID_ARGUMENT.value
            assert bad.message.startswith("malformed compressed message:")
            await still_serves(server, conn)


async def test_a_gzip_bomb_fails_only_its_call_with_resource_exhausted(
    server: Server,
) -> None:
    # 8 KiB on the wire (one DATA frame), 8 MiB inflated: eight times the largest request.
    bomb = gzip.compress(bytes(8 << 20), compresslevel=9)
    assert len(bomb) < 10_000
    with trio.fail_after(10):
        async with raw_connection(server) as conn:
            bad = await conn.call(
                START, message(bomb, compressed=True), extra=[("grpc-encoding", "gzip")]
            )
            assert bad.grpc_status == StatusCode.RESOURCE_EXHAUSTED.value
            assert bad.message == "a compressed message inflates past the limit of 1048576 bytes"
            await still_serves(server, conn)


async def test_a_gzip_request_is_served(server: Server) -> None:
    request = jobs_pb2.ListRequest(page_size=5).SerializeToString()
    with trio.fail_after(10):
        async with raw_connection(server) as conn:
            done = await conn.call(
                LIST,
                message(gzip.compress(request), compressed=True),
                extra=[("grpc-encoding", "gzip"), ("grpc-accept-encoding", "gzip")],
            )
            assert done.grpc_status == StatusCode.OK.value
            assert done.headers["grpc-encoding"] == "gzip"
            # An empty ListResponse is not worth compressing: its flag says it is not.
            assert done.data == message(jobs_pb2.ListResponse().SerializeToString())


async def test_a_request_with_no_message_fails_only_its_call(server: Server) -> None:
    with trio.fail_after(10):
        async with raw_connection(server) as conn:
            bad = await conn.call(LIST, None)  # HEADERS with END_STREAM
            assert bad.grpc_status == StatusCode.INVALID_ARGUMENT.value
            await still_serves(server, conn)


@pytest.mark.parametrize(
    "replace",
    [
        {":path": "no-slashes"},
        {":path": "/a/b/c"},
        {":method": "GET"},
        {"content-type": "text/plain"},
    ],
)
async def test_malformed_request_headers_reset_only_their_stream(
    server: Server, replace: dict[str, str]
) -> None:
    with trio.fail_after(10):
        async with raw_connection(server) as conn:
            bad = await conn.call(LIST, EMPTY_LIST, replace=replace)
            assert bad.reset == h2.errors.ErrorCodes.PROTOCOL_ERROR
            await still_serves(server, conn)


async def test_a_connection_level_protocol_error_ends_only_that_connection(
    server: Server,
) -> None:
    # h2 treats a TE header other than "trailers" as a connection error.
    with trio.fail_after(10):
        async with raw_connection(server) as conn:
            await conn.call(LIST, EMPTY_LIST, replace={"te": "gzip"})
            assert conn.terminated
        async with server.connect() as client:
            assert await client.list() == ([], False)


async def test_header_bytes_that_are_not_utf8_end_only_that_connection(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(10):
        async with raw_connection(server) as conn:
            await conn.call(LIST, EMPTY_LIST, extra=[(b"x-junk", b"\xff\xfe")])
            assert conn.terminated
        async with server.connect() as client:
            assert await client.list() == ([], False)
    # A protocol error of the peer's, not a failure of ours.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_oversized_request_is_refused_as_resource_exhausted(server: Server) -> None:
    # Only the 5-byte prefix announcing 2 MiB is needed: the server refuses on seeing it.
    body = struct.pack(">?I", False, 2 << 20) + b"x" * 100
    with trio.fail_after(10):
        async with raw_connection(server) as conn:
            bad = await conn.call(START, body)
            assert bad.grpc_status == StatusCode.RESOURCE_EXHAUSTED.value
            await still_serves(server, conn)


async def test_a_request_bigger_than_the_initial_window_goes_through(server: Server) -> None:
    # 100 KiB of argv: more than HTTP/2's initial 64 KiB connection window.
    argv = ["echo", "x" * 100_000]
    with trio.fail_after(20):
        async with server.connect() as client:
            status = await client.start(argv)
            assert list(status.argv) == argv
            assert (await client.stop(status.job_id)).job_id == status.job_id


async def test_abandoned_streams_give_their_window_back(server: Server) -> None:
    # Each abandoned Output stream received data its reader never took. Unless that flow
    # control window is given back, a few of them starve the connection (16 MiB window).
    mib = 8
    with trio.fail_after(60):
        async with server.connect() as client:
            job = await client.start(["head", "-c", str(mib << 20), "/dev/zero"])
            async with client.output(job.job_id) as chunks:
                async for _ in chunks:
                    pass  # until the job has ended
            for _ in range(6):
                async with client.output(job.job_id, follow=False) as chunks:
                    await anext(chunks)
                    await trio.sleep(0.2)  # let the server fill the window meanwhile
            total = 0
            async with client.output(job.job_id, follow=False) as chunks:
                async for chunk in chunks:
                    total += len(chunk.data)
    assert total == mib << 20


async def test_connections_reset_at_once_do_not_harm_the_server(server: Server) -> None:
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", server.port))
        # SO_LINGER 0: close sends RST; the server may meet it before it looks at the peer.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    with trio.fail_after(10):
        async with server.connect() as client:
            assert await client.list() == ([], False)


async def test_a_server_that_never_answers_times_out_the_client(server: Server) -> None:
    # A listener nobody accepts on: the kernel completes TCP, TLS never starts.
    silent = trio.socket.socket()
    with silent:
        await silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        pair = server.pki.user("alice")
        with trio.fail_after(10), pytest.raises(TransportError, match="did not finish within"):
            async with open_client(
                "localhost",
                port,
                ca=server.pki.ca,
                cert=pair.cert,
                key=pair.key,
                connect_timeout=0.5,
            ):
                pass


PREFACE = (
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + struct.pack(">I", 0)[1:] + b"\x04\x00\x00\x00\x00\x00"
)
PING = struct.pack(">I", 8)[1:] + b"\x06\x00\x00\x00\x00\x00" + b"12345678"


async def test_shutdown_does_not_wait_for_a_peer_that_never_reads(pki: Pki, tmp_path: Path) -> None:
    # A peer floods PINGs and never reads the acks: the server's writes block. Shutdown
    # must still end the connection, not wait for the peer.
    config = server_config(pki, tmp_path / "state")
    done = trio.Event()
    server_scope = trio.CancelScope()

    async def run_server(task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED) -> None:
        with server_scope:
            await serve(config, task_status=task_status)
        done.set()

    async with trio.open_nursery() as nursery:
        bound: Any = await nursery.start(run_server)
        pair = pki.user("alice")
        tcp = await trio.open_tcp_stream("127.0.0.1", bound[0][1])
        context = client_context(pki.ca, pair.cert, pair.key)
        tls = trio.SSLStream(tcp, context, server_hostname="localhost")
        try:
            with trio.fail_after(30):
                await tls.do_handshake()
                await tls.send_all(PREFACE)
                while True:  # until the server stops reading because its writes block
                    with trio.move_on_after(1) as blocked:
                        await tls.send_all(PING * 4000)
                    if blocked.cancelled_caught:
                        break
            # Cancelling the server is its shutdown; the peer still reads nothing.
            server_scope.cancel()
            with trio.move_on_after(10):
                await done.wait()
            assert done.is_set(), "shutdown waits for a peer that does not read"
        finally:
            await trio.aclose_forcefully(tls)

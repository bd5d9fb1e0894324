"""The private names of trio, h2 and purerpc that jogger.rpc relies on are still there.

wire.py, protocol.py and server.py reach into them for speed or for what the libraries do
not offer (see each use). Where the code falls back quietly when a name is missing, the
fallback is slower or says less, not wrong; this test is what says so, loudly, after an
upgrade. pyproject.toml bounds the versions these names were checked against.
"""

import ssl
from importlib.metadata import version

import pytest
import trio
from purerpc.grpclib.config import GRPCConfiguration
from purerpc.grpclib.connection import GRPCConnection

from jogger.rpc.compression import Compressed, ReadBuffer
from jogger.rpc.protocol import ProtocolMachine


def present(owner: object, name: str, kind: type, package: str, used_by: str) -> None:
    value = getattr(owner, name, None)
    assert isinstance(value, kind), (
        f"{package} {version(package)}: {type(owner).__name__}.{name} is gone or is no "
        f"longer a {kind.__name__} (found {type(value).__name__}); {used_by} relies on it"
    )


def test_h2_keeps_its_outbound_bytes_in_data_to_send() -> None:
    machine = ProtocolMachine(GRPCConfiguration(client_side=False))
    present(
        machine.h2_connection,
        "_data_to_send",
        bytearray,
        "h2",
        "wire.Connection._flush (skips the send lock when nothing is queued)",
    )


def test_h2_data_to_send_is_what_data_to_send_returns() -> None:
    # _flush reads the attribute to decide whether to write at all: it must be the queue.
    machine = ProtocolMachine(GRPCConfiguration(client_side=False))
    machine.initiate_connection()
    queued = bytes(machine.h2_connection._data_to_send)
    assert queued, f"h2 {version('h2')}: initiate_connection queued nothing in _data_to_send"
    assert machine.data_to_send() == queued
    assert not machine.h2_connection._data_to_send


@pytest.mark.parametrize(
    ("name", "kind", "used_by"),
    [
        ("_ssl_object", ssl.SSLObject, "wire.Connection._buffered_plaintext"),
        ("_outgoing", ssl.MemoryBIO, "server._send_alert (the TLS alert of a refused client)"),
    ],
)
def test_trio_ssl_stream_keeps_its_ssl_object_and_outgoing_bio(
    name: str, kind: type, used_by: str
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    left, _ = trio.testing.memory_stream_pair()
    tls = trio.SSLStream(left, context, server_side=True)
    present(tls, name, kind, "trio", used_by)


HOOKS = ["_request_received", "_response_received", "_trailers_received", "_data_received"]


@pytest.mark.parametrize("hook", [*HOOKS, "_stream_reset"])
def test_purerpc_still_dispatches_to_the_hooks_we_override(hook: str) -> None:
    # An override of a hook purerpc no longer calls would be silently dead.
    where = f"purerpc {version('purerpc')}: GRPCConnection"
    assert hook in vars(GRPCConnection), f"{where}.{hook} is gone; ProtocolMachine overrides it"
    called = GRPCConnection.receive_data.__code__.co_names
    assert hook in called, f"{where}.receive_data no longer calls {hook}; we override it"


def test_purerpc_keeps_message_read_buffers() -> None:
    machine = ProtocolMachine(GRPCConfiguration(client_side=False))
    present(
        machine,
        "message_read_buffers",
        dict,
        "purerpc",
        "protocol.ProtocolMachine (a stream's message buffer)",
    )


def test_purerpc_hands_a_compressed_message_to_decompress() -> None:
    # compression.ReadBuffer overrides it to keep the message as it came: were purerpc to
    # inflate elsewhere, it would do so without a bound.
    buffer = ReadBuffer("gzip", 100)
    buffer.data_received(b"\x01\x00\x00\x00\x03abc")
    [(data, _)] = buffer.read_all_complete_messages_flowcontrol()
    where = f"purerpc {version('purerpc')}: MessageReadBuffer"
    assert isinstance(data, Compressed), f"{where} no longer calls decompress(); ReadBuffer does"


def test_h2_sends_frames_through_prepare_for_sending_and_reads_through_incoming_buffer() -> None:
    # ProtocolMachine.queue_data_header catches the DATA frame h2 makes (to queue only its
    # header), and replaces h2's frame buffer with frames.FrameBuffer.
    machine = ProtocolMachine(GRPCConfiguration(client_side=True))
    connection = machine.h2_connection
    for name, used_by in (
        ("_prepare_for_sending", "ProtocolMachine.queue_data_header"),
        ("incoming_buffer", "ProtocolMachine.__init__ (frames.FrameBuffer)"),
    ):
        assert hasattr(connection, name), (
            f"h2 {version('h2')}: H2Connection.{name} is gone; {used_by} relies on it"
        )
    assert callable(connection._prepare_for_sending)


async def test_trio_socket_stream_reads_through_receive_some_of_its_socket() -> None:
    # wire._receive_in_bulk replaces a client's SocketStream.receive_some (one bigger read).
    a, b = trio.socket.socketpair()
    stream = trio.SocketStream(a)
    try:
        present(stream, "socket", trio.socket.SocketType, "trio", "wire._receive_in_bulk")
        present(stream, "receive_some", object, "trio", "wire._receive_in_bulk")
    finally:
        await stream.aclose()
        b.close()

"""The protocol machine and the frame guard on bytes alone: no sockets, no tasks."""

import datetime
import urllib.parse

import h2.config
import h2.connection
import h2.exceptions
import pytest
from purerpc.grpclib.config import GRPCConfiguration
from purerpc.grpclib.events import Event, RequestReceived
from purerpc.grpclib.status import Status, StatusCode

from jogger.rpc.protocol import (
    CLIENT_FRAME_SIZE,
    MAX_HEADER_LIST_SIZE,
    MAX_STATUS_MESSAGE,
    PREFACE,
    SERVER_FRAME_SIZE,
    SERVER_MAX_STREAMS,
    FrameGuard,
    ProtocolMachine,
    StreamRefused,
    StreamReset,
    parse_timeout,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1S", 1.0),
        ("2H", 7200.0),
        ("3M", 180.0),
        ("250m", 0.25),
        ("5u", 5e-6),
        ("7000n", 7e-6),
        ("99999999S", 99_999_999.0),
        ("0m", 0.0),
    ],
)
def test_a_grpc_timeout_is_digits_and_a_unit(text: str, seconds: float) -> None:
    assert parse_timeout(text) == datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text", ["", "1", "S", "123456789S", "1s", "1.5S", "-1S", " 1S", "1S ", "1SS", "\uff11S"]
)
def test_anything_else_is_a_malformed_grpc_timeout(text: str) -> None:
    with pytest.raises(ValueError, match="malformed grpc-timeout"):
        parse_timeout(text)


def frame(length: int, kind: int = 0, stream_id: int = 1) -> bytes:
    """A frame header announcing ``length`` bytes, and that many bytes."""
    header = length.to_bytes(3, "big") + bytes([kind, 0]) + stream_id.to_bytes(4, "big")
    return header + b"\xff" * length


def test_the_guard_passes_the_preface_and_frames_up_to_the_limit() -> None:
    guard = FrameGuard(len(PREFACE), 100)
    guard.check(PREFACE + frame(100) + frame(0) + frame(1))


def test_the_guard_refuses_an_oversized_frame_from_its_header_alone() -> None:
    guard = FrameGuard(len(PREFACE), 100)
    with pytest.raises(h2.exceptions.FrameTooLargeError, match="a frame of 101 bytes; the limit"):
        guard.check(PREFACE + frame(10) + frame(101)[:9])


def test_the_guard_follows_frames_split_anywhere() -> None:
    data = PREFACE + frame(50) + frame(100) + frame(1 << 20)
    guard = FrameGuard(len(PREFACE), 100)
    # Refused at the last byte of the third header, before any of its payload.
    assert refused_at(guard, data) == len(PREFACE) + 9 + 50 + 9 + 100 + 8


def refused_at(guard: FrameGuard, data: bytes) -> int | None:
    """Where ``guard``, fed ``data`` a byte at a time, refuses it."""
    for at in range(len(data)):
        try:
            guard.check(data[at : at + 1])
        except h2.exceptions.FrameTooLargeError:
            return at
    return None


def test_the_guard_does_not_read_headers_into_payloads() -> None:
    # A payload of 0xff bytes would announce 16 MiB frames if the guard lost its place.
    FrameGuard(0, 100).check(frame(100) * 5)


def server_machine() -> ProtocolMachine:
    machine = ProtocolMachine(GRPCConfiguration(client_side=False))
    machine.initiate_connection()
    machine.data_to_send()
    return machine


def test_a_server_advertises_our_limits_not_purerpcs() -> None:
    settings = server_machine().h2_connection.local_settings
    assert settings.max_concurrent_streams == SERVER_MAX_STREAMS
    assert settings.max_frame_size == SERVER_FRAME_SIZE
    assert settings.max_header_list_size == MAX_HEADER_LIST_SIZE
    client = ProtocolMachine(GRPCConfiguration(client_side=True))
    assert client.h2_connection.local_settings.max_frame_size == CLIENT_FRAME_SIZE


REQUEST = [
    (":method", "POST"),
    (":scheme", "https"),
    (":path", "/jogger.v1.Jobs/Status"),
    (":authority", "localhost"),
    ("content-type", "application/grpc+proto"),
    ("te", "trailers"),
]


def request(*headers: tuple[str, str], end_stream: bool = False) -> list[Event]:
    """What a server's machine makes of a request with ``headers`` added, on stream 1."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, [*REQUEST, *headers], end_stream=end_stream)
    events: list[Event] = server_machine().receive_data(client.data_to_send())
    return events


def refusal(events: list[Event]) -> StreamRefused:
    [refused] = [e for e in events if isinstance(e, StreamRefused)]
    return refused


def test_a_well_formed_request_is_received_with_its_timeout() -> None:
    [received] = [e for e in request(("grpc-timeout", "5S")) if isinstance(e, RequestReceived)]
    assert received.method_name == "Status"
    assert received.timeout == datetime.timedelta(seconds=5)


@pytest.mark.parametrize(
    ("headers", "end_stream", "code", "message"),
    [
        ([("grpc-timeout", "soon")], False, StatusCode.INVALID_ARGUMENT, "malformed grpc-timeout"),
        (
            [("grpc-encoding", "snappy")],
            False,
            StatusCode.UNIMPLEMENTED,
            "'snappy' is not supported; supported: identity,gzip",
        ),
        ([], True, StatusCode.INVALID_ARGUMENT, "the request carries no message"),
    ],
)
def test_a_malformed_request_ends_its_stream_with_a_status(
    headers: list[tuple[str, str]], end_stream: bool, code: StatusCode, message: str
) -> None:
    refused = refusal(request(*headers, end_stream=end_stream))
    assert refused.stream_id == 1
    assert refused.status is not None
    assert refused.status.int_value == code.value
    assert message in refused.status.status_message


def test_a_reset_is_reported() -> None:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, REQUEST)
    client.reset_stream(1)
    events = server_machine().receive_data(client.data_to_send())
    assert [e.stream_id for e in events if isinstance(e, StreamReset)] == [1]


def test_a_long_status_message_is_capped_in_the_trailers() -> None:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, REQUEST)
    server = server_machine()
    server.receive_data(client.data_to_send())
    server.respond_status(1, Status(StatusCode.INTERNAL.value, "x" * 100_000), "+proto")
    [response] = [e for e in client.receive_data(server.data_to_send()) if hasattr(e, "headers")]
    message = urllib.parse.unquote(dict(response.headers)[b"grpc-message"].decode())
    assert len(message) == MAX_STATUS_MESSAGE
    assert message.endswith("x... (100000 characters in all)")

"""gzip for messages (compression.py) on bytes alone, and what the protocol machine does with
compressed messages: hands them on as they came, for their call to inflate within its limit."""

import gzip
import os
import tracemalloc
import urllib.parse
import zlib

import h2.config
import h2.connection
import h2.events
import pytest
from purerpc.grpclib.config import GRPCConfiguration
from purerpc.grpclib.events import MessageReceived

from jogger.rpc.compression import (
    MIN_COMPRESSED,
    THREADED,
    Compressed,
    Malformed,
    TooLarge,
    encode,
    inflate,
    response_encoding,
)
from jogger.rpc.protocol import ProtocolMachine, StreamRefused
from jogger.rpc.wire import SERVER_MAX_MESSAGE

LIMIT = SERVER_MAX_MESSAGE


def bomb(size: int) -> bytes:
    """``size`` zero bytes, gzip-compressed: about a thousandth of that."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join([*parts, compressor.flush()])


def test_a_gzip_message_inflates_to_what_was_compressed() -> None:
    payload = os.urandom(1000) * 50
    assert inflate(gzip.compress(payload), LIMIT) == payload
    assert inflate(gzip.compress(b""), LIMIT) == b""


def test_a_message_of_exactly_the_limit_is_taken() -> None:
    assert len(inflate(gzip.compress(bytes(LIMIT)), LIMIT)) == LIMIT


def test_a_gzip_bomb_is_refused_without_holding_more_than_the_limit() -> None:
    # 64 KiB on the wire, 64 MiB inflated (a whole 1 MiB request would inflate to 1 GiB,
    # but takes 12 s to make).
    data = bomb(64 << 20)
    assert len(data) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge, match=f"past the limit of {LIMIT} bytes"):
            inflate(data, LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The output (the limit and a byte: zlib joins it from blocks, so twice that at the
    # end) and a copy of the input it did not read, but nothing in proportion to the bomb.
    assert peak < 4 * LIMIT


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"not gzip at all", "incorrect header check"),
        (gzip.compress(b"x" * 5000)[:-10], "cut short"),
        (gzip.compress(b"one") + gzip.compress(b"two"), "data after the end"),
        (zlib.compress(b"zlib, not gzip"), "incorrect header check"),
    ],
)
def test_what_is_not_one_whole_gzip_stream_is_malformed(data: bytes, why: str) -> None:
    with pytest.raises(Malformed, match=why):
        inflate(data, LIMIT)


@pytest.mark.parametrize(
    ("request_encoding", "accepted", "expected"),
    [
        ("gzip", ["identity", "deflate", "gzip"], "gzip"),  # grpcio with a gzip channel
        ("gzip", ["identity", " gzip"], "gzip"),
        (None, ["identity", "deflate", "gzip"], None),  # grpcio's default: asks for nothing
        ("identity", ["gzip"], None),
        ("gzip", None, None),  # says nothing of what it reads
        ("gzip", ["identity"], None),
        (None, None, None),  # jog
    ],
)
def test_responses_are_compressed_only_when_the_client_compressed_and_accepts_gzip(
    request_encoding: str | None, accepted: list[str] | None, expected: str | None
) -> None:
    assert response_encoding(request_encoding, accepted) == expected


async def test_a_small_or_incompressible_response_goes_as_it_is() -> None:
    small = b"x" * (MIN_COMPRESSED - 1)
    assert await encode(small, "gzip") == (small, False)
    noise = os.urandom(THREADED * 2)
    assert await encode(noise, "gzip") == (noise, False)
    text = b"line of output\n" * 10_000
    assert await encode(text, None) == (text, False)


@pytest.mark.parametrize("size", [MIN_COMPRESSED, THREADED * 4])
async def test_a_compressible_response_is_gzip(size: int) -> None:
    text = (b"line of output\n" * (size // 15 + 1))[:size]
    packed, compressed = await encode(text, "gzip")
    assert compressed
    assert len(packed) < len(text)
    assert gzip.decompress(packed) == text


# ---- the protocol machine ------------------------------------------------------------------

REQUEST = [
    (":method", "POST"),
    (":scheme", "https"),
    (":path", "/jogger.v1.Jobs/Status"),
    (":authority", "localhost"),
    ("content-type", "application/grpc+proto"),
    ("te", "trailers"),
]


def framed(payload: bytes, *, compressed: bool) -> bytes:
    return bytes([compressed]) + len(payload).to_bytes(4, "big") + payload


def test_a_server_hands_a_compressed_request_on_as_it_came() -> None:
    server = ProtocolMachine(GRPCConfiguration(client_side=False))
    server.initiate_connection()
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, [*REQUEST, ("grpc-encoding", "gzip")])
    packed = gzip.compress(b"\x0a\x03abc")
    client.send_data(1, framed(packed, compressed=True) + framed(b"plain", compressed=False))
    events = server.receive_data(client.data_to_send())
    messages = [e.data for e in events if isinstance(e, MessageReceived)]
    assert messages == [packed, b"plain"]
    assert isinstance(messages[0], Compressed)
    assert not isinstance(messages[1], Compressed)


def test_a_status_alone_says_which_encodings_the_server_reads() -> None:
    server = ProtocolMachine(GRPCConfiguration(client_side=False))
    server.initiate_connection()
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    )
    client.initiate_connection()
    client.send_headers(1, [*REQUEST, ("grpc-encoding", "br")])
    client.receive_data(server.data_to_send())
    [refused] = [
        e for e in server.receive_data(client.data_to_send()) if isinstance(e, StreamRefused)
    ]
    assert refused.status is not None
    server.respond_status(1, refused.status, "+proto")
    [response] = [e for e in client.receive_data(server.data_to_send()) if hasattr(e, "headers")]
    headers = dict(response.headers)
    assert headers["grpc-status"] == "12"
    assert headers["grpc-accept-encoding"] == "identity,gzip"
    assert "supported: identity,gzip" in urllib.parse.unquote(headers["grpc-message"])


def test_a_client_hands_a_compressed_response_on_as_it_came() -> None:
    # We advertise no compression, but a server that compresses all the same is read.
    client = ProtocolMachine(GRPCConfiguration(client_side=True))
    client.initiate_connection()
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    client.start_request(1, "https", "jogger.v1.Jobs", "Status", None, "localhost")
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    packed = gzip.compress(b"status")
    server.send_headers(
        1,
        [(":status", "200"), ("content-type", "application/grpc"), ("grpc-encoding", "gzip")],
    )
    server.send_data(1, framed(packed, compressed=True))
    events = client.receive_data(server.data_to_send())
    [message] = [e.data for e in events if isinstance(e, MessageReceived)]
    assert isinstance(message, Compressed)
    assert message == packed

"""gzip for gRPC messages (grpc/grpc doc/compression.md), bounded both ways.

**Requests.** A call may send its messages gzip-compressed (``grpc-encoding: gzip``, and each
compressed message's flag set). The protocol machine hands such a message on as it came,
``Compressed``; it is inflated only when its call takes it, and never past the size limit:
a gzip bomb (a megabyte that inflates to a gigabyte) costs at most the limit, and what waits
in an inbox is never bigger than what arrived (a client stream that queues small compressed
messages cannot make us hold their inflated size). Any other encoding is UNIMPLEMENTED; every
response says what we take (``grpc-accept-encoding: identity,gzip``).

**Responses** are compressed only for a call whose request came gzip-compressed, and only if
its client accepts gzip: the client asked for compression by using it, as grpc-go decides.
grpcio sends ``grpc-accept-encoding`` on every call, so compressing whenever a client
accepts gzip would spend the server's CPU on every Output stream of every grpcio client,
for output that is often binary and incompressible. Even then, a message under
MIN_COMPRESSED bytes, or one that gzip does not make smaller, goes as it is (each message
has its own flag), and a big one is compressed in a worker thread.
"""

import zlib

from purerpc.grpclib.buffers import MessageReadBuffer
from purerpc.grpclib.exceptions import UnsupportedMessageEncodingError

GZIP = "gzip"
IDENTITY = "identity"
ACCEPT_ENCODING = "identity,gzip"
"""The encodings we read, as every response advertises them."""
MIN_COMPRESSED = 1 << 10
"""Smaller response messages go uncompressed: a JobStatus would gain a few bytes at best."""
THREADED = 64 << 10
"""Response messages this big or bigger are compressed in a worker thread: a MiB of
incompressible output costs some 30 ms of CPU, which the event loop must not spend."""
LEVEL = 1
"""zlib's fastest level: text output shrinks almost as much as at the default level (6), at
half the CPU."""
_GZIP_WBITS = 31
"""zlib's window bits for the gzip container (RFC 1952), which gRPC's "gzip" means."""


class Compressed(bytes):
    """A message's payload as it arrived, still compressed: ``inflate`` it when it is taken."""


class TooLarge(Exception):
    """A compressed message inflates past the size limit; ``str()`` says which."""


class Malformed(Exception):
    """A compressed message is not gzip data, or is cut short; ``str()`` says how."""


def supported(encoding: object) -> bool:
    """Whether we read messages in ``encoding`` (a grpc-encoding header's value)."""
    return encoding in (IDENTITY, GZIP)


def inflate(data: bytes, limit: int) -> bytes:
    """``data`` (gzip) inflated; TooLarge past ``limit`` bytes, never holding more than that
    (and one byte) of its output; Malformed if it is not one whole gzip stream."""
    inflater = zlib.decompressobj(wbits=_GZIP_WBITS)
    try:
        # At most limit + 1 bytes: one more than the limit is how we know it is too large.
        payload = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise Malformed(str(exc)) from None
    if len(payload) > limit:
        raise TooLarge(f"a compressed message inflates past the limit of {limit} bytes")
    if not inflater.eof:
        raise Malformed("the compressed message is cut short")
    if inflater.unused_data:
        raise Malformed("data after the end of the compressed message")
    return payload


def deflate(payload: bytes) -> bytes:
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    return compressor.compress(payload) + compressor.flush()


def response_encoding(request_encoding: str | None, accepted: list[str] | None) -> str | None:
    """How a call's responses are compressed: gzip if its request came gzip-compressed and
    its client accepts gzip (``accepted``: its grpc-accept-encoding, split); else None."""
    if request_encoding != GZIP or accepted is None:
        return None
    return GZIP if GZIP in (name.strip() for name in accepted) else None


async def encode(payload: bytes, encoding: str | None) -> tuple[bytes, bool]:
    """A response message as it goes on the wire, and whether it is compressed.

    Cancellation: a message compressed in a worker thread is waited for (some 30 ms at most).
    """
    if encoding != GZIP or len(payload) < MIN_COMPRESSED:
        return payload, False
    if len(payload) >= THREADED:
        # Here, not at the top: the blocking client (blocking.py) reads this module and
        # must not pay for trio's import; this function is the server's.
        import trio  # noqa: PLC0415

        packed = await trio.to_thread.run_sync(deflate, payload)
    else:
        packed = deflate(payload)
    if len(packed) >= len(payload):
        return payload, False  # incompressible (binary output): gzip would only add to it
    return packed, True


class ReadBuffer(MessageReadBuffer):  # type: ignore[misc]
    """purerpc's framing of a stream's messages, without its inflating (unbounded, and
    wrong for gzip): a compressed message is handed on as ``Compressed``, for its call to
    inflate within the limit. ``encoding``: the stream's grpc-encoding."""

    def __init__(self, encoding: str | None, max_message_length: int) -> None:
        super().__init__(encoding, max_message_length)
        self._encoding = encoding

    def decompress(self, data: bytes) -> bytes:
        if self._encoding != GZIP:
            raise UnsupportedMessageEncodingError(
                f"a compressed message on a call whose grpc-encoding is "
                f"{self._encoding or IDENTITY!r} (we read {ACCEPT_ENCODING})"
            )
        return Compressed(data)

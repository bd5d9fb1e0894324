"""gRPC's protocol machine, on purerpc's and h2's, hardened against what a peer may send.

No I/O: bytes in, events and bytes out, so that it can be tested on bytes alone; wire.py
does the I/O. ``ProtocolMachine`` parses and frames, ``FrameGuard`` refuses an oversized
frame from its header.
"""

import contextlib
import datetime
import re
import struct
import urllib.parse
from collections.abc import Callable, Collection
from typing import Any

import h2.connection
import h2.errors
import h2.events
import h2.exceptions
from purerpc.grpclib.config import GRPCConfiguration
from purerpc.grpclib.connection import GRPCConnection
from purerpc.grpclib.events import Event, MessageReceived, RequestReceived
from purerpc.grpclib.exceptions import MessageTooLargeError, UnsupportedMessageEncodingError
from purerpc.grpclib.headers import HeaderDict
from purerpc.grpclib.status import Status, StatusCode

from .compression import ACCEPT_ENCODING, ReadBuffer, supported
from .frames import FrameBuffer

MAX_MESSAGE = 4 << 20
"""The largest message a client accepts, as in grpc's default."""
CONNECTION_WINDOW = 16 << 20
"""How much response data a client lets the server send ahead, over all streams."""
SERVER_CONNECTION_WINDOW = 8 << 20
"""How much request data a client may send a server ahead, over all its streams.

A server gives back a unary call's window on receipt, but a client-streaming call's only as
its handler takes each message: a handler that waits (a job that does not read its stdin)
keeps its stream's data, up to the stream window purerpc advertises (twice the largest
message: 2 MiB), and that much of the connection window with it. HTTP/2's default 64 KiB
would let one such stream stall every other call on the connection. Four stream windows
leave any one stalled stream three quarters of it, and still bound what one connection can
make us hold: its unread input is never more than this.
"""
CLIENT_FRAME_SIZE = 2 << 20
"""The largest frame a client takes: more than a whole 1 MiB Output message and its framing,
so that a server sends each in one DATA frame (frames.py keeps big frames cheap to read)."""
SERVER_FRAME_SIZE = 16 << 10
SERVER_MAX_STREAMS = 128
"""Calls one connection may have in flight; purerpc advertises 65,536. Enforced on our
handlers, not only on h2's open streams: a stream the peer resets is closed for h2 at once,
while its handler may still be finishing."""
MAX_HEADER_LIST_SIZE = 8 << 10
"""The most header bytes (decoded) a request or response may carry; purerpc advertises 8 KiB
but leaves h2's decoder at 64 KiB."""

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""What an HTTP/2 client sends before its first frame."""
DATA_HEADER = struct.Struct(">HBBBL")
"""A frame header (RFC 9113 section 4.1): length (24 bits, as 16 + 8), type, flags, stream."""


class StreamReset(Event):  # type: ignore[misc]
    """The peer reset the stream (RST_STREAM)."""

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class StreamRefused(Event):  # type: ignore[misc]
    """The peer sent what this stream cannot carry: end it with ``status``, or reset it."""

    def __init__(self, stream_id: int, status: Status | None, reason: str) -> None:
        self.stream_id = stream_id
        self.status = status
        """None: reset the stream (malformed HTTP/2 or gRPC framing)."""
        self.reason = reason


_TIMEOUT = re.compile(r"([0-9]{1,8})([HMSmun])")
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def parse_timeout(text: str) -> datetime.timedelta:
    """A grpc-timeout header: at most 8 digits and a unit (the gRPC spec); ValueError if not."""
    match = _TIMEOUT.fullmatch(text)
    if match is None:
        raise ValueError(f"malformed grpc-timeout {text[:20]!r}")
    return datetime.timedelta(seconds=int(match[1]) * _TIMEOUT_UNITS[match[2]])


MAX_STATUS_MESSAGE = 512
"""The most characters of a grpc-message we send. hpack 3.x encodes a header value in time
quadratic in its length, on the event loop (1 MiB: about 60 s): whatever a handler put in
its message (an echoed cwd, say), the trailer costs well under a millisecond."""


def capped(status: Status) -> Status:
    """``status`` with its message cut to MAX_STATUS_MESSAGE characters."""
    message = status.status_message or ""
    if len(message) <= MAX_STATUS_MESSAGE:
        return status
    cut = f"... ({len(message)} characters in all)"
    return Status(status.int_value, message[: MAX_STATUS_MESSAGE - len(cut)] + cut)


class ProtocolMachine(GRPCConnection):  # type: ignore[misc]
    """purerpc's protocol machine, made safe against what a peer may send.

    purerpc raises out of ``receive_data`` on malformed headers (a bad grpc-timeout, an
    unknown grpc-encoding, a missing :path), on data for a stream it does not know, and on
    oversized or undecodable messages; and it drops stream resets. Here each of those ends
    one stream, not the connection, and resets are reported.

    Flow control: a server hands the window back as data arrives for a unary call (which
    carries one small request; the inbox bound and the message size bound what a stream may
    hold). For a call whose requests stream (a path in ``client_streaming``: client-streaming
    or bidirectional), and at a client, it hands the window back as its consumer takes each
    message (``acknowledge()``), which pushes back on a peer that sends faster than we read.
    ``release()`` returns what a finished stream never gave back, so that no window leaks.

    Compressed messages are handed on as they came (compression.py's ``ReadBuffer``), for
    their call to inflate within its limit.
    """

    # purerpc accepts 16 MiB frames. A client takes frames as big as a whole Output message
    # (each frame costs a pass through h2's Python); a server, whose requests are small,
    # takes HTTP/2's default 16 KiB. A frame is buffered whole before it is parsed, so this
    # bounds what one frame makes us hold.
    MAX_INBOUND_FRAME_SIZE = CLIENT_FRAME_SIZE

    def __init__(
        self, config: GRPCConfiguration, client_streaming: Collection[str] = frozenset()
    ) -> None:
        if not config.client_side:
            # Per instance, before purerpc's constructor writes the local settings.
            self.MAX_INBOUND_FRAME_SIZE = SERVER_FRAME_SIZE
            self.MAX_CONCURRENT_STREAMS = SERVER_MAX_STREAMS
        self.MAX_HEADER_LIST_SIZE = MAX_HEADER_LIST_SIZE
        super().__init__(config)
        # purerpc advertises the limit but h2 only applies it when a settings change is
        # acknowledged, and purerpc's settings are not a change: apply it from the start.
        self.h2_connection.decoder.max_header_list_size = MAX_HEADER_LIST_SIZE
        if not config.client_side:
            # A server sends only headers of ours: constant lowercase names, a status code,
            # a percent-quoted grpc-message, an encoding from our own list. h2's outbound
            # checks and normalisation of them cost a fifth of answering a call; what the
            # peer sends is still checked in full (validate_inbound_headers stays on).
            self.h2_connection.config.validate_outbound_headers = False
            self.h2_connection.config.normalize_outbound_headers = False
        # h2's own buffer copies every byte several times (quadratic in the frame size).
        self.h2_connection.incoming_buffer = FrameBuffer(server=not config.client_side)
        self._unacknowledged: dict[int, int] = {}
        self._client_streaming = frozenset(client_streaming)
        self._deferred: set[int] = set()
        """Server streams whose window goes back as messages are taken, not on receipt."""

    def data_to_send(self, amount: int | None = None) -> bytes | bytearray:
        """What h2 has queued to send, handed over whole and emptied (purerpc's copies it:
        a megabyte per Output message)."""
        if amount is not None:
            return super().data_to_send(amount)  # type: ignore[no-any-return]
        queued: bytearray = self.h2_connection._data_to_send
        self.h2_connection._data_to_send = bytearray()
        return queued

    def queue_data_header(self, stream_id: int, data: bytes | memoryview) -> None:
        """h2's ``send_data`` (its checks, its flow control and stream state), but only the
        DATA frame's 9-byte header is queued: the caller writes ``data`` itself, right after
        what ``data_to_send()`` returns next. h2 would copy the body twice (hyperframe's
        serialize, then its queue)."""
        h2_connection = self.h2_connection
        frames: list[Any] = []
        h2_connection._prepare_for_sending = frames.extend
        try:
            h2_connection.send_data(stream_id, data)
        finally:
            del h2_connection._prepare_for_sending
        # One frame, with no flag (END_STREAM, PADDED) that its header would have to carry.
        assert len(frames) == 1, frames
        assert not frames[0].flags, frames
        size = len(data)
        h2_connection._data_to_send += DATA_HEADER.pack(size >> 8, size & 0xFF, 0, 0, stream_id)

    def start_response(
        self, stream_id: int, content_type_suffix: str = "", *, encoding: str | None = None
    ) -> None:
        """A server's response headers; ``encoding``: how its messages may be compressed."""
        headers = [
            (":status", "200"),
            ("content-type", "application/grpc" + content_type_suffix),
            ("grpc-accept-encoding", ACCEPT_ENCODING),
        ]
        if encoding is not None:
            headers.append(("grpc-encoding", encoding))
        self.h2_connection.send_headers(stream_id, headers, end_stream=False)

    def respond_status(self, stream_id: int, status: Status, content_type_suffix: str = "") -> None:
        """A server's answer of a status alone (a Trailers-Only response)."""
        status = capped(status)
        headers = [
            (":status", "200"),
            ("content-type", "application/grpc" + content_type_suffix),
            ("grpc-status", str(status.int_value)),
            # What we read: the gRPC spec asks for it with UNIMPLEMENTED for an encoding
            # we do not, and it costs a few bytes on the others.
            ("grpc-accept-encoding", ACCEPT_ENCODING),
        ]
        if status.status_message:
            headers.append(("grpc-message", urllib.parse.quote(status.status_message, safe="")))
        self.h2_connection.send_headers(stream_id, headers, end_stream=True)
        self._stop_unfinished_request(stream_id)

    def end_response(self, stream_id: int, status: Status) -> None:
        super().end_response(stream_id, capped(status))
        self._stop_unfinished_request(stream_id)

    def _stop_unfinished_request(self, stream_id: int) -> None:
        """A server that has answered before the request ended (a message too large, a call
        ended early) asks the client to stop sending it: RST_STREAM with NO_ERROR, as RFC
        7540 section 8.1 says. Without it, the window updates for request data that was
        still arriving follow the answer, and a client that has since closed the stream
        and forgotten it (h2 does, and then takes a WINDOW_UPDATE on such a stream for a
        connection error) loses its whole connection."""
        if self.config.client_side:
            return
        stream = self.h2_connection.streams.get(stream_id)
        if stream is not None and not stream.closed:
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.h2_connection.reset_stream(stream_id, h2.errors.ErrorCodes.NO_ERROR)

    def _stream_reset(self, event: h2.events.StreamReset) -> list[Event]:
        return [StreamReset(event.stream_id)]

    def _request_received(self, event: h2.events.RequestReceived) -> list[Event]:
        stream_id = event.stream_id
        if event.stream_ended:
            status = Status(StatusCode.INVALID_ARGUMENT, "the request carries no message")
            return [StreamRefused(stream_id, status, "no request message")]
        headers = HeaderDict(event.headers)
        try:
            timeout = headers.pop("grpc-timeout", None)
            timeout = parse_timeout(timeout) if timeout is not None else None
        except (ValueError, TypeError):
            status = Status(StatusCode.INVALID_ARGUMENT, "malformed grpc-timeout header")
            return [StreamRefused(stream_id, status, "malformed grpc-timeout")]
        encoding = headers.get("grpc-encoding", "identity")
        if not supported(encoding):  # (a repeated header is a list: not supported either)
            message = (
                f"grpc-encoding {str(encoding)[:20]!r} is not supported; "
                f"supported: {ACCEPT_ENCODING}"
            )
            status = Status(StatusCode.UNIMPLEMENTED, message)
            return [StreamRefused(stream_id, status, "unsupported grpc-encoding")]
        try:
            request = RequestReceived.parse_from_stream_id_and_headers_destructive(
                stream_id, headers
            )
        except Exception as exc:  # noqa: BLE001 - purerpc raises KeyError, ValueError, ... on bad headers
            return [StreamRefused(stream_id, None, f"malformed request headers: {exc!r:.80}")]
        request.timeout = timeout
        self.message_read_buffers[stream_id] = ReadBuffer(
            request.message_encoding, self.config.max_message_length
        )
        if f"/{request.service_name}/{request.method_name}" in self._client_streaming:
            self._deferred.add(stream_id)
        return [request]

    def _response_received(self, event: h2.events.ResponseReceived) -> list[Event]:
        events = _or_malformed(super()._response_received, event)
        if event.stream_id in self.message_read_buffers:
            # Ours, not purerpc's, whose inflating is unbounded. A server may compress only
            # what we accept, and we advertise nothing; one that compresses all the same
            # is read, within the limit, if it uses gzip.
            encoding = getattr(events[0], "message_encoding", None)
            self.message_read_buffers[event.stream_id] = ReadBuffer(
                encoding, self.config.max_message_length
            )
        return events

    def _trailers_received(self, event: h2.events.TrailersReceived) -> list[Event]:
        return _or_malformed(super()._trailers_received, event)

    def _data_received(self, event: h2.events.DataReceived) -> list[Event]:
        stream_id = event.stream_id
        length = event.flow_controlled_length
        buffer = self.message_read_buffers.get(stream_id)
        if buffer is None or not (self.config.client_side or stream_id in self._deferred):
            # Data for a stream we refused or finished with, or a unary request at a server.
            self.h2_connection.acknowledge_received_data(length, stream_id)
        else:
            self._unacknowledged[stream_id] = self._unacknowledged.get(stream_id, 0) + length
        if buffer is None:
            return []
        try:
            buffer.data_received(event.data, length)
            messages = buffer.read_all_complete_messages_flowcontrol()
        except Exception as exc:  # noqa: BLE001 - oversized, compressed, undecodable, ...
            del self.message_read_buffers[stream_id]
            if isinstance(exc, MessageTooLargeError):
                status = Status(StatusCode.RESOURCE_EXHAUSTED, str(exc)[:200])
            elif isinstance(exc, UnsupportedMessageEncodingError):
                # A compressed message on a call that named no encoding. The gRPC spec says
                # INTERNAL; we keep INTERNAL for our own failures.
                status = Status(StatusCode.UNIMPLEMENTED, str(exc)[:200])
            else:
                status = Status(StatusCode.INVALID_ARGUMENT, f"malformed message: {exc!s:.200}")
            return [StreamRefused(stream_id, status, str(exc)[:200])]
        return [MessageReceived(stream_id, data, n) for data, n in messages]

    def defers(self, stream_id: int) -> bool:
        """Whether the stream's window goes back only as its messages are taken: always at a
        client; at a server, for a client-streaming call."""
        return self.config.client_side or stream_id in self._deferred

    def held(self) -> int:
        """Bytes of the peer's data we have not given back yet, over all streams: what its
        unread messages occupy of the connection window."""
        return sum(self._unacknowledged.values())

    def acknowledge(self, stream_id: int, length: int) -> None:
        """Give back the window of a message our consumer has taken (see ``defers()``)."""
        left = self._unacknowledged.get(stream_id, 0) - length
        if left >= 0:
            self._unacknowledged[stream_id] = left
            self.h2_connection.acknowledge_received_data(length, stream_id)

    def release(self, stream_id: int) -> None:
        """A stream is finished with: drop its buffer, give back whatever window it holds."""
        self.message_read_buffers.pop(stream_id, None)
        self._deferred.discard(stream_id)
        left = self._unacknowledged.pop(stream_id, 0)
        if left:
            # h2 credits the connection window even when the stream itself is closed.
            self.h2_connection.acknowledge_received_data(left, stream_id)

    def initiate_connection(self) -> None:
        # purerpc opens a 1 GiB connection window; a server must not let a peer send that
        # much ahead (SERVER_CONNECTION_WINDOW says how much it may). A client opens a window
        # big enough to stream output at full speed.
        self.h2_connection.initiate_connection()
        if self.config.client_side:
            self.h2_connection.increment_flow_control_window(CONNECTION_WINDOW)
        else:
            opened = self.h2_connection.inbound_flow_control_window  # HTTP/2's 65,535
            self.h2_connection.increment_flow_control_window(SERVER_CONNECTION_WINDOW - opened)


def closed(connection: h2.connection.H2Connection) -> bool:
    """The HTTP/2 connection is over for new calls: the peer said GOAWAY (or we did)."""
    return bool(connection.state_machine.state == h2.connection.ConnectionState.CLOSED)


def _or_malformed(
    parse: Callable[[Any], list[Event]],
    event: h2.events.ResponseReceived | h2.events.TrailersReceived,
) -> list[Event]:
    """purerpc's parse of a response's headers or trailers, or a malformed response."""
    try:
        return parse(event)
    except Exception as exc:  # noqa: BLE001 - purerpc raises KeyError, ValueError, ... on bad headers
        return [_malformed_response(event.stream_id, exc)]


def _malformed_response(stream_id: int, exc: Exception) -> StreamRefused:
    return StreamRefused(
        stream_id,
        Status(StatusCode.INTERNAL, f"malformed response from the server: {exc!r:.80}"),
        "malformed response headers",
    )


class FrameGuard:
    """Refuses an oversized frame as soon as its 9-byte header arrives.

    h2 3.x buffers a whole frame before it checks the frame's length against our limit, so a
    peer announcing 16 MiB frames makes us hold 16 MiB (copied once per TLS record) before
    the refusal. This follows the frame boundaries in the plaintext, after the client's
    connection preface.
    """

    def __init__(self, preface: int, max_size: int) -> None:
        self._skip = preface
        self._header = b""
        self._max = max_size

    def check(self, data: bytes | bytearray | memoryview) -> None:
        at = 0
        while at < len(data):
            if self._skip:
                step = min(self._skip, len(data) - at)
                self._skip -= step
                at += step
                continue
            need = 9 - len(self._header)
            self._header += data[at : at + need]
            at += need
            if len(self._header) == 9:
                length = int.from_bytes(self._header[:3], "big")
                if length > self._max:
                    raise h2.exceptions.FrameTooLargeError(
                        f"a frame of {length} bytes; the limit is {self._max}"
                    )
                self._skip = length
                self._header = b""

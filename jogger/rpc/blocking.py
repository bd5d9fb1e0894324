"""A blocking client connection for one-shot unary calls, without trio.

``jog status``, ``jog start`` and the like make a call or two and exit. Importing trio costs
them some 75 ms, more than connecting and the call together (bench/README.md, issue 21).
This drives the same protocol machine as wire.py's trio ``Connection`` (protocol.py:
purerpc's, on h2, hardened), over a plain blocking socket, one call at a time, with the
same failures in the same words (failures.py) and the same response parsing
(responses.py). It carries unary calls only; streams stay on trio (channel.py).

The calls are ``async def`` so that ``JobsCalls`` and the commands serve both clients, but
they never suspend: a caller may drive them without an event loop (cli/oneshot.py).
"""

import contextlib
import datetime
import errno
import os
import socket
import ssl
import time
from collections.abc import Iterator
from typing import TypeVar

import h2.errors
import h2.exceptions
from google.protobuf.message import Message
from purerpc.grpclib.config import GRPCConfiguration
from purerpc.grpclib.events import (
    Event,
    MessageReceived,
    RequestReceived,
    ResponseEnded,
)
from purerpc.grpclib.exceptions import ProtocolError
from purerpc.grpclib.status import Status, StatusCode

from .address import format_address
from .calls import JobsCalls
from .errors import RpcError, status_code
from .failures import (
    PeerBrokeProtocol,
    TransportError,
    connect_reason,
    failure_error,
)
from .protocol import MAX_MESSAGE, ProtocolMachine, StreamRefused, StreamReset, closed
from .responses import parse_response
from .tcp import connect_tcp

M = TypeVar("M", bound=Message)

CONNECT_TIMEOUT = 10.0
RECEIVE_SIZE = 1 << 16


class _Lost(Exception):
    """The connection ended or broke; ``BlockingChannel.failure`` says why, if we know."""


class BlockingChannel:
    """One connection, one call at a time. ``open_blocking()`` makes it ready."""

    def __init__(self, sock: ssl.SSLSocket, authority: str) -> None:
        self._sock = sock
        self._authority = authority
        self._protocol = ProtocolMachine(
            GRPCConfiguration(client_side=True, max_message_length=MAX_MESSAGE)
        )
        self.failure: BaseException | None = None
        self._connecting = True
        """Until the server's first frames: a timeout is the connect timeout's."""

    def start(self) -> None:
        """Send our connection preface and wait for the server's first frames: under TLS
        1.3 the server judges our certificate after our handshake is done, and its refusal
        (a TLS alert) must surface here, as the trio client's does (channel.py)."""
        self._protocol.initiate_connection()
        try:
            self._write()
            while not self._receive():
                pass
        except _Lost:
            raise failure_error(self.failure or EOFError()) from None
        self._connecting = False

    async def unary(
        self, path: str, request: Message, response_type: type[M], *, deadline: float | None = None
    ) -> M:
        """One request, one response, as ``channel.Channel.unary``; it blocks, and never
        suspends. ``deadline`` (seconds) is sent as grpc-timeout."""
        try:
            status, data = self._call(path, request, deadline)
        except _Lost:
            raise self._lost() from None
        if status.int_value != StatusCode.OK.value:
            raise RpcError(status_code(status.int_value), status.status_message)
        if data is None:
            raise RpcError(StatusCode.INTERNAL, "expected one response message")
        return parse_response(response_type, data)

    def _call(
        self, path: str, request: Message, deadline: float | None
    ) -> tuple[Status, bytes | None]:
        protocol = self._protocol
        h2_connection = protocol.h2_connection
        service, method = path.strip("/").split("/")
        stream_id = protocol.get_next_available_stream_id()
        try:
            protocol.start_request(
                stream_id,
                "https",
                service,
                method,
                type(request).DESCRIPTOR.full_name,
                self._authority,
                datetime.timedelta(seconds=deadline) if deadline is not None else None,
                "+proto",
            )
        except h2.exceptions.ProtocolError:
            if not closed(h2_connection):
                raise
            raise _Lost from None  # the server said GOAWAY: no call starts on the connection
        payload = request.SerializeToString()
        data = memoryview(b"\0" + len(payload).to_bytes(4, "big") + payload)
        answer: list[bytes] = []
        status: Status | None = None
        while data and status is None:
            window = h2_connection.local_flow_control_window(stream_id)
            if window <= 0:
                # Wait for the server's window update (or its answer, which ends the call).
                self._write()
                status = self._read(stream_id, answer)
                continue
            batch, data = data[:window], data[window:]
            frame = h2_connection.max_outbound_frame_size
            for start in range(0, len(batch), frame):
                protocol.send_data(stream_id, bytes(batch[start : start + frame]))
        if status is None:
            protocol.end_request(stream_id)
        else:
            # Answered before all of the request went: the rest has nobody to read it, and
            # the server is told so (as the trio client's _abandon does).
            self._reset(stream_id, h2.errors.ErrorCodes.CANCEL)
        self._write()
        while status is None:
            status = self._read(stream_id, answer)
        protocol.release(stream_id)
        return status, answer[0] if len(answer) == 1 else None

    def _read(self, stream_id: int, answer: list[bytes]) -> Status | None:
        """Read once and act on what came: the call's status once it has ended."""
        status = None
        for event in self._receive():
            if getattr(event, "stream_id", stream_id) != stream_id:
                continue  # a stream we have finished with
            status = status or self._take(event, answer)
        self._write()  # window updates for what we took, the acknowledgement of settings
        return status

    def _take(self, event: Event, answer: list[bytes]) -> Status | None:
        stream_id = event.stream_id
        if isinstance(event, MessageReceived):
            self._protocol.acknowledge(stream_id, event.flow_controlled_length)
            if answer:
                # A second message on a unary call: we keep none of it, and stop the call.
                self._reset(stream_id, h2.errors.ErrorCodes.CANCEL)
                return Status(StatusCode.INTERNAL, "expected one response message")
            answer.append(event.data)
        elif isinstance(event, ResponseEnded):
            return event.status
        elif isinstance(event, StreamRefused):
            # A response we refuse (malformed headers, an oversized message): the call ends
            # with that status, and the server learns that we gave up on it.
            self._reset(stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            return event.status or Status(StatusCode.INTERNAL, event.reason)
        elif isinstance(event, StreamReset):
            raise _Lost  # the server reset the call without an answer
        elif isinstance(event, RequestReceived):
            self.failure = PeerBrokeProtocol("a request arrived at the client end")
            raise _Lost
        return None

    def _reset(self, stream_id: int, code: h2.errors.ErrorCodes) -> None:
        # Already closed on the wire means there is nothing to reset.
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self._protocol.reset_stream(stream_id, code)

    def _receive(self) -> list[Event]:
        """What the peer's next bytes mean (possibly nothing yet)."""
        try:
            data = self._sock.recv(RECEIVE_SIZE)
        except TimeoutError:
            if self._connecting:
                raise  # the connect timeout's: open_blocking() says which step
            self.failure = TimeoutError(errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT))
            raise _Lost from None  # TCP gave up on the server (retransmissions, keepalive)
        except OSError as exc:  # ssl.SSLError too: a TLS alert
            self.failure = exc
            raise _Lost from None
        if not data:
            raise _Lost
        try:
            events: list[Event] = self._protocol.receive_data(data)
        except (ProtocolError, h2.exceptions.ProtocolError, UnicodeDecodeError) as exc:
            self.failure = PeerBrokeProtocol(str(exc))
            raise _Lost from None
        return events

    def _write(self) -> None:
        data = self._protocol.data_to_send()
        if not data:
            return
        try:
            self._sock.sendall(data)
        except TimeoutError:
            if self._connecting:
                raise
            self.failure = TimeoutError(errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT))
            raise _Lost from None
        except OSError as exc:
            self.failure = exc
            raise _Lost from None

    def _lost(self) -> TransportError:
        if self.failure is not None:
            return failure_error(self.failure)
        return TransportError("the server closed the connection")


@contextlib.contextmanager
def open_blocking(
    host: str,
    port: int,
    ssl_context: ssl.SSLContext,
    *,
    server_hostname: str | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> Iterator[JobsCalls]:
    """Connect, complete the TLS handshake, and make unary calls until the block ends.

    Connecting, the handshake and the server's first frames must take at most
    ``connect_timeout`` seconds together; TransportError says which step did not finish,
    in the trio client's words (channel.open_channel).
    """
    deadline = time.monotonic() + connect_timeout
    try:
        sock = connect_tcp(host, port, connect_timeout)
    except TimeoutError:
        raise TransportError(f"cannot connect: no answer within {connect_timeout:g} s") from None
    except OSError as exc:  # the resolver's error
        raise TransportError(f"cannot connect: {connect_reason(exc)}") from None
    except ExceptionGroup as group:  # every address's error
        raise TransportError(f"cannot connect: {connect_reason(group)}") from None
    with contextlib.closing(sock):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        tls = _handshake(sock, ssl_context, server_hostname or host, deadline, connect_timeout)
        with contextlib.closing(tls):
            channel = BlockingChannel(tls, format_address(host, port))
            try:
                tls.settimeout(max(deadline - time.monotonic(), 0.001))
                channel.start()
            except TimeoutError:
                raise TransportError(
                    f"connected, but the server's first frames did not finish within "
                    f"{connect_timeout:g} s"
                ) from None
            tls.settimeout(None)  # calls take as long as the server needs, as on trio
            yield JobsCalls(channel)


def _handshake(
    sock: socket.socket,
    ssl_context: ssl.SSLContext,
    server_hostname: str,
    deadline: float,
    connect_timeout: float,
) -> ssl.SSLSocket:
    sock.settimeout(max(deadline - time.monotonic(), 0.001))
    try:
        return ssl_context.wrap_socket(sock, server_hostname=server_hostname)
    except TimeoutError:
        raise TransportError(
            f"connected, but the TLS handshake did not finish within {connect_timeout:g} s"
        ) from None
    except OSError as exc:  # ssl.SSLError (a certificate refused), a reset
        raise failure_error(exc) from None

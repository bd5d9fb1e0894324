"""The client end of a gRPC connection, on trio: unary, server-streaming and client-streaming
calls."""

import contextlib
import datetime
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import h2.errors
import trio
from google.protobuf.message import Message
from purerpc.grpclib.events import MessageReceived, ResponseEnded
from purerpc.grpclib.status import StatusCode

from .._exceptiongroups import single_errors
from .address import format_address
from .errors import RpcError, status_code
from .failures import ConnectionLost, TransportError, connect_reason, failure_error
from .protocol import closed
from .responses import parse_response
from .wire import Connection, Stream, set_socket_options

M = TypeVar("M", bound=Message)


CONNECT_TIMEOUT = 10.0
ABANDON_TIMEOUT = 1.0
"""How long telling the server that we gave up on a call may take."""


class Channel:
    def __init__(self, connection: Connection, authority: str) -> None:
        self._connection = connection
        self._authority = authority

    async def unary(
        self, path: str, request: Message, response_type: type[M], *, deadline: float | None = None
    ) -> M:
        """One request, one response. ``deadline`` (seconds) is sent as grpc-timeout."""
        try:
            stream = await self._start(path, type(request), request, deadline)
            try:
                messages = [message async for message in self._responses(stream, response_type)]
            finally:
                await self._abandon(stream)
        except ConnectionLost:
            raise self._lost() from None
        if len(messages) != 1:
            raise RpcError(StatusCode.INTERNAL, "expected one response message")
        return messages[0]

    @asynccontextmanager
    async def stream(
        self, path: str, request: Message, response_type: type[M]
    ) -> AsyncGenerator[AsyncIterator[M], None]:
        """Responses of a server-streaming call; leaving the block early cancels the call."""
        try:
            stream = await self._start(path, type(request), request, None)
        except ConnectionLost:
            raise self._lost() from None
        try:
            yield self._responses(stream, response_type)
        finally:
            await self._abandon(stream)

    @asynccontextmanager
    async def client_stream(
        self, path: str, request_type: type[Message], response_type: type[M]
    ) -> AsyncGenerator["ClientStream[M]", None]:
        """A client-streaming call: send requests, then ``close()`` for the one response.
        Leaving the block before ``close()`` has returned cancels the call (RST_STREAM)."""
        try:
            stream = await self._start(path, request_type, None, None)
        except ConnectionLost:
            raise self._lost() from None
        try:
            yield ClientStream(
                self._connection, stream, self._responses(stream, response_type), self._lost
            )
        finally:
            await self._abandon(stream)

    async def _abandon(self, stream: Stream) -> None:
        """The call is over for us; if either side has not finished it, tell the server to stop
        (a client stream the server answered early is still open on our side)."""
        if not stream.done or not stream.request_ended:
            with contextlib.suppress(h2.exceptions.ProtocolError):  # the connection is closed
                self._connection.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
            # Shielded, since we may be here because we were cancelled: the reset is a short
            # write and should go out. Bounded, for a server that stopped reading.
            with trio.CancelScope(shield=True, deadline=trio.current_time() + ABANDON_TIMEOUT):
                await self._flush_quietly()
        self._connection.forget(stream)

    async def _flush_quietly(self) -> None:
        with contextlib.suppress(ConnectionLost):  # the connection is gone: nothing to tell
            await self._connection.flush()

    async def _start(
        self,
        path: str,
        request_type: type[Message],
        request: Message | None,
        deadline: float | None,
    ) -> Stream:
        """Open a call; send ``request`` and end the request stream, unless it is None (a
        client stream, whose requests follow)."""
        protocol = self._connection.protocol
        service, method = path.strip("/").split("/")
        stream = self._connection.new_stream(protocol.get_next_available_stream_id())
        try:
            protocol.start_request(
                stream.id,
                "https",
                service,
                method,
                request_type.DESCRIPTOR.full_name,
                self._authority,
                datetime.timedelta(seconds=deadline) if deadline is not None else None,
                "+proto",
            )
            if request is not None:
                payload = request.SerializeToString()
                if self._connection.queue_message(stream, payload, end=True):
                    # A small request goes out in one write with its headers, and ends the
                    # request stream in its own frame.
                    stream.request_ended = True
                elif await self._connection.send_message(stream, payload) and not stream.answered:
                    # A server may answer before our end goes out (a hostile one, at once),
                    # and reset the stream too: then there is nothing left to end.
                    protocol.end_request(stream.id)
                    stream.request_ended = True
            await self._connection.flush()
        except BaseException as exc:
            # Cancelled or failed half-way: the server must not keep serving a call nobody
            # awaits. The reset goes out with the connection's next write.
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._connection.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
            self._connection.forget(stream)
            if isinstance(exc, h2.exceptions.ProtocolError) and closed(protocol.h2_connection):
                raise ConnectionLost from None  # the server said GOAWAY: no new call on it
            raise
        return stream

    async def _responses(self, stream: Stream, response_type: type[M]) -> AsyncIterator[M]:
        async for event in stream.inbox:
            if isinstance(event, MessageReceived):
                self._connection.acknowledge(event)
                try:
                    await self._connection.flush()
                except ConnectionLost:
                    raise self._lost() from None
                yield parse_response(response_type, event.data)
            elif isinstance(event, ResponseEnded):
                stream.done = True
                if event.status.int_value != StatusCode.OK.value:
                    raise RpcError(status_code(event.status.int_value), event.status.status_message)
                return
        raise self._lost()

    def _lost(self) -> Exception:
        failure = self._connection.failure
        if failure is not None:
            return failure_error(failure)
        return TransportError("the server closed the connection")


class ClientStream(Generic[M]):
    """A client-streaming call in progress (``Channel.client_stream``)."""

    def __init__(
        self,
        connection: Connection,
        stream: Stream,
        responses: AsyncIterator[M],
        lost: Callable[[], Exception],
    ) -> None:
        self._connection = connection
        self._stream = stream
        self._responses = responses
        self._lost = lost
        self._answer: M | RpcError | None = None

    async def send(self, request: Message) -> bool:
        """Send one request, once flow control lets us. False if the server has answered the
        call already (``close()`` says how): nothing more can be sent on it.

        Cancellation: a request cancelled half-way leaves the call unusable; leave the block.
        """
        if self._stream.request_ended:
            raise RuntimeError("the request stream is closed")
        try:
            return await self._connection.send_message(self._stream, request.SerializeToString())
        except ConnectionLost:
            raise self._lost() from None

    async def close(self) -> M:
        """End the request stream, unless the server has answered already, and return the
        server's response; RpcError for a call that failed."""
        stream = self._stream
        if not stream.request_ended and not stream.answered:
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self._connection.protocol.end_request(stream.id)
            stream.request_ended = True
        if self._answer is None:
            try:
                await self._connection.flush()
                messages = [message async for message in self._responses]
                if len(messages) != 1:
                    raise RpcError(StatusCode.INTERNAL, "expected one response message")
                self._answer = messages[0]
            except ConnectionLost:
                raise self._lost() from None
            except RpcError as exc:
                self._answer = exc
        if isinstance(self._answer, RpcError):
            raise self._answer
        return self._answer


async def _first_of(*events: trio.Event) -> None:
    async with trio.open_nursery() as nursery:
        for event in events:

            async def wait(event: trio.Event = event) -> None:
                await event.wait()
                nursery.cancel_scope.cancel()  # one has happened: stop waiting for the others

            nursery.start_soon(wait)


@asynccontextmanager
async def open_channel(
    host: str,
    port: int,
    ssl_context: Any,
    *,
    server_hostname: str | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> AsyncGenerator[Channel, None]:
    """Connect, complete the TLS handshake, and serve calls until the block ends.

    Connecting, the handshake and the server's first frames must take at most
    ``connect_timeout`` seconds together; TransportError says which step did not finish.
    """
    step = "connect"
    # One deadline for every step together.
    deadline = trio.current_time() + connect_timeout
    with trio.move_on_at(deadline) as connecting:
        try:
            tcp = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise TransportError(f"cannot connect: {connect_reason(exc)}") from None
    if connecting.cancelled_caught:
        raise TransportError(f"cannot connect: no answer within {connect_timeout:g} s")
    set_socket_options(tcp)
    tls = trio.SSLStream(tcp, ssl_context, server_hostname=server_hostname or host)
    try:
        connection = Connection(tls, client_side=True)
        with single_errors():
            async with trio.open_nursery() as nursery:
                with trio.move_on_at(deadline) as connecting:
                    step = "the TLS handshake"
                    try:
                        await tls.do_handshake()
                    except trio.BrokenResourceError as exc:
                        raise failure_error(exc.__cause__ or exc) from None
                    step = "the server's first frames"
                    try:
                        await connection.start()
                    except ConnectionLost:
                        raise failure_error(connection.failure or EOFError()) from None
                    nursery.start_soon(connection.run)
                    # Under TLS 1.3 the server judges our certificate after our handshake is
                    # done: wait for its first frames, so that a refusal surfaces here with
                    # its TLS alert rather than as a broken pipe under the first call.
                    await _first_of(connection.peer_ready, connection.closed)
                if connecting.cancelled_caught:
                    raise TransportError(
                        f"connected, but {step} did not finish within {connect_timeout:g} s"
                    )
                if not connection.peer_ready.is_set():
                    raise failure_error(connection.failure or EOFError())
                try:
                    yield Channel(connection, format_address(host, port))
                finally:
                    # The caller is done with the channel: stop reading from it.
                    nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(tls)

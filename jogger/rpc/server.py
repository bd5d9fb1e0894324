"""The gRPC server: TLS listeners, one task per connection, one task per call.

    server nursery
    ├── listeners      accept loops; cancelled first at shutdown
    └── connections    one task each
        ├── reader     wire.Connection.run
        └── calls      one task each, in its stream's cancel scope

A call's scope is cancelled when the client resets its stream or the connection ends, so a
client that goes away costs the server nothing. Shutdown: stop accepting, let the calls in
flight finish (bounded by a drain timeout), then close every connection.
"""

import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import h2.errors
import h2.exceptions
import trio
from google.protobuf.message import DecodeError, Message
from purerpc.grpclib.events import MessageReceived, RequestEnded, RequestReceived
from purerpc.grpclib.status import Status, StatusCode

from .auth import CertificateRejected, Identity, identify_client
from .errors import RpcError
from .wire import Connection, ConnectionLost, Stream, set_socket_options

log = logging.getLogger("jogger.rpc")

HANDSHAKE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler knows about its caller: only what the verified certificate says."""

    identity: Identity
    peer: str


UnaryHandler = Callable[[Call, Any], Awaitable[Message]]
StreamHandler = Callable[[Call, Any], AsyncIterator[Message]]


@dataclass(frozen=True, slots=True)
class _Peer:
    """Who is at the other end of a connection, as its TLS handshake established."""

    address: str
    identity: Identity | None
    rejection: str  # why the certificate was refused, when identity is None


@dataclass(frozen=True, slots=True)
class Method:
    request_type: type[Message]
    unary: UnaryHandler | None = None
    stream: StreamHandler | None = None


class RpcServer:
    def __init__(self, nursery: trio.Nursery, ssl_context: Any) -> None:
        self._nursery = nursery
        self._methods: Mapping[str, Method] = {}
        self._ssl_context = ssl_context
        self._calls = 0
        self._idle = trio.Event()
        self._idle.set()
        self._draining = False

    async def listen(
        self,
        addresses: list[tuple[str, int]],
        methods: Mapping[str, Method],
        *,
        task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve ``methods`` (keyed by gRPC path) on every address until cancelled.

        Reports the bound (host, port) pairs through ``task_status`` once listening.
        """
        self._methods = methods
        listeners: list[trio.SocketListener] = []
        try:
            for host, port in addresses:
                listeners += await trio.open_tcp_listeners(port, host=host)
        except BaseException:
            for listener in listeners:
                await listener.aclose()
            raise
        bound = [listener.socket.getsockname()[:2] for listener in listeners]
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept, listener)
            task_status.started(bound)

    async def _accept(self, listener: trio.SocketListener) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    # Out of fds, for example: say so and keep serving the others.
                    log.warning("accept failed: %s", exc)
                    await trio.sleep(0.1)
                    continue
                self._nursery.start_soon(self._connection, stream)

    async def drain(self) -> None:
        """Refuse new calls (UNAVAILABLE) and return once no call is in flight."""
        self._draining = True
        await self._idle.wait()

    async def _connection(self, tcp: trio.SocketStream) -> None:
        try:
            await self._serve_connection(tcp)
        except Exception:
            # A bug, or a failure we did not foresee: it ends this connection, not the server.
            log.exception("connection failed")
        finally:
            await trio.aclose_forcefully(tcp)

    async def _serve_connection(self, tcp: trio.SocketStream) -> None:
        try:
            set_socket_options(tcp)
            host, port = tcp.socket.getpeername()[:2]
        except OSError as exc:
            log.info("connection closed before it could be served: %s", exc)
            return  # reset by the peer already (ENOTCONN)
        peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        tls = trio.SSLStream(tcp, self._ssl_context, server_side=True)
        try:
            with trio.move_on_after(HANDSHAKE_TIMEOUT) as timer:
                try:
                    await tls.do_handshake()
                except trio.BrokenResourceError as exc:
                    log.info("connection peer=%s refused: %s", peer, exc.__cause__ or exc)
                    await _send_alert(tls, tcp)
                    return
            if timer.cancelled_caught:
                log.info("connection peer=%s closed: TLS handshake timed out", peer)
                return
            try:
                client = _Peer(peer, identify_client(tls.getpeercert(binary_form=True)), "")
            except CertificateRejected as exc:
                client = _Peer(peer, None, str(exc))
                log.info("connection peer=%s rejected: %s", peer, exc)
            connection = Connection(tls, client_side=False)
            async with trio.open_nursery() as calls:

                def on_request(event: RequestReceived, stream: Stream) -> None:
                    if self._draining:
                        connection.forget(stream)
                        status = Status(StatusCode.UNAVAILABLE, "the server is shutting down")
                        connection.refuse(stream.id, status)
                        return
                    self._begin_call()
                    calls.start_soon(self._call, connection, stream, event, client)

                try:
                    await connection.start()
                except ConnectionLost:
                    return
                await connection.run(on_request)
                # The connection is over: nothing can reach its client any more.
                calls.cancel_scope.cancel()
        except trio.BrokenResourceError as exc:
            log.info("connection peer=%s failed: %s", peer, exc.__cause__ or exc)
        finally:
            await trio.aclose_forcefully(tls)

    def _begin_call(self) -> None:
        self._calls += 1
        if self._calls == 1:
            self._idle = trio.Event()

    def _end_call(self) -> None:
        self._calls -= 1
        if self._calls == 0:
            self._idle.set()

    async def _call(
        self,
        connection: Connection,
        stream: Stream,
        event: RequestReceived,
        client: _Peer,
    ) -> None:
        path = f"/{event.service_name}/{event.method_name}"
        started = time.perf_counter()
        status = Status(StatusCode.CANCELLED, "the client went away")
        user = client.identity.user if client.identity else "-"
        try:
            with stream.scope:
                status = await self._serve(connection, stream, event, client)
                await self._finish(connection, stream, status)
            if stream.refusal is not None:
                # The client sent what this call cannot carry (see wire.StreamRefused).
                status = stream.refusal
                await self._finish(connection, stream, status)
        except ConnectionLost:
            pass
        finally:
            connection.forget(stream)
            self._end_call()
            log.info(
                "rpc method=%s user=%s peer=%s status=%s duration_ms=%.1f%s",
                path,
                user,
                client.address,
                StatusCode(status.int_value).name,
                (time.perf_counter() - started) * 1e3,
                f" message={status.status_message!r}" if status.int_value else "",
            )

    async def _serve(
        self,
        connection: Connection,
        stream: Stream,
        event: RequestReceived,
        client: _Peer,
    ) -> Status:
        if client.identity is None:
            return Status(
                StatusCode.UNAUTHENTICATED, f"client certificate rejected: {client.rejection}"
            )
        method = self._methods.get(f"/{event.service_name}/{event.method_name}")
        if method is None:
            return Status(StatusCode.UNIMPLEMENTED, f"unknown method {event.method_name!r}")
        timeout = event.timeout.total_seconds() if event.timeout is not None else float("inf")
        with trio.move_on_after(timeout) as deadline:
            try:
                request = await _read_request(stream, method.request_type)
                call = Call(identity=client.identity, peer=client.address)
                connection.protocol.start_response(stream.id, "+proto")
                stream.response_started = True
                if method.unary is not None:
                    response = await method.unary(call, request)
                    await connection.send_message(stream, response.SerializeToString())
                elif method.stream is not None:
                    async with aclosing(method.stream(call, request)) as messages:  # type: ignore[type-var]
                        async for message in messages:
                            await connection.send_message(stream, message.SerializeToString())
            except RpcError as exc:
                return Status(exc.code, exc.message)
            except h2.exceptions.StreamClosedError:
                raise ConnectionLost from None
            except ConnectionLost:
                raise
            except Exception:
                log.exception("handler for %s failed", event.method_name)
                return Status(StatusCode.INTERNAL, "internal error")
        if deadline.cancelled_caught:
            return Status(StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
        return Status(StatusCode.OK)

    async def _finish(self, connection: Connection, stream: Stream, status: Status) -> None:
        if stream.reset:
            return
        try:
            if stream.partial_message:
                # Trailers cannot follow half a message: the client would read garbage.
                connection.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
            elif stream.response_started:
                connection.protocol.end_response(stream.id, status)
            else:
                connection.protocol.respond_status(stream.id, status, "+proto")
        except h2.exceptions.ProtocolError:
            return  # the stream is closed already (reset, or refused and answered)
        await connection.flush()


async def _send_alert(tls: trio.SSLStream[trio.SocketStream], tcp: trio.SocketStream) -> None:
    """Send the TLS alert OpenSSL wrote when it refused the handshake.

    trio drops it (its SSLStream goes broken without flushing), which leaves the client with a
    bare EOF instead of "certificate expired" or "unknown ca". Best effort, bounded.
    """
    outgoing = getattr(tls, "_outgoing", None)
    if not isinstance(outgoing, ssl.MemoryBIO):
        return
    alert = outgoing.read()
    if alert:
        with trio.move_on_after(1), contextlib.suppress(trio.BrokenResourceError):
            await tcp.send_all(alert)


async def _read_request(stream: Stream, request_type: type[Message]) -> Message:
    """The call's single request message; INVALID_ARGUMENT for anything else."""
    message: Message | None = None
    async for event in stream.inbox:
        if isinstance(event, MessageReceived):
            if message is not None:
                raise RpcError(StatusCode.INVALID_ARGUMENT, "expected one request message")
            message = request_type()
            try:
                message.ParseFromString(event.data)
            except DecodeError:
                raise RpcError(StatusCode.INVALID_ARGUMENT, "malformed request message") from None
        elif isinstance(event, RequestEnded):
            break
    if message is None:
        raise RpcError(StatusCode.INVALID_ARGUMENT, "expected one request message")
    return message


@asynccontextmanager
async def open_rpc_server(
    ssl_context: Any, *, drain_timeout: float = 5.0
) -> AsyncIterator[RpcServer]:
    """A server whose connections live as long as this block.

    Start listening with ``await nursery.start(server.listen, addresses, methods)``. On
    leaving the block, calls in flight get ``drain_timeout`` seconds to finish; then every
    connection is closed.
    """
    async with trio.open_nursery() as nursery:
        server = RpcServer(nursery, ssl_context)
        try:
            yield server
        finally:
            # Shielded: even when we leave because of a cancellation, calls in flight (an
            # Output stream delivering a stopped job's last bytes) get their moment.
            with trio.move_on_after(drain_timeout, shield=True):
                await server.drain()
            # Then close whatever connections remain, idle or not.
            nursery.cancel_scope.cancel()

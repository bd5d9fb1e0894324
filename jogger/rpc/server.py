"""The gRPC server: TLS listeners, one task per connection, one task per call.

    server nursery
    ├── listeners      accept loops; cancelled first at shutdown
    └── connections    one task each
        ├── reader     wire.Connection.run
        └── calls      one task each, in its stream's cancel scope

A call's scope is cancelled when the client resets its stream or the connection ends, so a
client that goes away costs the server nothing. Shutdown: stop accepting, let the calls in
flight finish (bounded by a drain timeout), then close every connection.

What one peer can hold (connections still in their TLS handshake, connections and calls
per user, the time a connection gets to prove itself) is admission.py's to grant.
"""

import contextlib
import errno
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from functools import partial
from typing import NoReturn

import h2.errors
import h2.exceptions
import trio
from google.protobuf.message import Message
from purerpc.grpclib.events import RequestReceived
from purerpc.grpclib.status import Status, StatusCode

from .address import format_address
from .admission import Admission, ConnectionGrant, Grant, Peer, TransportLimits
from .auth import (
    CertificateRejected,
    Identity,
    OnAuthenticationFailure,
    identify_client,
    refused_in_handshake,
    rejected,
)
from .compression import encode, response_encoding
from .credentials import ServerTls, TlsHolder
from .errors import RpcError
from .failures import ConnectionLost
from .method import Call, Method
from .observer import NOBODY, UNKNOWN_METHOD, Cause, RpcObserver, TransportLoad, handshake_cause
from .requests import first_request, read_request, requests
from .throttle import LogThrottle
from .wire import Connection, Stream, set_socket_options

log = logging.getLogger("jogger.rpc")
throttled = LogThrottle(log)

ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
"""What accept(2) returns when the process or the system is out of something, as in trio's
serve_listeners: worth waiting out. Any other error is a bug, and ends the server."""
ACCEPT_RETRY = 0.1
"""Seconds the accept loop waits after such an error."""
KNOWN_CERTIFICATES = 1024
"""Client certificates whose identity a server keeps, once checked (see ``_identify``)."""


class ListenError(Exception):
    """An address we were asked to listen on cannot be had; ``str()`` names it and says why."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        where = format_address(host, port)
        reason = (error.strerror or str(error)).lower()
        hint = ""
        if error.errno == errno.EADDRINUSE:
            hint = " (is another server running there? --listen chooses another address)"
        elif error.errno == errno.EACCES:
            hint = " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        elif error.errno == errno.EADDRNOTAVAIL:
            hint = " (no interface of this host has that address)"
        super().__init__(f"cannot listen on {where}: {reason}{hint}")


class RpcServer:
    def __init__(
        self,
        nursery: trio.Nursery,
        tls: TlsHolder,
        methods: Mapping[str, Method],
        limits: TransportLimits | None = None,
        *,
        on_authentication_failure: OnAuthenticationFailure | None = None,
        observer: RpcObserver = NOBODY,
    ) -> None:
        self._nursery = nursery
        self._authentication_failed = on_authentication_failure or (lambda failure: None)
        self._methods = methods
        self._tls = tls
        self._limits = limits or TransportLimits()
        self._observer = observer
        self._admission = Admission(self._limits, observer)
        self._request_streaming = frozenset(
            path for path, method in methods.items() if method.streams_requests
        )
        self._draining = trio.Event()
        """Every call's ``Call.draining``."""
        self._known: dict[bytes, Identity] = {}
        """Identities of certificates checked against ``_known_for``, oldest first."""
        self._known_for: ServerTls | None = None

    async def listen(
        self,
        addresses: list[tuple[str, int]],
        *,
        task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve the methods on every address until cancelled.

        Reports the bound (host, port) pairs through ``task_status`` once listening.
        """
        listeners = await open_listeners(addresses, ListenError)
        bound = [listener.socket.getsockname()[:2] for listener in listeners]
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(serve_listener, listener, self._admit)
            task_status.started(bound)

    async def _admit(self, tcp: trio.SocketStream) -> None:
        """Serve a new connection in a task of its own, or close it at once."""
        try:
            host = str(tcp.socket.getpeername()[0])
        except OSError:
            await trio.aclose_forcefully(tcp)
            return  # reset by the peer before we looked (ENOTCONN)
        admitted = self._admission.connection(host)
        if isinstance(admitted, ConnectionGrant):
            self._nursery.start_soon(self._connection, tcp, host, admitted)
            return
        throttled.log("accept-refused", logging.WARNING, "connection refused: %s", admitted)
        await trio.aclose_forcefully(tcp)

    def load(self) -> TransportLoad:
        """The connections, handshakes and calls held now."""
        admission = self._admission
        return TransportLoad(admission.connections, len(admission.handshakes), admission.calls)

    def _method(self, event: RequestReceived) -> str:
        """The call's path as an observer sees it: a peer's own must not become a label."""
        path = f"/{event.service_name}/{event.method_name}"
        return path if path in self._methods else UNKNOWN_METHOD

    async def drain(self) -> None:
        """Refuse new calls (UNAVAILABLE), tell those in flight (``Call.draining``), and
        return once none is left."""
        self._draining.set()
        await self._admission.drain()

    async def _connection(self, tcp: trio.SocketStream, host: str, grant: ConnectionGrant) -> None:
        try:
            with grant:
                await self._serve_connection(tcp, host, grant)
        except Exception:
            # A bug, or a failure we did not foresee: it ends this connection, not the server.
            log.exception("connection failed")
        finally:
            await trio.aclose_forcefully(tcp)

    async def _serve_connection(
        self, tcp: trio.SocketStream, host: str, grant: ConnectionGrant
    ) -> None:
        try:
            set_socket_options(tcp)
            port = tcp.socket.getpeername()[1]
        except OSError as exc:
            throttled.log(
                "gone", logging.INFO, "connection closed before it could be served: %s", exc
            )
            return  # reset by the peer already (ENOTCONN)
        peer = format_address(host, port)
        material = self._tls.current  # this connection's for good, whatever a reload brings
        tls = trio.SSLStream(tcp, material.context, server_side=True)
        try:
            # One deadline for the TLS handshake and the HTTP/2 preface together; admission
            # set it (shorter when its table is filling up), and may cancel the handshake to
            # evict it.
            with grant.handshake() as timer:
                try:
                    await tls.do_handshake()
                except trio.BrokenResourceError as exc:
                    throttled.log(
                        "handshake",
                        logging.INFO,
                        "connection peer=%s refused: %s",
                        peer,
                        exc.__cause__ or exc,
                    )
                    self._observer.handshake_refused(handshake_cause(exc))
                    if failure := refused_in_handshake(peer, exc.__cause__):
                        self._authentication_failed(failure)
                    await _send_alert(tls, tcp)
                    return
            if timer.cancelled_caught:
                throttled.log(
                    "handshake-timeout",
                    logging.INFO,
                    "connection peer=%s closed: %s",
                    peer,
                    "evicted from a full handshake table"
                    if grant.evicted
                    else "TLS handshake timed out",
                )
                self._observer.handshake_refused(Cause.EVICTED if grant.evicted else Cause.TIMEOUT)
                return
            with self._admission.peer(host, peer, self._identify(peer, tls, material)) as client:
                if client is None:
                    return  # told often enough already: closed at once
                await self._serve_http2(tls, client, grant.deadline)
        except trio.BrokenResourceError as exc:
            throttled.log(
                "broken", logging.INFO, "connection peer=%s failed: %s", peer, exc.__cause__ or exc
            )
        finally:
            await trio.aclose_forcefully(tls)

    def _identify(
        self, peer: str, tls: trio.SSLStream[trio.SocketStream], material: ServerTls
    ) -> Identity | Status:
        """Who the peer's certificate names, or the status its calls get if it is rejected.

        The check (parsing the certificate, its issuer's signature again, its CRL, its
        extensions) depends on nothing but the certificate and the TLS material, and costs
        a fifth of a connection's setup: a certificate that passed it against this material
        is not checked again. OpenSSL checks its validity period in every handshake; a
        reload (new material: another CRL, say) starts afresh. Refusals are not kept.
        """
        der = tls.getpeercert(binary_form=True)
        if material is not self._known_for:
            self._known, self._known_for = {}, material
        if der is not None and (known := self._known.get(der)) is not None:
            return known
        try:
            identity = identify_client(der, material.issuers, material.revocations)
            if der is not None:
                if len(self._known) >= KNOWN_CERTIFICATES:
                    del self._known[next(iter(self._known))]  # the oldest: bounded
                self._known[der] = identity
            return identity
        except CertificateRejected as exc:
            throttled.log("rejected", logging.INFO, "connection peer=%s rejected: %s", peer, exc)
            self._observer.handshake_refused(Cause.CERTIFICATE)
            reason = f"client certificate rejected: {exc}"
            self._authentication_failed(rejected(peer, der, reason))
            return Status(StatusCode.UNAUTHENTICATED, reason)

    async def _serve_http2(
        self, tls: trio.SSLStream[trio.SocketStream], client: Peer, deadline: float
    ) -> None:
        connection = Connection(tls, client_side=False, client_streaming=self._request_streaming)
        limits = self._limits
        async with trio.open_nursery() as calls:

            def on_request(event: RequestReceived, stream: Stream) -> None:
                admitted = self._admission.call(client)
                if isinstance(admitted, Status):
                    self._observer.call_refused(
                        self._method(event), admitted.status_code.name, client.identity
                    )
                    connection.forget(stream)
                    connection.refuse(stream.id, admitted)
                    return
                calls.start_soon(self._call, connection, stream, event, client, admitted)

            if client.refusal is not None:
                # Long enough to tell the client why, not long enough to hold a slot.
                life = min(limits.refused_life, limits.handshake_timeout)
                calls.start_soon(_close_after, life, calls.cancel_scope)
            calls.start_soon(_expect_preface, connection, deadline, calls, self._observer)
            try:
                with contextlib.suppress(ConnectionLost):
                    connection.prepare()
                    await connection.run(on_request)
            finally:
                # The connection is over: nothing can reach its client any more, and its
                # timers (_expect_preface, _close_after) have nothing left to guard.
                calls.cancel_scope.cancel()

    async def _call(
        self,
        connection: Connection,
        stream: Stream,
        event: RequestReceived,
        client: Peer,
        grant: Grant,
    ) -> None:
        path = f"/{event.service_name}/{event.method_name}"
        started = time.perf_counter()
        status = Status(StatusCode.CANCELLED, "the client went away")
        user = client.identity.user if client.identity else "-"
        with grant:
            try:
                finished = False
                with stream.scope:
                    status = await self._serve(connection, stream, event, client)
                    finished = self._finish(connection, stream, status)
                if stream.refusal is not None and not finished:
                    # The client sent what this call cannot carry (see protocol.StreamRefused).
                    status = stream.refusal
                    self._finish(connection, stream, status)
                # Outside the stream's scope: an answer queued just as a refusal cancelled the
                # scope must still go out, or the client waits for it for ever.
                await connection.flush()
            except ConnectionLost:
                pass
            finally:
                connection.forget(stream)
                # A client may make many calls fail in a row; successful calls are the access log.
                (log.log if status.int_value == 0 else partial(throttled.log, "rpc-failed"))(
                    logging.INFO,
                    "rpc method=%s user=%s peer=%s status=%s duration_ms=%.1f%s",
                    path,
                    user,
                    client.address,
                    StatusCode(status.int_value).name,
                    (time.perf_counter() - started) * 1e3,
                    f" message={status.status_message!r}" if status.int_value else "",
                )
                elapsed = time.perf_counter() - started
                self._observer.call_ended(
                    self._method(event), status.status_code.name, elapsed, client.identity
                )

    async def _serve(
        self,
        connection: Connection,
        stream: Stream,
        event: RequestReceived,
        client: Peer,
    ) -> Status:
        if client.refusal is not None or client.identity is None:
            return client.refusal or Status(StatusCode.UNAUTHENTICATED, "no identity")
        path = f"/{event.service_name}/{event.method_name}"
        method = self._methods.get(path)
        if method is None:
            return Status(StatusCode.UNIMPLEMENTED, f"unknown method {event.method_name[:40]!r}")
        timeout = event.timeout.total_seconds() if event.timeout is not None else float("inf")
        encoding = response_encoding(event.message_encoding, event.message_accept_encoding)
        with trio.move_on_after(timeout) as deadline:
            try:
                call = Call(
                    identity=client.identity,
                    peer=client.address,
                    method=path,
                    message_size=partial(connection.message_size, stream),
                    draining=self._draining,
                )
                await self._handle(connection, stream, method, call, encoding)
            except RpcError as exc:
                return Status(exc.code, exc.message)
            except h2.exceptions.StreamClosedError:
                raise ConnectionLost from None
            except ConnectionLost:
                raise
            except Exception as exc:
                if isinstance(exc, h2.exceptions.ProtocolError) and connection.closed.is_set():
                    raise ConnectionLost from None  # closed (GOAWAY) while this call wrote
                log.exception("handler for %s failed", event.method_name)
                return Status(StatusCode.INTERNAL, "internal error")
        if deadline.cancelled_caught:
            return Status(StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
        return Status(StatusCode.OK)

    async def _handle(
        self,
        connection: Connection,
        stream: Stream,
        method: Method,
        call: Call,
        encoding: str | None,
    ) -> None:
        """Read the request, run the handler, send what it answers (compressed in
        ``encoding``, if not None)."""
        patience = self._limits.request_timeout
        if method.streams_requests:
            first = await first_request(stream, patience, required=method.bidi is None)
        else:
            request = await read_request(stream, method.request_type, patience)
        connection.protocol.start_response(stream.id, "+proto", encoding=encoding)
        stream.response_started = True

        async def send(response: Message) -> None:
            payload, compressed = await encode(response.SerializeToString(), encoding)
            await connection.send_message(stream, payload, compressed=compressed)
            connection.sent(stream)

        if method.client_stream is not None:
            async with aclosing(
                requests(connection, stream, method.request_type, first)
            ) as incoming:
                response = await method.client_stream(call, incoming)
            await send(response)
        elif method.bidi is not None:
            async with (
                aclosing(requests(connection, stream, method.request_type, first)) as incoming,
                aclosing(method.bidi(call, incoming)) as messages,  # type: ignore[type-var]
            ):
                async for message in messages:
                    await send(message)
        elif method.unary is not None:
            response = await method.unary(call, request)
            payload, compressed = await encode(response.SerializeToString(), encoding)
            # A small answer waits for the call's end, and the two go out in one write
            # (_call flushes after _finish); a big one is sent as any message is.
            if not connection.queue_message(stream, payload, compressed=compressed):
                await connection.send_message(stream, payload, compressed=compressed)
        elif method.stream is not None:
            async with aclosing(method.stream(call, request)) as messages:  # type: ignore[type-var]
                async for message in messages:
                    await send(message)

    def _finish(self, connection: Connection, stream: Stream, status: Status) -> bool:
        """Queue the end of the call; False if the stream had ended already."""
        if stream.reset:
            return False
        try:
            if stream.partial_message:
                # Trailers cannot follow half a message: the client would read garbage.
                connection.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
            elif stream.response_started:
                connection.protocol.end_response(stream.id, status)
                if not stream.request_ended:
                    # A client stream answered before its end (an early error, a job that
                    # stopped reading): ask the client to stop sending (RFC 9113, 8.1), so
                    # that the stream closes on both ends whatever the client does.
                    connection.reset_stream(stream, h2.errors.ErrorCodes.NO_ERROR)
            else:
                connection.protocol.respond_status(stream.id, status, "+proto")
        except h2.exceptions.ProtocolError:
            return False  # the stream is closed already (reset, or refused and answered)
        return True


async def open_listeners(
    addresses: Sequence[tuple[str, int]], failed: Callable[[str, int, OSError], Exception]
) -> list[trio.SocketListener]:
    """A listener on every address, or none: for the first address that cannot be had, the
    listeners opened before it are closed and ``failed(host, port, error)`` is raised."""
    listeners: list[trio.SocketListener] = []
    try:
        for host, port in addresses:
            try:
                listeners += await trio.open_tcp_listeners(port, host=host)
            except OSError as exc:
                raise failed(host, port, exc) from None
    except BaseException:
        for listener in listeners:
            await listener.aclose()
        raise
    return listeners


async def serve_listener(
    listener: trio.abc.Listener[trio.SocketStream],
    admit: Callable[[trio.SocketStream], Awaitable[None]],
) -> NoReturn:
    """Accept connections for ever, handing each to ``admit``; closes ``listener`` at the end.

    Retries only when accept fails for want of a resource (ACCEPT_CAPACITY_ERRNOS), as
    trio's serve_listeners does; raises any other error.
    """
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                # Out of fds, for example: say so and keep serving the connections we have.
                throttled.log("accept", logging.WARNING, "accept failed: %s", exc)
                await trio.sleep(ACCEPT_RETRY)
                continue
            await admit(stream)


async def _close_after(seconds: float, scope: trio.CancelScope) -> None:
    await trio.sleep(seconds)
    # The connection's time is up (see the caller): end it and every call on it.
    scope.cancel()


async def _expect_preface(
    connection: Connection, deadline: float, calls: trio.Nursery, observer: RpcObserver
) -> None:
    with trio.move_on_at(deadline):
        await connection.peer_ready.wait()
        return
    throttled.log("preface", logging.INFO, "closing connection: no HTTP/2 preface in time")
    observer.handshake_refused(Cause.TIMEOUT)
    # A peer that completed TLS and then said nothing: it gets no more of our time.
    calls.cancel_scope.cancel()


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


@asynccontextmanager
async def open_rpc_server(
    tls: TlsHolder,
    methods: Mapping[str, Method],
    *,
    drain_timeout: float = 5.0,
    limits: TransportLimits | None = None,
    on_authentication_failure: OnAuthenticationFailure | None = None,
    observer: RpcObserver | None = None,
) -> AsyncIterator[RpcServer]:
    """A server of ``methods`` (keyed by gRPC path) whose connections live as long as this
    block. Each connection is served with the TLS material ``tls`` holds when it arrives
    (replace it there to reload certificates). ``on_authentication_failure`` hears of every
    client whose certificate is refused, or missing (not throttled: the log is).

    Start listening with ``await nursery.start(server.listen, addresses)``. On leaving the
    block, calls in flight get ``drain_timeout`` seconds to finish; then every connection is
    closed. ``observer`` hears of calls, refused handshakes and admission's refusals.
    """
    async with trio.open_nursery() as nursery:
        server = RpcServer(
            nursery,
            tls,
            methods,
            limits,
            on_authentication_failure=on_authentication_failure,
            observer=observer or NOBODY,
        )
        try:
            yield server
        finally:
            # Shielded: even when we leave because of a cancellation, calls in flight (an
            # Output stream delivering a stopped job's last bytes) get their moment.
            with trio.move_on_after(drain_timeout, shield=True):
                await server.drain()
            # Then close whatever connections remain, idle or not.
            nursery.cancel_scope.cancel()

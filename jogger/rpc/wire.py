"""gRPC over HTTP/2 on a trio stream: the connection loop we run instead of purerpc's.

purerpc's sans-I/O protocol machine (``purerpc.grpclib.connection.GRPCConnection``, on h2)
parses and frames; this module does the I/O, on trio, for both ends of a connection:

- one reader task per connection feeds each stream's inbox. Inboxes are bounded: a server
  refuses a stream that sends more than its call may carry; a client's reader waits for its
  consumer, which pushes back on the server through TCP;
- sends respect HTTP/2 flow control and are serialised by one lock, so that frames leave in
  the order h2 produced them;
- a stream reset by the peer (RST_STREAM) cancels the task serving it, and the end of the
  connection cancels them all. purerpc ignores both, so a client that goes away leaves its
  handler running for ever.
"""

import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import h2.errors
import h2.events
import h2.exceptions
import trio
from purerpc.grpclib.config import GRPCConfiguration
from purerpc.grpclib.connection import GRPCConnection
from purerpc.grpclib.events import (
    Event,
    MessageReceived,
    RequestEnded,
    RequestReceived,
    ResponseEnded,
    ResponseReceived,
    WindowUpdated,
)
from purerpc.grpclib.exceptions import ProtocolError

log = logging.getLogger(__name__)

MAX_MESSAGE = 4 << 20
"""The largest message either side accepts, as in grpc's default."""
RECEIVE_SIZE = 1 << 16
CONNECTION_WINDOW = 16 << 20
CLIENT_FRAME_SIZE = 128 << 10
SERVER_FRAME_SIZE = 16 << 10
SERVER_MAX_STREAMS = 128
"""Calls one connection may have in flight; purerpc advertises 65,536."""
"""How much response data a client lets the server send ahead, over all streams."""


class StreamReset(Event):  # type: ignore[misc]
    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class _Protocol(GRPCConnection):  # type: ignore[misc]
    """purerpc's protocol machine, reporting stream resets instead of dropping them."""

    # purerpc accepts 16 MiB frames; h2 3.x reassembles a frame by appending to a bytes
    # object, which copies the partial frame for every TLS record: quadratic in frame size.
    # A client takes 128 KiB frames (the streaming benchmark ran 1.8x faster than with 16 MiB);
    # a server, whose requests are small, takes HTTP/2's default 16 KiB.
    MAX_INBOUND_FRAME_SIZE = CLIENT_FRAME_SIZE

    def __init__(self, config: GRPCConfiguration) -> None:
        if not config.client_side:
            # Per instance, before purerpc's constructor writes the local settings.
            self.MAX_INBOUND_FRAME_SIZE = SERVER_FRAME_SIZE
            self.MAX_CONCURRENT_STREAMS = SERVER_MAX_STREAMS
        super().__init__(config)

    def _stream_reset(self, event: h2.events.StreamReset) -> list[Event]:
        return [StreamReset(event.stream_id)]

    def initiate_connection(self) -> None:
        # purerpc opens a 1 GiB connection window; a server must not let a peer send that
        # much ahead. A client opens a window big enough to stream output at full speed.
        self.h2_connection.initiate_connection()
        if self.config.client_side:
            self.h2_connection.increment_flow_control_window(CONNECTION_WINDOW)


class ConnectionLost(Exception):
    """The peer closed the connection, or it broke."""


@dataclass(eq=False)
class Stream:
    """One call's stream. Its inbox receives the peer's messages and its end event."""

    id: int
    inbox_send: trio.MemorySendChannel[Event]
    inbox: trio.MemoryReceiveChannel[Event]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    window_open: trio.Event = field(default_factory=trio.Event)
    reset: bool = False
    response_started: bool = False
    done: bool = False


class Connection:
    """Both ends' shared machinery. ``run()`` is the reader loop; calls run in other tasks."""

    def __init__(self, stream: trio.abc.Stream, *, client_side: bool, inbox_size: int) -> None:
        self._transport = stream
        self._protocol = _Protocol(
            GRPCConfiguration(client_side=client_side, max_message_length=MAX_MESSAGE)
        )
        self._send_lock = trio.Lock()
        self._streams: dict[int, Stream] = {}
        self._inbox_size = inbox_size
        self.closed = trio.Event()
        self.peer_ready = trio.Event()
        """Set once the peer's first frames (its SETTINGS) have arrived."""
        self.failure: BaseException | None = None
        """Why the transport broke, when it did (for example the TLS alert the peer sent)."""

    @property
    def active_streams(self) -> int:
        return len(self._streams)

    async def start(self) -> None:
        self._protocol.initiate_connection()
        await self.flush()

    def new_stream(self, stream_id: int) -> Stream:
        send, receive = trio.open_memory_channel[Event](self._inbox_size)
        stream = Stream(stream_id, send, receive)
        self._streams[stream_id] = stream
        return stream

    def forget(self, stream: Stream) -> None:
        self._streams.pop(stream.id, None)
        stream.inbox_send.close()

    async def flush(self) -> None:
        """Write whatever the protocol machine has queued."""
        if not self._protocol.h2_connection._data_to_send:
            # Nothing queued (purerpc keeps h2's outbound bytes in this bytearray): skip the
            # lock, which costs two scheduling points on every frame we receive.
            return
        async with self._send_lock:
            data = self._protocol.data_to_send()
            if data:
                try:
                    await self._transport.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self.failure = self.failure or exc.__cause__ or exc
                    raise ConnectionLost from None

    async def send_message(self, stream: Stream, payload: bytes) -> None:
        """Send one length-prefixed gRPC message, as fast as flow control lets us."""
        data = memoryview(b"\x00" + len(payload).to_bytes(4, "big") + payload)
        while data:
            window = self._protocol.flow_control_window(stream.id)
            if window <= 0:
                await stream.window_open.wait()
                stream.window_open = trio.Event()
                continue
            self._protocol.send_data(stream.id, bytes(data[:window]))
            data = data[window:]
            await self.flush()

    def acknowledge(self, event: MessageReceived) -> None:
        """Give the peer back the window a message used, once we have taken it."""
        self._protocol.acknowledge_received_data(event.stream_id, event.flow_controlled_length)

    def reset_stream(self, stream: Stream, code: h2.errors.ErrorCodes) -> None:
        stream.reset = True
        # Already closed on the wire means there is nothing to reset.
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self._protocol.reset_stream(stream.id, code)

    @property
    def protocol(self) -> GRPCConnection:
        return self._protocol

    async def run(
        self, on_request: Callable[[RequestReceived, Stream], None] | None = None
    ) -> None:
        """Read from the peer until the connection ends; then cancel every stream.

        ``on_request`` (server side) is called for each new call, with its stream created.
        """
        try:
            while True:
                try:
                    data = await self._transport.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self.failure = exc.__cause__ or exc
                    return
                if not data:
                    return
                try:
                    events = self._protocol.receive_data(data)
                except (ProtocolError, h2.exceptions.ProtocolError) as exc:
                    log.info("closing connection: protocol error: %s", exc)
                    self._protocol.h2_connection.close_connection(
                        h2.errors.ErrorCodes.PROTOCOL_ERROR
                    )
                    await self.flush()
                    return
                self.peer_ready.set()
                for event in events:
                    await self._dispatch(event, on_request)
                await self.flush()
        except ConnectionLost:
            return
        finally:
            self.closed.set()
            for stream in list(self._streams.values()):
                # The connection is gone: whoever serves or awaits this stream must stop.
                stream.scope.cancel()
                stream.inbox_send.close()

    async def _dispatch(
        self, event: Event, on_request: Callable[[RequestReceived, Stream], None] | None
    ) -> None:
        if isinstance(event, WindowUpdated):
            targets = (
                self._streams.values()
                if event.stream_id == 0
                else ([self._streams[event.stream_id]] if event.stream_id in self._streams else [])
            )
            for stream in targets:
                stream.window_open.set()
            return
        if isinstance(event, RequestReceived):
            if on_request is None:
                raise ProtocolError("a request arrived at the client end")
            on_request(event, self.new_stream(event.stream_id))
        found = self._streams.get(getattr(event, "stream_id", -1))
        if found is None:
            return  # a stream we have already finished with
        stream = found
        if isinstance(event, StreamReset):
            stream.reset = True
            # The peer gave up on this call: cancel whatever serves or awaits it.
            stream.scope.cancel()
            stream.inbox_send.close()
            return
        if isinstance(
            event,
            RequestReceived | MessageReceived | RequestEnded | ResponseReceived | ResponseEnded,
        ):
            try:
                if self._protocol.config.client_side:
                    await stream.inbox_send.send(event)
                else:
                    stream.inbox_send.send_nowait(event)
            except trio.WouldBlock:
                # More than the call may carry (a unary request with a second message): the
                # peer is misbehaving; refuse the stream rather than buffer without bound.
                self.reset_stream(stream, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
                stream.scope.cancel()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass  # the call has finished; late frames are dropped


def set_socket_options(stream: trio.abc.Stream) -> None:
    sock = getattr(stream, "socket", None)
    if isinstance(sock, trio.socket.SocketType):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

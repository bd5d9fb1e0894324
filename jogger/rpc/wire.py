"""gRPC over HTTP/2 on a trio stream: the connection loop we run instead of purerpc's.

The protocol machine (protocol.py: purerpc's, on h2, hardened) parses and frames; this
module does the I/O, on trio, for both ends of a connection:

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
import errno
import logging
import socket
import ssl
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import cast

import h2.errors
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
from purerpc.grpclib.status import Status, StatusCode

from .failures import ConnectionLost, PeerBrokeProtocol
from .protocol import (
    MAX_MESSAGE,
    PREFACE,
    SERVER_FRAME_SIZE,
    SERVER_MAX_STREAMS,
    FrameGuard,
    ProtocolMachine,
    StreamRefused,
    StreamReset,
)
from .throttle import Allowance, LogThrottle

log = logging.getLogger(__name__)
throttled = LogThrottle(log)

SERVER_MAX_MESSAGE = 1 << 20
"""The largest request a server accepts; a Start's argv is limited to far less."""
SERVER_INBOX = 3
"""Events a server's unary call may receive: the request headers, one message, the end."""
SERVER_QUEUED_REQUESTS = 4096
"""Request messages of client-streaming calls a server's connection holds, all its calls
together, before their handlers take them. Flow control bounds their bytes; this bounds
their count, since each costs an event of some 400 bytes, and an empty message is 5 bytes
of window. A call whose message would pass it ends with RESOURCE_EXHAUSTED."""
INITIAL_WINDOW_FACTOR = 2
"""purerpc's stream window is twice the largest message."""
RECEIVE_SIZE = 1 << 16
BULK_RECEIVE = 1 << 20
"""The most ciphertext a client takes from its socket at once (trio's default is 64 KiB):
output streams in 1 MiB messages, and each read costs a pass of the reader loop."""
END_BATCH = 16
"""Calls of a closed connection cancelled in one pass of the event loop (see _end)."""
DRAIN_SIZE = 2 << 20
"""The most plaintext run() takes from TLS records already received, per pass: more than a
BULK_RECEIVE read of ciphertext holds."""
SEND_BATCH = (1 << 20) + (1 << 10)
"""The most one write takes from one stream: a whole 1 MiB Output message and its framing."""
QUEUE_LIMIT = 64 << 10
"""The largest message ``queue_message`` queues whole, to go out with what follows it."""
SOCKET_SEND_BUFFER = 2 << 20
"""SO_SNDBUF of every connection's socket (the kernel's autotuning stays below it)."""
MIN_SHARE = 16 << 10
"""The smallest message size message_size() hands out."""
LINGER = 1.0
"""Seconds a connection closed with GOAWAY still reads (and drops) what the peer sends."""
PEER_RESETS = (4 * SERVER_MAX_STREAMS, 100.0)
"""Streams a peer may reset, or open past the limit, at once and then per second, before
its connection is closed with ENHANCE_YOUR_CALM (the 2023 rapid-reset attack)."""


class _Abusive(Exception):
    """The peer resets or opens streams faster than any client needs to: close with GOAWAY."""


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
    partial_message: bool = False
    """A message is half sent: the stream can only be reset, not ended with a status."""
    refusal: Status | None = None
    """Set when the peer sent what the stream cannot carry; the call must end with it."""
    done: bool = False
    """The server has ended the call (client side): there is nothing left to cancel."""
    request_ended: bool = False
    """The client has half-closed: at a server, its end has arrived; at a client, we sent it."""
    answered: bool = False
    """The server has ended the call, or reset it (client side): nothing more can be sent."""
    holding: bool = False
    """A message of this stream's is being made or waits to be sent (see message_size)."""
    forgotten: bool = False
    """The call is over (``forget()``)."""
    queued: int = 0
    """Request messages in the inbox of a server's client-streaming call, not yet taken."""


class Connection:
    """Both ends' shared machinery. ``run()`` is the reader loop; calls run in other tasks."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        client_side: bool,
        client_streaming: Collection[str] = frozenset(),
    ) -> None:
        """``client_streaming``: the paths of a server's methods whose requests come as a
        stream (client-streaming and bidirectional)."""
        self._transport = stream
        max_message = MAX_MESSAGE if client_side else SERVER_MAX_MESSAGE
        self._protocol = ProtocolMachine(
            GRPCConfiguration(client_side=client_side, max_message_length=max_message),
            client_streaming,
        )
        self._send_lock = trio.Lock()
        # A server shields its calls' writes (see flush); a client does not: its caller
        # (Ctrl-C in jog, a deadline) must be able to give up even on a server that stopped
        # reading, at the price of that connection.
        self._shield_writes = not client_side
        self._write_scope: trio.CancelScope | None = None
        self._streams: dict[int, Stream] = {}
        # Inboxes never block the reader. A server's unary call carries one request: more
        # than that in its inbox is a misbehaving peer. A stream whose window goes back only
        # as its messages are taken (a client's; a server's client-streaming call) holds what
        # the peer may send before we give back window: at most one message per 5 bytes of
        # the stream window (an empty message is 5 bytes), besides the headers and the end.
        # Flow control limits the bytes such streams hold: at a server, all of them together
        # at most SERVER_CONNECTION_WINDOW bytes of messages. At a server, the count of
        # their messages is bounded too (SERVER_QUEUED_REQUESTS, see _deliver), since each
        # costs its event, which a peer sending empty messages would multiply.
        self._deferred_inbox = (
            INITIAL_WINDOW_FACTOR * max_message // 5 + 4
            if client_side
            else SERVER_QUEUED_REQUESTS + SERVER_INBOX
        )
        self._queued = 0
        self.closed = trio.Event()
        self.peer_ready = trio.Event()
        """Set once the peer's first frames (its SETTINGS) have arrived."""
        self.failure: BaseException | None = None
        """Why the transport broke, when it did (for example the TLS alert the peer sent)."""
        self._peer_resets = Allowance(*PEER_RESETS, clock=trio.current_time)
        self._holding = 0
        self._frames = None if client_side else FrameGuard(len(PREFACE), SERVER_FRAME_SIZE)
        self._plaintext: bytearray | None = None
        """A client's buffer for the plaintext of the records it has received (one per
        connection, reused: h2's frame buffer copies what it is given)."""
        if client_side:
            _receive_in_bulk(stream)
            self._plaintext = bytearray(DRAIN_SIZE)

    def message_size(self, stream: Stream, wanted: int) -> int:
        """How big the next message of ``stream`` should be: ``wanted``, shared among the
        streams of this connection that hold a message to send.

        The stream holds its share until ``sent()``. What waits to be written on a connection
        that does not drain (a peer that never reads) then stays near ``wanted`` bytes in
        all (the harmonic sum, at worst), however many streams it carries; a stream alone
        gets it all.
        """
        if stream.forgotten:
            # A follower's reader may ask once more after its call has ended: count
            # nothing, or the share would leak.
            return MIN_SHARE
        if not stream.holding:
            stream.holding = True
            self._holding += 1
        return max(MIN_SHARE, wanted // self._holding)

    def sent(self, stream: Stream) -> None:
        """The stream's message is written: it holds no share any more."""
        if stream.holding:
            stream.holding = False
            self._holding -= 1

    async def start(self) -> None:
        """Send our preface (SETTINGS) now."""
        self.prepare()
        await self._flush(shield=False)  # the connection is not shared yet

    def prepare(self) -> None:
        """Queue our preface without writing it. A server does so: its SETTINGS then go out
        with its acknowledgement of the client's, which a client sends without waiting for
        ours (RFC 9113, 3.4), in one write (``run()`` flushes after reading) where
        ``start()`` would take two: a fifth of a new connection's writes."""
        self._protocol.initiate_connection()

    def new_stream(self, stream_id: int) -> Stream:
        size = self._deferred_inbox if self._protocol.defers(stream_id) else SERVER_INBOX
        send, receive = trio.open_memory_channel[Event](size)
        stream = Stream(stream_id, send, receive)
        self._streams[stream_id] = stream
        return stream

    def forget(self, stream: Stream) -> None:
        """The call is over: drop the stream and give back the window its inbox held."""
        self._queued -= stream.queued
        stream.queued = 0
        self.sent(stream)
        stream.forgotten = True
        self._streams.pop(stream.id, None)
        stream.inbox_send.close()
        self._protocol.release(stream.id)

    def refuse(self, stream_id: int, status: Status | None) -> None:
        """End a stream that will get no call: with ``status``, or reset if None."""
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            if status is None or self._protocol.config.client_side:
                self._protocol.reset_stream(stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            else:
                self._protocol.respond_status(stream_id, status, "+proto")
        self._protocol.release(stream_id)

    async def flush(self) -> None:
        """Write whatever the protocol machine has queued, for a call.

        At a server, shielded once the bytes have left the protocol machine: a write cut
        short breaks the TLS stream, so a call cancelled mid-write would take every other
        call on the connection down with it. Only the end of the connection cuts it
        (``run()`` returning, or cancelled at shutdown, cancels ``_write_scope``); a peer
        that merely reads slowly (a suspended `jog output`) is waited for.
        """
        await self._flush(shield=self._shield_writes)

    async def _flush(self, *, shield: bool) -> None:
        # ``shield=False`` for the connection's own writes (the preface, acks, GOAWAY from
        # run()): cancelling those means the connection is being torn down anyway, and a
        # shield there could not be lifted by anyone.
        if not self._protocol.h2_connection._data_to_send:
            # Nothing queued (purerpc keeps h2's outbound bytes in this bytearray): skip the
            # lock, which costs two scheduling points on every frame we receive.
            return
        async with self._send_lock:
            await self._write_queued(shield=shield)

    async def _write_queued(self, *, shield: bool, body: memoryview | None = None) -> None:
        """Write what the protocol machine has queued; the send lock is held. ``body``: that
        of the DATA frame whose header was queued last (queue_data_header)."""
        if self.closed.is_set():
            raise ConnectionLost
        # Until nothing is left: what the reader queued while we wrote (window updates, acks)
        # is ours to send, since the reader does not wait for the lock (see run()).
        while data := self._protocol.data_to_send():
            with trio.CancelScope(shield=shield) as self._write_scope:
                try:
                    await self._transport.send_all(data)
                    if body is not None:
                        await self._transport.send_all(body)
                        body = None
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self.failure = self.failure or exc.__cause__ or exc
                    raise ConnectionLost from None
            self._write_scope = None
            if self.closed.is_set():
                raise ConnectionLost

    async def send_message(
        self, stream: Stream, payload: bytes, *, compressed: bool = False
    ) -> bool:
        """Send one length-prefixed gRPC message, as fast as flow control lets us;
        ``compressed``: ``payload`` is compressed in the call's grpc-encoding.

        False if the server answered the call (client side) before all of it was sent: a
        server that ended a client stream early never gives its window back, and the rest
        has nobody to read it.
        """
        data = bytes([compressed]) + len(payload).to_bytes(4, "big") + payload
        try:
            return await self._send_data(stream, data)
        except h2.exceptions.StreamClosedError:
            if not self._protocol.config.client_side:
                raise
            # The server answered and reset the stream (a call it ended early) while we
            # wrote: the rest has nobody to read it.
            self._answered(stream)
            return False

    def queue_message(
        self, stream: Stream, payload: bytes, *, compressed: bool = False, end: bool = False
    ) -> bool:
        """Queue one small gRPC message whole, without writing it, when flow control lets all
        of it go now; False (and nothing queued) otherwise: send it with ``send_message``.
        ``end``: the message is the last we send on the stream (its frame carries END_STREAM:
        a client's unary request, which then needs no empty frame after it).

        For a unary call, whose headers are queued before it and whose end after it: the
        next ``flush()`` writes the three in one TLS record and one send, where writing the
        message at once costs a second of each (and a second pass through the send lock).
        What waits in the protocol machine's buffer meanwhile is one message of at most
        QUEUE_LIMIT bytes per call, and the caller flushes right after.
        """
        h2_connection = self._protocol.h2_connection
        size = len(payload) + 5
        if (
            size > QUEUE_LIMIT
            or self.closed.is_set()
            or stream.answered
            or h2_connection.local_flow_control_window(stream.id) < size
        ):
            return False
        data = bytes([compressed]) + len(payload).to_bytes(4, "big") + payload
        frame = h2_connection.max_outbound_frame_size
        for start in range(0, size, frame):
            last = start + frame >= size
            self._protocol.send_data(stream.id, data[start : start + frame], end and last)
        return True

    async def _send_data(self, stream: Stream, message: bytes) -> bool:
        h2_connection = self._protocol.h2_connection
        data = memoryview(message)
        while data:
            if self.closed.is_set():
                raise ConnectionLost
            if stream.answered:
                return False
            if h2_connection.local_flow_control_window(stream.id) <= 0:
                await stream.window_open.wait()
                stream.window_open = trio.Event()
                continue
            async with self._send_lock:
                # Frames are queued only in our turn, just before the write: streams waiting
                # for the connection (a peer that does not read) hold their own message, not
                # copies of it in h2's buffer and in TLS's.
                window = min(h2_connection.local_flow_control_window(stream.id), SEND_BATCH)
                if window <= 0:
                    continue  # other streams used the connection's window meanwhile
                # As many frames as the window allows, then one write: a flush per frame
                # (purerpc's way) costs a TLS write, a send and a scheduler pass per frame.
                batch, data = data[:window], data[window:]
                frame = h2_connection.max_outbound_frame_size
                stream.partial_message = bool(data)
                if len(batch) <= frame:
                    # One frame (the common case: our client takes frames of 2 MiB, more
                    # than an Output message): its body is written as it is, not copied.
                    self._protocol.queue_data_header(stream.id, batch)
                    await self._write_queued(shield=self._shield_writes, body=batch)
                    continue
                for start in range(0, len(batch), frame):
                    self._protocol.send_data(stream.id, bytes(batch[start : start + frame]))
                await self._write_queued(shield=self._shield_writes)
        return True

    def acknowledge(self, event: MessageReceived) -> None:
        """Give the peer back the window a message used, once we have taken it (a client's
        stream; a server's client-streaming call). Written with the next flush."""
        stream = self._streams.get(event.stream_id)
        if stream is not None and stream.queued > 0:
            stream.queued -= 1
            self._queued -= 1
        self._protocol.acknowledge(event.stream_id, event.flow_controlled_length)

    def reset_stream(self, stream: Stream, code: h2.errors.ErrorCodes) -> None:
        stream.reset = True
        self.reset_stream_id(stream.id, code)

    def reset_stream_id(self, stream_id: int, code: h2.errors.ErrorCodes) -> None:
        # Already closed on the wire means there is nothing to reset.
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self._protocol.reset_stream(stream_id, code)
        self._protocol.release(stream_id)

    @property
    def protocol(self) -> GRPCConnection:
        return self._protocol

    def _with_buffered(self, first: bytes | bytearray) -> bytes | bytearray | memoryview:
        """``first`` (what receive_some() returned) and the plaintext of the TLS records
        already received behind it.

        trio's SSLStream returns one TLS record (at most 16 KiB) per receive_some(), and
        each call costs a pass of the scheduler: a third of a client's CPU when streaming.
        Records that are already in its buffer are decrypted here, in one go. Only this
        task reads, and it reads nothing from the socket; anything unusual (a TLS alert,
        close_notify) is left for the next receive_some() to report.

        A client's records are decrypted straight into its reused buffer: the view returned
        is valid until the next call.
        """
        ssl_object = getattr(self._transport, "_ssl_object", None)
        if not isinstance(ssl_object, ssl.SSLObject):
            return first
        if self._plaintext is None:
            return first + self._buffered_plaintext(ssl_object)
        view = memoryview(self._plaintext)
        size = len(first)
        view[:size] = first
        while size < DRAIN_SIZE:
            try:
                # With a buffer, read() returns a count (typeshed says bytes).
                got = cast(int, ssl_object.read(DRAIN_SIZE - size, view[size:]))
            except ssl.SSLError:  # SSLWantReadError: nothing buffered; or an error to report
                break
            if not got:
                break
            size += got
        return view[:size]

    def _buffered_plaintext(self, ssl_object: ssl.SSLObject) -> bytes:
        """What TLS records already received hold, as bytes (a server's connection, which
        keeps no buffer of its own)."""
        chunks = []
        size = 0
        while size < DRAIN_SIZE:
            try:
                chunk = ssl_object.read(RECEIVE_SIZE)
            except ssl.SSLError:  # SSLWantReadError: nothing buffered; or an error to report
                break
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)

    async def run(
        self, on_request: Callable[[RequestReceived, Stream], None] | None = None
    ) -> None:
        """Read from the peer until the connection ends; then cancel every stream.

        ``on_request`` (server side) is called for each new call, with its stream created.
        """
        try:
            while True:
                try:
                    received = await self._transport.receive_some(RECEIVE_SIZE)
                    data = self._with_buffered(received) if received else received
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self.failure = exc.__cause__ or exc
                    return
                if not data:
                    return
                events = await self._receive(data)
                if events is None:
                    return
                if events:
                    # A whole frame has come (its SETTINGS, first), not just some bytes.
                    self.peer_ready.set()
                try:
                    for event in events:
                        await self._dispatch(event, on_request)
                except _Abusive as exc:
                    throttled.log("abusive", logging.WARNING, "closing connection: %s", exc)
                    await self._goaway(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, str(exc))
                    return
                if not self._send_lock.locked():
                    await self._flush(shield=False)
                # Else its holder writes what we queued before it lets go (_write_queued).
                # Waiting for it here could deadlock: with both ends sending bulk (a job's
                # stdin one way, its output the other), each end's writer waits for the
                # peer to read, and each end's reader would wait for its own writer.
        except ConnectionLost:
            return
        finally:
            await self._end()

    async def _end(self) -> None:
        self.closed.set()
        if self._write_scope is not None:
            # The connection is over: a write still waiting for the peer never completes.
            self._write_scope.cancel()
        # Shielded: every call on the connection must be ended, also when we are cancelled
        # ourselves. In batches, with a pass of the loop between them: the calls unwind in
        # the pass after their cancellation, and a peer that closes a connection with 128
        # calls on it must not buy one long pass (the lag probe saw 90 ms for 300 calls).
        with trio.CancelScope(shield=True):
            for count, stream in enumerate(list(self._streams.values()), 1):
                # The connection is gone: whoever serves or awaits this stream must stop.
                stream.scope.cancel()
                stream.inbox_send.close()
                stream.window_open.set()  # and whoever waits to send on it, wakes
                if count % END_BATCH == 0:
                    await trio.lowlevel.checkpoint()

    async def _receive(self, data: bytes | bytearray | memoryview) -> list[Event] | None:
        """What the peer's bytes mean; None once they have ended the connection."""
        try:
            if self._frames is not None:
                self._frames.check(data)
            events: list[Event] = self._protocol.receive_data(data)
        except (ProtocolError, h2.exceptions.ProtocolError, UnicodeDecodeError) as exc:
            # (UnicodeDecodeError: header bytes that are not UTF-8.) h2's errors carry their
            # HTTP/2 code: FRAME_SIZE_ERROR, ENHANCE_YOUR_CALM for an oversized header list...
            code = getattr(exc, "error_code", h2.errors.ErrorCodes.PROTOCOL_ERROR)
            throttled.log("protocol-error", logging.INFO, "closing connection: %s: %s", code, exc)
            self.failure = self.failure or PeerBrokeProtocol(str(exc))
            await self._goaway(code, str(exc))
            return None
        except Exception:
            # A failure in purerpc or h2 we did not foresee: it ends this connection, never
            # the server.
            log.exception("closing connection: internal error reading from the peer")
            await self._goaway(h2.errors.ErrorCodes.INTERNAL_ERROR, "internal error")
            return None
        return events

    async def _goaway(self, code: h2.errors.ErrorCodes, why: str) -> None:
        """Tell the peer why its connection ends (GOAWAY), best effort: it may be gone."""
        # h2 queues a GOAWAY itself for the protocol errors it raises, and then refuses to
        # close a closed connection: either way, what is queued goes out.
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._protocol.h2_connection.close_connection(code, additional_data=why[:200].encode())
        with contextlib.suppress(ConnectionLost):
            await self._flush(shield=False)
        # The connection is over for every call on it: end them now, not after the linger,
        # so that none writes into a closed h2 connection meanwhile.
        await self._end()
        # Closing with the peer's bytes unread makes the kernel send a reset, which can
        # destroy the GOAWAY before the peer reads it. Read and drop for a moment first.
        with trio.move_on_after(LINGER), contextlib.suppress(trio.BrokenResourceError):
            while await self._transport.receive_some(RECEIVE_SIZE):
                pass

    def _peer_reset(self) -> None:
        if not self._peer_resets.take():
            raise _Abusive(f"the peer resets or opens more than {PEER_RESETS[1]:g} streams/s")

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
            if len(self._streams) >= SERVER_MAX_STREAMS:
                # Over the limit we advertised, by way of streams reset faster than their
                # handlers finish: refuse it (the client may retry), and count it.
                self._peer_reset()
                self.reset_stream_id(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                return
            on_request(event, self.new_stream(event.stream_id))
        found = self._streams.get(getattr(event, "stream_id", -1))
        if isinstance(event, StreamRefused):
            self._refused(event, found)
            return
        if found is None:
            return  # a stream we have already finished with
        stream = found
        if isinstance(event, StreamReset):
            if self._protocol.config.client_side and stream.answered:
                # The server has answered, and asks us to stop sending the request (RFC 7540
                # section 8.1): the answer stands.
                stream.reset = True
                return
            if not self._protocol.config.client_side:
                self._peer_reset()
            stream.reset = True
            # The peer gave up on this call: cancel whatever serves or awaits it.
            stream.scope.cancel()
            stream.inbox_send.close()
            self._answered(stream)
            return
        self._deliver(stream, event)

    def _deliver(self, stream: Stream, event: Event) -> None:
        """Put a call's event in its inbox, for whoever serves or awaits the call."""
        if isinstance(event, RequestEnded):
            stream.request_ended = True
        elif isinstance(event, ResponseEnded):
            self._answered(stream)
        elif (
            isinstance(event, MessageReceived)
            and not self._protocol.config.client_side
            and self._protocol.defers(stream.id)
        ):
            if self._queued >= SERVER_QUEUED_REQUESTS:
                # The call ends with this status (see the server's _call); the connection's
                # other calls go on.
                stream.refusal = Status(
                    StatusCode.RESOURCE_EXHAUSTED,
                    f"more than {SERVER_QUEUED_REQUESTS} request messages wait to be taken: "
                    "send fewer, bigger ones",
                )
                stream.scope.cancel()
                stream.inbox_send.close()
                return
            stream.queued += 1
            self._queued += 1
        if isinstance(
            event,
            RequestReceived | MessageReceived | RequestEnded | ResponseReceived | ResponseEnded,
        ):
            try:
                stream.inbox_send.send_nowait(event)
            except trio.WouldBlock:
                # More than the call may carry (a unary request with a second message), or
                # more than flow control allows: the peer is misbehaving. Refuse the stream
                # rather than buffer without bound, or block the reader for every stream.
                self.reset_stream(stream, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
                stream.scope.cancel()
                stream.inbox_send.close()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass  # the call has finished; late frames are dropped

    def _answered(self, stream: Stream) -> None:
        if self._protocol.config.client_side:
            stream.answered = True
            stream.window_open.set()  # a writer waiting for window stops waiting (send_message)

    def _refused(self, event: StreamRefused, stream: Stream | None) -> None:
        throttled.log(
            "stream-refused", logging.INFO, "stream %d refused: %s", event.stream_id, event.reason
        )
        if stream is None:
            self.refuse(event.stream_id, event.status)
        elif self._protocol.config.client_side:
            # Our caller learns why; the server learns that we gave up on the call.
            with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
                stream.inbox_send.send_nowait(ResponseEnded(stream.id, event.status))
            stream.inbox_send.close()
            self._answered(stream)
            self.reset_stream(stream, h2.errors.ErrorCodes.PROTOCOL_ERROR)
        else:
            # The call ends with this status (see the server's _call).
            stream.refusal = event.status
            stream.scope.cancel()


def _receive_in_bulk(stream: trio.abc.Stream) -> None:
    """Make the TLS stream over a socket read BULK_RECEIVE bytes at a time from it.

    trio's SSLStream asks its transport for its default size (64 KiB), which makes a client
    reading a 1 MiB message 16 passes of its reader loop; the socket returns what it has, so
    small answers cost nothing more.
    """
    tcp = getattr(stream, "transport_stream", None)
    if isinstance(tcp, trio.SocketStream):
        tcp.receive_some = _BulkReceive(tcp.socket)  # type: ignore[method-assign,assignment]


class _BulkReceive:
    """A socket stream's ``receive_some``, reading up to BULK_RECEIVE bytes into one reused
    buffer: a fresh megabyte per read would cost its page faults every time. What it
    returns is valid until the next read (SSLStream copies it into its BIO at once)."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._socket = sock
        self._buffer = bytearray(BULK_RECEIVE)

    async def __call__(self, max_bytes: int | None = None) -> memoryview:
        try:
            size = await self._socket.recv_into(self._buffer)
        except OSError as exc:
            # As trio's SocketStream says it.
            if exc.errno in (errno.EBADF, errno.ENOTSOCK):
                raise trio.ClosedResourceError("this socket was already closed") from None
            raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
        return memoryview(self._buffer)[:size]


def set_socket_options(stream: trio.abc.Stream) -> None:
    sock = getattr(stream, "socket", None)
    if isinstance(sock, trio.socket.SocketType):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        # Room in the kernel for a whole 1 MiB Output message and more (Linux doubles it):
        # a smaller buffer takes a message in five sends, each after a pass of the loop.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER)

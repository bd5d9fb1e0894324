"""A bare HTTP/2 client over mutual TLS, for sending what no well-behaved gRPC client sends."""

import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import trio

from jogger.rpc.tls import client_context
from tests.servers import Server


@dataclass
class Outcome:
    """What became of one stream."""

    headers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    reset: int | None = None
    """The RST_STREAM error code, if the server reset the stream."""

    @property
    def grpc_status(self) -> int | None:
        value = self.headers.get("grpc-status")
        return int(value) if value is not None else None

    @property
    def message(self) -> str:
        return urllib.parse.unquote(self.headers.get("grpc-message", ""))


class RawConnection:
    def __init__(self, tls: trio.SSLStream[trio.SocketStream]) -> None:
        self._tls = tls
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=True, header_encoding="utf-8", validate_outbound_headers=False
            )
        )
        self.terminated = False
        self.goaway: h2.errors.ErrorCodes | int | None = None
        """The error code of the server's GOAWAY, once one has arrived."""
        self._received = b""

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self._tls)

    async def flush(self) -> None:
        await self._tls.send_all(self.h2.data_to_send())

    async def send_raw(self, data: bytes) -> None:
        """Bytes the h2 state machine never sees: frames it would refuse to send."""
        await self._tls.send_all(data)

    async def call(
        self,
        path: str,
        body: bytes | None,
        *,
        extra: list[tuple[str | bytes, str | bytes]] = (),  # type: ignore[assignment]
        replace: dict[str, str] | None = None,
    ) -> Outcome:
        """Send one request (HEADERS, then ``body`` as DATA unless None) and await its end."""
        headers = {
            ":method": "POST",
            ":scheme": "https",
            ":path": path,
            ":authority": "localhost",
            "te": "trailers",
            "content-type": "application/grpc+proto",
        }
        headers.update(replace or {})
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, [*headers.items(), *extra], end_stream=body is None)
        if body is not None:
            self.h2.send_data(stream_id, body, end_stream=True)
        await self.flush()
        return await self.wait(stream_id)

    def _sniff(self, data: bytes | bytearray) -> None:
        """Find a GOAWAY among the frames, apart from h2: frames for streams opened behind
        its back make it raise before it reports one."""
        self._received += data
        while len(self._received) >= 9:
            length = int.from_bytes(self._received[:3], "big")
            if len(self._received) < 9 + length:
                return
            frame, self._received = self._received[: 9 + length], self._received[9 + length :]
            if frame[3] == 0x7:  # GOAWAY: last stream id (4 bytes), error code (4 bytes)
                self.goaway = h2.errors._error_code_from_int(int.from_bytes(frame[13:17], "big"))

    async def read_until_closed(self) -> None:
        """Read (without answering: another task may be sending) until the connection ends."""
        try:
            while data := await self._tls.receive_some(1 << 16):
                self._sniff(data)
        except trio.BrokenResourceError:
            pass
        self.terminated = True

    async def wait(self, stream_id: int) -> Outcome:
        """The end of the stream, or of the connection (pass -1 to wait for that)."""
        outcome = Outcome()
        while True:
            try:
                data = await self._tls.receive_some(1 << 16)
            except trio.BrokenResourceError:
                data = b""  # reset after its GOAWAY, say
            if not data:
                self.terminated = True
                return outcome
            self._sniff(data)
            if self.goaway is not None:
                self.terminated = True
                return outcome
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError:
                # Frames for streams we opened behind h2's back: skip them, keep reading.
                continue
            for event in events:
                if getattr(event, "stream_id", None) != stream_id:
                    if isinstance(event, h2.events.ConnectionTerminated):
                        self.terminated = True
                        return outcome
                    continue
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    outcome.headers.update(dict(event.headers))
                elif isinstance(event, h2.events.DataReceived):
                    outcome.data += event.data
                    self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    outcome.reset = int(event.error_code)
                    return outcome
                elif isinstance(event, h2.events.StreamEnded):
                    await self.flush()
                    return outcome
            await self.flush()


async def open_raw(server: Server, user: str = "alice") -> RawConnection:
    """A connection of ``user``'s, TLS done and the HTTP/2 preface sent; close it with aclose."""
    pair = server.pki.user(user)
    context = client_context(server.pki.ca, pair.cert, pair.key)
    tcp = await trio.open_tcp_stream("127.0.0.1", server.port)
    tls = trio.SSLStream(tcp, context, server_hostname="localhost")
    try:
        await tls.do_handshake()
        connection = RawConnection(tls)
        connection.h2.initiate_connection()
        await connection.flush()
    except BaseException:
        await trio.aclose_forcefully(tls)
        raise
    return connection


@asynccontextmanager
async def raw_connection(server: Server, user: str = "alice") -> AsyncIterator[RawConnection]:
    connection = await open_raw(server, user)
    try:
        yield connection
    finally:
        await connection.aclose()


def message(payload: bytes, *, compressed: bool = False) -> bytes:
    """One length-prefixed gRPC message."""
    return bytes([compressed]) + len(payload).to_bytes(4, "big") + payload

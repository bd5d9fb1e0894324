"""A call's request messages at the server, as its handler takes them: the one request of a
unary or server-streaming call, or the stream of a client-streaming or bidirectional one.

A message that arrived compressed is inflated here, when it is taken, within the server's
message size limit (see compression.py).
"""

from collections.abc import AsyncGenerator

import trio
from google.protobuf.message import DecodeError, Message
from purerpc.grpclib.events import MessageReceived, RequestEnded
from purerpc.grpclib.status import StatusCode

from .compression import Compressed, Malformed, TooLarge, inflate
from .errors import RpcError
from .failures import ConnectionLost
from .wire import SERVER_MAX_MESSAGE, Connection, Stream


async def read_request(stream: Stream, request_type: type[Message], patience: float) -> Message:
    """The call's single request message; INVALID_ARGUMENT for anything else.

    DEADLINE_EXCEEDED if it does not arrive within ``patience`` seconds: a stalled client
    holds a call slot only that long.
    """
    with trio.move_on_after(patience):
        return await _read_one(stream, request_type)
    raise RpcError(
        StatusCode.DEADLINE_EXCEEDED, f"the request message did not arrive within {patience:g} s"
    )


async def first_request(
    stream: Stream, patience: float, *, required: bool
) -> MessageReceived | None:
    """A request stream's first message, as received, or None if the client half-closed
    before sending any (INVALID_ARGUMENT if one is ``required``); as ``read_request`` for the
    deadline. Later ones have none: a person typing into a terminal may pause for hours."""
    with trio.move_on_after(patience):
        async for event in stream.inbox:
            if isinstance(event, MessageReceived):
                return event
            if isinstance(event, RequestEnded):
                break
        if required:
            raise RpcError(StatusCode.INVALID_ARGUMENT, "expected at least one request message")
        return None
    raise RpcError(
        StatusCode.DEADLINE_EXCEEDED,
        f"the first request message did not arrive within {patience:g} s",
    )


async def requests(
    connection: Connection,
    stream: Stream,
    request_type: type[Message],
    first: MessageReceived | None,
) -> AsyncGenerator[Message, None]:
    """A request stream's messages, from ``first`` on, until the client half-closes.

    Each request's window goes back to the client when the handler asks for the next one,
    not before: until then the message is still the handler's to deal with (a job's input
    it has not yet taken), and the client must not send more in its place.
    """
    event: MessageReceived | RequestEnded | None = first
    while isinstance(event, MessageReceived):
        yield parse(request_type, event)
        connection.acknowledge(event)
        # (A write only when h2 has queued a window update: it does so once half a
        # window has been taken, not for every message.)
        await connection.flush()
        event = await _next_request(stream)


async def _next_request(stream: Stream) -> MessageReceived | RequestEnded:
    """The stream's next message, or its end."""
    async for event in stream.inbox:
        if isinstance(event, MessageReceived | RequestEnded):
            return event
    # The inbox closes early only with the stream's scope cancelled (a reset, the end of the
    # connection), which the receive above would have raised; should it not have, the call
    # is over all the same.
    raise ConnectionLost


def parse(request_type: type[Message], event: MessageReceived) -> Message:
    data = event.data
    if isinstance(data, Compressed):
        try:
            data = inflate(data, SERVER_MAX_MESSAGE)
        except TooLarge as exc:
            raise RpcError(StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        except Malformed as exc:
            raise RpcError(
                StatusCode.INVALID_ARGUMENT, f"malformed compressed message: {exc!s:.200}"
            ) from None
    message = request_type()
    try:
        message.ParseFromString(data)
    except DecodeError:
        raise RpcError(StatusCode.INVALID_ARGUMENT, "malformed request message") from None
    return message


async def _read_one(stream: Stream, request_type: type[Message]) -> Message:
    message: Message | None = None
    async for event in stream.inbox:
        if isinstance(event, MessageReceived):
            if message is not None:
                raise RpcError(StatusCode.INVALID_ARGUMENT, "expected one request message")
            message = parse(request_type, event)
        elif isinstance(event, RequestEnded):
            break
    if message is None:
        raise RpcError(StatusCode.INVALID_ARGUMENT, "expected one request message")
    return message

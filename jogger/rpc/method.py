"""What a server serves: methods, the handlers behind them, and what a handler is told of its
caller; checked against the service as its proto declares it."""

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from .auth import Identity


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler knows about its caller: only what the verified certificate says."""

    identity: Identity
    peer: str
    method: str = ""
    """The gRPC path called, ``/jogger.v1.Jobs/Start``."""
    message_size: Callable[[int], int] = int
    """How big the next response message should be, at most the size asked for: a
    connection carrying many busy streams gives each a share (``Connection.message_size``)."""
    draining: trio.Event = field(default_factory=trio.Event)
    """Set once the server drains at shutdown. A call that only its client would end (a
    health watch) ends itself then, rather than hold the shutdown up for the whole drain
    timeout; the others finish as they would."""


UnaryHandler = Callable[[Call, Any], Awaitable[Message]]
StreamHandler = Callable[[Call, Any], AsyncIterator[Message]]
ClientStreamHandler = Callable[[Call, AsyncIterator[Any]], Awaitable[Message]]
BidiHandler = Callable[[Call, AsyncIterator[Any]], AsyncIterator[Message]]


@dataclass(frozen=True, slots=True)
class Method:
    """A handler of one kind: ``unary`` (one request, one response), ``stream`` (one request,
    a stream of responses), ``client_stream`` (a stream of requests, one response) or
    ``bidi`` (a stream of requests, a stream of responses).

    A client-streaming or bidirectional handler takes its requests from an async iterator,
    which ends when the client half-closes. A request's flow control window goes back to
    the client only when the handler asks for the next one: a handler that stops asking
    makes the client wait, and holds at most one stream window of its requests. A
    bidirectional handler's responses go out one at a time, each once flow control lets
    it: one that answers each request before it asks for the next holds one of each.
    """

    request_type: type[Message]
    unary: UnaryHandler | None = None
    stream: StreamHandler | None = None
    client_stream: ClientStreamHandler | None = None
    bidi: BidiHandler | None = None

    @property
    def streams_requests(self) -> bool:
        """Its requests come as a stream (client-streaming or bidirectional)."""
        return self.client_stream is not None or self.bidi is not None


def service_methods(
    service: ServiceDescriptor, handlers: Mapping[str, Method]
) -> dict[str, Method]:
    """``handlers`` (keyed by method name) keyed by gRPC path, once checked against the
    service's proto: the same names, request types and streaming. RuntimeError otherwise."""
    if set(service.methods_by_name) != set(handlers):
        raise RuntimeError(f"{service.full_name}: handlers do not match the proto")
    for name, method in handlers.items():
        proto = service.methods_by_name[name]
        kind = {
            (False, False): method.unary,
            (False, True): method.stream,
            (True, False): method.client_stream,
            (True, True): method.bidi,
        }[(proto.client_streaming, proto.server_streaming)]
        kinds = [method.unary, method.stream, method.client_stream, method.bidi]
        if (
            method.request_type.DESCRIPTOR.full_name != proto.input_type.full_name
            or kind is None
            or kinds.count(None) != len(kinds) - 1
        ):
            raise RuntimeError(f"{service.full_name}.{name}: handler does not match the proto")
    return {f"/{service.full_name}/{name}": method for name, method in handlers.items()}

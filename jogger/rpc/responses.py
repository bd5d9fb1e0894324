"""A call's response message from its bytes, as both clients (channel.py on trio, and
blocking.py) read it."""

from typing import TypeVar

from google.protobuf.message import DecodeError, Message
from purerpc.grpclib.status import StatusCode

from .compression import Compressed, Malformed, TooLarge, inflate
from .errors import RpcError
from .protocol import MAX_MESSAGE

M = TypeVar("M", bound=Message)


def parse_response(response_type: type[M], data: bytes) -> M:
    """A response message; compressed, if the server compressed it though we do not ask
    (see compression.py), it is inflated within our message size limit."""
    try:
        if isinstance(data, Compressed):
            data = inflate(data, MAX_MESSAGE)
        message = response_type()
        message.ParseFromString(data)
    except TooLarge as exc:
        raise RpcError(StatusCode.RESOURCE_EXHAUSTED, f"the server's response: {exc}") from None
    except (Malformed, DecodeError):
        raise RpcError(StatusCode.INTERNAL, "malformed response message") from None
    return message

"""gRPC status codes and the one error type that carries them across the wire."""

from purerpc.grpclib.status import StatusCode

__all__ = ["RpcError", "StatusCode", "status_code"]


class RpcError(Exception):
    """A call ended with a non-OK gRPC status: raised by handlers, and by the client."""

    def __init__(self, code: StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def status_code(value: int) -> StatusCode:
    """The code a peer's ``grpc-status`` names; UNKNOWN for a number gRPC does not define
    (as the gRPC spec has clients read it)."""
    try:
        return StatusCode(value)
    except ValueError:
        return StatusCode.UNKNOWN

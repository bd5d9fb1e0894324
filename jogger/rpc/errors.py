"""gRPC status codes and the one error type that carries them across the wire."""

from purerpc.grpclib.status import StatusCode

__all__ = ["RpcError", "StatusCode"]


class RpcError(Exception):
    """A call ended with a non-OK gRPC status: raised by handlers, and by the client."""

    def __init__(self, code: StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

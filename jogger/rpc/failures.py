"""How a connection fails, in a user's words: which side rejected what.

Both clients use these, trio's (channel.py, wire.py) and the blocking one (blocking.py);
nothing here imports trio.
"""

import os
import socket


class PeerBrokeProtocol(Exception):
    """The peer sent what HTTP/2 or gRPC forbids (an oversized header list, a malformed
    frame), and we closed the connection; ``str()`` is h2's or purerpc's reason."""


class ConnectionLost(Exception):
    """The peer closed the connection, or it broke."""


class TransportError(Exception):
    """The connection could not be made or broke; ``str()`` says why, in a user's words."""


class ServerCertificateRejected(TransportError):
    """We did not accept the server's certificate; ``detail`` is OpenSSL's reason
    ("self-signed certificate in certificate chain", "Hostname mismatch, ...")."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"we rejected the server's certificate: {detail}")
        self.detail = detail


def failure_error(exc: BaseException) -> TransportError:
    """A TLS or socket failure as the TransportError that says which side rejected what."""
    text = str(exc)
    if isinstance(exc, PeerBrokeProtocol):
        return TransportError(
            f"the server sent a response we refuse ({text[:100]}); we closed the connection"
        )
    if "CERTIFICATE_VERIFY_FAILED" in text:
        detail = text.split("certificate verify failed:", 1)[-1].split("(", maxsplit=1)[0]
        return ServerCertificateRejected(detail.strip().rstrip("."))
    return TransportError(describe_failure(exc))


def describe_failure(exc: BaseException) -> str:
    """A TLS or socket failure, in words that say which side rejected what."""
    text = str(exc)
    if "alert certificate required" in text:
        return "the server requires a client certificate and got none"
    if " alert " in text:
        reason = text.split(" alert ", 1)[1].split("(", maxsplit=1)[0].strip()
        return f"the server rejected our client certificate (TLS alert: {reason})"
    if isinstance(exc, EOFError) or "EOF" in text:
        return "the server closed the connection during TLS setup (see the server's log)"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        detail = text.split("certificate verify failed:", 1)[-1].split("(", maxsplit=1)[0].strip()
        return f"we rejected the server's certificate: {detail}"
    return text or type(exc).__name__


def connect_reason(exc: BaseException) -> str:
    """Why no address of the server took our connection: each attempt's reason, once.

    trio reports "all attempts failed" and keeps each attempt's error as the cause; the
    blocking client's ``socket.create_connection(all_errors=True)`` raises them as a group.
    """
    cause = exc if isinstance(exc, BaseExceptionGroup) else exc.__cause__
    attempts = cause.exceptions if isinstance(cause, BaseExceptionGroup) else [cause or exc]
    reasons = {_reason(a) for a in attempts if isinstance(a, OSError)}
    return ", ".join(sorted(reasons)) or str(exc)


def _reason(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        # The resolver's own numbers, which os.strerror calls "Unknown error -2".
        return exc.strerror or str(exc)
    return os.strerror(exc.errno) if exc.errno else str(exc)

"""What the transport tells whoever watches it (the server's metrics), in words of its own.

As the engine's (engine/observer.py): plain calls to an ``RpcObserver`` whose methods here
do nothing, made in the server's trio thread once per event; each must return at once and
never raise. No metrics library is imported here. Every label it passes comes from a fixed
set (the methods served, the status codes, the causes and limits below): a peer can make
none up.
"""

import ssl
from dataclasses import dataclass
from enum import StrEnum

from .auth import Identity

UNKNOWN_METHOD = "unknown"
"""The method of a call to a path the server does not serve."""


class Cause(StrEnum):
    """Why a connection's handshake did not admit it."""

    CERTIFICATE = "certificate"
    """The client's certificate: TLS would not verify it (another CA, expired, none sent),
    or our own checks rejected it (auth.py)."""
    TLS = "tls"
    """A TLS handshake that failed otherwise: not TLS at all, no common protocol or cipher,
    a peer that hung up."""
    TIMEOUT = "timeout"
    """No TLS handshake and HTTP/2 preface within the connection's deadline."""
    EVICTED = "evicted"
    """Closed in its handshake to make room in a full handshake table (admission.py)."""


ADMISSION_LIMITS = (
    "max_connections",
    "max_handshakes",
    "max_handshakes_per_host",
    "max_handshakes_per_network",
    "max_refused_per_host",
    "max_connections_per_user",
    "max_calls_per_user",
    "draining",
)
"""What admission refuses by: the TransportLimits field, or "draining" (shutting down)."""

_CERTIFICATE_REASONS = frozenset(
    {
        "CERTIFICATE_VERIFY_FAILED",
        "PEER_DID_NOT_RETURN_A_CERTIFICATE",
        "NO_CERTIFICATE_RETURNED",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    }
)


class RpcObserver:
    """Events of an RpcServer; subclass and override the ones to count."""

    def call_ended(self, method: str, code: str, seconds: float, identity: Identity | None) -> None:
        """A call to ``method`` (its gRPC path, or UNKNOWN_METHOD) ended with status
        ``code`` (a StatusCode's name) after ``seconds``. ``identity``: its caller's, None
        for a peer whose certificate was refused."""

    def call_refused(self, method: str, code: str, identity: Identity | None) -> None:
        """A call was refused before it began (a limit, or draining: see admission.py)."""

    def handshake_refused(self, cause: Cause) -> None:
        """A connection's handshake did not admit it."""

    def admission_refused(self, limit: str) -> None:
        """Admission refused a connection or a call, by one of ADMISSION_LIMITS."""


NOBODY = RpcObserver()
"""Nobody watching."""


@dataclass(frozen=True, slots=True)
class TransportLoad:
    """What the server holds at one moment (RpcServer.load)."""

    connections: int
    """Open connections, those still in their handshake included."""
    handshakes: int
    """Connections still in their TLS handshake."""
    calls: int
    """Calls in flight."""


def handshake_cause(error: BaseException) -> Cause:
    """CERTIFICATE or TLS, for the error a failed TLS handshake raised (its cause)."""
    failure = error.__cause__ or error
    if isinstance(failure, ssl.SSLError) and failure.reason in _CERTIFICATE_REASONS:
        return Cause.CERTIFICATE
    return Cause.TLS

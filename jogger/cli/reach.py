"""Reaching the server, for both of jog's clients (trio's in connect.py, the blocking one in
oneshot.py): the TLS context from the settings' files, and what a failure to connect, or a
call's error, means for users. Nothing here imports trio."""

import ssl

from ..rpc.errors import RpcError, StatusCode
from ..rpc.failures import ServerCertificateRejected, TransportError
from ..rpc.tls import TlsFileError, client_context
from .exits import CliError, Exit
from .settings import Settings


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The client's TLS context from the settings' files. Raises CliError (Exit.USAGE),
    naming the file that would not do and where it was set."""
    try:
        return client_context(settings.ca, settings.cert, settings.key)
    except TlsFileError as exc:
        if exc.role is None:
            raise CliError(str(exc), Exit.USAGE) from None
        source = settings.sources[exc.role]
        raise CliError(f"{source.quote(exc.path)}: {exc.reason}", Exit.USAGE) from None


def connection_error(exc: TransportError | RpcError, settings: Settings, where: str) -> CliError:
    """What a failure on the connection to ``where`` means for users, and the exit code."""
    if isinstance(exc, ServerCertificateRejected):
        hint = _server_certificate_hint(exc.detail, settings)
        return CliError(f"{where}: {exc}; {hint}", Exit.UNREACHABLE)
    if isinstance(exc, TransportError):
        return CliError(
            f"{where}: {exc}{_client_certificate_hint(str(exc), settings)}", Exit.UNREACHABLE
        )
    return _rpc_error(exc, where)


def _client_certificate_hint(text: str, settings: Settings) -> str:
    if "certificate revoked" in text:
        cert = settings.sources["cert"].quote(settings.cert)
        return f"; {cert} has been revoked: ask the server's operator for a new certificate"
    return ""


def _server_certificate_hint(detail: str, settings: Settings) -> str:
    if "mismatch" in detail:
        return f"its certificate does not name {settings.host}: connect by a name it holds"
    if "expired" in detail:
        return "its certificate has expired: the server needs a new one"
    return (
        f"is {settings.sources['ca']} ({settings.ca}) the CA that signed the server's certificate?"
    )


def _rpc_error(exc: RpcError, where: str) -> CliError:
    if exc.code == StatusCode.UNAUTHENTICATED:
        return CliError(f"{where}: the server rejected us: {exc.message}", Exit.UNREACHABLE)
    if exc.code == StatusCode.UNAVAILABLE:
        return CliError(f"{where}: unavailable: {exc.message}", Exit.UNREACHABLE)
    return CliError(exc.message)

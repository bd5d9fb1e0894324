"""The server's TLS material as one unit, read whole and replaced whole.

What a handshake is made with (the SSLContext: the CA bundle, the server's certificate and
key, the CRLs) and what auth.py checks the client's certificate against afterwards (the CA
certificates, the CRLs) must come from the same files, read at the same time: a connection
takes the ``ServerTls`` current when it is accepted and keeps it. Loading checks everything
it can before anything is used, so that a reload (SIGHUP) that fails leaves the old
material in place, whole.
"""

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from .certs import format_serial
from .crl import CrlError, Revocations, check, parse_crls
from .tls import Role, TlsFileError, server_context, unreadable


@dataclass(frozen=True, slots=True)
class ServerTls:
    """A server's TLS material: the context of its handshakes, the CA certificates a client
    certificate must be issued by directly, and the CRLs in force (None: no ``--crl``)."""

    context: ssl.SSLContext
    issuers: tuple[x509.Certificate, ...]
    certificate: x509.Certificate
    """The server's own (for the log)."""
    revocations: Revocations | None = None

    def describe(self) -> str:
        """One line for the log: the server's certificate, the CAs, the CRLs."""
        cert = self.certificate
        cas = len(self.issuers)
        line = (
            f"certificate serial={format_serial(cert.serial_number)} "
            f"subject={cert.subject.rfc4514_string()!r} "
            f"not_after={cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ} "
            f"ca_certificates={cas}"
        )
        return line + (f" crl={self.revocations.describe()!r}" if self.revocations else "")


class TlsHolder:
    """The material new connections are served with, replaceable as a unit.

    The rpc server reads ``current`` once per accepted connection, for its handshake and
    its certificate's check alike; a replacement reaches only the connections accepted
    after it, and those made before keep theirs (and their calls) untouched.
    """

    def __init__(self, current: ServerTls) -> None:
        self.current = current


def load_server_tls(
    ca: Path,
    cert: Path,
    key: Path,
    crl: Path | None = None,
    *,
    now: datetime.datetime | None = None,
) -> ServerTls:
    """Read and check the server's TLS files; TlsFileError names the one that will not do
    (its ``role``: ca, cert, key or crl) and says why.

    Each file is read before and after OpenSSL reads it: should one change in between (an
    operator's copy half-way), this fails rather than pairing, say, the old CRL in OpenSSL
    with the new one in auth.py.
    """
    files: list[tuple[Role, Path]] = [("ca", ca), ("cert", cert), ("key", key)]
    if crl is not None:
        files.append(("crl", crl))
    before = _read(files)
    try:
        # Before OpenSSL sees it: a certificate in a CRL file would be a CA to OpenSSL.
        crls = parse_crls(before["crl"]) if crl is not None else None
    except CrlError as exc:
        raise TlsFileError("crl", crl, str(exc)) from None
    context = server_context(ca, cert, key, crl)
    issuers = tuple(_certificates("ca", ca, before["ca"]))
    certificate = _certificates("cert", cert, before["cert"])[0]
    revocations = None
    if crls is not None:
        try:
            revocations = check(crls, issuers, now or datetime.datetime.now(datetime.UTC))
        except CrlError as exc:
            raise TlsFileError("crl", crl, str(exc)) from None
    if _read(files) != before:
        raise TlsFileError(
            None, None, "the TLS files changed while they were read; try again once written"
        )
    return ServerTls(context, issuers, certificate, revocations)


def _certificates(role: Role, path: Path, data: bytes) -> list[x509.Certificate]:
    """What OpenSSL took, as ``cryptography`` reads it (which is stricter, rarely)."""
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TlsFileError(role, path, f"a certificate in it is malformed: {exc}") from None


def _read(files: list[tuple[Role, Path]]) -> dict[Role, bytes]:
    contents: dict[Role, bytes] = {}
    for role, path in files:
        try:
            contents[role] = path.read_bytes()
        except OSError as exc:
            raise unreadable(role, path, exc) from None
    return contents

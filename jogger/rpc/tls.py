"""Mutual TLS contexts for both ends.

ECDSA P-256 keys and SHA-256 signatures throughout (see certs.py). TLS 1.3 is preferred;
TLS 1.2 is allowed with ECDHE-ECDSA AEAD suites only. ALPN is ``h2`` on both sides, session
tickets are off, and VERIFY_X509_STRICT is on (so certificates need subject and authority
key identifiers). OpenSSL's own checks are not enough for client certificates: auth.py
checks them again after the handshake.
"""

import ssl
from pathlib import Path
from typing import Literal

Role = Literal["ca", "cert", "key", "crl"]

TLS12_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ]
)


class TlsFileError(Exception):
    """A certificate or key file that cannot be used: which one (``role``), and why."""

    def __init__(self, role: Role | None, path: Path | None, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.role = role
        self.path = path
        self.reason = reason


def _base_context(purpose: ssl.Purpose, ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(purpose, cafile=str(ca))
        context.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise diagnose(ca, cert, key, exc) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.options |= ssl.OP_NO_TICKET | ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(["h2"])
    return context


def server_context(ca: Path, cert: Path, key: Path, crl: Path | None = None) -> ssl.SSLContext:
    """Requires a client certificate signed by ``ca``, and not revoked by the ``crl`` file
    (one CRL for each CA of ``ca``: see crl.py, which checks the file first)."""
    context = _base_context(ssl.Purpose.CLIENT_AUTH, ca, cert, key)
    context.check_hostname = False
    if crl is not None:
        try:
            context.load_verify_locations(cafile=str(crl))
        except (ssl.SSLError, OSError) as exc:
            raise TlsFileError("crl", crl, f"OpenSSL refused it: {_reason(exc)}") from None
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    # OP_NO_TICKET covers TLS 1.2 only; a TLS 1.3 server sends tickets unless told 0. A
    # resumed session would skip the client certificate's check by our auth.py.
    context.num_tickets = 0
    return context


def client_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Trusts only ``ca`` (not the system's roots) and checks the server's name in its SAN."""
    context = _base_context(ssl.Purpose.SERVER_AUTH, ca, cert, key)
    context.check_hostname = True
    return context


def diagnose(ca: Path, cert: Path, key: Path, error: Exception) -> TlsFileError:
    """Which of the three files OpenSSL refused, and why, in words rather than its codes
    (``KEY_VALUES_MISMATCH``, ``NO_CERTIFICATE_OR_CRL_FOUND``). Only on failure: it imports
    ``cryptography``."""
    from cryptography import x509  # noqa: PLC0415 - the error path only
    from cryptography.exceptions import UnsupportedAlgorithm  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    files: list[tuple[Role, Path]] = [("ca", ca), ("cert", cert), ("key", key)]
    contents: dict[Role, bytes] = {}
    for role, path in files:
        try:
            contents[role] = path.read_bytes()
        except OSError as exc:
            return unreadable(role, path, exc)
    certificates: dict[Role, x509.Certificate] = {}
    kinds: list[tuple[Role, Path, str]] = [
        ("ca", ca, "CA certificate"),
        ("cert", cert, "certificate"),
    ]
    for role, path, what in kinds:
        try:
            certificates[role] = x509.load_pem_x509_certificates(contents[role])[0]
        except ValueError:
            return TlsFileError(
                role, path, f"not a {what} (no PEM '-----BEGIN CERTIFICATE-----' block in it)"
            )
    try:
        private = serialization.load_pem_private_key(contents["key"], password=None)
    except TypeError:
        return TlsFileError("key", key, "the key is encrypted; jogger needs an unencrypted key")
    except (ValueError, UnsupportedAlgorithm):
        return TlsFileError(
            "key", key, "not a private key (no PEM '-----BEGIN PRIVATE KEY-----' block in it)"
        )
    public = (
        certificates["cert"]
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    mine = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != mine:
        return TlsFileError("key", key, f"not the private key of the certificate {cert}")
    return TlsFileError(None, None, f"OpenSSL refused the TLS files: {_reason(error)}")


def unreadable(role: Role, path: Path, error: OSError) -> TlsFileError:
    return TlsFileError(role, path, f"cannot read it: {error.strerror or error}")


def _reason(error: Exception) -> str:
    return error.reason if isinstance(error, ssl.SSLError) and error.reason else str(error)

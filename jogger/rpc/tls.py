"""Mutual TLS: the contexts both ends use, and the checks OpenSSL does not make.

ECDSA P-256 keys and SHA-256 signatures throughout. TLS 1.3 is preferred; TLS 1.2 is allowed
with ECDHE-ECDSA AEAD suites only. ALPN is ``h2`` on both sides, session tickets are off, and
VERIFY_X509_STRICT is on (so certificates need subject and authority key identifiers).

OpenSSL verifies the chain, the dates and (for clients) the purpose, but it accepts a client
certificate with no ExtendedKeyUsage, no KeyUsage, or CA:true. ``identify_client`` checks
the verified DER certificate again with ``cryptography`` and derives the caller's identity
from it; nothing else (no request metadata) ever names the caller.
"""

import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TLS12_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ]
)
_E = TypeVar("_E", bound=x509.ExtensionType)
USERNAME = re.compile(r"[a-z_][a-z0-9_.-]{0,63}")
ADMIN_UNIT = "admin"


class CertificateRejected(Exception):
    """The peer's certificate was verified by OpenSSL but fails our own rules."""


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    admin: bool


def _base_context(purpose: ssl.Purpose, ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(purpose, cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.options |= ssl.OP_NO_TICKET | ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(["h2"])
    return context


def server_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Requires a client certificate signed by ``ca``."""
    context = _base_context(ssl.Purpose.CLIENT_AUTH, ca, cert, key)
    context.check_hostname = False
    return context


def client_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Trusts only ``ca`` (not the system's roots) and checks the server's name in its SAN."""
    context = _base_context(ssl.Purpose.SERVER_AUTH, ca, cert, key)
    context.check_hostname = True
    return context


def identify_client(der: bytes | None) -> Identity:
    """The caller named by a verified client certificate; raises CertificateRejected."""
    if der is None:
        raise CertificateRejected("no client certificate")
    cert = x509.load_der_x509_certificate(der)
    constraints = _extension(cert, x509.BasicConstraints, "BasicConstraints")
    key_usage = _extension(cert, x509.KeyUsage, "KeyUsage")
    usages = _extension(cert, x509.ExtendedKeyUsage, "ExtendedKeyUsage")
    if constraints.ca:
        raise CertificateRejected("client certificate is a CA certificate")
    if not key_usage.digital_signature:
        raise CertificateRejected("client certificate key usage lacks digitalSignature")
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise CertificateRejected("client certificate is not for client authentication")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CertificateRejected("client certificate key is not ECDSA P-256")
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise CertificateRejected("client certificate must have exactly one Common Name")
    user = names[0].value
    if not isinstance(user, str) or not USERNAME.fullmatch(user):
        raise CertificateRejected(f"client certificate Common Name {user!r} is not a username")
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return Identity(user=user, admin=any(unit.value == ADMIN_UNIT for unit in units))


def _extension(cert: x509.Certificate, kind: type[_E], name: str) -> _E:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        raise CertificateRejected(f"client certificate has no {name} extension") from None

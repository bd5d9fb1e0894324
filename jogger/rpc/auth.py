"""Who is calling: derived from the verified client certificate, and from nothing else.

OpenSSL verifies the chain, the dates and the purpose, but it accepts a client certificate
with no ExtendedKeyUsage, no KeyUsage, or CA:true, and a chain through any CA:true
certificate the client sends along (a client certificate with CA:true, from a CA without
pathLen 0, could mint others for any name, OU=admin included). ``identify_client`` checks the
verified DER certificate again with ``cryptography``: issued directly by one of the server's
configured CA certificates (no intermediates the operator did not list), CA:false,
digitalSignature, clientAuth, an EC P-256 key and exactly one Common Name that is a sane
username; and not revoked, when the server has CRLs (as OpenSSL checked during the
handshake: the two agree). ``OU=admin`` makes the caller an administrator.

The identity also names the certificate itself, by serial number and SHA-256 fingerprint (as
``openssl x509 -noout -serial -fingerprint -sha256`` prints them), for the audit log: worked
out once, when the connection is identified, not per call.
"""

import hashlib
import re
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .certs import format_serial
from .crl import Revocations

_E = TypeVar("_E", bound=x509.ExtensionType)
USERNAME = re.compile(r"[a-z_][a-z0-9_.-]{0,63}")
ADMIN_UNIT = "admin"


class CertificateRejected(Exception):
    """The peer's certificate was verified by OpenSSL but fails our own rules."""


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    admin: bool
    serial: str = ""
    """The certificate's serial number, in hex (empty for an identity made without one)."""
    fingerprint: str = ""
    """The SHA-256 fingerprint of the certificate's DER, colon-separated hex."""


@dataclass(frozen=True, slots=True)
class Presented:
    """What a certificate that was refused says of itself, unverified: for the record."""

    serial: str
    fingerprint: str
    common_name: str | None


@dataclass(frozen=True, slots=True)
class AuthenticationFailure:
    """A peer that did not prove who it is: where from, why, and the certificate it showed
    when we have it. OpenSSL keeps no certificate it refused in the handshake (an unknown CA,
    expired, revoked), so only one that passed OpenSSL and failed our own rules is here."""

    peer: str
    reason: str
    certificate: Presented | None = None


OnAuthenticationFailure = Callable[[AuthenticationFailure], None]
"""Told of every authentication failure, synchronously; must not raise or block."""


def refused_in_handshake(peer: str, error: BaseException | None) -> AuthenticationFailure | None:
    """The authentication failure of a TLS handshake that failed with ``error``; None when
    it failed for another reason (the peer left, spoke no TLS, refused our certificate)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return AuthenticationFailure(peer, f"client certificate refused: {error.verify_message}")
    if isinstance(error, ssl.SSLError) and error.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return AuthenticationFailure(peer, "no client certificate")
    return None


def rejected(peer: str, der: bytes | None, reason: str) -> AuthenticationFailure:
    """The authentication failure of a certificate OpenSSL accepted and we did not."""
    return AuthenticationFailure(peer, reason, presented(der) if der else None)


def serial_text(serial: int) -> str:
    """A serial number as ``openssl x509 -serial`` prints it: uppercase hex, whole bytes."""
    digits = f"{abs(serial):X}"
    return ("-" if serial < 0 else "") + ("0" * (len(digits) % 2)) + digits


def fingerprint_text(der: bytes) -> str:
    """The SHA-256 fingerprint of ``der`` as ``openssl x509 -fingerprint -sha256`` prints it."""
    return ":".join(f"{byte:02X}" for byte in hashlib.sha256(der).digest())


def presented(der: bytes) -> Presented | None:
    """The serial, fingerprint and Common Name of a certificate we refused; None if ``der``
    is not a certificate at all."""
    try:
        cert = x509.load_der_x509_certificate(der)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        serial = cert.serial_number
    except ValueError:
        return None
    name = names[0].value if len(names) == 1 else None
    common_name = name if isinstance(name, str) else None
    return Presented(serial_text(serial), fingerprint_text(der), common_name)


def identify_client(
    der: bytes | None,
    issuers: Sequence[x509.Certificate],
    revocations: Revocations | None = None,
) -> Identity:
    """The caller named by a verified client certificate, which one of ``issuers`` (the
    server's CA certificates) must have signed itself, and its CRL in ``revocations`` must
    not list; raises CertificateRejected."""
    if der is None:
        raise CertificateRejected("no client certificate")
    cert = x509.load_der_x509_certificate(der)
    signers = [issuer for issuer in issuers if _issued_by(cert, issuer)]
    if not signers:
        raise CertificateRejected(
            "client certificate was not issued by the server's CA itself (a chain through "
            "another CA is accepted only when that CA is in the server's --ca-cert file)"
        )
    if revocations is not None and revocations.revoked(cert, signers):
        serial = format_serial(cert.serial_number)
        raise CertificateRejected(f"client certificate serial {serial} has been revoked")
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
    return Identity(
        user=user,
        admin=any(unit.value == ADMIN_UNIT for unit in units),
        serial=serial_text(cert.serial_number),
        fingerprint=fingerprint_text(der),
    )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _extension(cert: x509.Certificate, kind: type[_E], name: str) -> _E:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        raise CertificateRejected(f"client certificate has no {name} extension") from None

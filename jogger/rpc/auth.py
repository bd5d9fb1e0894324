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
"""

import re
from collections.abc import Sequence
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
    return Identity(user=user, admin=any(unit.value == ADMIN_UNIT for unit in units))


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

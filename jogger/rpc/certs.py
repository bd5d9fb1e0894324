"""Development certificates: a CA, a server certificate and user certificates.

Every key is ECDSA P-256 and every signature SHA-256. The extensions are the ones our TLS
checks require: the CA has BasicConstraints CA:true and keyCertSign; leaves have CA:false,
digitalSignature, and serverAuth (server) or clientAuth (users) as ExtendedKeyUsage; all carry
subject and authority key identifiers, as VERIFY_X509_STRICT demands. Keys are written 0600.
"""

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 365
LEAF_DAYS = 90


@dataclass(frozen=True)
class Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, unit: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "jogger")]
    if unit is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _validity(
    lifetime: datetime.timedelta, not_before: datetime.datetime | None
) -> tuple[datetime.datetime, datetime.datetime]:
    """From ``not_before`` (default: 5 minutes ago, for clocks a little behind ours) until
    ``lifetime`` after it (default: after now, so that a short lifetime is all there)."""
    if not_before is not None:
        return not_before, not_before + lifetime
    now = datetime.datetime.now(datetime.UTC)
    return now - datetime.timedelta(minutes=5), now + lifetime


def make_ca(common_name: str = "jogger dev CA", *, path_length: int | None = 0) -> Issuer:
    """A self-signed CA. Ours may sign only leaves (pathLen 0); tests make CAs as other
    tools do, without that constraint."""
    key = new_key()
    start, end = _validity(datetime.timedelta(days=CA_DAYS), None)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            _key_usage(signs_data=False, signs_certs=True, signs_crls=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return Issuer(cert, key)


def _key_usage(*, signs_data: bool, signs_certs: bool, signs_crls: bool) -> x509.KeyUsage:
    """Digital signatures (a TLS leaf), certificate signing (a CA), CRL signing."""
    return x509.KeyUsage(
        digital_signature=signs_data,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certs,
        crl_sign=signs_crls,
        encipher_only=False,
        decipher_only=False,
    )


def make_leaf(
    issuer: Issuer,
    common_name: str,
    *,
    usages: list[x509.ObjectIdentifier],
    unit: str | None = None,
    dns: list[str] = (),  # type: ignore[assignment]
    ips: list[str] = (),  # type: ignore[assignment]
    ca: bool = False,
    key_usage: bool = True,
    lifetime: datetime.timedelta = datetime.timedelta(days=LEAF_DAYS),
    not_before: datetime.datetime | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate signed by ``issuer``. The odd options exist to build bad certificates
    for tests (a client cert that is a CA, that has no KeyUsage, that has expired)."""
    key = key or new_key()
    start, end = _validity(lifetime, not_before)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, unit))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
    )
    if key_usage:
        builder = builder.add_extension(
            _key_usage(signs_data=True, signs_certs=ca, signs_crls=False),
            critical=True,
        )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer.key, hashes.SHA256()), key


def make_server(
    issuer: Issuer, dns: list[str], ips: list[str]
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return make_leaf(
        issuer,
        dns[0] if dns else ips[0],
        usages=[ExtendedKeyUsageOID.SERVER_AUTH],
        dns=dns,
        ips=ips,
    )


def make_user(
    issuer: Issuer,
    user: str,
    *,
    admin: bool = False,
    lifetime: datetime.timedelta = datetime.timedelta(days=LEAF_DAYS),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return make_leaf(
        issuer,
        user,
        usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
        unit="admin" if admin else None,
        lifetime=lifetime,
    )


def write_cert(path: Path, cert: x509.Certificate) -> None:
    _write(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(path, pem, 0o600)


def write_crls(path: Path, pem: bytes) -> None:
    _write(path, pem, 0o644)


def format_serial(serial: int) -> str:
    """A serial number as jogger prints it: hex, as OpenSSL shows it, with ``0x``."""
    return f"0x{serial:x}"


def parse_serial(text: str) -> int:
    """A serial number as people copy it: decimal, ``0x`` hex, or OpenSSL's colon-separated
    hex bytes (``3a:4f:...``). ValueError if it is none of those, or out of range."""
    stripped = text.strip().lower()
    try:
        if stripped.startswith("0x"):
            serial = int(stripped[2:], 16)
        elif ":" in stripped:
            serial = int(stripped.replace(":", ""), 16)
        else:
            serial = int(stripped, 10)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a serial number (decimal, 0x-hex, or hex bytes with colons)"
        ) from None
    if not 0 < serial < 1 << 160:
        raise ValueError(f"serial number {text} is out of range (1 to 2**160-1, RFC 5280)")
    return serial


def load_issuer(cert_path: Path, key_path: Path) -> Issuer:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not an EC private key")
    return Issuer(cert, key)


def reusable(
    cert_path: Path,
    key_path: Path,
    issuer: Issuer,
    *,
    dns: list[str] = (),  # type: ignore[assignment]
    ips: list[str] = (),  # type: ignore[assignment]
    admin: bool | None = None,
) -> bool:
    """Whether the certificate and key there can be kept: ``issuer`` signed it, it is good
    for another week, the key is its key, and it names at least ``dns`` and ``ips`` (a
    server's) or has the ``admin`` unit as asked (a user's)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert.verify_directly_issued_by(issuer.cert)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=7)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        has_names = {str(n) for n in names.get_values_for_type(x509.IPAddress)} | set(
            names.get_values_for_type(x509.DNSName)
        )
    except x509.ExtensionNotFound:
        has_names = set()
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return (
        cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
        and cert.not_valid_after_utc >= soon
        and {*dns, *(str(ipaddress.ip_address(i)) for i in ips)} <= has_names
        and (admin is None or any(u.value == "admin" for u in units) == admin)
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    # Create with the final mode, so that a key is never readable by others, even briefly.
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)

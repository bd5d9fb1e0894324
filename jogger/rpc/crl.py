"""Certificate revocation lists: made and re-signed by the CA, read and checked by the server.

A CRL file (``--crl``) holds one CRL per CA certificate of the server's ``--ca-cert``
bundle, in PEM, and nothing else: OpenSSL loads it into the same store as the CA
certificates, so a certificate slipped into it would be trusted as a CA. With CRLs loaded,
OpenSSL checks every client certificate against its issuer's CRL (VERIFY_CRL_CHECK_LEAF),
and refuses every client of a CA that has no CRL, or whose CRL is not yet valid or past its
nextUpdate. So the server refuses such a file outright, where OpenSSL would refuse each
client; the CRLs we make are valid for CRL_DAYS, and the server warns as the end nears.
"""

import datetime
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization

from .certs import Issuer

CRL_DAYS = 365
"""How long a CRL we sign stays valid: a year, as our CAs (a server reads the file itself;
there is no distribution point to fetch a fresher one from)."""
EXPIRY_WARNING = datetime.timedelta(days=14)
"""How long before a CRL's nextUpdate the server starts warning."""

_BLOCK = re.compile(rb"-----BEGIN ([^-\r\n]+)-----.*?-----END \1-----\r?\n?", re.DOTALL)
_HEADER = re.compile(rb"-----BEGIN ([^-\r\n]+)-----")


class CrlError(ValueError):
    """A CRL file that cannot be used; ``str()`` says why, in words."""


@dataclass(frozen=True)
class Revocations:
    """The CRLs in force, each beside the CA certificate of the bundle that signed it."""

    lists: tuple[tuple[x509.Certificate, x509.CertificateRevocationList], ...]

    def revoked(self, cert: x509.Certificate, issuers: Sequence[x509.Certificate]) -> bool:
        """Whether the CRL of one of ``issuers`` (the CAs that signed ``cert``) lists it:
        a serial number names a certificate only among those of one CA."""
        serial = cert.serial_number
        return any(
            ca in issuers and crl.get_revoked_certificate_by_serial_number(serial) is not None
            for ca, crl in self.lists
        )

    def describe(self) -> str:
        """For the log: how many are revoked, and when the first CRL runs out."""
        revoked = sum(len(crl) for _, crl in self.lists)
        ends = [end for _, crl in self.lists if (end := crl.next_update_utc) is not None]
        until = f", next update {min(ends):%Y-%m-%d %H:%M}Z" if ends else ""
        return (
            f"{len(self.lists)} CRL{'s' if len(self.lists) != 1 else ''}, {revoked} revoked{until}"
        )

    def warnings(self, now: datetime.datetime) -> list[str]:
        """What to warn about: each CRL whose nextUpdate is less than EXPIRY_WARNING away
        or past (after it, OpenSSL refuses every client certificate of that CA)."""
        found = []
        for ca, crl in self.lists:
            end = crl.next_update_utc
            if end is None or end - now > EXPIRY_WARNING:
                continue
            when = "passed" if end <= now else f"is in {_span(end - now)}"
            found.append(
                f"the CRL of {ca.subject.rfc4514_string()} has its next update on "
                f"{end:%Y-%m-%d %H:%M}Z, which {when}: after it every client certificate of "
                "that CA is refused; sign it again (jogger certs crl) and send SIGHUP"
            )
        return found


def parse_crls(data: bytes) -> list[x509.CertificateRevocationList]:
    """Every CRL in PEM ``data``; CrlError if there is none, or anything else."""
    others = {kind.decode() for kind in _HEADER.findall(data)} - {"X509 CRL"}
    if others:
        raise CrlError(
            f"it holds a {sorted(others)[0]} block: a CRL file holds X509 CRL blocks only "
            "(OpenSSL would trust a certificate in it as a CA)"
        )
    blocks = [match[0] for match in _BLOCK.finditer(data)]
    if not blocks:
        raise CrlError("not a CRL (no PEM '-----BEGIN X509 CRL-----' block in it)")
    try:
        return [x509.load_pem_x509_crl(block) for block in blocks]
    except ValueError as exc:
        raise CrlError(f"a CRL in it is malformed: {exc}") from None


def check(
    crls: Iterable[x509.CertificateRevocationList],
    cas: Sequence[x509.Certificate],
    now: datetime.datetime,
) -> Revocations:
    """``crls`` checked against the CA bundle ``cas`` as OpenSSL would check them for each
    client, but once, up front: each signed by a CA of the bundle, in its validity, and a
    CRL for every CA. CrlError says what is wrong."""
    lists: list[tuple[x509.Certificate, x509.CertificateRevocationList]] = []
    for crl in crls:
        issuer = crl.issuer.rfc4514_string()
        signers = [ca for ca in cas if signed_by(crl, ca)]
        if not signers:
            raise CrlError(f"the CRL of {issuer} is not signed by a CA of the --ca-cert bundle")
        if crl.last_update_utc > now:
            raise CrlError(
                f"the CRL of {issuer} is not valid until {crl.last_update_utc:%Y-%m-%d %H:%M}Z "
                "(is this host's clock right?)"
            )
        end = crl.next_update_utc
        if end is not None and end <= now:
            raise CrlError(
                f"the CRL of {issuer} expired on {end:%Y-%m-%d %H:%M}Z (its nextUpdate): "
                "OpenSSL would refuse every client certificate of that CA; sign it again "
                "(jogger certs crl)"
            )
        lists += [(ca, crl) for ca in signers]
    for ca in cas:
        if not any(signer == ca for signer, _ in lists):
            raise CrlError(
                f"no CRL of {ca.subject.rfc4514_string()}, a CA of the --ca-cert bundle: "
                "OpenSSL would refuse every client certificate it signed; add its CRL "
                "(jogger certs crl makes an empty one)"
            )
    return Revocations(tuple(lists))


def signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    if crl.issuer != ca.subject:
        return False
    try:
        return crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError, UnsupportedAlgorithm):
        return False  # a key of a kind that cannot sign a CRL, or that we cannot read


def sign(
    issuer: Issuer,
    entries: Iterable[x509.RevokedCertificate],
    number: int,
    *,
    now: datetime.datetime,
) -> x509.CertificateRevocationList:
    """A CRL of ``issuer`` listing ``entries``, valid for CRL_DAYS from ``now``, with the
    extensions RFC 5280 requires (the authority key identifier, the CRL number)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        # A few minutes back, as our certificates: a server whose clock is a little behind
        # ours must not take it for one not yet valid.
        .last_update(now - datetime.timedelta(minutes=5))
        .next_update(now + datetime.timedelta(days=CRL_DAYS))
        .add_extension(_authority_key(issuer), critical=False)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for entry in entries:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(issuer.key, hashes.SHA256())


def entry(serial: int, now: datetime.datetime) -> x509.RevokedCertificate:
    return x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()


def number_of(crl: x509.CertificateRevocationList) -> int:
    """The CRL's number (0 if it has none): a CRL signed again gets the next one."""
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


def to_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def _authority_key(issuer: Issuer) -> x509.AuthorityKeyIdentifier:
    """The CA's own subject key identifier, whatever tool made the CA; else one from its key."""
    try:
        ski = issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _span(delta: datetime.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.0f} days" if hours >= 48 else f"{hours:.0f} hours"

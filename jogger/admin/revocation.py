"""``jogger certs revoke`` and ``jogger certs crl``: the CA's CRL, for ``jogger-server --crl``.

The file (crl.pem beside the CA, or ``--crl``) may hold the CRLs of other CAs too, as a
server's file does while it trusts an old CA and a new one: only this CA's CRL is changed,
the others are kept as they are. Entries are never dropped. Each write signs the CRL again,
with the next CRL number and a nextUpdate CRL_DAYS away (see rpc/crl.py for why so long).
"""

import argparse
import datetime
import sys
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from ..rpc import certs, crl
from .ca import CommandError, load_ca, signing


def add_parsers(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    r = commands.add_parser(
        "revoke",
        help="revoke client certificates in the CA's CRL",
        description="Add certificates to the CRL of the CA in --out, made if there is none, "
        "and sign it again. Entries already there are kept; a certificate revoked already "
        "is left as it was. A jogger-server started with --crl on that file applies it on "
        "SIGHUP.",
    )
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--serial",
        action="append",
        type=_serial,
        metavar="N",
        help="a serial number: decimal, 0x-hex, or hex bytes with colons (repeatable)",
    )
    which.add_argument(
        "--cert",
        action="append",
        type=Path,
        metavar="FILE",
        help="a certificate the CA issued, in PEM (repeatable)",
    )
    _files(r)
    r.set_defaults(run=revoke)
    c = commands.add_parser(
        "crl",
        help="write the CA's CRL again (an empty one if there is none)",
        description="Sign the CRL of the CA in --out again, its entries kept, with a new "
        f"nextUpdate {crl.CRL_DAYS} days away; make an empty one if there is none (for a "
        "server's first --crl, or a new CA's).",
    )
    _files(c)
    c.set_defaults(run=refresh)


def _files(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="the directory of the CA (default ./certs)",
    )
    p.add_argument("--crl", type=Path, metavar="FILE", help="the CRL file (default DIR/crl.pem)")


def _serial(text: str) -> int:
    try:
        return certs.parse_serial(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def revoke(args: argparse.Namespace) -> int:
    out: Path = args.out
    issuer = load_ca(out)
    path: Path = args.crl or out / "crl.pem"
    asked = {serial: f"serial {certs.format_serial(serial)}" for serial in args.serial or []}
    for file in args.cert or []:
        cert = _issued_cert(file, issuer)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        name = f"{names[0].value!s}, " if names else ""
        asked[cert.serial_number] = (
            f"serial {certs.format_serial(cert.serial_number)} ({name}{file})"
        )
    now = datetime.datetime.now(datetime.UTC)
    with signing(out):
        ours, others = _read(path, issuer)
        revoked = _entries(ours)
        for serial, what in asked.items():
            if serial in revoked:
                when = revoked[serial].revocation_date_utc
                print(f"already revoked: {what}, on {when:%Y-%m-%d %H:%M}Z", file=sys.stderr)
        added = [serial for serial in asked if serial not in revoked]
        if not added and path.exists():
            print(f"{path} unchanged", file=sys.stderr)
            return 0
        entries = [*revoked.values(), *(crl.entry(serial, now) for serial in added)]
        made = _write(path, issuer, entries, ours, others, now=now)
    for serial in added:
        print(f"revoked {asked[serial]}", file=sys.stderr)
    _report(path, made, others)
    return 0


def refresh(args: argparse.Namespace) -> int:
    out: Path = args.out
    issuer = load_ca(out)
    path: Path = args.crl or out / "crl.pem"
    with signing(out):
        ours, others = _read(path, issuer)
        now = datetime.datetime.now(datetime.UTC)
        made = _write(path, issuer, _entries(ours).values(), ours, others, now=now)
    _report(path, made, others)
    return 0


def _issued_cert(file: Path, issuer: certs.Issuer) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(file.read_bytes())
    except OSError as exc:
        raise CommandError(f"{file}: cannot read it: {exc.strerror or exc}") from None
    except ValueError:
        raise CommandError(f"{file}: not a certificate (no PEM certificate block in it)") from None
    try:
        cert.verify_directly_issued_by(issuer.cert)
    except (ValueError, TypeError, InvalidSignature):
        ca = issuer.cert.subject.rfc4514_string()
        raise CommandError(f"{file}: not issued by the CA in --out ({ca})") from None
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if is_ca:
        raise CommandError(
            f"{file}: a CA certificate; a CA is retired by taking it out of the servers' "
            "--ca-cert, not revoked"
        )
    return cert


def _read(
    path: Path, issuer: certs.Issuer
) -> tuple[list[x509.CertificateRevocationList], list[x509.CertificateRevocationList]]:
    """The CRLs in ``path`` that ``issuer`` signed, and the others; none if it is not there."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        raise CommandError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    try:
        found = crl.parse_crls(data)
    except crl.CrlError as exc:
        raise CommandError(f"{path}: {exc}") from None
    ours = [one for one in found if crl.signed_by(one, issuer.cert)]
    return ours, [one for one in found if one not in ours]


def _entries(
    crls: list[x509.CertificateRevocationList],
) -> dict[int, x509.RevokedCertificate]:
    """Every entry of ``crls`` (the CA's: one, but a file may hold two), by serial number."""
    return {entry.serial_number: entry for one in crls for entry in one}


def _write(
    path: Path,
    issuer: certs.Issuer,
    entries: Iterable[x509.RevokedCertificate],
    ours: list[x509.CertificateRevocationList],
    others: list[x509.CertificateRevocationList],
    *,
    now: datetime.datetime,
) -> x509.CertificateRevocationList:
    """Sign ``entries`` as the CA's next CRL after ``ours``, and write it after ``others``."""
    number = max((crl.number_of(one) for one in ours), default=0) + 1
    made = crl.sign(issuer, entries, number, now=now)
    certs.write_crls(path, b"".join(crl.to_pem(one) for one in [*others, made]))
    return made


def _report(
    path: Path,
    made: x509.CertificateRevocationList,
    others: list[x509.CertificateRevocationList],
) -> None:
    plural = "" if len(others) == 1 else "s"
    kept = f"; kept the CRL{plural} of {len(others)} other CA{plural}" if others else ""
    end = made.next_update_utc
    print(
        f"wrote {path}: {len(made)} revoked by {made.issuer.rfc4514_string()}, number "
        f"{crl.number_of(made)}, next update {end:%Y-%m-%d %H:%M}Z{kept}",
        file=sys.stderr,
    )
    print(
        f"a jogger-server with --crl {path} applies it on SIGHUP (kill -HUP its pid)",
        file=sys.stderr,
    )

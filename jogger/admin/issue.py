"""``jogger certs issue``: a short-lived client certificate from the CA, as Teleport issues
them: a user gets a certificate for a working day, and there is little to revoke."""

import argparse
import datetime
import shlex
import sys
from pathlib import Path

from .._units import parse_duration
from ..rpc import certs
from .ca import CommandError, load_ca, username

DEFAULT_TTL = "8h"
MIN_TTL = datetime.timedelta(minutes=1)
MAX_TTL = datetime.timedelta(days=366)


def ttl(text: str) -> datetime.timedelta:
    """--ttl: a duration from MIN_TTL to MAX_TTL."""
    try:
        span = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if span <= datetime.timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r}: a certificate needs a lifetime above 0")
    if span < MIN_TTL:
        raise argparse.ArgumentTypeError(f"{text!r} is shorter than the least, 1m")
    if span > MAX_TTL:
        raise argparse.ArgumentTypeError(
            f"{text!r} is longer than the most, 366d (short-lived certificates are the point: "
            "jogger certs --user makes 90-day ones)"
        )
    return span


def add_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = commands.add_parser(
        "issue",
        help="issue a short-lived client certificate from the CA",
        description="Issue a client certificate for --user from the CA in --out, valid for "
        "--ttl from now, into --out as NAME.pem and NAME-key.pem (the key 0600), replacing "
        "what was there. Prints the export lines for jog.",
    )
    p.add_argument(
        "--user",
        dest="name",
        required=True,
        type=username,
        metavar="NAME",
        help="the user: the certificate's Common Name",
    )
    p.add_argument(
        "--ttl",
        type=ttl,
        default=ttl(DEFAULT_TTL),
        metavar="DURATION",
        help=f"how long it is valid: 90s, 30m, 8h, 7d, 1h30m (default {DEFAULT_TTL}; "
        "from 1m to 366d)",
    )
    p.add_argument(
        "--admin", dest="admin_unit", action="store_true", help="an administrator (OU=admin)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="the directory of the CA, where the files go (default ./certs)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    issuer = load_ca(out)
    lifetime: datetime.timedelta = args.ttl
    ends = datetime.datetime.now(datetime.UTC) + lifetime
    if ends > issuer.cert.not_valid_after_utc:
        raise CommandError(
            f"the CA in {out} expires on {issuer.cert.not_valid_after_utc:%Y-%m-%d %H:%M}Z, "
            "before this certificate would: a shorter --ttl, or a new CA"
        )
    cert, key = certs.make_user(issuer, args.name, admin=args.admin_unit, lifetime=lifetime)
    cert_path, key_path = out / f"{args.name}.pem", out / f"{args.name}-key.pem"
    certs.write_key(key_path, key)
    certs.write_cert(cert_path, cert)
    print(
        f"wrote {cert_path}: user {args.name}{' (admin)' if args.admin_unit else ''}, "
        f"serial {certs.format_serial(cert.serial_number)}, "
        f"valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z",
        file=sys.stderr,
    )
    where = out.resolve()
    exports = {
        "JOGGER_CA_CERT_FILE": where / "ca.pem",
        "JOGGER_USER_CERT_FILE": where / cert_path.name,
        "JOGGER_USER_KEY_FILE": where / key_path.name,
    }
    print("\n".join(f"export {name}={shlex.quote(str(path))}" for name, path in exports.items()))
    return 0

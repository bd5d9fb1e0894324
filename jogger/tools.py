"""``jogger``: administrative commands. ``jogger certs`` makes development certificates;
``jogger certs issue``, ``revoke`` and ``crl`` (admin/) work with the CA it made."""

import argparse
import getpass
import shlex
import sys
from pathlib import Path

from ._version import VersionAction
from .admin import issue, revocation
from .admin.ca import CommandError, username
from .rpc import certs


def _certs(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_cert, ca_key = out / "ca.pem", out / "ca-key.pem"
    if ca_cert.exists() and ca_key.exists():
        issuer = certs.load_issuer(ca_cert, ca_key)
    else:
        issuer = certs.make_ca()
        certs.write_key(ca_key, issuer.key)
        certs.write_cert(ca_cert, issuer.cert)
        print(f"wrote {ca_cert}", file=sys.stderr)
    dns, ips = ["localhost", *args.dns], ["127.0.0.1", "::1", *args.ip]
    cert, key = out / "server.pem", out / "server-key.pem"
    if not args.renew and certs.reusable(cert, key, issuer, dns=dns, ips=ips):
        print(f"kept {cert}", file=sys.stderr)
    else:
        made = certs.make_server(issuer, dns, ips)
        certs.write_key(key, made[1])
        certs.write_cert(cert, made[0])
        print(f"wrote {cert}", file=sys.stderr)
    users = [(u, False) for u in args.user] + [(u, True) for u in args.admin]
    for user, admin in users:
        cert, key = out / f"{user}.pem", out / f"{user}-key.pem"
        what = f"{cert}" + (" (admin)" if admin else "")
        if not args.renew and certs.reusable(cert, key, issuer, admin=admin):
            print(f"kept {what}", file=sys.stderr)
            continue
        made = certs.make_user(issuer, user, admin=admin)
        certs.write_key(key, made[1])
        certs.write_cert(cert, made[0])
        print(f"wrote {what}", file=sys.stderr)
    first = users[0][0] if users else None
    where = out.resolve()
    lines = [
        f"export JOGGER_CA_CERT_FILE={shlex.quote(str(where / 'ca.pem'))}",
        f"export JOGGER_SERVER_CERT_FILE={shlex.quote(str(where / 'server.pem'))}",
        f"export JOGGER_SERVER_KEY_FILE={shlex.quote(str(where / 'server-key.pem'))}",
    ]
    if first:
        lines += [
            f"export JOGGER_USER_CERT_FILE={shlex.quote(str(where / (first + '.pem')))}",
            f"export JOGGER_USER_KEY_FILE={shlex.quote(str(where / (first + '-key.pem')))}",
        ]
    print("\n".join(lines))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jogger", description="Jogger administration.")
    p.add_argument("--version", action=VersionAction)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser(
        "certs",
        help="create a development CA, server and user certificates",
        description="Create (or reuse) a CA in --out, then a server certificate and user "
        "certificates signed by it. A certificate already there that the CA signed, that is "
        "good for another week and that names what is asked for is kept (--renew reissues "
        "it). Prints the export lines for the server and the first user.",
    )
    c.add_argument("--renew", action="store_true", help="reissue the server and user certificates")
    c.add_argument("--out", type=Path, default=Path("certs"), help="directory (default ./certs)")
    c.add_argument(
        "--user",
        action="append",
        type=username,
        default=[],
        help="make a user certificate (repeatable)",
    )
    c.add_argument(
        "--admin",
        action="append",
        type=username,
        default=[],
        help="make an admin user certificate, OU=admin (repeatable)",
    )
    c.add_argument("--dns", action="append", default=[], help="another server DNS name")
    c.add_argument("--ip", action="append", default=[], help="another server IP address")
    c.set_defaults(run=_certs)
    # Not required: `jogger certs` alone makes the development certificates, as before.
    commands = c.add_subparsers(title="with the CA in --out", metavar="{issue,revoke,crl}")
    issue.add_parser(commands)
    revocation.add_parsers(commands)
    return p


_DEVELOPMENT_ONLY = ("renew", "user", "admin", "dns", "ip")
"""``jogger certs``'s own options, which mean nothing to its subcommands."""


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.command == "certs" and args.run is not _certs:
        given = [f"--{name}" for name in _DEVELOPMENT_ONLY if getattr(args, name)]
        if given:
            p.error(
                f"{', '.join(given)}: an option of jogger certs alone; issue, revoke and crl "
                "take theirs after their name"
            )
    elif args.command == "certs" and not args.user and not args.admin:
        args.user = [username(getpass.getuser())]
    try:
        return int(args.run(args))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"jogger: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except (ValueError, CommandError) as exc:
        print(f"jogger: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

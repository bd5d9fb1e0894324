"""Certificates for the tests: a good CA and its certs, and every kind of bad certificate."""

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography.x509.oid import ExtendedKeyUsageOID

from jogger.rpc import certs

CLIENT = [ExtendedKeyUsageOID.CLIENT_AUTH]


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: Pair
    users: dict[str, Pair]

    def user(self, name: str) -> Pair:
        return self.users[name]


def _save(directory: Path, name: str, made: tuple[object, object]) -> Pair:
    cert, key = made
    pair = Pair(directory / f"{name}.pem", directory / f"{name}-key.pem")
    certs.write_cert(pair.cert, cert)  # type: ignore[arg-type]
    certs.write_key(pair.key, key)  # type: ignore[arg-type]
    return pair


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = certs.make_ca()
    other_ca = certs.make_ca("some other CA")
    certs.write_cert(directory / "ca.pem", ca.cert)
    # Beside ca.pem, as `jogger certs` leaves it: `jogger certs issue` and `revoke` sign with it.
    certs.write_key(directory / "ca-key.pem", ca.key)
    certs.write_cert(directory / "other-ca.pem", other_ca.cert)
    server = _save(directory, "server", certs.make_server(ca, ["localhost"], ["127.0.0.1", "::1"]))
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    in_a_while = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30)
    users = {
        "alice": _save(directory, "alice", certs.make_user(ca, "alice")),
        "bob": _save(directory, "bob", certs.make_user(ca, "bob")),
        "root": _save(directory, "root", certs.make_user(ca, "root", admin=True)),
        # Each of these must be refused.
        "other-ca": _save(directory, "other-ca", certs.make_user(other_ca, "alice")),
        "expired": _save(
            directory,
            "expired",
            certs.make_leaf(
                ca,
                "alice",
                usages=CLIENT,
                lifetime=datetime.timedelta(days=1),
                not_before=long_ago,
            ),
        ),
        "not-yet-valid": _save(
            directory,
            "not-yet-valid",
            certs.make_leaf(ca, "alice", usages=CLIENT, not_before=in_a_while),
        ),
        "server-only": _save(
            directory,
            "server-only",
            certs.make_leaf(ca, "alice", usages=[ExtendedKeyUsageOID.SERVER_AUTH]),
        ),
        "no-eku": _save(directory, "no-eku", certs.make_leaf(ca, "alice", usages=[])),
        "no-key-usage": _save(
            directory, "no-key-usage", certs.make_leaf(ca, "alice", usages=CLIENT, key_usage=False)
        ),
        "ca-true": _save(
            directory, "ca-true", certs.make_leaf(ca, "alice", usages=CLIENT, ca=True)
        ),
        "bad-cn": _save(directory, "bad-cn", certs.make_leaf(ca, "Alice Smith", usages=CLIENT)),
        # A server certificate whose name is not the one the client dials.
        "wrong-name-server": _save(
            directory, "wrong-name-server", certs.make_server(ca, ["elsewhere.example"], [])
        ),
    }
    return Pki(directory / "ca.pem", server, users)

"""`jogger certs revoke` and `jogger certs crl`: the CA's CRL, kept, idempotent, and what a
server with --crl accepts."""

import datetime
from pathlib import Path

import pytest
from cryptography import x509

from jogger.rpc import certs, crl
from jogger.rpc.credentials import load_server_tls
from tests.admin.conftest import files_of, jogger


def load_crls(path: Path) -> list[x509.CertificateRevocationList]:
    return crl.parse_crls(path.read_bytes())


def serial_of(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def revoked_in(path: Path) -> set[int]:
    (only,) = load_crls(path)
    return {entry.serial_number for entry in only}


def test_revoke_by_certificate_then_by_serial_keeps_every_entry(ca_dir: Path) -> None:
    alice = serial_of(ca_dir / "alice.pem")
    by_cert = jogger("certs", "revoke", "--cert", ca_dir / "alice.pem", "--out", ca_dir)
    assert by_cert.returncode == 0, by_cert.stderr
    path = ca_dir / "crl.pem"
    assert by_cert.stderr.splitlines()[:2] == [
        f"revoked serial 0x{alice:x} (alice, {ca_dir / 'alice.pem'})",
        f"wrote {path}: 1 revoked by CN=jogger dev CA,O=jogger, number 1, next update "
        + by_cert.stderr.split("next update ", 1)[1].splitlines()[0],
    ]
    assert revoked_in(path) == {alice}

    by_serial = jogger("certs", "revoke", "--serial", "0x2a", "--serial", "1234", "--out", ca_dir)
    assert by_serial.returncode == 0, by_serial.stderr
    assert "revoked serial 0x2a\nrevoked serial 0x4d2\n" in by_serial.stderr
    assert revoked_in(path) == {alice, 42, 1234}
    (made,) = load_crls(path)
    assert crl.number_of(made) == 2
    # Valid for long: OpenSSL refuses every client once a CRL's nextUpdate has passed.
    assert made.next_update_utc is not None
    left = made.next_update_utc - datetime.datetime.now(datetime.UTC)
    assert left > datetime.timedelta(days=crl.CRL_DAYS - 1)

    # What a server started with --crl on it takes.
    material = load_server_tls(
        ca_dir / "ca.pem", ca_dir / "server.pem", ca_dir / "server-key.pem", path
    )
    assert material.revocations is not None
    alice_cert = x509.load_pem_x509_certificate((ca_dir / "alice.pem").read_bytes())
    assert material.revocations.revoked(alice_cert, material.issuers)


def test_revoking_again_changes_nothing(ca_dir: Path) -> None:
    first = jogger("certs", "revoke", "--cert", ca_dir / "alice.pem", "--out", ca_dir)
    assert first.returncode == 0, first.stderr
    before = (ca_dir / "crl.pem").read_bytes()
    alice = serial_of(ca_dir / "alice.pem")
    again = jogger("certs", "revoke", "--serial", str(alice), "--out", ca_dir)
    assert again.returncode == 0, again.stderr
    assert again.stderr.startswith(f"already revoked: serial 0x{alice:x}, on ")
    assert again.stderr.endswith(f"{ca_dir / 'crl.pem'} unchanged\n")
    assert (ca_dir / "crl.pem").read_bytes() == before


def test_crl_makes_an_empty_one_then_signs_it_again_with_its_entries(
    ca_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "elsewhere.pem"
    made = jogger("certs", "crl", "--out", ca_dir, "--crl", path)
    assert made.returncode == 0, made.stderr
    assert made.stderr.startswith(f"wrote {path}: 0 revoked by CN=jogger dev CA,O=jogger, number 1")
    assert not (ca_dir / "crl.pem").exists()
    revoked = jogger("certs", "revoke", "--serial", "7", "--out", ca_dir, "--crl", path)
    assert revoked.returncode == 0, revoked.stderr
    again = jogger("certs", "crl", "--out", ca_dir, "--crl", path)
    assert again.returncode == 0, again.stderr
    (signed,) = load_crls(path)
    assert {entry.serial_number for entry in signed} == {7}
    assert crl.number_of(signed) == 3


def test_revoke_keeps_the_crls_of_other_cas_in_the_file(ca_dir: Path, tmp_path: Path) -> None:
    # A server that trusts an old CA and a new one has both CRLs in its --crl file.
    old = certs.make_ca("jogger old CA")
    now = datetime.datetime.now(datetime.UTC)
    theirs = crl.sign(old, [crl.entry(99, now)], 5, now=now)
    path = ca_dir / "crl.pem"
    path.write_bytes(crl.to_pem(theirs))
    revoked = jogger("certs", "revoke", "--serial", "3", "--out", ca_dir)
    assert revoked.returncode == 0, revoked.stderr
    assert "kept the CRL of 1 other CA" in revoked.stderr
    kept, ours = load_crls(path)
    assert kept == theirs
    assert {entry.serial_number for entry in ours} == {3}


@pytest.mark.parametrize(
    ("args", "code", "error"),
    [
        ([], 2, "one of the arguments --serial --cert is required"),
        (["--serial", "abc"], 2, "'abc' is not a serial number"),
        (["--serial", "0"], 2, "serial number 0 is out of range"),
        (["--serial", str(1 << 160)], 2, "is out of range (1 to 2**160-1, RFC 5280)"),
        (["--cert", "/nonexistent.pem"], 1, "/nonexistent.pem: cannot read it: No such file"),
        (["--cert", "{notes}"], 1, "not a certificate (no PEM certificate block in it)"),
        (["--cert", "{ca}/ca.pem"], 1, "a CA certificate; a CA is retired by taking it out"),
        (["--cert", "{other}"], 1, "not issued by the CA in --out (CN=jogger dev CA,O=jogger)"),
    ],
)
def test_revoke_refuses_bad_input_in_one_line_and_changes_nothing(
    ca_dir: Path, tmp_path: Path, args: list[str], code: int, error: str
) -> None:
    other = certs.make_user(certs.make_ca(), "alice")[0]
    other_path = tmp_path / "other.pem"
    certs.write_cert(other_path, other)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a certificate\n")
    before = files_of(ca_dir)
    filled = [arg.format(ca=ca_dir, other=other_path, notes=notes) for arg in args]
    refused = jogger("certs", "revoke", *filled, "--out", ca_dir)
    assert refused.returncode == code
    assert error in refused.stderr.splitlines()[-1]
    assert "Traceback" not in refused.stderr
    assert files_of(ca_dir) == before


def test_revoke_refuses_a_crl_file_it_cannot_read_as_crls(ca_dir: Path) -> None:
    (ca_dir / "crl.pem").write_bytes((ca_dir / "alice.pem").read_bytes())
    before = files_of(ca_dir)
    refused = jogger("certs", "revoke", "--serial", "3", "--out", ca_dir)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"jogger: error: {ca_dir / 'crl.pem'}: it holds a CERTIFICATE")
    assert files_of(ca_dir) == before

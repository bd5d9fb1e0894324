import ipaddress
import stat
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jogger.rpc.auth import identify_client

BIN = Path(sys.executable).parent


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_jogger_certs_makes_a_ca_server_and_users_with_private_keys(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    result = subprocess.run(
        [
            BIN / "jogger",
            "certs",
            "--out",
            out,
            "--user",
            "alice",
            "--admin",
            "root",
            "--dns",
            "jobs.example",
            "--ip",
            "10.0.0.5",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"export JOGGER_USER_CERT_FILE={out.resolve() / 'alice.pem'}" in result.stdout
    for key in ("ca-key.pem", "server-key.pem", "alice-key.pem", "root-key.pem"):
        assert stat.S_IMODE((out / key).stat().st_mode) == 0o600
    ca = load(out / "ca.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    server = load(out / "server.pem")
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "jobs.example"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "10.0.0.5")
    ]
    usages = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    alice = load(out / "alice.pem")
    assert alice.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert identify_client(alice.public_bytes(Encoding.DER), [ca]).admin is False
    root = load(out / "root.pem")
    assert identify_client(root.public_bytes(Encoding.DER), [ca]).admin is True

    # A second run reuses the CA, so certificates made before stay valid.
    subprocess.run(
        [BIN / "jogger", "certs", "--out", out, "--user", "bob"], capture_output=True, check=True
    )
    assert load(out / "ca.pem") == ca


def test_jogger_certs_refuses_a_bad_user_name(tmp_path: Path) -> None:
    result = subprocess.run(
        [BIN / "jogger", "certs", "--out", tmp_path, "--user", "Bad Name"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "is not a username" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_jogger_certs_keeps_good_certificates_and_renews_on_request(tmp_path: Path) -> None:
    out = tmp_path / "certs"

    def certs_run(*extra: str) -> tuple[dict[str, bytes], str]:
        result = subprocess.run(
            [BIN / "jogger", "certs", "--out", out, "--user", "alice", *extra],
            capture_output=True,
            text=True,
            check=True,
        )
        return {p.name: p.read_bytes() for p in out.iterdir()}, result.stderr

    first, _ = certs_run()
    again, told = certs_run()
    assert again == first
    assert told == f"kept {out / 'server.pem'}\nkept {out / 'alice.pem'}\n"
    # A server name that the kept certificate lacks: the server's is reissued, alice's kept.
    wider, _ = certs_run("--ip", "10.0.0.5")
    assert wider["server.pem"] != first["server.pem"]
    assert wider["alice.pem"] == first["alice.pem"]
    # A key that is not the certificate's: reissued.
    (out / "alice-key.pem").write_bytes(first["server-key.pem"])
    fixed, _ = certs_run()
    assert fixed["alice.pem"] != first["alice.pem"]
    renewed, told = certs_run("--renew")
    assert renewed["ca.pem"] == first["ca.pem"]
    assert renewed["server.pem"] != wider["server.pem"]
    assert renewed["alice.pem"] != fixed["alice.pem"]
    assert "kept" not in told

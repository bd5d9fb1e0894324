"""The server's TLS material as load_server_tls reads it: CRLs checked before use, every bad
file named with the reason, revocation as auth.py checks it after the handshake."""

import datetime
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from jogger.rpc import certs, crl
from jogger.rpc.auth import CertificateRejected, identify_client
from jogger.rpc.credentials import load_server_tls
from jogger.rpc.tls import TlsFileError
from tests.pki import Pki

NOW = datetime.datetime.now(datetime.UTC)


def ca_of(pki: Pki) -> certs.Issuer:
    return certs.load_issuer(pki.ca, pki.ca.parent / "ca-key.pem")


def write_crl(path: Path, *made: object) -> Path:
    path.write_bytes(b"".join(crl.to_pem(one) for one in made))  # type: ignore[arg-type]
    return path


def serial_of(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def der_of(path: Path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER)


def refused(pki: Pki, crl_path: Path, *, ca: Path | None = None) -> TlsFileError:
    with pytest.raises(TlsFileError) as caught:
        load_server_tls(ca or pki.ca, pki.server.cert, pki.server.key, crl_path)
    return caught.value


def test_a_revoked_certificate_is_rejected_after_the_handshake_too(
    pki: Pki, tmp_path: Path
) -> None:
    revoked = crl.entry(serial_of(pki.user("alice").cert), NOW)
    path = write_crl(tmp_path / "crl.pem", crl.sign(ca_of(pki), [revoked], 1, now=NOW))
    material = load_server_tls(pki.ca, pki.server.cert, pki.server.key, path)
    assert material.revocations is not None
    with pytest.raises(CertificateRejected, match=r"serial 0x[0-9a-f]+ has been revoked"):
        identify_client(der_of(pki.user("alice").cert), material.issuers, material.revocations)
    bob = identify_client(der_of(pki.user("bob").cert), material.issuers, material.revocations)
    assert bob.user == "bob"
    assert "1 revoked" in material.describe()


def test_a_serial_is_revoked_only_for_the_ca_whose_crl_lists_it(pki: Pki, tmp_path: Path) -> None:
    other = certs.make_ca("another CA")
    stranger, _ = certs.make_user(other, "carol")
    revoked = crl.entry(stranger.serial_number, NOW)
    revocations = crl.check([crl.sign(ca_of(pki), [revoked], 1, now=NOW)], [ca_of(pki).cert], NOW)
    assert not revocations.revoked(stranger, [other.cert])
    assert revocations.revoked(stranger, [ca_of(pki).cert])


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"garbage\n", "not a CRL (no PEM '-----BEGIN X509 CRL-----' block in it)"),
        (
            b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
            "a CRL in it is malformed",
        ),
    ],
)
def test_a_file_that_is_no_crl_is_refused(
    pki: Pki, tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "crl.pem"
    path.write_bytes(content)
    error = refused(pki, path)
    assert (error.role, error.path) == ("crl", path)
    assert reason in error.reason


def test_a_certificate_in_the_crl_file_is_refused_rather_than_trusted(
    pki: Pki, tmp_path: Path
) -> None:
    # OpenSSL loads certificates from that file too: one there would be another CA.
    path = write_crl(tmp_path / "crl.pem", crl.sign(ca_of(pki), [], 1, now=NOW))
    path.write_bytes(path.read_bytes() + (pki.ca.parent / "other-ca.pem").read_bytes())
    assert "it holds a CERTIFICATE block" in refused(pki, path).reason


def test_a_crl_the_ca_did_not_sign_is_refused(pki: Pki, tmp_path: Path) -> None:
    impostor = certs.make_ca()  # the same name as ours, another key
    path = write_crl(tmp_path / "crl.pem", crl.sign(impostor, [], 1, now=NOW))
    error = refused(pki, path)
    assert error.role == "crl"
    assert "is not signed by a CA of the --ca-cert bundle" in error.reason


def test_every_ca_of_the_bundle_needs_a_crl(pki: Pki, tmp_path: Path) -> None:
    # Else OpenSSL refuses every client of the CA without one.
    newer = certs.make_ca("jogger CA 2")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.ca.read_bytes() + newer.cert.public_bytes(Encoding.PEM))
    path = write_crl(tmp_path / "crl.pem", crl.sign(ca_of(pki), [], 1, now=NOW))
    assert "no CRL of CN=jogger CA 2,O=jogger" in refused(pki, path, ca=bundle).reason
    write_crl(path, crl.sign(ca_of(pki), [], 1, now=NOW), crl.sign(newer, [], 1, now=NOW))
    material = load_server_tls(bundle, pki.server.cert, pki.server.key, path)
    assert material.revocations is not None
    assert len(material.revocations.lists) == 2


def test_a_crl_past_its_next_update_or_not_yet_valid_is_refused(pki: Pki, tmp_path: Path) -> None:
    old = NOW - datetime.timedelta(days=crl.CRL_DAYS + 1)
    path = write_crl(tmp_path / "crl.pem", crl.sign(ca_of(pki), [], 1, now=old))
    assert "expired on" in refused(pki, path).reason
    later = NOW + datetime.timedelta(days=1)
    write_crl(path, crl.sign(ca_of(pki), [], 1, now=later))
    assert "is not valid until" in refused(pki, path).reason


def test_a_crl_near_its_next_update_is_warned_about(pki: Pki) -> None:
    made = crl.sign(ca_of(pki), [], 1, now=NOW)
    revocations = crl.check([made], [ca_of(pki).cert], NOW)
    assert revocations.warnings(NOW) == []
    soon = NOW + datetime.timedelta(days=crl.CRL_DAYS - 3)
    (warning,) = revocations.warnings(soon)
    assert "has its next update on" in warning
    assert "which is in 3 days" in warning
    assert "jogger certs crl" in warning
    (passed,) = revocations.warnings(NOW + datetime.timedelta(days=crl.CRL_DAYS + 1))
    assert "which passed" in passed


def test_each_unusable_tls_file_is_named(pki: Pki, tmp_path: Path) -> None:
    key = tmp_path / "server-key.pem"
    shutil.copy(pki.user("alice").key, key)
    with pytest.raises(TlsFileError) as caught:
        load_server_tls(pki.ca, pki.server.cert, key)
    assert (caught.value.role, caught.value.path) == ("key", key)
    assert caught.value.reason == f"not the private key of the certificate {pki.server.cert}"
    with pytest.raises(TlsFileError) as caught:
        load_server_tls(pki.ca, pki.server.cert, pki.server.key, tmp_path / "missing.pem")
    assert caught.value.role == "crl"
    assert caught.value.reason == "cannot read it: No such file or directory"

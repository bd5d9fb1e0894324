"""The SIGHUP action that reloads the TLS files: all of them or none, the log line, the hook;
and --crl as the configuration reads it."""

import dataclasses
import datetime
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from jogger.rpc import certs, crl
from jogger.rpc.credentials import TlsHolder
from jogger.server import certificates
from jogger.server.certificates import CertificateReload
from jogger.server.config import ConfigError, ServerConfig, load
from tests.pki import Pki
from tests.servers import server_config

NOW = datetime.datetime.now(datetime.UTC)


def ca_of(pki: Pki) -> certs.Issuer:
    return certs.load_issuer(pki.ca, pki.ca.parent / "ca-key.pem")


def own_files(pki: Pki, directory: Path) -> ServerConfig:
    """A configuration whose certificate, key and CRL are copies the test may change."""
    cert, key, crl_path = (
        directory / "server.pem",
        directory / "server-key.pem",
        directory / "crl.pem",
    )
    shutil.copy(pki.server.cert, cert)
    shutil.copy(pki.server.key, key)
    crl_path.write_bytes(crl.to_pem(crl.sign(ca_of(pki), [], 1, now=NOW)))
    return dataclasses.replace(
        server_config(pki, directory / "state"), cert=cert, key=key, crl=crl_path
    )


def test_a_reload_replaces_all_the_material_and_tells_the_hook(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = own_files(pki, tmp_path)
    holder = TlsHolder(certificates.load(config))
    told: list[tuple[bool, str]] = []
    reload = CertificateReload(config, holder, on_reload=lambda ok, line: told.append((ok, line)))
    made, key = certs.make_server(ca_of(pki), ["localhost"], ["127.0.0.1"])
    certs.write_cert(config.cert, made)
    certs.write_key(config.key, key)
    alice = x509.load_pem_x509_certificate(pki.user("alice").cert.read_bytes())
    revoked = [crl.entry(alice.serial_number, NOW)]
    assert config.crl is not None
    config.crl.write_bytes(crl.to_pem(crl.sign(ca_of(pki), revoked, 2, now=NOW)))

    with caplog.at_level(logging.INFO, logger="jogger.server"):
        reload()

    assert holder.current.certificate == made
    assert holder.current.revocations is not None
    assert holder.current.revocations.revoked(alice, holder.current.issuers)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("certificates reloaded for new connections: certificate serial=")
    assert f"serial={certs.format_serial(made.serial_number)}" in line
    assert "crl='1 CRL, 1 revoked" in line
    assert told == [(True, line)]


def _foreign_crl(path: Path) -> None:
    path.write_bytes(crl.to_pem(crl.sign(certs.make_ca(), [], 9, now=NOW)))


SPOILED: dict[str, tuple[Callable[[Path], object], str]] = {
    "key": (lambda path: path.write_text("garbage\n"), "not a private key"),
    "cert": (Path.unlink, "cannot read it: No such file or directory"),
    "crl": (_foreign_crl, "is not signed by a CA of the --ca-cert bundle"),
}
"""How each file is spoiled, and what the log line says of it."""


@pytest.mark.parametrize("role", list(SPOILED))
def test_a_failed_reload_keeps_the_old_material_whole_and_says_why_in_one_line(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture, role: str
) -> None:
    spoil, reason = SPOILED[role]
    config = own_files(pki, tmp_path)
    before = certificates.load(config)
    holder = TlsHolder(before)
    told: list[tuple[bool, str]] = []
    reload = CertificateReload(config, holder, on_reload=lambda ok, line: told.append((ok, line)))
    # The certificate too, so that a reload that took half of the files would show.
    made, key = certs.make_server(ca_of(pki), ["localhost"], ["127.0.0.1"])
    certs.write_cert(config.cert, made)
    certs.write_key(config.key, key)
    path = {"key": config.key, "cert": config.cert, "crl": config.crl}[role]
    assert path is not None
    spoil(path)

    with caplog.at_level(logging.INFO, logger="jogger.server"):
        reload()

    assert holder.current is before
    (record,) = caplog.records
    assert record.levelname == "ERROR"
    line = record.getMessage()
    flag = certificates.FLAGS[role]
    assert line.startswith(f"certificates not reloaded, the old ones stay in use: {flag} {path}: ")
    assert reason in line
    assert "\n" not in line
    assert told == [(False, line)]


def test_the_crl_flag_and_its_variable(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = ["--ca-cert", str(pki.ca), "--cert", str(pki.server.cert), "--key", str(pki.server.key)]
    path = tmp_path / "crl.pem"
    path.write_bytes(crl.to_pem(crl.sign(ca_of(pki), [], 1, now=NOW)))
    assert load(tls).crl is None
    assert load([*tls, "--crl", str(path)]).crl == path
    monkeypatch.setenv("JOGGER_CRL_FILE", str(path))
    assert load(tls).crl == path
    with pytest.raises(ConfigError, match=r"CRL .*missing\.pem does not exist or is not a file"):
        load([*tls, "--crl", str(tmp_path / "missing.pem")])

"""jogger-server refuses to start with one clear line naming what is wrong."""

import os
import subprocess
from pathlib import Path

import pytest
import trio

from tests.e2e.conftest import BIN, server_env
from tests.pki import Pki


async def server_fails(pki: Pki, tmp_path: Path, **files: str) -> str:
    """Run jogger-server with the test PKI, some files replaced; its last line on stderr."""
    env = server_env(pki, **files)
    with trio.fail_after(30):
        result = await trio.run_process(
            [BIN / "jogger-server", "--listen", "127.0.0.1:0", "--state-dir", tmp_path / "s"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "Traceback" not in err
    return err.splitlines()[-1]


@pytest.mark.parametrize(
    ("variable", "which", "told"),
    [
        (
            "JOGGER_CA_CERT_FILE",
            "server-key",
            "--ca-cert {path}: not a CA certificate (no PEM '-----BEGIN CERTIFICATE-----' "
            "block in it)",
        ),
        (
            "JOGGER_SERVER_CERT_FILE",
            "server-key",
            "--cert {path}: not a certificate (no PEM '-----BEGIN CERTIFICATE-----' block in it)",
        ),
        (
            "JOGGER_SERVER_KEY_FILE",
            "server",
            "--key {path}: not a private key (no PEM '-----BEGIN PRIVATE KEY-----' block in it)",
        ),
        (
            "JOGGER_SERVER_KEY_FILE",
            "alice-key",
            "--key {path}: not the private key of the certificate {cert}",
        ),
    ],
)
async def test_a_wrong_tls_file_is_named_with_what_is_wrong(
    pki: Pki, tmp_path: Path, variable: str, which: str, told: str
) -> None:
    path = pki.ca.parent / f"{which}.pem"
    line = await server_fails(pki, tmp_path, **{variable: str(path)})
    assert line == "jogger-server: error: " + told.format(path=path, cert=pki.server.cert)


async def test_an_unreadable_tls_file_is_named(pki: Pki, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    key = tmp_path / "key.pem"
    key.write_bytes(pki.server.key.read_bytes())
    key.chmod(0)
    line = await server_fails(pki, tmp_path, JOGGER_SERVER_KEY_FILE=str(key))
    assert line == f"jogger-server: error: --key {key}: cannot read it: Permission denied"

"""Certificates without downtime, on the real jogger-server: SIGHUP reloads the TLS files for
new connections (a revoked user is refused, a rotated certificate is served), while the
connections made before, their streams and every job carry on."""

import json
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from jogger.rpc import certs
from jogger.rpc.client import open_client
from jogger.rpc.tls import client_context
from jogger.v1 import jobs_pb2
from tests.e2e.conftest import BIN, Cli, launch, stop_server
from tests.e2e.test_cli import follow, job_id_of, wait_for_output
from tests.pki import Pki


def ca_of(pki: Pki) -> certs.Issuer:
    return certs.load_issuer(pki.ca, pki.ca.parent / "ca-key.pem")


def serial_of(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


async def jogger(*args: str | Path) -> None:
    """The real `jogger` admin command; it must succeed."""
    with trio.fail_after(60):
        done = await trio.run_process(
            [BIN / "jogger", *args], capture_stdout=True, capture_stderr=True, check=False
        )
    assert done.returncode == 0, done.stderr


async def hang_up(cli: Cli, outcome: str) -> str:
    """SIGHUP to the server; the log line of the reload, once it has one with ``outcome``."""
    mark = len(cli.log)
    os.kill(cli.process.pid, signal.SIGHUP)
    return await logged(cli, outcome, mark)


async def logged(cli: Cli, text: str, mark: int = 0) -> str:
    """The first line of the server's log from ``mark`` on with ``text`` in it, once there."""
    with trio.fail_after(30):
        while True:
            found = [line for line in cli.log[mark:] if text in line]
            if found:
                return found[0]
            await trio.sleep(0.02)  # the log is read by another task: nothing to wait on


async def served_certificate(pki: Pki, port: int) -> x509.Certificate:
    """The certificate a new connection's TLS handshake gets from the server."""
    alice = pki.user("alice")
    context = client_context(pki.ca, alice.cert, alice.key)
    tls = trio.SSLStream(
        await trio.open_tcp_stream("127.0.0.1", port), context, server_hostname="localhost"
    )
    try:
        with trio.fail_after(30):
            await tls.do_handshake()
        der = tls.getpeercert(binary_form=True)
    finally:
        await trio.aclose_forcefully(tls)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def waits_for(flag: Path, before: str, after: str) -> list[str]:
    """A job that says ``before``, waits for ``flag`` to exist, says ``after`` and ends."""
    return ["sh", "-c", f"echo {before}; until [ -e {flag} ]; do sleep 0.05; done; echo {after}"]


async def status_of(cli: Cli, job: str) -> dict[str, object]:
    result = await cli.jog("status", "--json", job, user="root")  # an admin sees alice's
    assert result.returncode == 0, result.stderr
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


async def own_server_files(pki: Pki, directory: Path) -> tuple[Path, Path]:
    """Copies of the server's certificate and key, for a test to replace."""
    cert, key = directory / "server.pem", directory / "server-key.pem"
    shutil.copy(pki.server.cert, cert)
    shutil.copy(pki.server.key, key)
    return cert, key


async def test_a_revoked_user_is_refused_after_sighup_while_bob_and_her_running_jobs_carry_on(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    crl = tmp_path / "crl.pem"
    await jogger("certs", "crl", "--out", pki.ca.parent, "--crl", crl)
    cli = await launch(pki, tmp_path / "state", nursery, "--crl", crl)
    follower: trio.Process | None = None
    try:
        flag = tmp_path / "go"
        job = job_id_of(await cli.jog("start", "--", *waits_for(flag, "started", "finished")))
        # Alice follows her job on a connection made before her certificate is revoked.
        follower = await follow(cli, job)
        seen = await wait_for_output(follower, b"started\n")

        alice = pki.user("alice").cert
        await jogger("certs", "revoke", "--cert", alice, "--out", pki.ca.parent, "--crl", crl)
        mark = len(cli.log)
        reloaded = await hang_up(cli, "certificates reloaded")
        assert "crl='1 CRL, 1 revoked" in reloaded

        refused = await cli.jog("list")
        assert refused.returncode == 3
        assert refused.stdout == b""
        assert refused.stderr.decode() == (
            f"jog: error: localhost:{cli.port}: the server rejected our client certificate "
            f"(TLS alert: certificate revoked); JOGGER_USER_CERT_FILE={alice} has been "
            "revoked: ask the server's operator for a new certificate\n"
        )
        assert "certificate verify failed: certificate revoked" in await logged(
            cli, "refused", mark
        )

        bob = await cli.jog("run", "--", "echo", "bob carries on", user="bob")
        assert (bob.returncode, bob.stdout) == (0, b"bob carries on\n")
        assert (await status_of(cli, job))["state"] == "running"

        flag.touch()
        assert follower.stdout is not None
        with trio.fail_after(30):
            async for data in follower.stdout:
                seen += data
            assert await follower.wait() == 0
        assert seen == b"started\nfinished\n"
        ended = await status_of(cli, job)
        assert (ended["state"], ended["exit_code"]) == ("completed", 0)
    finally:
        if follower is not None and follower.returncode is None:
            follower.kill()
            await follower.wait()
        await stop_server(cli.process)


async def read_until(
    chunks: AsyncIterator[jobs_pb2.OutputChunk], seen: bytearray, text: bytes
) -> None:
    with trio.fail_after(30):
        while text not in seen:
            seen += (await anext(chunks)).data


async def test_rotating_the_server_certificate_keeps_a_live_followers_stream(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    cert, key = await own_server_files(pki, tmp_path)
    cli = await launch(pki, tmp_path / "state", nursery, "--cert", cert, "--key", key)
    alice = pki.user("alice")
    try:
        assert (await served_certificate(pki, cli.port)).serial_number == serial_of(cert)
        flag = tmp_path / "go"
        async with open_client(
            "localhost", cli.port, ca=pki.ca, cert=alice.cert, key=alice.key
        ) as client:
            job = (await client.start(waits_for(flag, "first", "second"))).job_id
            async with client.output(job) as chunks:
                seen = bytearray()
                await read_until(chunks, seen, b"first\n")

                made, made_key = certs.make_server(ca_of(pki), ["localhost"], ["127.0.0.1"])
                certs.write_key(key, made_key)
                certs.write_cert(cert, made)
                reloaded = await hang_up(cli, "certificates reloaded")
                assert f"serial={certs.format_serial(made.serial_number)}" in reloaded
                rotated = await served_certificate(pki, cli.port)
                assert rotated.serial_number == made.serial_number
                assert rotated.fingerprint(hashes.SHA256()) == made.fingerprint(hashes.SHA256())

                # The connection made before carries on: new calls, and the stream.
                assert (await client.status(job)).state == jobs_pb2.JOB_STATE_RUNNING
                flag.touch()
                final = None
                with trio.fail_after(30):
                    async for chunk in chunks:
                        seen += chunk.data
                        if chunk.HasField("final"):
                            final = chunk.final
                assert bytes(seen) == b"first\nsecond\n"
                assert final is not None
                assert (final.state, final.exit_code) == (jobs_pb2.JOB_STATE_COMPLETED, 0)
    finally:
        await stop_server(cli.process)


async def test_a_reload_with_a_garbage_key_keeps_serving_the_old_certificate(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    cert, key = await own_server_files(pki, tmp_path)
    cli = await launch(pki, tmp_path / "state", nursery, "--cert", cert, "--key", key)
    try:
        made, made_key = certs.make_server(ca_of(pki), ["localhost"], ["127.0.0.1"])
        certs.write_cert(cert, made)
        key.write_text("garbage\n")
        failed = await hang_up(cli, "certificates not reloaded")
        assert "level=ERROR" in failed
        assert failed.endswith(
            f"the old ones stay in use: --key {key}: not a private key "
            "(no PEM '-----BEGIN PRIVATE KEY-----' block in it)"
        )
        assert (await served_certificate(pki, cli.port)).serial_number == serial_of(pki.server.cert)
        listed = await cli.jog("list")
        assert listed.returncode == 0, listed.stderr

        # Once the key is right, the next SIGHUP takes both.
        certs.write_key(key, made_key)
        await hang_up(cli, "certificates reloaded")
        assert (await served_certificate(pki, cli.port)).serial_number == made.serial_number
    finally:
        await stop_server(cli.process)
    assert cli.process.returncode == 0

"""A client certificate that is itself a CA cannot mint identities.

Another CA than ours may lack pathLen 0. A client certificate it issued with CA:TRUE then
passes OpenSSL's chain check as an intermediate, and could sign a certificate for any user,
OU=admin included. The server accepts only certificates its configured CAs signed
themselves.
"""

from dataclasses import replace
from pathlib import Path

import pytest
import trio
from cryptography.x509.oid import ExtendedKeyUsageOID

from jogger.rpc import certs
from jogger.rpc.client import open_client
from jogger.rpc.errors import RpcError, StatusCode
from jogger.server.main import serve
from tests.adversarial.lag import LoopLag
from tests.pki import Pair, Pki
from tests.servers import server_config

CLIENT = [ExtendedKeyUsageOID.CLIENT_AUTH]


def foreign_pki(directory: Path) -> tuple[Path, Pair, Pair, Pair, Path]:
    """An operator's CA without pathLen; its server cert; an honest user; a user cert with
    CA:TRUE (the minter); an admin cert the minter signed; and the minter's certificate."""
    directory.mkdir()
    ca = certs.make_ca("operator CA", path_length=None)
    certs.write_cert(directory / "ca.pem", ca.cert)

    def save(name: str, made: tuple[object, object], chain: bytes = b"") -> Pair:
        cert, key = made
        pair = Pair(directory / f"{name}.pem", directory / f"{name}-key.pem")
        certs.write_cert(pair.cert, cert)  # type: ignore[arg-type]
        certs.write_key(pair.key, key)  # type: ignore[arg-type]
        if chain:
            pair.cert.write_bytes(pair.cert.read_bytes() + chain)
        return pair

    server = save("server", certs.make_server(ca, ["localhost"], ["127.0.0.1"]))
    honest = save("bob", certs.make_user(ca, "bob"))
    minter_cert, minter_key = certs.make_leaf(ca, "mallory", usages=CLIENT, ca=True)
    minter = save("mallory", (minter_cert, minter_key))
    minted = save(
        "minted-root",
        certs.make_leaf(certs.Issuer(minter_cert, minter_key), "root", usages=CLIENT, unit="admin"),
        chain=minter.cert.read_bytes(),  # the client sends the minter along as intermediate
    )
    return directory / "ca.pem", server, honest, minted, minter.cert


@pytest.mark.parametrize("operator_trusts_the_minter", [False, True])
async def test_a_certificate_signed_by_a_client_certificate_is_refused(
    pki: Pki,
    tmp_path: Path,
    nursery: trio.Nursery,
    loop_lag: LoopLag,
    operator_trusts_the_minter: bool,
) -> None:
    ca, server_pair, honest, minted, minter = foreign_pki(tmp_path / "pki")
    if operator_trusts_the_minter:
        # An operator who lists an intermediate in --ca-cert trusts it, knowingly.
        ca.write_bytes(ca.read_bytes() + minter.read_bytes())
    config = replace(
        server_config(pki, tmp_path / "state"),
        ca_cert=ca,
        cert=server_pair.cert,
        key=server_pair.key,
    )
    bound = await nursery.start(serve, config)
    port = bound[0][1]
    with trio.fail_after(20):
        async with open_client("localhost", port, ca=ca, cert=minted.cert, key=minted.key) as c:
            if operator_trusts_the_minter:
                assert await c.list(all_users=True) == ([], False)
            else:
                with pytest.raises(RpcError) as info:
                    await c.list(all_users=True)
                assert info.value.code == StatusCode.UNAUTHENTICATED
                assert "not issued by the server's CA itself" in info.value.message
        # A well-behaved user of the same CA is served all along.
        async with open_client("localhost", port, ca=ca, cert=honest.cert, key=honest.key) as c:
            job = await c.start(["echo", "ok"])
            async with c.output(job.job_id, follow=True) as chunks:
                assert b"".join([chunk.data async for chunk in chunks]) == b"ok\n"

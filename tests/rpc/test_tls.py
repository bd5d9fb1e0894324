"""Mutual TLS: who gets in, who does not, and what each side is told."""

import ssl
from pathlib import Path

import pytest
import trio

from jogger.rpc.channel import open_channel
from jogger.rpc.client import JobsClient, open_client
from jogger.rpc.errors import RpcError, StatusCode
from jogger.rpc.failures import TransportError
from jogger.rpc.tls import client_context
from jogger.server.main import serve
from tests.pki import Pki
from tests.servers import Server, server_config

REJECTED = "the server rejected our client certificate"


async def list_as(server: Server, cert: Path, key: Path, ca: Path | None = None) -> None:
    async with open_client(
        "localhost", server.port, ca=ca or server.pki.ca, cert=cert, key=key
    ) as client:
        await client.list()


@pytest.mark.parametrize(
    ("name", "told"),
    [
        # OpenSSL refuses these in the handshake; under TLS 1.3 the client learns it on its
        # first read, from the server's alert.
        ("other-ca", f"{REJECTED} (TLS alert: unknown ca)"),
        ("expired", "the server rejected our client certificate (TLS alert: certificate expired)"),
        (
            "not-yet-valid",
            "the server rejected our client certificate (TLS alert: bad certificate)",
        ),
        (
            "server-only",
            "the server rejected our client certificate (TLS alert: unsupported certificate)",
        ),
        # OpenSSL accepts these; our own checks refuse them, with the reason.
        ("no-eku", "client certificate has no ExtendedKeyUsage extension"),
        ("no-key-usage", "client certificate has no KeyUsage extension"),
        ("ca-true", "client certificate is a CA certificate"),
        ("bad-cn", "client certificate Common Name 'Alice Smith' is not a username"),
    ],
)
async def test_server_refuses_bad_client_certificates(server: Server, name: str, told: str) -> None:
    pair = server.pki.user(name)
    with trio.fail_after(10), pytest.raises((TransportError, RpcError)) as info:
        await list_as(server, pair.cert, pair.key)
    if isinstance(info.value, RpcError):
        assert info.value.code == StatusCode.UNAUTHENTICATED
        assert info.value.message == f"client certificate rejected: {told}"
    else:
        assert str(info.value) == told


async def test_server_refuses_a_client_without_a_certificate(server: Server) -> None:
    context = ssl.create_default_context(cafile=str(server.pki.ca))
    context.set_alpn_protocols(["h2"])
    with trio.fail_after(10), pytest.raises(TransportError) as info:
        async with open_channel("localhost", server.port, context) as channel:
            await JobsClient(channel).list()
    assert str(info.value) == "the server requires a client certificate and got none"


async def test_client_refuses_a_server_of_another_ca(server: Server) -> None:
    alice = server.pki.user("alice")
    other_ca = server.pki.ca.with_name("other-ca.pem")
    with trio.fail_after(10), pytest.raises(TransportError) as info:
        await list_as(server, alice.cert, alice.key, ca=other_ca)
    assert str(info.value).startswith("we rejected the server's certificate: ")


async def test_client_checks_the_servers_name(pki: Pki, tmp_path: Path) -> None:
    wrong = pki.user("wrong-name-server")
    config = server_config(pki, tmp_path / "state")
    config = type(config)(**{**config.__dict__, "cert": wrong.cert, "key": wrong.key})
    alice = pki.user("alice")
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve, config)
        with trio.fail_after(10), pytest.raises(TransportError) as info:
            async with open_client(
                "localhost", bound[0][1], ca=pki.ca, cert=alice.cert, key=alice.key
            ) as client:
                await client.list()
        nursery.cancel_scope.cancel()  # the test is over: shut the server down
    assert "Hostname mismatch" in str(info.value)


async def test_tls12_is_accepted_only_with_ecdhe_ecdsa_aead(server: Server) -> None:
    alice = server.pki.user("alice")
    good = client_context(server.pki.ca, alice.cert, alice.key)
    good.maximum_version = ssl.TLSVersion.TLSv1_2
    good.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    async with open_channel("localhost", server.port, good) as channel:
        assert await JobsClient(channel).list() == ([], False)

    weak = client_context(server.pki.ca, alice.cert, alice.key)
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("ECDHE-ECDSA-AES128-SHA")  # CBC, no AEAD
    with trio.fail_after(10), pytest.raises(TransportError):
        async with open_channel("localhost", server.port, weak) as channel:
            await JobsClient(channel).list()


async def test_identity_comes_from_the_certificate_not_from_metadata(server: Server) -> None:
    # The client cannot name itself: alice's certificate makes every call alice's.
    async with server.connect("alice") as alice:
        job = await alice.start(["true"])
    assert job.owner == "alice"

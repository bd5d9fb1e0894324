"""The server checks a client certificate once per TLS material (server.py's ``_identify``):
a certificate seen again on a new connection is not parsed and checked again, but new
material (a reload) checks it afresh, so a CRL that now lists it refuses it."""

import dataclasses
import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from cryptography import x509

from jogger.rpc import auth, certs, crl
from jogger.rpc.channel import open_channel
from jogger.rpc.credentials import TlsHolder, load_server_tls
from jogger.rpc.errors import RpcError, StatusCode
from jogger.rpc.method import Call, Method
from jogger.rpc.server import open_rpc_server
from jogger.rpc.tls import client_context
from jogger.v1 import jobs_pb2
from tests.pki import Pki

STATUS = "/jogger.v1.Jobs/Status"


async def whoami(call: Call, request: Any) -> jobs_pb2.JobStatus:
    return jobs_pb2.JobStatus(job_id=request.job_id, owner=call.identity.user)


@pytest.fixture
async def served(pki: Pki, nursery: trio.Nursery) -> AsyncIterator[tuple[TlsHolder, int]]:
    holder = TlsHolder(load_server_tls(pki.ca, pki.server.cert, pki.server.key))
    methods = {STATUS: Method(jobs_pb2.StatusRequest, unary=whoami)}
    async with open_rpc_server(holder, methods, drain_timeout=0.1) as server:
        bound = await nursery.start(server.listen, [("127.0.0.1", 0)])
        yield holder, bound[0][1]


async def call_as(pki: Pki, port: int, user: str) -> jobs_pb2.JobStatus:
    pair = pki.user(user)
    context = client_context(pki.ca, pair.cert, pair.key)
    with trio.fail_after(30):
        async with open_channel("localhost", port, context) as channel:
            return await channel.unary(
                STATUS, jobs_pb2.StatusRequest(job_id="x"), jobs_pb2.JobStatus
            )


async def test_a_certificate_seen_again_is_not_checked_again_with_the_same_material(
    pki: Pki, served: tuple[TlsHolder, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, port = served
    checked: list[str] = []

    def counted(der: bytes | None, *args: Any) -> auth.Identity:
        identity = auth.identify_client(der, *args)
        checked.append(identity.user)
        return identity

    monkeypatch.setattr("jogger.rpc.server.identify_client", counted)
    for _ in range(3):
        assert (await call_as(pki, port, "alice")).owner == "alice"
    assert (await call_as(pki, port, "bob")).owner == "bob"
    assert checked == ["alice", "bob"]


async def test_new_material_checks_a_known_certificate_again_and_its_crl_refuses_it(
    pki: Pki, served: tuple[TlsHolder, int]
) -> None:
    holder, port = served
    assert (await call_as(pki, port, "alice")).owner == "alice"
    # A reload whose CRL lists alice. OpenSSL would refuse her in the handshake; here its
    # context stays the old one, so that only the check after the handshake can refuse her,
    # and it must not answer from what it knew of the old material.
    issuer = certs.load_issuer(pki.ca, pki.ca.parent / "ca-key.pem")
    serial = x509.load_pem_x509_certificate(pki.user("alice").cert.read_bytes()).serial_number
    now = datetime.datetime.now(datetime.UTC)
    revoked = crl.sign(issuer, [crl.entry(serial, now)], 1, now=now)
    revocations = crl.check([revoked], list(holder.current.issuers), now)
    holder.current = dataclasses.replace(holder.current, revocations=revocations)
    with pytest.raises(RpcError) as caught:
        await call_as(pki, port, "alice")
    assert caught.value.code == StatusCode.UNAUTHENTICATED
    assert "has been revoked" in caught.value.message
    assert (await call_as(pki, port, "bob")).owner == "bob"

"""The audit log through the real server (in-process), real clients and real mutual TLS."""

import dataclasses
import datetime
import json
import re
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
import trio

from jogger.rpc.client import connect
from jogger.rpc.errors import RpcError, StatusCode
from jogger.rpc.failures import TransportError
from jogger.rpc.tls import client_context
from jogger.server.audit import MAX_ARGV, MAX_TEXT
from jogger.server.config import load
from jogger.v1 import jobs_pb2
from tests.pki import Pki
from tests.server.test_service import UNKNOWN, write_to
from tests.servers import Server, server_config, start_server

START = "/jogger.v1.Jobs/Start"
FIELDS = [
    "time",
    "event",
    "result",
    "user",
    "serial",
    "fingerprint",
    "peer",
    "method",
    "job_id",
    "reason",
]
"""On every line, in this order (null when the event has none)."""


@dataclasses.dataclass
class Audited:
    server: Server
    path: Path

    def lines(self) -> list[dict[str, Any]]:
        """Every line so far, each checked to be one JSON object of printable ASCII."""
        data = self.path.read_bytes()
        assert data == b"" or data.endswith(b"\n")
        assert all(0x20 <= byte < 0x7F for byte in data.replace(b"\n", b""))
        lines = [json.loads(line) for line in data.decode("ascii").splitlines()]
        for line in lines:
            assert list(line)[: len(FIELDS)] == FIELDS
        return lines

    def events(self, *names: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["event"] in names]


async def audited_server(pki: Pki, tmp_path: Path, nursery: trio.Nursery, **limits: int) -> Audited:
    path = tmp_path / "audit.log"
    config = dataclasses.replace(server_config(pki, tmp_path / "state", **limits), audit_log=path)
    return Audited(await start_server(nursery, pki, config), path)


@pytest.fixture
async def audited(pki: Pki, tmp_path: Path, nursery: trio.Nursery) -> Audited:
    return await audited_server(pki, tmp_path, nursery)


async def openssl_says(cert: Path) -> tuple[str, str]:
    """The certificate's serial and SHA-256 fingerprint, as openssl prints them."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    done = await trio.run_process(
        ["openssl", "x509", "-noout", "-serial", "-fingerprint", "-sha256", "-in", cert],
        capture_stdout=True,
    )
    serial, fingerprint = (line.split("=", 1)[1] for line in done.stdout.decode().splitlines())
    return serial, fingerprint


async def test_start_and_stop_write_who_did_what_to_which_job_and_how_it_ended(
    audited: Audited,
) -> None:
    server = audited.server
    with trio.fail_after(30):
        async with server.connect("alice") as alice:
            job = await alice.start(["sleep", "30"])
            await alice.stop(job.job_id, grace=0)
            with pytest.raises(RpcError):
                await alice.stop(UNKNOWN)
    start, stop, unknown = audited.lines()
    serial, fingerprint = await openssl_says(server.pki.user("alice").cert)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", start["time"])
    when = datetime.datetime.fromisoformat(start["time"])
    assert abs(datetime.datetime.now(datetime.UTC) - when) < datetime.timedelta(hours=1)
    assert start["event"] == "start"
    assert start["result"] == "ok"
    assert (start["user"], start["serial"], start["fingerprint"]) == ("alice", serial, fingerprint)
    assert re.fullmatch(r"127\.0\.0\.1:\d+", start["peer"])
    assert start["method"] == START
    assert start["job_id"] == job.job_id
    assert start["reason"] is None
    assert start["argv"] == ["sleep", "30"]
    assert "truncated" not in start
    assert stop["event"] == "stop"
    assert (stop["result"], stop["job_id"], stop["user"]) == ("ok", job.job_id, "alice")
    assert stop["method"] == "/jogger.v1.Jobs/Stop"
    assert "argv" not in stop
    assert (unknown["event"], unknown["result"], unknown["job_id"]) == (
        "stop",
        "NOT_FOUND",
        UNKNOWN,
    )
    assert unknown["reason"] == f"job {UNKNOWN} not found"


async def test_an_admin_reading_anothers_job_is_written_and_reading_ones_own_is_not(
    audited: Audited,
) -> None:
    server = audited.server
    with trio.fail_after(30):
        async with server.connect("alice") as alice, server.connect("root") as admin:
            job = await alice.start(["sh", "-c", "echo secret"])
            # The owner, however often: nothing.
            await alice.status(job.job_id)
            async with alice.output(job.job_id) as chunks:
                assert b"".join([chunk.data async for chunk in chunks]) == b"secret\n"
            await alice.list()
            assert audited.events("admin-read") == []
            # The admin, on alice's job: each read.
            await admin.status(job.job_id)
            async with admin.output(job.job_id) as chunks:
                assert b"".join([chunk.data async for chunk in chunks]) == b"secret\n"
            await admin.list(all_users=True)
            # The admin, on their own job: nothing.
            own = await admin.start(["true"])
            await admin.status(own.job_id)
            await admin.list()
    reads = audited.events("admin-read")
    assert [(r["method"], r["job_id"], r["owner"]) for r in reads] == [
        ("/jogger.v1.Jobs/Status", job.job_id, "alice"),
        ("/jogger.v1.Jobs/Output", job.job_id, "alice"),
        ("/jogger.v1.Jobs/List", None, None),
    ]
    assert {(r["user"], r["result"]) for r in reads} == {("root", "ok")}
    assert [line["event"] for line in audited.lines()] == [
        "start",
        "admin-read",
        "admin-read",
        "admin-read",
        "start",
    ]


async def test_refusals_by_policy_are_written_with_their_code_and_reason(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    audited = await audited_server(pki, tmp_path, nursery, max_jobs_per_owner=1)
    server = audited.server
    with trio.fail_after(30):
        async with server.connect("alice") as alice:
            job = await alice.start(["cat"], input=jobs_pb2.INPUT_PIPE)
            with pytest.raises(RpcError) as over:
                await alice.start(["sleep", "30"])
            assert over.value.code == StatusCode.RESOURCE_EXHAUSTED
            with pytest.raises(RpcError) as listing:
                await alice.list(all_users=True)
            assert listing.value.code == StatusCode.PERMISSION_DENIED
            with pytest.raises(RpcError) as writing:
                await write_to(server, "root", job.job_id, b"not yours\n")
            assert writing.value.code == StatusCode.PERMISSION_DENIED
            await alice.stop(job.job_id, grace=0)
    started, refused_start, refused_list, refused_write, _ = audited.lines()
    assert (started["event"], started["result"]) == ("start", "ok")
    assert refused_start["event"] == "start"
    assert refused_start["result"] == "RESOURCE_EXHAUSTED"
    assert refused_start["reason"] == over.value.message
    assert refused_start["job_id"] is None
    assert refused_start["argv"] == ["sleep", "30"]
    assert refused_list["event"] == "refused"
    assert (refused_list["user"], refused_list["method"]) == ("alice", "/jogger.v1.Jobs/List")
    assert refused_list["result"] == "PERMISSION_DENIED"
    assert refused_list["reason"] == "listing every user's jobs is for admins"
    assert refused_write["event"] == "refused"
    assert (refused_write["user"], refused_write["job_id"]) == ("root", job.job_id)
    assert refused_write["method"] == "/jogger.v1.Jobs/Write"
    assert refused_write["reason"] == "only the job's owner may write to its input"


async def refused_as(server: Server, name: str) -> None:
    """Connect with the test PKI's certificate ``name`` and call, which must fail; returns
    once the server has refused it (the client has its alert or its status)."""
    pair = server.pki.user(name)
    context = client_context(server.pki.ca, pair.cert, pair.key)
    with trio.fail_after(20), pytest.raises((TransportError, RpcError)):
        async with connect("localhost", server.port, context) as client:
            await client.list()


async def test_a_certificate_of_another_ca_is_an_authentication_failure(
    audited: Audited,
) -> None:
    await refused_as(audited.server, "other-ca")
    [line] = audited.lines()
    assert line["event"] == "authentication-failure"
    assert line["result"] == "UNAUTHENTICATED"
    assert line["reason"] == ("client certificate refused: unable to get local issuer certificate")
    assert re.fullmatch(r"127\.0\.0\.1:\d+", line["peer"])
    # OpenSSL keeps no certificate it refused: there is nothing to name it by.
    assert (line["user"], line["serial"], line["fingerprint"]) == (None, None, None)
    assert (line["method"], line["job_id"]) == (None, None)


async def test_a_certificate_our_rules_refuse_is_named_by_its_serial_and_fingerprint(
    audited: Audited,
) -> None:
    await refused_as(audited.server, "bad-cn")
    [line] = audited.lines()
    serial, fingerprint = await openssl_says(audited.server.pki.user("bad-cn").cert)
    assert line["event"] == "authentication-failure"
    assert (line["user"], line["serial"], line["fingerprint"]) == (
        "Alice Smith",
        serial,
        fingerprint,
    )
    assert line["reason"] == (
        "client certificate rejected: client certificate Common Name 'Alice Smith' "
        "is not a username"
    )


async def test_many_authentication_failures_write_a_bounded_number_of_lines_and_a_count(
    audited: Audited,
) -> None:
    attempts = 60
    for _ in range(attempts):
        await refused_as(audited.server, "other-ca")
    written = len(audited.lines())
    assert written < attempts
    # The bucket refills (a line a second): the next failure written says how many before it
    # were not, so that every failure is a line or counted in one.
    with trio.fail_after(60):
        while True:
            before = len(audited.lines())
            await trio.sleep(0.2)
            await refused_as(audited.server, "other-ca")
            attempts += 1
            if len(audited.lines()) > before:
                break
    lines = audited.lines()
    assert {line["event"] for line in lines} == {"authentication-failure"}
    assert any("suppressed" in line for line in lines)
    assert len(lines) + sum(line.get("suppressed", 0) for line in lines) == attempts


async def test_failures_left_out_when_the_server_stops_are_counted_in_its_last_line(
    pki: Pki, tmp_path: Path
) -> None:
    attempts = 0
    async with trio.open_nursery() as nursery:
        audited = await audited_server(pki, tmp_path, nursery)
        with trio.fail_after(60):
            while True:  # until one is left out
                before = len(audited.lines())
                await refused_as(audited.server, "other-ca")
                attempts += 1
                if len(audited.lines()) == before:
                    break
        nursery.cancel_scope.cancel()  # the server stops, as on SIGTERM
    *failures, last = audited.lines()
    assert {line["event"] for line in failures} == {"authentication-failure"}
    assert last["event"] == "authentication-failures-suppressed"
    assert len(failures) + sum(line.get("suppressed", 0) for line in [*failures, last]) == attempts


async def test_nothing_a_client_sends_can_add_a_line_or_a_field(audited: Audited) -> None:
    forged = '"}\n{"event":"start","user":"root","result":"ok"}\r\n\u2028\u2029\x1b[2J\x00'
    argv = ["echo", forged.replace("\x00", ""), '\\"', "\u202e", "x" * 10_000]
    server = audited.server
    with trio.fail_after(30):
        async with server.connect("alice") as alice, server.connect("root") as admin:
            job = await alice.start(argv)
            for bad_id in (forged, "y" * 10_000):
                for call in (alice.stop(bad_id), admin.status(bad_id)):
                    with pytest.raises(RpcError):
                        await call
    lines = audited.lines()  # each one JSON object of printable ASCII
    assert [(line["event"], line["user"]) for line in lines] == [
        ("start", "alice"),
        ("stop", "alice"),
        ("stop", "alice"),
    ]
    start, forged_stop, long_stop = lines
    assert start["job_id"] == job.job_id
    assert start["argv"] == [*argv[:4], "x" * (MAX_ARGV - 3 * 5 - sum(map(len, argv[:4])))]
    assert start["truncated"] == ["argv"]
    assert forged_stop["job_id"] == forged
    assert long_stop["job_id"] == "y" * MAX_TEXT
    assert long_stop["truncated"] == ["job_id"]
    assert long_stop["reason"].startswith("job id ")


def test_the_audit_log_flag_is_made_absolute_so_that_a_reopen_finds_the_same_path(
    pki: Pki,
) -> None:
    tls = ["--ca-cert", str(pki.ca), "--cert", str(pki.server.cert), "--key", str(pki.server.key)]
    config = load([*tls, "--audit-log", "audit.log", "--log-format", "json"])
    assert config.audit_log == Path.cwd() / "audit.log"
    assert config.log_format == "json"
    config = load(tls)
    assert (config.audit_log, config.log_format) == (None, "text")


async def test_the_file_is_created_mode_0600_and_a_wider_one_is_narrowed(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(b"")
    path.chmod(0o644)
    audited = await audited_server(pki, tmp_path, nursery)
    assert stat.S_IMODE(audited.path.stat().st_mode) == 0o600
    async with audited.server.connect("alice") as alice:
        await alice.start(["true"])
    assert [line["event"] for line in audited.lines()] == ["start"]

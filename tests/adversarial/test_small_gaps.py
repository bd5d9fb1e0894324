"""Small gaps an adversarial review found, each with its attack: list pages, a full disk,
the state dir's mode, TLS tickets, a timing oracle, a hostile server's trailer."""

import contextlib
import json
import os
import ssl
import stat
import subprocess
import time
from pathlib import Path

import pytest
import trio

from jogger import JobManager
from jogger.engine import InvalidRequest
from jogger.rpc.errors import RpcError, StatusCode
from jogger.rpc.tls import client_context
from tests.adversarial.test_transport import jog_run_works
from tests.e2e.conftest import BIN, launch, mounted_tmpfs, stop_server
from tests.e2e.test_cli import job_id_of
from tests.pki import Pki
from tests.servers import Server


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
async def test_the_server_issues_no_session_tickets(
    server: Server, version: ssl.TLSVersion
) -> None:
    alice = server.pki.user("alice")
    context = client_context(server.pki.ca, alice.cert, alice.key)
    context.maximum_version = version
    tcp = await trio.open_tcp_stream("127.0.0.1", server.port)
    tls = trio.SSLStream(tcp, context, server_hostname="localhost")
    try:
        with trio.fail_after(10):
            await tls.do_handshake()
            # TLS 1.3 tickets come after the handshake, with the server's first bytes.
            await tls.send_all(
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"
            )
            assert await tls.receive_some()
        assert tls.session is not None
        assert not tls.session.has_ticket
    finally:
        await trio.aclose_forcefully(tls)


async def test_a_state_dir_made_beforehand_is_made_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "logs").mkdir(parents=True)
    for d in (state, state / "logs"):
        d.chmod(0o755)
    async with JobManager(state) as jobs:
        await jobs.start("alice", ["true"])
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "logs").stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in (state / "logs").iterdir()} == {0o600}


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
async def test_a_state_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    with pytest.raises(InvalidRequest, match="belongs to uid 65534, not to us"):
        async with JobManager(state):
            pass
    assert list(state.iterdir()) == []


async def jog(server: Server, user: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process(
            [BIN / "jog", *args],
            env=server.jog_env(user),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def test_a_list_page_ends_early_on_bytes_and_the_token_goes_on(server: Server) -> None:
    # 40 jobs with 127 KiB of argv each: 5 MB, past any client's 4 MiB message limit.
    async with server.connect("bob") as bob:
        started = [(await bob.start(["true", f"{i:03}" + "x" * 127_000])).job_id for i in range(40)]
    mine = await jog(server, "bob", "list", "--json")
    assert (mine.returncode, mine.stderr) == (0, b"")
    assert [j["job_id"] for j in json.loads(mine.stdout)] == started[::-1]
    everyone = await jog(server, "root", "list", "--all", "--json", "--limit", "0")
    assert (everyone.returncode, everyone.stderr) == (0, b"")
    assert [j["job_id"] for j in json.loads(everyone.stdout)] == started[::-1]
    async with server.connect("bob") as bob:
        page = await bob.list_page(page_size=1000)
        assert 1 <= len(page.jobs) < 40
        assert page.ByteSize() <= (1 << 20) + 200_000
        assert page.next_page_token
    await jog_run_works(server)


async def test_another_users_running_job_answers_like_a_missing_one(server: Server) -> None:
    # A sign test on interleaved pairs: before, 99% of the foreign job's answers came faster
    # than the missing id's (the one skipped the store); taking the same path, about half do.
    missing = "5b4c1f5e-2f0c-4c38-9d8e-7f5b8a1d2c3e"
    async with server.connect("alice") as alice, server.connect("bob") as bob:
        foreign = (await alice.start(["sleep", "300"])).job_id

        async def timed(job_id: str) -> float:
            start = time.perf_counter()
            with pytest.raises(RpcError) as info:
                await bob.status(job_id)
            assert info.value.code == StatusCode.NOT_FOUND
            assert info.value.message == f"job {job_id} not found"
            return time.perf_counter() - start

        for _ in range(20):  # warm up both paths
            await timed(foreign)
            await timed(missing)
        faster = 0
        pairs = 300
        for i in range(pairs):
            first, second = (foreign, missing) if i % 2 else (missing, foreign)
            a, b = await timed(first), await timed(second)
            foreign_time, missing_time = (a, b) if first == foreign else (b, a)
            faster += foreign_time < missing_time
        await alice.stop(foreign)
    assert 0.25 < faster / pairs < 0.75, f"{faster} of {pairs} foreign answers were faster"
    await jog_run_works(server)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
async def test_a_crash_on_a_full_disk_recovers_and_then_refuses_starts(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with mounted_tmpfs(tmp_path / "small", "4m") as state:
        filler = state / "filler"
        first = await launch(pki, state, nursery)
        try:
            job = job_id_of(await first.jog("start", "--", "sleep", "300"))
            # Something else fills the file system to its last byte; then the server dies.
            # (The job outlives it, and the next server adopts it.)
            # Unbuffered: a buffered file's close would flush what the full disk refused,
            # and raise ENOSPC outside the suppress (when the room left is not a multiple of
            # the writes).
            with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 65536)
            first.process.kill()
            await first.process.wait()
        finally:
            await stop_server(first.process)
        second = await launch(pki, state, nursery)
        try:
            assert any("file system is full" in line for line in second.log)
            status = json.loads((await second.jog("status", "--json", job)).stdout)
            assert (status["state"], status["reason"]) == ("running", "")  # adopted
            listed = await second.jog("list")
            assert listed.returncode == 0
            refused = await second.jog("start", "--", "true")
            assert refused.returncode == 3
            assert refused.stderr.decode().endswith(
                f"the state dir's file system ({state}) is full: no room to record a new job; "
                "jobs on record can still be read\n"
            )
            filler.unlink()  # room again: jobs start again
            again = await second.jog("run", "--", "echo", "ok")
            assert (again.returncode, again.stdout) == (0, b"ok\n")
        finally:
            await stop_server(second.process)
        assert second.process.returncode == 0

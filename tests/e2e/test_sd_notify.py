"""The real jogger-server under a stand-in for systemd's notify socket: an AF_UNIX datagram
socket named by NOTIFY_SOCKET, as Type=notify passes it. (systemd is not process 1 on the
test machines, so the unit itself cannot be run; this is the protocol it relies on.)"""

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from tests.e2e.conftest import BIN, Cli, server_env, stop_server
from tests.pki import Pki


@dataclass
class Notified:
    process: trio.Process
    socket: trio.socket.SocketType
    log: Path
    port: int = 0

    async def next(self) -> dict[str, str]:
        """The next datagram's fields."""
        with trio.move_on_after(30):
            message = (await self.socket.recv(4096)).decode()
            return dict(line.split("=", 1) for line in message.splitlines())
        raise AssertionError("no message in 30 s; the server said:\n" + self.log.read_text())

    async def until(self, field: str) -> list[dict[str, str]]:
        """Every message up to the first with ``field``, in order."""
        seen = [await self.next()]
        while field not in seen[-1]:
            seen.append(await self.next())
        return seen


@asynccontextmanager
async def notify_socket(abstract: bool) -> AsyncIterator[tuple[trio.socket.SocketType, str]]:
    """A bound datagram socket, and NOTIFY_SOCKET's value for it."""
    with trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM) as sock:
        if abstract:
            name = f"jogger-test-{uuid.uuid4()}"
            await sock.bind("\0" + name)
            yield sock, "@" + name
            return
        directory = tempfile.mkdtemp(prefix="jn-")  # short: sun_path holds 108 bytes
        path = os.path.join(directory, "notify")
        try:
            await sock.bind(path)
            yield sock, path
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.rmdir(directory)


async def start_notified(
    pki: Pki, tmp_path: Path, sock: trio.socket.SocketType, value: str
) -> Notified:
    log = tmp_path / "server.log"
    stderr = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        process = await trio.lowlevel.open_process(
            [
                BIN / "jogger-server",
                "--listen",
                "127.0.0.1:0",
                "--state-dir",
                tmp_path / "state",
                "--grace",
                "2",
                "--drain-timeout",
                "2",
                "--run-as",
                "server",
            ],
            env={**server_env(pki), "NOTIFY_SOCKET": value},
            stdin=subprocess.DEVNULL,
            stderr=stderr,
        )
    finally:
        os.close(stderr)
    return Notified(process, sock, log)


@pytest.fixture
async def notified(
    pki: Pki, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Notified]:
    """The server, told a path (or ``abstract``, as the parametrized test asks)."""
    abstract = getattr(request, "param", "path") == "abstract"
    async with notify_socket(abstract) as (sock, value):
        server = await start_notified(pki, tmp_path, sock, value)
        try:
            yield server
        finally:
            await stop_server(server.process)
        # A SIGTERM however soon after READY=1 is a graceful shutdown, not a kill.
        assert server.process.returncode == 0, server.log.read_text()


async def ready(server: Notified) -> dict[str, str]:
    """Wait for READY=1 (only for it, not for the log); note the port it names."""
    messages = await server.until("READY")
    assert messages[0]["STATUS"].startswith("starting")
    found = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)", messages[-1]["STATUS"])
    assert found, messages[-1]
    server.port = int(found.group(1))
    return messages[-1]


@pytest.mark.parametrize("notified", ["path", "abstract"], indirect=True)
async def test_ready_comes_once_the_port_accepts_connections(notified: Notified) -> None:
    assert (await ready(notified))["READY"] == "1"
    # No retry: at READY=1, a connection must already be accepted.
    stream = await trio.open_tcp_stream("127.0.0.1", notified.port)
    await stream.aclose()


async def test_sighup_is_reloading_then_ready_and_sigterm_is_stopping(
    notified: Notified,
) -> None:
    first = await ready(notified)
    notified.process.send_signal(signal.SIGHUP)
    reloading = await notified.next()
    assert reloading["RELOADING"] == "1"
    assert int(reloading["MONOTONIC_USEC"]) > 0
    assert await notified.next() == first
    notified.process.send_signal(signal.SIGTERM)
    assert await notified.next() == {"STOPPING": "1", "STATUS": "shutting down: stopping the jobs"}
    with trio.fail_after(30):
        assert await notified.process.wait() == 0


def environ_of(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def children_of(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except (OSError, ValueError):
            continue  # not a process, or gone
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(name))
    return found


async def test_nothing_the_server_starts_can_notify_as_the_service(
    notified: Notified, pki: Pki
) -> None:
    await ready(notified)
    cli = Cli(pki, notified.process, notified.port)
    ran = await cli.jog("run", "--", "env")
    assert ran.returncode == 0, ran.stderr
    assert b"PATH=" in ran.stdout
    assert b"NOTIFY_SOCKET" not in ran.stdout
    # A running job, and its supervisor: their environments, as the kernel has them.
    started = await cli.jog("start", "--", "sleep", "60")
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.decode().split()[-1]
    try:
        supervisors = children_of(notified.process.pid)
        jobs = [pid for supervisor in supervisors for pid in children_of(supervisor)]
        assert supervisors
        assert jobs
        for pid in supervisors + jobs:
            assert not [v for v in environ_of(pid) if v.startswith(b"NOTIFY_SOCKET=")]
    finally:
        stopped = await cli.jog("stop", job_id)
        assert stopped.returncode == 0, stopped.stderr

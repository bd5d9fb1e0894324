"""The real jogger-server and the real jog, as separate processes, over loopback."""

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from tests.pki import Pki

BIN = Path(sys.executable).parent


@dataclass
class Cli:
    pki: Pki
    process: trio.Process
    port: int
    log: list[str] = field(default_factory=list)

    def env(self, user: str = "alice", **extra: str) -> dict[str, str]:
        pair = self.pki.user(user)
        base = {k: v for k, v in os.environ.items() if not k.startswith("JOGGER_")}
        return {
            **base,
            "JOGGER_HOST": f"localhost:{self.port}",
            "JOGGER_CA_CERT_FILE": str(self.pki.ca),
            "JOGGER_USER_CERT_FILE": str(pair.cert),
            "JOGGER_USER_KEY_FILE": str(pair.key),
            **extra,
        }

    async def jog(
        self, *args: str, user: str = "alice", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        with trio.fail_after(30):
            return await trio.run_process(
                [BIN / "jog", *args],
                env=env if env is not None else self.env(user),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )


async def _read_log(stream: trio.abc.ReceiveStream, lines: list[str]) -> None:
    buffer = b""
    async for data in stream:
        buffer += data
        *done, buffer = buffer.split(b"\n")
        lines.extend(line.decode() for line in done)


def server_env(pki: Pki, **files: str) -> dict[str, str]:
    """The environment for the real jogger-server with the test PKI (``files`` replace some)."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("JOGGER_")},
        "JOGGER_CA_CERT_FILE": str(pki.ca),
        "JOGGER_SERVER_CERT_FILE": str(pki.server.cert),
        "JOGGER_SERVER_KEY_FILE": str(pki.server.key),
        **files,
    }


@asynccontextmanager
async def mounted_tmpfs(path: Path, size: str) -> AsyncIterator[Path]:
    """A small file system at ``path`` (made 0700), to fill up; root only."""
    await trio.Path(path).mkdir(mode=0o700)
    await trio.run_process(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path])
    try:
        yield path
    finally:
        await trio.run_process(["umount", path])


async def launch(
    pki: Pki,
    state_dir: Path,
    nursery: trio.Nursery,
    *args: str | Path,
    port: int = 0,
    prefix: Sequence[str] = (),
) -> Cli:
    """Start the real jogger-server on loopback, on ``port`` (0: a free one); return once it
    listens. ``prefix``: a command that runs it (setpriv ...)."""
    env = server_env(pki)
    process = await trio.lowlevel.open_process(
        [
            *prefix,
            BIN / "jogger-server",
            "--listen",
            f"127.0.0.1:{port}",
            "--state-dir",
            state_dir,
            "--grace",
            "2",
            "--drain-timeout",
            "2",
            # As root the default would be nobody, who cannot run the tests' Python (under
            # a 0700 home on CI); tests/adversarial/test_hostile_jobs.py covers --run-as.
            "--run-as",
            "server",
            *args,
        ],
        env=env,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    lines: list[str] = []
    try:
        nursery.start_soon(_read_log, process.stderr, lines)
        with trio.fail_after(20):
            while not any("listening on" in line for line in lines):
                if process.poll() is not None:
                    raise AssertionError("jogger-server exited: " + "\n".join(lines))
                await trio.sleep(0.02)
    except BaseException:
        await stop_server(process)
        raise
    listening = next(line for line in lines if "listening on" in line)
    port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", listening).group(1))  # type: ignore[union-attr]
    return Cli(pki, process, port, lines)


async def stop_server(process: trio.Process) -> None:
    """SIGTERM, then SIGKILL if it has not exited in 20 s."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(20):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.fixture
async def cli(pki: Pki, tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Cli]:
    server = await launch(pki, tmp_path / "state", nursery)
    try:
        yield server
    finally:
        # No server outlives its test.
        await stop_server(server.process)

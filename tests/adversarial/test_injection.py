"""What a job's argv or a peer's :path holds cannot redraw a terminal or forge a log line."""

import subprocess
from pathlib import Path

import pytest

from jogger._text import escape, shell_join
from tests.e2e.conftest import Cli, cli
from tests.procs import eventually
from tests.rpc.raw_h2 import message, raw_connection
from tests.servers import Server

TITLE = "\x1b]0;you have been pwned\x07"
FAKE_ROW = "x\n00000000-0000-0000-0000-000000000000  completed  exit code 0  -  root  rm -rf /"
__all__ = ["cli"]  # the fixture: the real server as a process

CONTROLS = [chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]] + ["\u202e", "\u2028"]


async def bob_runs(cli: Cli) -> None:
    result = await cli.jog("run", "--", "echo", "ok", user="bob")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"ok\n", b"")


def has_controls(text: str) -> list[str]:
    return sorted({c for c in text if c in CONTROLS and c != "\n"})


async def test_a_jobs_argv_cannot_redraw_an_admins_terminal(cli: Cli) -> None:
    started = await cli.jog("start", "--", "echo", TITLE, FAKE_ROW, "\u202eevil")
    assert started.returncode == 0, started.stderr
    listing = (await cli.jog("list", "--all", user="root")).stdout.decode()
    assert has_controls(listing) == []
    assert len(listing.splitlines()) == 2  # the header and the one job: no forged row
    job = listing.splitlines()[1].split()[0]
    status = (await cli.jog("status", job, user="root")).stdout.decode()
    assert has_controls(status) == []
    command = next(line for line in status.splitlines() if line.startswith("command:"))
    assert command == "command: echo " + shell_join([TITLE, FAKE_ROW, "\u202eevil"])
    # --json stays JSON: the argv comes back exactly.
    raw = await cli.jog("status", "--json", job, user="root")
    assert "\\u001b]0;" in raw.stdout.decode()
    await bob_runs(cli)


async def test_a_newline_in_a_path_cannot_forge_a_log_line(cli: Cli) -> None:
    forged = "2026-12-06 12:00:00,000 level=INFO logger=jogger.engine job started by root"
    server = Server("127.0.0.1", cli.port, cli.pki, Path())
    async with raw_connection(server) as raw:
        outcome = await raw.call(f"/jogger.v1.Jobs/Nope\n{forged}", message(b""))
    assert outcome.grpc_status is not None
    await bob_runs(cli)

    async def logged_it() -> bool:
        return any("Nope" in line for line in cli.log)

    await eventually(logged_it)
    assert not [line for line in cli.log if line.startswith(forged)]
    logged = next(line for line in cli.log if "Nope" in line)
    assert "Nope\\n2026-12-06" in logged
    assert has_controls("\n".join(cli.log)) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["echo", "plain"],
        ["sh", "-c", "echo 'quoted' \"too\""],
        [TITLE, FAKE_ROW, "\u202eevil", "back\\slash'n quote", "\t\r\x00\x7f\x9b", "\U0001f600"],
    ],
)
def test_a_shown_argv_reads_back_as_itself_in_bash(argv: list[str]) -> None:
    shown = shell_join(argv)
    assert has_controls(shown) == []
    if any("\0" in word for word in argv):
        argv = [word.split("\0")[0] for word in argv]  # no shell passes a NUL on
    back = subprocess.run(
        ["bash", "-c", f"printf '%s\\0' {shown}"], capture_output=True, check=True
    ).stdout
    assert back.decode("utf-8", "surrogateescape").split("\0")[:-1] == argv


def test_escape_leaves_printable_text_alone_and_escapes_the_rest() -> None:
    assert escape("jobs: ünïcode ok") == "jobs: ünïcode ok"
    assert escape("a\nb\x1b[2J\u202e") == "a\\nb\\x1b[2J\\u202e"

"""What `jog` imports is what every command pays before it does anything (bench/README.md,
issue 21): the one-shot commands run on the blocking client, without trio, and `jog --help`
without TLS or protobuf either. Checked on the real program against the real server."""

import subprocess
import sys

import trio

from .conftest import Cli
from .test_cli import job_id_of

# Runs jog's main() as the program would, then names every module that was imported.
JOG_THEN_MODULES = """
import sys
from jogger.cli import main as cli
sys.argv = ["jog", *sys.argv[1:]]
try:
    code = cli.main()
except SystemExit as exc:  # --help
    code = exc.code
sys.stdout.flush()
print("MODULES", *sorted(sys.modules), file=sys.stderr)
sys.exit(code)
"""

# None of these: the event loop and what it brings, purerpc's own client and server (we only
# use its protocol machine), the server's and the engine's code, the trio transport.
NEVER = (
    "trio",
    "anyio",
    "asyncio",
    "purerpc.client",
    "purerpc.server",
    "jogger.engine",
    "jogger.server",
    "jogger.rpc.wire",
    "jogger.rpc.channel",
    "jogger.rpc.client",
    "jogger.cli.connect",
    "importlib.metadata",
    # dataclasses imports inspect (with ast, dis, tokenize): 10 ms of every start.
    "dataclasses",
    "inspect",
    "jogger.standard",
)
# Nor, for `jog --help`, the connection's: TLS, HTTP/2, protobuf.
NOT_FOR_HELP = ("ssl", "h2", "hpack", "google.protobuf", "jogger.v1")


async def imported(cli: Cli, *args: str) -> tuple[subprocess.CompletedProcess[bytes], set[str]]:
    with trio.fail_after(30):
        done = await trio.run_process(
            [sys.executable, "-c", JOG_THEN_MODULES, *args],
            env=cli.env(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    line = done.stderr.decode().splitlines()[-1]
    assert line.startswith("MODULES "), done.stderr
    return done, set(line.split()[1:])


def among(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


async def test_one_shot_commands_run_without_trio(cli: Cli) -> None:
    started, modules = await imported(cli, "start", "--", "echo", "hi")
    job_id = job_id_of(started)
    assert among(modules, NEVER) == []
    for args in (["status", job_id], ["list"], ["stop", job_id], ["restart", job_id]):
        done, modules = await imported(cli, *args)
        assert done.returncode == 0, done.stderr
        assert among(modules, NEVER) == [], args
    # The test itself would catch a command that did use trio: it would have imported it.
    done, modules = await imported(cli, "output", job_id)
    assert done.returncode == 0, done.stderr
    assert "trio" in modules


async def test_a_one_shot_command_that_fails_runs_without_trio_too(cli: Cli) -> None:
    done, modules = await imported(cli, "status", "6c1f6d8e-6a8e-4c55-9d55-3f1f4a1c2b7e")
    assert done.returncode == 1
    assert b"not found" in done.stderr
    assert among(modules, NEVER) == []


async def test_help_imports_neither_tls_nor_protobuf(cli: Cli) -> None:
    for args in (["--help"], ["status", "--help"], ["start", "--help"]):
        done, modules = await imported(cli, *args)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(b"usage: jog")
        assert among(modules, NEVER + NOT_FOR_HELP) == [], args

"""jog completion: the scripts are valid in their shells, and bash's (and fish's, when fish
can be had) complete jog's commands, their options and, through the real server, the ids
of your jobs."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from tests.e2e.conftest import BIN, Cli
from tests.e2e.test_cli import job_id_of

# Calls _jog as bash does on Tab: COMP_WORDS are the words typed (the last, the one being
# completed), COMP_CWORD its index. Prints what it offers, one a line.
COMPLETE = """
source "$1"
shift
COMP_WORDS=("$@")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_jog
printf '%s\\n' "${COMPREPLY[@]}"
"""


def shell(name: str) -> str:
    """The path of shell ``name``; installed with apt-get when missing and we are root, else
    the test skips."""
    found = shutil.which(name)
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", name],
            capture_output=True,
            check=False,
            timeout=90,  # within the test's own timeout
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed, and could not be (apt-get install, as root)")
    return found


@pytest.fixture
def zsh() -> str:
    return shell("zsh")


@pytest.fixture
def fish() -> str:
    return shell("fish")


async def script(cli: Cli, name: str, into: Path) -> Path:
    result = await cli.jog("completion", name)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    path = into / f"jog.{name}"
    path.write_bytes(result.stdout)
    return path


async def complete(cli: Cli, path: Path, *words: str) -> list[str]:
    """What bash's completion offers for ``words``, the last being completed."""
    with trio.fail_after(30):
        result = await trio.run_process(
            ["bash", "-c", COMPLETE, "bash", path, str(BIN / "jog"), *words],
            # Generous, for a busy machine: the ids come from a real jog.
            env=cli.env(JOGGER_COMPLETION_TIMEOUT="20"),
            capture_stdout=True,
            capture_stderr=True,
        )
    assert result.stderr == b""
    return [line for line in result.stdout.decode().splitlines() if line]


async def test_the_bash_script_is_valid_and_completes_commands_options_and_ids(
    cli: Cli, tmp_path: Path
) -> None:
    path = await script(cli, "bash", tmp_path)
    await trio.run_process(["bash", "-n", path])
    assert await complete(cli, path, "") == [
        "start", "run", "attach", "restart", "stop", "status", "output", "list", "wait",
        "context", "completion",
    ]  # fmt: skip
    assert await complete(cli, path, "st") == ["start", "stop", "status"]
    assert await complete(cli, path, "wait", "--t") == ["--timeout"]
    # Past an option's value (host:port, which bash splits at the colon) to the next option.
    assert await complete(cli, path, "run", "--host", "localhost", ":", "1", "--netw") == [
        "--network"
    ]
    assert await complete(cli, path, "run", "--network", "") == ["none", "host"]
    assert await complete(cli, path, "context", "") == ["list", "use"]
    assert await complete(cli, path, "completion", "") == ["bash", "zsh", "fish"]
    assert await complete(cli, path, "start", "") == ["--"]
    assert "sh" in await complete(cli, path, "run", "--", "sh")
    # Job ids, from the server: yours, newest first.
    jobs = [job_id_of(await cli.jog("start", "--", "sleep", "300")) for _ in range(2)]
    bobs = job_id_of(await cli.jog("start", "--", "sleep", "300", user="bob"))
    assert await complete(cli, path, "stop", "") == jobs[::-1]
    assert await complete(cli, path, "wait", jobs[0], "") == jobs[::-1]
    assert await complete(cli, path, "status", jobs[1][:8]) == [jobs[1]]
    assert bobs not in await complete(cli, path, "wait", "")
    # Through the --host typed: the wrong server's ids are none (and do not hang).
    assert await complete(cli, path, "stop", "--host", "127.0.0.1", ":", "9", "") == []
    for job in jobs:
        await cli.jog("stop", "--grace", "0", job)
    await cli.jog("stop", "--grace", "0", bobs, user="bob")


async def test_the_zsh_script_is_valid(cli: Cli, tmp_path: Path, zsh: str) -> None:
    path = await script(cli, "zsh", tmp_path)
    result = await trio.run_process([zsh, "-n", path], capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr
    assert path.read_text().startswith("#compdef jog\n")


async def test_the_fish_script_is_valid_and_completes(cli: Cli, tmp_path: Path, fish: str) -> None:
    path = await script(cli, "fish", tmp_path)
    result = await trio.run_process([fish, "--no-execute", path], capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr

    async def offered(line: str) -> list[str]:
        with trio.fail_after(30):
            done = await trio.run_process(
                [fish, "--no-config", "-c", f"source {path}; complete -C '{line}'"],
                env=cli.env(),
                capture_stdout=True,
            )
        return [entry.split("\t")[0] for entry in done.stdout.decode().splitlines()]

    assert set(await offered("jog st")) == {"start", "stop", "status"}
    assert "--timeout" in await offered("jog wait --t")
    assert set(await offered("jog run --network ")) == {"host", "none"}
    assert set(await offered("jog context ")) == {"list", "use"}


@pytest.mark.parametrize("shell_name", ["tcsh", "BASH"])
async def test_an_unknown_shell_is_a_usage_error(cli: Cli, shell_name: str) -> None:
    result = await cli.jog("completion", shell_name)
    assert result.returncode == 2
    assert result.stdout == b""
    [line] = result.stderr.decode().splitlines()
    assert line.startswith("jog: error: argument SHELL: invalid choice: ")

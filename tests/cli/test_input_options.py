"""jog's input options (-n, -t, -i, attach) as the real jog parses them, without a server:
every refusal here comes before any connection is tried."""

import subprocess
import sys
from pathlib import Path

import pytest

JOG = Path(sys.executable).parent / "jog"
# A port nobody listens on, and no certificates: a jog that tried to connect would fail
# differently.
NO_SERVER = {"JOGGER_HOST": "127.0.0.1:9", "PATH": "/usr/bin:/bin"}


def jog(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JOG, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=NO_SERVER,
        timeout=30,
        check=False,
    )


def test_run_t_without_a_terminal_on_stdin_is_a_usage_error_before_connecting() -> None:
    result = jog("run", "-t", "--", "cat")
    assert result.returncode == 2
    assert result.stderr == (
        "jog: error: -t needs a terminal on stdin (use -n, or pipe without -t)\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["run", "-t", "-n", "--", "cat"],
        ["start", "-i", "-t", "--", "cat"],
        ["start", "-n", "--", "cat"],
        ["run", "-i", "--", "cat"],
        ["attach"],
        ["attach", "ID", "--", "cat"],
    ],
)
def test_input_options_that_do_not_go_together_are_usage_errors(args: list[str]) -> None:
    result = jog(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("jog: error: ")
    assert len(result.stderr.splitlines()) == 1


def test_help_names_the_input_options_and_attach() -> None:
    assert "attach" in jog("--help").stdout
    run = jog("run", "--help").stdout
    assert "--no-stdin" in run
    assert "--tty" in run
    assert "Ctrl-P Ctrl-Q" in run
    start = jog("start", "--help").stdout
    assert "--stdin" in start
    assert "--tty" in start

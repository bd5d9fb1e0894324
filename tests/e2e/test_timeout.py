"""``--timeout`` through the real jog and jogger-server: the job is stopped when its time is up
(SIGTERM, the grace, SIGKILL), its status says reason timeout, and the deadline holds across
a restart of the server, and with no server running at all."""

import json
import signal
from pathlib import Path

import pytest
import trio

from tests.e2e.conftest import Cli, launch, stop_server
from tests.e2e.test_cli import job_id_of
from tests.e2e.test_restart import status_of
from tests.pki import Pki
from tests.procs import PYTHON, eventually, is_alive

IGNORES_TERM = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(300)"
)


async def ended(cli: Cli, job: str) -> dict[str, object]:
    """The job's final status, once ``jog output`` (which follows it) has seen its end."""
    with trio.fail_after(60):
        followed = await cli.jog("output", job)
    assert followed.returncode == 0, followed.stderr
    return await status_of(cli, job)


async def test_a_job_past_its_timeout_fails_with_reason_timeout(cli: Cli) -> None:
    job = job_id_of(await cli.jog("start", "--timeout", "2s", "--", "sleep", "300"))
    running = await status_of(cli, job)
    assert running["timeout_seconds"] == 2.0
    assert isinstance(running["deadline"], str)
    shown = (await cli.jog("status", job)).stdout.decode()
    assert f"timeout: 2s, deadline {running['deadline']} (" in shown
    final = await ended(cli, job)
    assert (final["state"], final["reason"], final["signal"]) == ("failed", "timeout", 15)
    assert final["deadline"] == running["deadline"]
    shown = (await cli.jog("status", job)).stdout.decode()
    assert "state:   failed (signal SIGTERM, reason: timeout)" in shown
    assert f"timeout: 2s, deadline {running['deadline']}\n" in shown


async def test_jog_run_says_the_job_timed_out_and_exits_with_its_signal(cli: Cli) -> None:
    result = await cli.jog("run", "-n", "--timeout", "1s", "--", "sleep", "300")
    assert result.returncode == 128 + signal.SIGTERM
    line = result.stderr.decode().strip()
    assert line.startswith("jog: job ")
    assert line.endswith(" failed (signal SIGTERM, reason: timeout)")


async def test_a_job_that_ignores_sigterm_is_killed_after_the_grace(cli: Cli) -> None:
    # The server's grace is 2 s (tests/e2e/conftest.py).
    job = job_id_of(await cli.jog("start", "--timeout", "3s", "--", PYTHON, "-c", IGNORES_TERM))
    final = await ended(cli, job)
    assert (final["state"], final["reason"]) == ("failed", "timeout")
    assert final["signal"] == signal.SIGKILL
    assert (await cli.jog("output", job)).stdout == b"ready\n"


async def test_a_job_that_ends_before_its_timeout_is_unaffected(cli: Cli) -> None:
    result = await cli.jog("run", "-n", "--timeout", "5m", "--", "echo", "hi")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"hi\n", b"")
    [listed] = json.loads((await cli.jog("list", "--json")).stdout)
    assert (listed["state"], listed["reason"], listed["exit_code"]) == ("completed", "", 0)
    assert listed["timeout_seconds"] == 300.0
    shown = (await cli.jog("status", listed["job_id"])).stdout.decode()
    assert f"timeout: 5m, deadline {listed['deadline']}\n" in shown


async def test_a_job_without_a_timeout_shows_none(cli: Cli) -> None:
    job = job_id_of(await cli.jog("start", "--", "true"))
    final = await ended(cli, job)
    assert (final["timeout_seconds"], final["deadline"]) == (None, None)
    assert "timeout: none\n" in (await cli.jog("status", job)).stdout.decode()


@pytest.mark.parametrize(
    ("value", "told"),
    [
        ("0", "'0' is not a duration"),
        ("0s", "'0s': a timeout must be more than 0s"),
        ("-1s", "'-1s' is not a duration"),
        ("abc", "'abc' is not a duration"),
        ("400d", "'400d': a timeout must be more than 0s and at most 366 days"),
        ("9" * 30 + "d", "a timeout must be more than 0s and at most 366 days"),
    ],
)
async def test_a_bad_timeout_is_a_usage_error_and_starts_nothing(
    cli: Cli, value: str, told: str
) -> None:
    for command in ("start", "run"):
        result = await cli.jog(command, f"--timeout={value}", "--", "true")
        assert result.returncode == 2
        [line] = result.stderr.decode().splitlines()
        assert line.startswith("jog: error: argument --timeout: ")
        assert told in line
    assert json.loads((await cli.jog("list", "--json")).stdout) == []


async def test_the_servers_default_applies_and_longer_than_its_maximum_is_refused(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    server = await launch(
        pki, tmp_path / "state", nursery, "--default-timeout", "2s", "--max-timeout", "1h"
    )
    try:
        assert any("default_timeout=2s max_timeout=1h" in line for line in server.log)
        refused = await server.jog("start", "--timeout", "2h", "--", "true")
        assert refused.returncode == 1
        assert refused.stderr.decode().splitlines() == [
            "jog: error: timeout 2h is over the server's maximum of 1h"
        ]
        job = job_id_of(await server.jog("start", "--", "sleep", "300"))
        assert (await status_of(server, job))["timeout_seconds"] == 2.0
        final = await ended(server, job)
        assert (final["state"], final["reason"]) == ("failed", "timeout")
        listed = json.loads((await server.jog("list", "--json")).stdout)
        assert [j["job_id"] for j in listed] == [job]  # the refused one left nothing
    finally:
        await stop_server(server.process)


async def test_the_deadline_holds_with_no_server_running_at_it(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    first = await launch(pki, state, nursery, "--on-shutdown", "keep")
    try:
        job = job_id_of(await first.jog("start", "--timeout", "2s", "--", "sleep", "300"))
        started = await status_of(first, job)
    finally:
        await stop_server(first.process)
    assert first.process.returncode == 0
    pid = started["pid"]
    assert isinstance(pid, int)

    async def gone() -> bool:
        await trio.lowlevel.checkpoint()
        return not is_alive(pid)

    # The job's supervisor keeps the time: nobody else is there.
    await eventually(gone)
    second = await launch(pki, state, nursery)
    try:
        final = await status_of(second, job)
        assert (final["state"], final["reason"], final["signal"]) == ("failed", "timeout", 15)
        assert (final["timeout_seconds"], final["deadline"]) == (2.0, started["deadline"])
        assert any("ended while no server ran" in line for line in second.log)
    finally:
        await stop_server(second.process)


async def test_a_restarted_server_adopts_the_job_with_its_deadline(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    first = await launch(pki, state, nursery, "--on-shutdown", "keep")
    try:
        job = job_id_of(await first.jog("start", "--timeout", "10s", "--", "sleep", "300"))
        started = await status_of(first, job)
    finally:
        await stop_server(first.process)
    second = await launch(pki, state, nursery)
    try:
        adopted = await status_of(second, job)
        assert adopted["state"] == "running"
        assert (adopted["timeout_seconds"], adopted["deadline"]) == (10.0, started["deadline"])
        final = await ended(second, job)
        assert (final["state"], final["reason"]) == ("failed", "timeout")
        assert final["deadline"] == started["deadline"]
    finally:
        await stop_server(second.process)

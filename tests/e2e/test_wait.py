"""jog wait through the real server and the real jog: several jobs, --any, --timeout, jobs
that have ended already, unknown jobs, and a restart of the server while jog waits."""

import json
import signal
from pathlib import Path

import trio

from tests.e2e.conftest import Cli, launch, stop_server
from tests.e2e.test_cli import job_id_of
from tests.e2e.test_reconnect import Jog, crash, jog, resolve
from tests.pki import Pki
from tests.server.test_metrics import metrics_server, value

UNKNOWN = "5b4c1f5e-2f0c-4c38-9d8e-7f5b8a1d2c3e"


def until(flag: Path, then: str) -> list[str]:
    """A job that waits for ``flag`` to exist, then runs the shell's ``then``."""
    return ["sh", "-c", f"while [ ! -e '{flag}' ]; do sleep 0.05; done; {then}"]


async def start(cli: Cli, *argv: str, user: str = "alice") -> str:
    return job_id_of(await cli.jog("start", "--", *argv, user=user))


async def ended(cli: Cli, job: str) -> dict[str, object]:
    """The job's status once it has ended (jog wait, the thing under test, is not used)."""
    with trio.fail_after(30):
        while True:
            status: dict[str, object] = json.loads((await cli.jog("status", "--json", job)).stdout)
            if status["state"] != "running":
                return status
            await trio.sleep(0.05)


def blocks(out: bytes) -> list[list[str]]:
    """The status blocks jog printed, blank lines between them."""
    return [b.splitlines() for b in out.decode().split("\n\n")]


def json_records(out: bytes) -> list[dict[str, object]]:
    """The JSON objects jog printed one after another."""
    decoder = json.JSONDecoder()
    text, at, found = out.decode(), 0, []
    while text[at:].strip():
        while text[at].isspace():
            at += 1
        record, at = decoder.raw_decode(text, at)
        found.append(record)
    return found


async def block_of(cli: Cli, job: str) -> list[str]:
    result = await cli.jog("status", job)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode().splitlines()


async def test_wait_prints_each_end_and_exits_with_the_worst_code(
    cli: Cli, tmp_path: Path, nursery: trio.Nursery
) -> None:
    flag = tmp_path / "go"
    done = await start(cli, "true")
    await ended(cli, done)
    fails = await start(cli, *until(flag, "exit 3"))
    killed = await start(cli, *until(flag, "kill -TERM $$"))
    waiting = await jog(nursery, cli, "wait", done, fails, killed)
    # The job that had ended comes at once, before the others end.
    await waiting.wait_for(b"completed (exit code 0)")
    flag.touch()
    # The worst: 128 + SIGTERM over the other's 3 and the first's 0.
    assert await waiting.finish() == 128 + signal.SIGTERM, waiting.errors()
    assert waiting.errors() == []
    printed = blocks(bytes(waiting.out))
    assert printed[0] == await block_of(cli, done)
    assert sorted(map(tuple, printed[1:])) == sorted(
        [tuple(await block_of(cli, fails)), tuple(await block_of(cli, killed))]
    )


async def test_wait_json_prints_what_status_json_does_for_each_job(
    cli: Cli, tmp_path: Path
) -> None:
    jobs = [await start(cli, "sh", "-c", f"exit {code}") for code in (4, 0)]
    for job in jobs:
        await ended(cli, job)
    result = await cli.jog("wait", "--json", *jobs, jobs[0])  # the same job twice: once
    assert result.returncode == 4, result.stderr
    records = json_records(result.stdout)
    assert records == [json.loads((await cli.jog("status", "--json", j)).stdout) for j in jobs]


async def test_wait_for_jobs_that_have_ended_returns_at_once(cli: Cli) -> None:
    jobs = [await start(cli, "sh", "-c", f"exit {code}") for code in (0, 2)]
    for job in jobs:
        await ended(cli, job)
    # A timeout of 0 looks once: these have ended, so it is no timeout.
    result = await cli.jog("wait", "--timeout", "0s", *jobs)
    assert result.returncode == 2, result.stderr
    assert [b[0] for b in blocks(result.stdout)] == [f"job:     {j}" for j in jobs]
    assert result.stderr == b""


async def test_wait_any_returns_at_the_first_end_with_its_code(
    cli: Cli, tmp_path: Path, nursery: trio.Nursery
) -> None:
    flag = tmp_path / "go"
    sleeper = await start(cli, "sleep", "300")
    quick = await start(cli, *until(flag, "exit 5"))
    waiting = await jog(nursery, cli, "wait", "--any", sleeper, quick)
    await trio.sleep(0.5)
    # It waits, for as long as neither job has ended.
    assert waiting.process.returncode is None
    flag.touch()
    assert await waiting.finish() == 5, waiting.errors()
    assert blocks(bytes(waiting.out)) == [await block_of(cli, quick)]
    assert (await ended(cli, quick))["exit_code"] == 5
    assert json.loads((await cli.jog("status", "--json", sleeper)).stdout)["state"] == "running"
    await cli.jog("stop", "--grace", "0", sleeper)


async def test_wait_any_with_an_ended_job_returns_it_at_once(cli: Cli) -> None:
    sleeper = await start(cli, "sleep", "300")
    done = await start(cli, "sh", "-c", "exit 6")
    await ended(cli, done)
    result = await cli.jog("wait", "--any", sleeper, done)
    assert result.returncode == 6, result.stderr
    assert blocks(result.stdout) == [await block_of(cli, done)]
    await cli.jog("stop", "--grace", "0", sleeper)


async def test_wait_on_an_unknown_or_another_users_job_fails_before_waiting(cli: Cli) -> None:
    sleeper = await start(cli, "sleep", "300")
    bobs = await start(cli, "sleep", "300", user="bob")
    for other in (UNKNOWN, bobs):
        # At once, although the first job runs on: no waiting on the others.
        result = await cli.jog("wait", sleeper, other)
        assert result.returncode == 1
        assert result.stdout == b""
        assert result.stderr.decode().splitlines() == [f"jog: error: job {other} not found"]
    await cli.jog("stop", "--grace", "0", sleeper)
    await cli.jog("stop", "--grace", "0", bobs, user="bob")


async def test_wait_timeout_exits_124_and_names_the_jobs_still_running(cli: Cli) -> None:
    done = await start(cli, "true")
    await ended(cli, done)
    sleepers = [await start(cli, "sleep", "300") for _ in range(2)]
    result = await cli.jog("wait", "--timeout", "1s", done, *sleepers)
    assert result.returncode == 124
    assert blocks(result.stdout) == [await block_of(cli, done)]
    assert result.stderr.decode().splitlines() == [
        f"jog: error: timed out after 1 s; 2 jobs had not ended: {' '.join(sleepers)}"
    ]
    once = await cli.jog("wait", "--timeout", "0s", sleepers[0])
    assert once.returncode == 124
    assert once.stderr.decode().splitlines() == [
        f"jog: error: timed out after 0 s; job {sleepers[0]} had not ended"
    ]
    for job in sleepers:
        await cli.jog("stop", "--grace", "0", job)


async def test_wait_usage_errors_change_nothing(cli: Cli) -> None:
    for args, message in [
        ((), "the following arguments are required: ID"),
        (("--timeout", "30", UNKNOWN), "is not a duration"),
        (("--timeout", "400d", UNKNOWN), "the timeout must be at most 366d"),
        (("--any", *[f"{UNKNOWN[:-4]}{n:04}" for n in range(65)]), "at most 64 jobs"),
    ]:
        result = await cli.jog("wait", *args)
        assert result.returncode == 2, result.stderr
        [line] = result.stderr.decode().splitlines()
        assert line.startswith("jog: error: ")
        assert message in line


async def test_wait_rides_through_a_sigkill_of_the_server(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    flag = tmp_path / "go"
    first = await launch(pki, state, nursery)
    try:
        done = await start(first, "true")
        await ended(first, done)
        job = await start(first, *until(flag, "exit 7"))
        waiting: Jog = await jog(nursery, first, "wait", done, job)
        # The first round's statuses are in: jog is following the running job.
        await waiting.wait_for(b"completed (exit code 0)")
        await crash(first)
    finally:
        await stop_server(first.process)
    second = await launch(pki, state, nursery, port=first.port)
    try:
        # Adopted by the second server, and then it ends.
        with trio.fail_after(30):
            while "running" not in (await second.jog("status", job)).stdout.decode():  # noqa: ASYNC110 - the server adopts it
                await trio.sleep(0.05)
        flag.touch()
        assert await waiting.finish() == 7, waiting.errors()
        assert waiting.errors() == [f"jog: the server restarted; still waiting for job {job}"]
        assert blocks(bytes(waiting.out)) == [await block_of(second, j) for j in (done, job)]
    finally:
        await stop_server(second.process)


async def test_wait_gives_up_when_the_server_does_not_come_back(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    server = await launch(pki, state, nursery)
    try:
        done = await start(server, "true")
        await ended(server, done)
        job = await start(server, "sleep", "300")
        waiting = await jog(nursery, server, "wait", "--reconnect-timeout", "1", done, job)
        await waiting.wait_for(b"completed (exit code 0)")
        await crash(server)
    finally:
        await stop_server(server.process)
    try:
        assert await waiting.finish(seconds=30) == 3
        [line] = waiting.errors()
        assert line.startswith(f"jog: error: localhost:{server.port}: lost the connection, ")
        assert line.endswith(f"; to wait on: jog wait {job}")
    finally:
        await resolve(pki, state, nursery)


async def test_list_ids_prints_the_ids_alone(cli: Cli) -> None:
    jobs = [await start(cli, "true") for _ in range(2)]
    result = await cli.jog("list", "--ids")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == jobs[::-1]
    both = await cli.jog("list", "--ids", "--json")
    assert both.returncode == 2
    assert b"--ids goes alone" in both.stderr


async def test_ctrl_c_ends_wait_with_130(cli: Cli, nursery: trio.Nursery) -> None:
    sleeper = await start(cli, "sleep", "300")
    waiting = await jog(nursery, cli, "wait", sleeper)
    await trio.sleep(0.5)  # waiting, or about to: either way Ctrl-C ends it
    waiting.process.send_signal(signal.SIGINT)
    assert await waiting.finish(seconds=20) == 130
    assert "Traceback" not in waiting.err.decode()
    await cli.jog("stop", "--grace", "0", sleeper)


async def test_wait_is_told_of_the_end_without_a_byte_of_output(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    flag = tmp_path / "go"
    megabyte = "head -c 1048576 /dev/zero"
    async with metrics_server(pki, tmp_path / "state", nursery) as server:
        done = await start(server.cli, "true")
        await ended(server.cli, done)
        job = await start(server.cli, "sh", "-c", f"{megabyte}; " + until(flag, megabyte)[2])
        waiting = await jog(nursery, server.cli, "wait", done, job)
        await waiting.wait_for(b"completed (exit code 0)")
        flag.touch()
        assert await waiting.finish() == 0, waiting.errors()
        assert (await ended(server.cli, job))["output_bytes"] == 2 << 20
        # The server streamed none of the job's 2 MiB: only its end.
        samples = await server.scrape()
        assert value(samples, "jogger_output_streamed_bytes_total") == 0
        # Where jog output, reading it, is counted.
        assert len((await server.cli.jog("output", job)).stdout) == 2 << 20
        await server.until(lambda s: value(s, "jogger_output_streamed_bytes_total") == 2 << 20)

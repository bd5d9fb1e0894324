"""jogger-server --executor slurm, through the real jog, against a real Slurm cluster.

Each test starts its own server (a state dir of its own, on the cluster's one node); the
jobs run as nobody, submitted with sbatch --uid. Waits poll Slurm or the server with
deadlines, never fixed sleeps: the scheduler takes up to a second to start a job.
"""

import datetime
import json
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.e2e.conftest import Cli, launch, stop_server
from tests.e2e.test_cli import job_id_of
from tests.e2e.test_windows import parse_stamped, rfc3339
from tests.pki import Pki
from tests.slurm.conftest import NODE


def server_args(*extra: str) -> list[str]:
    return [
        "--executor",
        "slurm",
        "--run-as",
        "fixed",
        "--job-user",
        "nobody",
        "--slurm-poll",
        "0.2",
        *extra,
    ]


@pytest.fixture
async def state(slurm: Path) -> Path:
    """A state dir of this test's, where the cluster's jobs can reach their logs."""
    return slurm / f"state-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def server(pki: Pki, state: Path, nursery: trio.Nursery) -> AsyncIterator[Cli]:
    cli = await launch(pki, state, nursery, *server_args())
    try:
        yield cli
    finally:
        await stop_server(cli.process)


async def status(cli: Cli, job_id: str, user: str = "alice") -> dict[str, object]:
    result = await cli.jog("status", "--json", job_id, user=user)
    assert result.returncode == 0, result.stderr
    found: dict[str, object] = json.loads(result.stdout)
    return found


async def until_state(cli: Cli, job_id: str, *states: str) -> dict[str, object]:
    """The job's status once it is in one of ``states``: asked every 0.1 s, for 30 s."""
    with trio.fail_after(30):
        while True:
            now = await status(cli, job_id)
            if now["state"] in states:
                return now
            await trio.sleep(0.1)


async def squeue() -> list[str]:
    """Every job Slurm knows, as ``ID|STATE``."""
    done = await trio.run_process(
        ["squeue", "--noheader", "--states=all", "--format=%i|%T"], capture_stdout=True
    )
    return done.stdout.decode().split()


async def scontrol(*args: str) -> None:
    await trio.run_process(["scontrol", *args])


async def test_run_follows_the_output_live_and_passes_the_exit_code_on(server: Cli) -> None:
    script = "echo first; sleep 1; echo second >&2; echo $SLURM_JOB_ID; exit 3"
    result = await server.jog("run", "-n", "--", "sh", "-c", script)
    assert result.returncode == 3, result.stderr
    lines = result.stdout.decode().split()
    assert lines[:2] == ["first", "second"]
    [listed] = json.loads((await server.jog("list", "--json")).stdout)
    assert listed["external_id"] == lines[2]  # the Slurm job id, on record
    assert listed["state"] == "failed"
    assert listed["exit_code"] == 3
    assert listed["cgroup"] == "slurm"
    assert (
        f"slurm:   job {lines[2]}" in (await server.jog("status", listed["job_id"])).stdout.decode()
    )


async def test_argv_and_environment_reach_the_job_exactly(server: Cli) -> None:
    weird = "a b $c \"d\" 'e' \\ `f`"
    result = await server.jog(
        "run", "-n", "--env", f"WEIRD={weird}", "--", "printf", "%s|%s|%s", weird, "$HOME", ""
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == f"{weird}|$HOME|"
    env = await server.jog("run", "-n", "--env", f"WEIRD={weird}", "--", "env")
    lines = env.stdout.decode().splitlines()
    assert f"WEIRD={weird}" in lines
    assert any(line.startswith("SLURM_JOB_ID=") for line in lines)
    assert not any(line.startswith("SLURM_CONF=") for line in lines)  # nothing else leaks


async def test_stop_ends_the_slurm_job(server: Cli) -> None:
    job = job_id_of(await server.jog("start", "--", "sleep", "300"))
    running = await until_state(server, job, "running")
    external = str(running["external_id"])
    # (The grace covers Slurm noticing the end too: a second or two after the process.)
    result = await server.jog("stop", "--grace", "10", job)
    assert result.returncode == 0, result.stderr
    final = await status(server, job)
    assert (final["state"], final["signal"]) == ("stopped", signal.SIGTERM)
    assert f"{external}|RUNNING" not in await squeue()  # ended, on Slurm's word


async def test_the_oom_killer_is_reported(server: Cli) -> None:
    hog = "import time; time.sleep(0.5); b = bytearray(400 << 20); time.sleep(5)"
    result = await server.jog("run", "-n", "--memory", "64M", "--", "python3", "-c", hog)
    assert result.returncode == 128 + signal.SIGKILL, result.stderr
    [listed] = json.loads((await server.jog("list", "--json")).stdout)
    assert (listed["state"], listed["reason"]) == ("failed", "oom")
    assert listed["limits"]["memory"] == 64 << 20


@pytest.mark.parametrize(
    ("option", "name"), [("--pids=10", "pids"), ("--io-weight=200", "io-weight")]
)
async def test_a_limit_slurm_cannot_enforce_is_refused_and_nothing_is_submitted(
    server: Cli, option: str, name: str
) -> None:
    before = await squeue()
    result = await server.jog("start", option, "--", "true")
    assert result.returncode == 1
    assert f"Slurm cannot enforce a {name} limit" in result.stderr.decode()
    assert await squeue() == before
    assert json.loads((await server.jog("list", "--json")).stdout) == []


async def test_input_is_refused_with_a_way_out(server: Cli) -> None:
    result = await server.jog("start", "-i", "--", "cat")
    assert result.returncode == 1
    assert "jog run -n" in result.stderr.decode()


async def test_each_user_sees_only_their_own_slurm_jobs(server: Cli) -> None:
    job = job_id_of(await server.jog("start", "--", "sleep", "60", user="alice"))
    theirs = await server.jog("status", job, user="bob")
    assert theirs.returncode == 1
    assert "not found" in theirs.stderr.decode()
    assert (await server.jog("stop", job, user="bob")).returncode == 1
    assert json.loads((await server.jog("list", "--json", user="bob")).stdout) == []
    assert (await status(server, job))["state"] in ("queued", "running")
    await server.jog("stop", "--grace", "1", job)


@pytest.mark.parametrize("how", ["restart", "crash"])
async def test_a_job_runs_on_across_a_server_restart(
    pki: Pki, state: Path, nursery: trio.Nursery, how: str
) -> None:
    count = "for i in $(seq 1 40); do echo line $i; sleep 0.1; done"
    first = await launch(pki, state, nursery, *server_args("--on-shutdown", "keep"))
    try:
        job = job_id_of(await first.jog("start", "--", "sh", "-c", count))
        await until_state(first, job, "running")
    finally:
        if how == "crash":
            first.process.kill()
            await first.process.wait()
        await stop_server(first.process)
    second = await launch(pki, state, nursery, *server_args())
    try:
        output = await second.jog("output", job)
        assert output.returncode == 0, output.stderr
        assert output.stdout.decode().split("\n")[:40] == [f"line {i}" for i in range(1, 41)]
        final = await until_state(second, job, "completed")
        assert final["exit_code"] == 0
    finally:
        await stop_server(second.process)


async def test_a_job_that_waits_in_the_queue_shows_queued_and_why(server: Cli) -> None:
    node = f"nodename={NODE}"
    await scontrol("update", node, "state=drain", "reason=jogger-test")
    try:
        job = job_id_of(await server.jog("start", "--", "echo", "ran"))
        queued = await until_state(server, job, "queued")
        assert queued["reason"], queued  # Slurm's: why it waits
        shown = (await server.jog("status", job)).stdout.decode()
        assert "queued" in shown
    finally:
        await scontrol("update", node, "state=resume")
    final = await until_state(server, job, "completed")
    assert final["exit_code"] == 0
    assert (await server.jog("output", job)).stdout == b"ran\n"


async def test_a_timeout_is_slurms_time_limit_and_its_end_is_reason_timeout(server: Cli) -> None:
    # Slurm's limit is in minutes (1m is its least), checked by slurmctld every 30 s or so,
    # and then SIGTERM, KillWait (5 s here), SIGKILL.
    job = job_id_of(await server.jog("start", "--timeout", "1m", "--", "sleep", "600"))
    running = await until_state(server, job, "running")
    assert running["timeout_seconds"] == 60.0
    with trio.fail_after(300):
        while True:
            final = await status(server, job)
            if final["state"] not in ("queued", "running"):
                break
            await trio.sleep(1)
    assert (final["state"], final["reason"]) == ("failed", "timeout")


async def test_timestamps_and_since_come_from_the_watchs_records(server: Cli) -> None:
    job = job_id_of(await server.jog("start", "--", "sh", "-c", "echo a; sleep 3; echo b"))
    await until_state(server, job, "completed")
    stamped = await server.jog("output", "--no-follow", "--timestamps", job)
    assert stamped.returncode == 0, stamped.stderr
    lines = parse_stamped(stamped.stdout)
    assert [text for _, text in lines] == [b"a", b"b"]
    # The times are when the watch (every 0.2 s here) saw the log grow: 3 s apart, give
    # or take a poll or two.
    (a_at, _), (b_at, _) = lines
    assert b_at - a_at >= datetime.timedelta(seconds=1.5)
    between = rfc3339(a_at + (b_at - a_at) / 2)
    since = await server.jog("output", "--no-follow", "--since", between, job)
    assert since.stdout == b"b\n"
    tail = await server.jog("output", "--no-follow", "--tail", "1", job)
    assert tail.stdout == b"b\n"

"""``jog restart ID`` through the real server and jog: the same request again, under the
server's policy as it is now; the old job stays in the history."""

import json
import sqlite3
from pathlib import Path

import trio

from tests.e2e.conftest import Cli, launch, stop_server
from tests.e2e.test_cli import job_id_of
from tests.pki import Pki

SHOW = 'pwd; echo "A=$A B=$B"; echo "id=$JOGGER_JOB_ID"'


async def status_of(cli: Cli, job: str, user: str = "alice") -> dict[str, object]:
    result = await cli.jog("status", "--json", job, user=user)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


async def ended(cli: Cli, job: str, user: str = "alice") -> dict[str, object]:
    result = await cli.jog("wait", job, user=user)
    assert result.returncode in (0, 1), result.stderr
    return await status_of(cli, job, user)


async def test_restart_repeats_argv_cwd_env_overrides_limits_labels_and_timeout(
    cli: Cli, tmp_path: Path
) -> None:
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    contained = "cgroups=none" not in next(line for line in cli.log if "listening on" in line)
    limits = ["--pids", "32", "--memory", "64M"] if contained else []
    first = await cli.jog(
        "start",
        *limits,
        "--cwd",
        str(workdir),
        "--env",
        "A=one",
        "--env",
        "B=two words",
        "--timeout",
        "1h",
        "--name",
        "nightly build",
        "--label",
        "team=infra",
        "--label",
        "example.com/tier=gold",
        "--",
        "sh",
        "-c",
        SHOW,
    )
    old = job_id_of(first)
    before = await ended(cli, old)
    restarted = await cli.jog("restart", old)
    new = job_id_of(restarted)
    assert new != old
    after = await ended(cli, new)
    kept = ("argv", "state", "timeout_seconds", "limits", "isolation", "cgroup", "exit_code")
    for key in (*kept, "name", "labels"):
        assert after[key] == before[key], key
    assert after["name"] == "nightly build"
    assert after["labels"] == {"example.com/tier": "gold", "team": "infra"}
    assert after["argv"] == ["sh", "-c", SHOW]
    assert after["timeout_seconds"] == 3600
    if contained:
        assert after["limits"]["pids"] == 32  # type: ignore[index]
    output = (await cli.jog("output", new)).stdout.decode()
    assert output == f"{workdir}\nA=one B=two words\nid={new}\n"
    # The old job is still in the history, with its own output.
    assert (
        await cli.jog("output", old)
    ).stdout.decode() == f"{workdir}\nA=one B=two words\nid={old}\n"
    listed = (await cli.jog("list", "--ids")).stdout.decode().split()
    assert listed[:2] == [new, old]
    # A restart of the restart: a request on record is a request on record.
    third = job_id_of(await cli.jog("restart", new))
    assert (await ended(cli, third))["argv"] == ["sh", "-c", SHOW]


async def test_restart_of_another_users_job_is_not_found_as_an_unknown_one(cli: Cli) -> None:
    old = job_id_of(await cli.jog("start", "--", "true"))
    await ended(cli, old)
    theirs = await cli.jog("restart", old, user="bob")
    unknown = await cli.jog("restart", "0f6b9c36-5d0a-4f0e-9d8e-3a1c2b4d5e6f", user="bob")
    assert theirs.returncode == unknown.returncode == 1
    assert theirs.stderr.replace(old.encode(), b"ID") == unknown.stderr.replace(
        b"0f6b9c36-5d0a-4f0e-9d8e-3a1c2b4d5e6f", b"ID"
    )
    assert b"not found" in theirs.stderr
    # Nothing was started for bob.
    assert (await cli.jog("list", "--ids", user="bob")).stdout == b""


async def test_restart_of_a_running_job_is_refused_and_starts_nothing(cli: Cli) -> None:
    running = job_id_of(await cli.jog("start", "--", "sleep", "300"))
    result = await cli.jog("restart", running)
    assert result.returncode == 1
    assert b"still running: stop it first" in result.stderr
    assert (await cli.jog("list", "--ids")).stdout.decode().split() == [running]
    await cli.jog("stop", "--grace", "0", running)


async def test_restart_of_a_job_recorded_without_its_request_is_refused(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    first = await launch(pki, state, nursery)
    try:
        old = job_id_of(await first.jog("start", "--", "true"))
        await ended(first, old)
    finally:
        await stop_server(first.process)
    # As a row from a server before schema 9 reads after the migration: no request.
    with sqlite3.connect(state / "jobs.db") as db:
        db.execute("UPDATE jobs SET request = NULL WHERE id = ?", (old,))
    db.close()
    second = await launch(pki, state, nursery)
    try:
        result = await second.jog("restart", old)
        assert result.returncode == 1
        assert b"recorded before servers kept start requests" in result.stderr
        assert (await second.jog("list", "--ids")).stdout.decode().split() == [old]
    finally:
        await stop_server(second.process)


async def test_restart_applies_the_servers_policy_as_it_is_now(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    first = await launch(pki, state, nursery)
    try:
        long = job_id_of(await first.jog("start", "--timeout", "2h", "--", "true"))
        plain = job_id_of(await first.jog("start", "--", "true"))
        await ended(first, long)
        await ended(first, plain)
    finally:
        await stop_server(first.process)
    second = await launch(pki, state, nursery, "--max-timeout", "1h")
    try:
        # A timeout over today's maximum is refused, as such a start would be.
        refused = await second.jog("restart", long)
        assert refused.returncode == 1
        assert b"over the server's maximum" in refused.stderr
        # A job that asked for none gets today's default (the maximum).
        again = job_id_of(await second.jog("restart", plain))
        assert (await status_of(second, again))["timeout_seconds"] == 3600
    finally:
        await stop_server(second.process)

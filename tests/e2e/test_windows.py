"""jog output --tail, --since and --timestamps through the real server and jog, and the
time index across a server restart (live restore)."""

import datetime
import re
from pathlib import Path

import trio

from tests.e2e.conftest import Cli, launch, stop_server
from tests.e2e.test_cli import job_id_of
from tests.e2e.test_reconnect import jog
from tests.pki import Pki
from tests.procs import PYTHON, eventually

# Three lines, a pause of two seconds, three more.
TWO_GROUPS = (
    "import time\n"
    "for i in range(3): print(f'a{i}', flush=True)\n"
    "time.sleep(2)\n"
    "for i in range(3): print(f'b{i}', flush=True)\n"
)
STAMPED = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (.*)")


def parse_stamped(out: bytes) -> list[tuple[datetime.datetime, bytes]]:
    """jog output --timestamps' lines: (time, text)."""
    lines = []
    for line in out.splitlines():
        match = STAMPED.fullmatch(line)
        assert match is not None, line
        when = datetime.datetime.strptime(match[1].decode(), "%Y-%m-%dT%H:%M:%S.%fZ")
        lines.append((when.replace(tzinfo=datetime.UTC), match[2]))
    return lines


def rfc3339(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def output(cli: Cli, *args: str) -> bytes:
    result = await cli.jog("output", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def finished_job(cli: Cli, code: str) -> str:
    job = job_id_of(await cli.jog("start", "--", PYTHON, "-c", code))
    assert (await cli.jog("wait", job)).returncode == 0
    return job


async def test_tail_gives_exactly_the_last_lines(cli: Cli) -> None:
    job = await finished_job(cli, TWO_GROUPS)
    assert await output(cli, "--no-follow", "--tail", "2", job) == b"b1\nb2\n"
    assert await output(cli, "--tail", "4", job) == b"a2\nb0\nb1\nb2\n"  # followed: it ended
    assert await output(cli, "--no-follow", "--tail", "100", job) == (b"a0\na1\na2\nb0\nb1\nb2\n")
    assert await output(cli, "--no-follow", "--tail", "0", job) == b""


async def test_since_a_time_between_two_groups_gives_exactly_the_second(cli: Cli) -> None:
    job = await finished_job(cli, TWO_GROUPS)
    lines = parse_stamped(await output(cli, "--no-follow", "--timestamps", job))
    assert [text for _, text in lines] == [b"a0", b"a1", b"a2", b"b0", b"b1", b"b2"]
    a_end, b_start = lines[2][0], lines[3][0]
    assert [t for t, _ in lines] == sorted(t for t, _ in lines)
    # The job slept 2 s between them: the boundary is chosen half way, from the times
    # the index recorded, so that load cannot move a line across it.
    assert b_start - a_end >= datetime.timedelta(seconds=1.9)
    between = rfc3339(a_end + (b_start - a_end) / 2)
    assert await output(cli, "--no-follow", "--since", between, job) == b"b0\nb1\nb2\n"
    assert await output(cli, "--since", between, job) == b"b0\nb1\nb2\n"
    assert await output(cli, "--no-follow", "--since", between, "--tail", "1", job) == b"b2\n"
    stamped = await output(cli, "--no-follow", "--since", between, "--timestamps", job)
    assert stamped.splitlines() == [f"{rfc3339(t)} ".encode() + text for t, text in lines[3:]]
    assert await output(cli, "--no-follow", "--since", "1h", job) == (b"a0\na1\na2\nb0\nb1\nb2\n")
    future = rfc3339(datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1))
    assert await output(cli, "--no-follow", "--since", future, job) == b""


async def test_a_follower_since_a_time_to_come_gets_only_what_is_written_after_it(
    cli: Cli, tmp_path: Path
) -> None:
    flag = tmp_path / "go"
    code = (
        "import os, time\n"
        "print('early', flush=True)\n"
        f"while not os.path.exists({str(flag)!r}): time.sleep(0.05)\n"
        "print('late', flush=True)\n"
    )
    job = job_id_of(await cli.jog("start", "--", PYTHON, "-c", code))

    async def early_written() -> bool:
        return await output(cli, "--no-follow", job) == b"early\n"

    await eventually(early_written)
    since = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
    async with trio.open_nursery() as nursery:
        result: list[bytes] = []

        async def follow() -> None:
            result.append(await output(cli, "--since", rfc3339(since), "--timestamps", job))

        nursery.start_soon(follow)
        # Past the since time, by this clock, before the job writes again.
        await trio.sleep(max(0.0, (since - datetime.datetime.now(datetime.UTC)).total_seconds()))
        await trio.sleep(0.5)
        flag.touch()
    [(when, text)] = parse_stamped(result[0])
    assert text == b"late"
    assert when >= since


async def test_bad_windows_are_refused_with_one_line(cli: Cli) -> None:
    job = await finished_job(cli, "print('x')")
    for args, says in [
        (["--since", "10x"], "is neither a duration"),
        (["--since", "2026-12-07T05:00:00"], "is neither a duration"),
        (["--since", "2026-02-30T05:00:00Z"], "is not a valid RFC 3339 time"),
        (["--tail", "-1"], "is not a number of lines"),
        (["--tail", "many"], "is not a number of lines"),
    ]:
        result = await cli.jog("output", *args, job)
        assert result.returncode == 2, args
        [line] = result.stderr.decode().splitlines()[-1:]
        assert says in line, (args, result.stderr)
        assert "Traceback" not in result.stderr.decode()


async def test_the_time_index_carries_on_across_a_server_restart(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    during, after = tmp_path / "during", tmp_path / "after"
    code = (
        "import os, time\n"
        "def wait(path):\n"
        "    while not os.path.exists(path): time.sleep(0.02)\n"
        "print('before', flush=True)\n"
        f"wait({str(during)!r}); print('during', flush=True)\n"
        f"wait({str(after)!r}); print('after', flush=True)\n"
    )
    first = await launch(pki, state, nursery, "--on-shutdown", "keep")
    try:
        job = job_id_of(await first.jog("start", "--", PYTHON, "-c", code))
        assert await output(first, "--tail", "0", "--no-follow", job) == b""

        async def said_before() -> bool:
            return await output(first, "--no-follow", job) == b"before\n"

        await eventually(said_before)
    finally:
        await stop_server(first.process)  # the job and its supervisor run on
    # No server: the supervisor writes the log, and its index, alone.
    no_server = datetime.datetime.now(datetime.UTC)
    during.touch()
    log = state / "logs" / f"{job}.log"

    async def said_during() -> bool:
        return log.read_bytes() == b"before\nduring\n"

    await eventually(said_during)
    second = await launch(pki, state, nursery)
    try:
        # A follower from the restarted server, since the outage began, with timestamps.
        async with trio.open_nursery() as followers:
            followed: list[bytes] = []

            async def follow() -> None:
                followed.append(
                    await output(second, "--since", rfc3339(no_server), "--timestamps", job)
                )

            followers.start_soon(follow)
            await trio.sleep(1)
            restarted = datetime.datetime.now(datetime.UTC)
            after.touch()
        lines = parse_stamped(followed[0])
        assert [text for _, text in lines] == [b"during", b"after"]
        everything = parse_stamped(await output(second, "--no-follow", "--timestamps", job))
        assert [text for _, text in everything] == [b"before", b"during", b"after"]
        (before_at, _), (during_at, _), (after_at, _) = everything
        assert before_at < no_server <= during_at + datetime.timedelta(microseconds=1)
        assert during_at < restarted <= after_at + datetime.timedelta(microseconds=1)
        assert lines == everything[1:]
        assert await output(second, "--no-follow", "--since", rfc3339(restarted), job) == (
            b"after\n"
        )
    finally:
        await stop_server(second.process)


async def test_a_tailed_timestamped_follower_resumes_across_a_restart_without_a_second_tail(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    outage, end = tmp_path / "outage", tmp_path / "end"
    code = (
        "import os, time\n"
        "def wait(path):\n"
        "    while not os.path.exists(path): time.sleep(0.02)\n"
        "print('zero', flush=True); print('one', flush=True)\n"
        f"wait({str(outage)!r}); print('two', flush=True); print('two-b', flush=True)\n"
        f"wait({str(end)!r}); print('three', flush=True)\n"
    )
    first = await launch(pki, state, nursery, "--on-shutdown", "keep")
    try:
        job = job_id_of(await first.jog("start", "--", PYTHON, "-c", code))

        async def said_one() -> bool:
            return await output(first, "--no-follow", job) == b"zero\none\n"

        await eventually(said_one)
        follower = await jog(nursery, first, "output", "--tail", "1", "--timestamps", job)
        await follower.wait_for(b" one\n")
    finally:
        await stop_server(first.process)
    # Two lines while no server runs: a tail of 1 applied again would lose the first.
    outage.touch()
    log = state / "logs" / f"{job}.log"

    async def said_two() -> bool:
        return log.read_bytes().endswith(b"two-b\n")

    await eventually(said_two)
    second = await launch(pki, state, nursery, port=first.port)
    try:
        await follower.wait_for(b" two-b\n")
        end.touch()
        assert await follower.finish() == 0
    finally:
        await stop_server(second.process)
    lines = parse_stamped(bytes(follower.out))
    assert [text for _, text in lines] == [b"one", b"two", b"two-b", b"three"]
    assert any("resumed job" in line for line in follower.errors()), follower.errors()

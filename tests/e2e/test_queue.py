"""The job queue through the real server and jog: ``jog start --queue`` waits for room under
the job limits, first come first served for each user and fair between users, bounded,
and kept on record across server restarts."""

import json
import re
import signal
import subprocess
from datetime import datetime
from pathlib import Path

import trio

from tests.e2e.conftest import Cli, launch, stop_server
from tests.e2e.test_cli import job_id_of
from tests.pki import Pki
from tests.procs import eventually


def queued_id(result: subprocess.CompletedProcess[bytes]) -> tuple[str, int]:
    """The id and position ``jog start --queue`` printed for a job it queued."""
    assert result.returncode == 0, result.stderr
    words = result.stdout.decode().split()
    assert words[0] == "queued:", words
    return words[1], int(words[3])


async def status_of(cli: Cli, job: str, user: str = "alice") -> dict[str, object]:
    result = await cli.jog("status", "--json", job, user=user)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


def started_at(status: dict[str, object]) -> datetime:
    assert isinstance(status["started_at"], str)
    return datetime.fromisoformat(status["started_at"].replace("Z", "+00:00"))


async def test_the_queue_drains_in_order_and_fairly_between_two_users(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    cli = await launch(pki, tmp_path / "state", nursery, "--max-jobs", "1")
    try:
        blocker = job_id_of(await cli.jog("start", "--", "sleep", "300", user="root"))
        refused = await cli.jog("start", "--", "true")
        assert refused.returncode == 1
        assert b"the limit is 1" in refused.stderr  # without --queue: as before
        # Each job takes a moment, so that the next one's start is clearly later.
        work = ["--", "sleep", "0.2"]
        alice = [queued_id(await cli.jog("start", "--queue", *work)) for _ in range(3)]
        bob = [queued_id(await cli.jog("start", "--queue", *work, user="bob")) for _ in range(2)]
        assert [position for _, position in alice] == [1, 2, 3]
        assert [position for _, position in bob] == [1, 2]
        shown = await status_of(cli, alice[2][0])
        assert (shown["state"], shown["reason"], shown["queue_position"]) == (
            "queued",
            "capacity",
            3,
        )
        table = (await cli.jog("list")).stdout.decode()
        assert "queued #3" in table
        await cli.jog("stop", "--grace", "0", blocker, user="root")
        for job, _ in alice:
            assert (await cli.jog("wait", job)).returncode == 0
        for job, _ in bob:
            assert (await cli.jog("wait", job, user="bob")).returncode == 0
        runs = [(started_at(await status_of(cli, job)), "A") for job, _ in alice]
        runs += [(started_at(await status_of(cli, job, "bob")), "B") for job, _ in bob]
        assert "".join(who for _, who in sorted(runs)) == "ABABA"
        for job, _ in alice:
            assert (await status_of(cli, job))["state"] == "completed"
    finally:
        await stop_server(cli.process)


async def test_queued_jobs_survive_a_server_crash_and_then_run(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    first = await launch(pki, state, nursery, "--max-jobs", "1")
    try:
        blocker = job_id_of(await first.jog("start", "--", "sleep", "300"))
        queued = [
            queued_id(
                await first.jog("start", "--queue", "--label", f"n={n}", "--", "echo", str(n))
            )[0]
            for n in range(3)
        ]
    finally:
        first.process.send_signal(signal.SIGKILL)
        await first.process.wait()
    second = await launch(pki, state, nursery, "--max-jobs", "1")
    try:
        # The blocker was adopted, so there is still no room: they stay queued, in order.
        positions = [(await status_of(second, job))["queue_position"] for job in queued]
        assert positions == [1, 2, 3]
        assert (await status_of(second, queued[0]))["state"] == "queued"
        # Its labels were queued with it: the server's filters find it, queued.
        found = await second.jog("list", "--ids", "--state", "queued", "--label", "n=1")
        assert found.stdout.decode().split() == [queued[1]]
        await second.jog("stop", "--grace", "0", blocker)
        for n, job in enumerate(queued):
            ran = await second.jog("wait", job)
            assert ran.returncode == 0, ran.stderr
            assert (await second.jog("output", job)).stdout == f"{n}\n".encode()
            assert (await status_of(second, job))["labels"] == {"n": str(n)}
    finally:
        await stop_server(second.process)
    # Graceful shutdown with jobs queued: they stay queued on record, and run on the next.
    third = await launch(pki, state, nursery, "--max-jobs", "1")
    waited: list[subprocess.CompletedProcess[bytes]] = []

    async def wait_for(job: str) -> None:
        waited.append(await third.jog("wait", job))

    async with trio.open_nursery() as waiting:
        try:
            blocker = job_id_of(await third.jog("start", "--", "sleep", "300"))
            later = queued_id(await third.jog("start", "--queue", "--", "echo", "later"))[0]
            # A jog wait on it rides the restart through, as for a running job.
            waiting.start_soon(wait_for, later)
            await trio.sleep(1)  # generous: for jog to be waiting before the shutdown
        finally:
            await stop_server(third.process)
        fourth = await launch(pki, state, nursery, "--max-jobs", "1", port=third.port)
    try:
        assert [w.returncode for w in waited] == [0], waited
        assert b"the server restarted" in waited[0].stderr, waited[0].stderr
        assert later.encode() in waited[0].stdout
        assert (await fourth.jog("output", later)).stdout == b"later\n"
        assert (await status_of(fourth, blocker))["reason"] == "server-shutdown"
    finally:
        await stop_server(fourth.process)


async def test_stop_of_a_queued_job_removes_it_and_the_positions_shift(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    cli = await launch(pki, tmp_path / "state", nursery, "--max-jobs-per-user", "1")
    try:
        blocker = job_id_of(await cli.jog("start", "--", "sleep", "300"))
        jobs = [queued_id(await cli.jog("start", "--queue", "--", "true"))[0] for _ in range(3)]
        stopped = await cli.jog("stop", jobs[1])
        assert stopped.returncode == 0
        assert b"stopped (reason: dequeued)" in stopped.stdout
        gone = await status_of(cli, jobs[1])
        assert (gone["state"], gone["reason"], gone["queue_position"]) == (
            "stopped",
            "dequeued",
            None,
        )
        assert gone["ended_at"] is not None
        assert (await status_of(cli, jobs[2]))["queue_position"] == 2
        # Another user's limit is their own: bob is not held up by alice's queue.
        assert (await cli.jog("run", "--", "true", user="bob")).returncode == 0
        await cli.jog("stop", "--grace", "0", blocker)
        for job in (jobs[0], jobs[2]):
            assert (await cli.jog("wait", job)).returncode == 0
        # Stopped while queued, it never ran: no output, and it stays in the history.
        assert (await cli.jog("output", jobs[1])).stdout == b""
        assert jobs[1] in (await cli.jog("list", "--ids")).stdout.decode().split()
    finally:
        await stop_server(cli.process)


async def test_the_queue_is_bounded_per_user_and_in_all(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    cli = await launch(
        pki,
        tmp_path / "state",
        nursery,
        "--max-jobs",
        "1",
        "--max-queued",
        "3",
        "--max-queued-per-user",
        "2",
    )
    try:
        blocker = job_id_of(await cli.jog("start", "--", "sleep", "300"))
        for _ in range(2):
            queued_id(await cli.jog("start", "--queue", "--", "true"))
        mine = await cli.jog("start", "--queue", "--", "true")
        assert mine.returncode == 1
        assert b"2 of your jobs are queued; the limit is 2" in mine.stderr
        queued_id(await cli.jog("start", "--queue", "--", "true", user="bob"))
        full = await cli.jog("start", "--queue", "--", "true", user="bob")
        assert full.returncode == 1
        assert b"the queue is full: 3 jobs are queued; the limit is 3" in full.stderr
        # Other refusals do not queue: a bad cwd is refused at once.
        bad = await cli.jog("start", "--queue", "--cwd", "relative", "--", "true", user="root")
        assert bad.returncode == 1
        assert b"cwd must be an absolute path" in bad.stderr
        assert (await cli.jog("list", "--ids", user="root")).stdout == b""
        await cli.jog("stop", "--grace", "0", blocker)
    finally:
        await stop_server(cli.process)


async def test_wait_and_run_on_a_queued_job_go_through_its_run(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    cli = await launch(pki, tmp_path / "state", nursery, "--max-jobs", "1")
    try:
        blocker = job_id_of(await cli.jog("start", "--", "sleep", "300"))
        job, _ = queued_id(await cli.jog("start", "--queue", "--", "sh", "-c", "echo hi; exit 3"))
        results: dict[str, subprocess.CompletedProcess[bytes]] = {}

        async def in_background(name: str, *args: str) -> None:
            results[name] = await cli.jog(*args)

        async with trio.open_nursery() as waiting:
            waiting.start_soon(in_background, "wait", "wait", job)
            waiting.start_soon(in_background, "output", "output", job)
            waiting.start_soon(
                in_background, "stamped", "output", "--tail", "5", "--timestamps", job
            )
            waiting.start_soon(
                in_background, "run", "run", "--queue", "-n", "--", "echo", "from run"
            )
            # They wait while the job is queued (generously: the box may be slow).
            await trio.sleep(2)
            assert results == {}
            # Not followed, a queued job's output is empty, windowed or not: no output yet.
            for window in ([], ["--tail", "3"], ["--since", "1h", "--timestamps"]):
                now = await cli.jog("output", "--no-follow", *window, job)
                assert (now.returncode, now.stdout, now.stderr) == (0, b"", b""), window
            await cli.jog("stop", "--grace", "0", blocker)
        assert results["wait"].returncode == 3, results["wait"].stderr
        assert results["output"].stdout == b"hi\n"
        stamped = results["stamped"].stdout.decode()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z hi\n", stamped), stamped
        assert (results["run"].returncode, results["run"].stdout) == (0, b"from run\n")
        assert b"waiting for room" in results["run"].stderr
    finally:
        await stop_server(cli.process)


async def test_a_job_started_from_the_queue_is_adopted_after_a_crash(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    first = await launch(pki, state, nursery, "--max-jobs", "1")
    try:
        blocker = job_id_of(await first.jog("start", "--", "sleep", "300"))
        job, _ = queued_id(await first.jog("start", "--queue", "--", "sleep", "300"))
        await first.jog("stop", "--grace", "0", blocker)

        async def runs() -> bool:
            return (await status_of(first, job))["state"] == "running"

        await eventually(runs)
        running = await status_of(first, job)
    finally:
        first.process.send_signal(signal.SIGKILL)
        await first.process.wait()
    second = await launch(pki, state, nursery, "--max-jobs", "1")
    try:
        adopted = await status_of(second, job)
        assert (adopted["state"], adopted["pid"]) == ("running", running["pid"])
        assert adopted["started_at"] == running["started_at"]
        # It holds the one place: another queued job waits for it.
        behind, position = queued_id(await second.jog("start", "--queue", "--", "true"))
        assert position == 1
        stopped = await second.jog("stop", "--grace", "0", job)
        assert b"stopped" in stopped.stdout or b"killed" in stopped.stdout
        assert (await second.jog("wait", behind)).returncode == 0
    finally:
        await stop_server(second.process)


async def test_queue_by_default_queues_starts_that_do_not_ask(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    cli = await launch(pki, tmp_path / "state", nursery, "--max-jobs", "1", "--queue-by-default")
    try:
        assert any("queue_by_default=yes" in line for line in cli.log)
        blocker = job_id_of(await cli.jog("start", "--", "sleep", "300"))
        job, position = queued_id(await cli.jog("start", "--", "echo", "queued anyway"))
        assert position == 1
        await cli.jog("stop", "--grace", "0", blocker)
        assert (await cli.jog("wait", job)).returncode == 0
        assert (await cli.jog("output", job)).stdout == b"queued anyway\n"
    finally:
        await stop_server(cli.process)

"""Crash fuzzing: the real server SIGKILLed at random moments during bursts of starts, stops
and follows, again and again, on one state dir and one port.

Afterwards: every acknowledged start is on record (0 jobs lost), nothing of any job is left
running once the last server has stopped them (0 orphans: no job process, no supervisor, no
cgroup), and every follower, reconnecting after each crash at the offset it had, got each
job's bytes exactly once (0 lost, 0 duplicated). The seed is printed; FUZZ_SEED replays it.
"""

import os
import random
import signal
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from jogger.rpc.client import JobsClient, open_client
from jogger.rpc.errors import RpcError, StatusCode
from jogger.rpc.failures import TransportError
from jogger.v1 import jobs_pb2
from tests.e2e.conftest import Cli, launch, stop_server
from tests.engine.test_accounts import job_cgroups
from tests.pki import Pki
from tests.procs import PYTHON, processes

ROUNDS = 5
# Numbered lines, a few milliseconds apart, then exit with the count's remainder.
COUNTER = (
    "import sys, time\n"
    "n = int(sys.argv[1])\n"
    "for i in range(n):\n"
    "    sys.stdout.write(f'{i}\\n'); sys.stdout.flush(); time.sleep(0.003)\n"
    "sys.exit(n % 7)\n"
)
RETRYABLE = (StatusCode.UNAVAILABLE, StatusCode.DEADLINE_EXCEEDED)


@dataclass
class World:
    pki: Pki
    port: int = 0
    acknowledged: dict[str, int] = field(default_factory=dict)
    """Job id -> its line count (0: a sleeper)."""
    stopped: set[str] = field(default_factory=set)
    followed: dict[str, bytearray] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    """Followers that saw their job's end."""
    all_done: trio.Event = field(default_factory=trio.Event)

    def client(self) -> AbstractAsyncContextManager[JobsClient]:
        alice = self.pki.user("alice")
        return open_client(
            "localhost",
            self.port,
            ca=self.pki.ca,
            cert=alice.cert,
            key=alice.key,
            connect_timeout=2,
        )


def dropped(exc: Exception) -> bool:
    """A failure the crashes cause (or, for starts, the server's limit on running jobs)."""
    return isinstance(exc, TransportError | OSError) or (
        isinstance(exc, RpcError)
        and (exc.code in RETRYABLE or exc.code == StatusCode.RESOURCE_EXHAUSTED)
    )


async def starter(world: World, rng: random.Random) -> None:
    """Starts jobs until cancelled (the crash)."""
    async with world.client() as client:
        while True:
            lines = rng.choice([0, rng.randint(50, 400)])
            argv = ["sleep", "300"] if lines == 0 else [PYTHON, "-c", COUNTER, str(lines)]
            status = await client.start(argv)
            world.acknowledged[status.job_id] = lines
            await trio.sleep(rng.uniform(0.01, 0.08))


async def stopper(world: World, rng: random.Random) -> None:
    async with world.client() as client:
        while True:
            await trio.sleep(rng.uniform(0.05, 0.3))
            if world.acknowledged:
                job = rng.choice(sorted(world.acknowledged))
                world.stopped.add(job)  # asked for: it may or may not get there
                await client.stop(job, grace=0.2)


async def follower(world: World, job: str, deadline: float) -> None:
    """Follows ``job`` to its end across every crash, resuming at its offset."""
    data = world.followed.setdefault(job, bytearray())
    while trio.current_time() < deadline:
        try:
            async with world.client() as client, client.output(job, offset=len(data)) as it:
                async for chunk in it:
                    data += chunk.data
                    if chunk.HasField("final"):
                        world.done.add(job)
                        if len(world.done) == len(world.followed):
                            world.all_done.set()
                        return
        except Exception as exc:  # every drop is retried; anything else is re-raised
            if not dropped(exc):
                raise
        await trio.sleep(0.05)


async def burst(world: World, rng: random.Random, followers: trio.Nursery) -> None:
    """Starts, stops and new followers until cancelled."""

    async def retrying(task: Callable[[World, random.Random], Awaitable[None]]) -> None:
        while True:
            try:
                await task(world, rng)
            except Exception as exc:  # the crash drops them; anything else fails the test
                if not dropped(exc):
                    raise
            await trio.sleep(0.05)

    async def follow_new() -> None:
        while True:
            await trio.sleep(rng.uniform(0.1, 0.4))
            fresh = [j for j, n in world.acknowledged.items() if n and j not in world.followed]
            if fresh:
                job = rng.choice(fresh)
                world.followed[job] = bytearray()
                world.all_done = trio.Event()
                followers.start_soon(follower, world, job, trio.current_time() + 120)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(retrying, starter)
        nursery.start_soon(retrying, stopper)
        nursery.start_soon(follow_new)


async def test_random_server_crashes_lose_no_job_leave_no_orphan_and_no_byte_twice(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    seed = int(os.environ.get("FUZZ_SEED", random.randrange(1 << 32)))
    print(f"FUZZ_SEED={seed}")  # (pytest -s shows it; a failure's report does too)
    rng = random.Random(seed)
    state = tmp_path / "state"
    world = World(pki)
    server: Cli | None = None
    async with trio.open_nursery() as followers:
        for _ in range(ROUNDS):
            server = await launch(pki, state, nursery, port=world.port)
            world.port = server.port
            try:
                with trio.move_on_after(rng.uniform(0.5, 2.0)):
                    await burst(world, rng, followers)
            finally:
                server.process.send_signal(signal.SIGKILL)  # mid-burst: starts, stops, streams
                await server.process.wait()
            await trio.sleep(rng.uniform(0, 0.5))  # jobs run on while no server does
        server = await launch(pki, state, nursery, port=world.port)
        try:
            async with world.client() as client:
                # 0 acknowledged jobs lost: each is on record, running or ended.
                for job in world.acknowledged:
                    await client.status(job)
                followed_in_bursts = len(world.followed)
                for job, lines in world.acknowledged.items():
                    if lines == 0:
                        await client.stop(job, grace=0.2)
                    elif job not in world.followed:
                        # A counter nobody followed yet may still be counting (one started
                        # just before the last crash): follow it too, to its end, so that
                        # its final status below is due, and its bytes are checked too.
                        world.followed[job] = bytearray()
                        world.all_done = trio.Event()
                        followers.start_soon(follower, world, job, trio.current_time() + 120)
                with trio.fail_after(120):
                    if len(world.done) < len(world.followed):
                        await world.all_done.wait()
                await check_outputs(world, client)
        except BaseException:
            await stop_server(server.process)
            raise
        finally:
            followers.cancel_scope.cancel()  # (they are all done unless the test failed)
    await stop_server(server.process)
    assert server.process.returncode == 0
    # 0 orphans: no job process, no supervisor, no cgroup of ours.
    assert [p for p in processes() if p.sid in world_sessions(world, state)] == []
    assert supervisors_of(state) == []
    assert job_cgroups(state) == []
    print(
        f"{ROUNDS} crashes: {len(world.acknowledged)} starts acknowledged, "
        f"{len(world.stopped)} stops asked, {len(world.followed)} jobs followed to the end, "
        f"{followed_in_bursts} of them from the bursts on"
    )
    assert len(world.acknowledged) > 10
    assert followed_in_bursts > 2


async def check_outputs(world: World, client: JobsClient) -> None:
    """Every follower has its job's whole output, once; every counter its exit code."""
    for job, data in world.followed.items():
        served = bytearray()
        async with client.output(job, follow=False) as it:
            async for chunk in it:
                served += chunk.data
        assert bytes(data) == bytes(served), f"job {job}: the follower's bytes differ"
        numbers = data.decode().splitlines()
        assert numbers == [str(i) for i in range(len(numbers))]
    for job, lines in world.acknowledged.items():
        status = await client.status(job)
        # Each counter was followed to its end above: its end is on record.
        assert status.state != jobs_pb2.JOB_STATE_RUNNING or lines == 0, f"job {job}: {status}"
        if lines and job not in world.stopped:
            assert (status.state, status.exit_code) in (
                (jobs_pb2.JOB_STATE_COMPLETED, 0),
                (jobs_pb2.JOB_STATE_FAILED, lines % 7),
            ), f"job {job}: {status}"


def world_sessions(world: World, state: Path) -> set[int]:
    """The sessions of the jobs on record (each job leads its own)."""
    with sqlite3.connect(state / "jobs.db") as db:
        return {pid for (pid,) in db.execute("SELECT pid FROM jobs") if pid > 1}


def supervisors_of(state: Path) -> list[int]:
    """Live jogger-supervise processes writing a log in ``state``, on record or not (a start
    in flight when the server died)."""
    found = []
    for proc in processes():
        try:
            argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
            log = os.readlink(f"/proc/{proc.pid}/fd/5")  # its output log (see supervise.c)
        except OSError:
            continue
        if argv[0].endswith(b"jogger-supervise") and log.startswith(str(state)):
            found.append(proc.pid)
    return found

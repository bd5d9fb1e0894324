"""Hostile jobs over the real RPC: each is contained, and the
server still runs a normal job afterwards (or meanwhile) with the right output.

Real processes and real cgroups. Jobs that attack the server run as nobody (``--run-as
fixed``), which needs root; those tests skip without it, and the cgroup ones skip where no
cgroup backend works. Covered elsewhere, not repeated here: the OOM killer and a setsid
daemon at engine level (tests/engine/test_cgroups.py), the state dir's disk reserve and
retention (tests/engine/test_history.py, tests/e2e/test_restart.py).
"""

import logging
import os
import pwd
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from jogger import Account
from jogger.engine.cgroups.tree import USER_PREFIX
from jogger.engine.limits import JobLimits
from jogger.rpc import certs
from jogger.rpc.client import JobsClient
from jogger.rpc.errors import RpcError, StatusCode
from jogger.server.accounts import RunAs
from jogger.v1 import jobs_pb2
from tests.adversarial.lag import LoopLag
from tests.pki import Pair, Pki
from tests.procs import eventually, is_alive, my_children, processes
from tests.servers import Server, server_config, start_server

MiB = 1 << 20
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="running jobs as nobody needs root")

RUNNING = jobs_pb2.JOB_STATE_RUNNING
COMPLETED = jobs_pb2.JOB_STATE_COMPLETED
FAILED = jobs_pb2.JOB_STATE_FAILED
STOPPED = jobs_pb2.JOB_STATE_STOPPED

# Scripts that attack the server refuse to try as root, so that a bug in the switch to
# nobody cannot turn this test run against the machine (the server is this process).
NOT_AS_ROOT = '[ "$(id -u)" != 0 ] || { echo "running as root: not trying"; exit 99; }\n'


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA and users named like local accounts: a CN is what --run-as user maps."""
    directory = tmp_path_factory.mktemp("hostile-pki")
    ca = certs.make_ca()
    certs.write_cert(directory / "ca.pem", ca.cert)

    def save(key: str, made: tuple[object, object]) -> Pair:
        cert, private = made
        pair = Pair(directory / f"{key}.pem", directory / f"{key}-key.pem")
        certs.write_cert(pair.cert, cert)  # type: ignore[arg-type]
        certs.write_key(pair.key, private)  # type: ignore[arg-type]
        return pair

    server = save("server", certs.make_server(ca, ["localhost"], ["127.0.0.1"]))
    users = {
        "alice": save("alice", certs.make_user(ca, "alice")),
        "daemon": save("daemon", certs.make_user(ca, "daemon")),
        "root": save("root", certs.make_user(ca, "root")),  # CN=root, not an admin
        "root-admin": save("root-admin", certs.make_user(ca, "root", admin=True)),
        "alice-admin": save("alice-admin", certs.make_user(ca, "alice", admin=True)),
    }
    return Pki(directory / "ca.pem", server, users)


Launch = Callable[..., Awaitable[Server]]


@pytest.fixture
async def launch(pki: Pki, tmp_path: Path, nursery: trio.Nursery, loop_lag: LoopLag) -> Launch:
    """Start jogger-server in this process with a --run-as policy and engine limits."""
    count = 0

    async def start(
        run_as: RunAs | None = None, *, user_limits: JobLimits | None = None, **limits: int
    ) -> Server:
        nonlocal count
        count += 1
        config = server_config(pki, tmp_path / f"state{count}", **limits)
        config = replace(config, run_as=run_as or RunAs(), user_limits=user_limits or JobLimits())
        return await start_server(nursery, pki, config)

    return start


async def as_nobody(launch: Launch, **limits: object) -> Server:
    if not account_exists("nobody"):
        pytest.skip("no local account nobody")
    return await launch(RunAs.create("fixed", "nobody"), **limits)


def account_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


async def assert_serving(client: JobsClient) -> None:
    """A normal job still starts, runs and shows exactly its output."""
    job = await client.start(["echo", "still serving"])
    data, final = await follow(client, job.job_id)
    assert data == b"still serving\n"
    assert final.state == COMPLETED


async def follow(client: JobsClient, job_id: str) -> tuple[bytes, jobs_pb2.JobStatus]:
    """The job's whole output and its final status, following it to its end."""
    data = b""
    final = None
    with trio.fail_after(60):
        async with client.output(job_id) as chunks:
            async for chunk in chunks:
                data += chunk.data
                if chunk.HasField("final"):
                    final = chunk.final
    assert final is not None
    return data, final


async def output_until(client: JobsClient, job_id: str, marker: bytes) -> bytes:
    seen = b""
    with trio.fail_after(60):
        async with client.output(job_id) as chunks:
            async for chunk in chunks:
                seen += chunk.data
                if marker in seen:
                    return seen
    raise AssertionError(f"the job ended without printing {marker!r}: {seen!r}")


def own_cgroups() -> list[Path]:
    """This process's cgroup in every mounted hierarchy. The server runs in-process and keeps
    its job groups beneath it, in ``<own>/<root>/user-<owner>/<job id>``."""
    own = {}  # controllers (or "" for the v2 hierarchy) -> path within the hierarchy
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        own[controllers] = path.lstrip("/")
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, after = line.split(" - ", 1)
        fstype, _, options = after.split()[:3]
        mount = Path(before.split()[4])
        if fstype == "cgroup2" and "" in own:
            found.append(mount / own[""])
        elif fstype == "cgroup":
            names = set(options.split(","))
            found += [mount / p for c, p in own.items() if c and set(c.split(",")) <= names]
    return list(dict.fromkeys(found))


def job_groups(job_id: str) -> list[Path]:
    """The job's cgroup in every hierarchy (v1: one per controller; v2: one). Only the
    levels where job groups are, beneath our own cgroups: a recursive glob of /sys/fs/cgroup
    walks every cgroup on the host, and took 200 ms of the loop the server shares with the
    test on a busy machine."""
    return [group for own in own_cgroups() for group in own.glob(f"*/{USER_PREFIX}*/{job_id}")]


def require_cgroups(status: jobs_pb2.JobStatus) -> None:
    if status.cgroup == "none":
        pytest.skip("no cgroup backend works here")


def members(job_id: str) -> set[int]:
    return {
        int(pid)
        for group in job_groups(job_id)
        for pid in (group / "cgroup.procs").read_text().split()
    }


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def has_output(pid: int) -> bool:
    """Whether the process has a stdout or a stderr."""
    return any(os.path.exists(f"/proc/{pid}/fd/{fd}") for fd in (1, 2))


def limit_file(job_id: str, v1: str, v2: str) -> str:
    """A limit as the kernel has it: the v1 file where there is one, else the v2 file."""
    for group in job_groups(job_id):
        for name in (v1, v2):
            if (group / name).exists():
                return (group / name).read_text().strip()
    raise AssertionError(f"no {v1} or {v2} for job {job_id}")


@needs_root
async def test_a_fork_bomb_is_held_by_its_pids_limit_and_stop_kills_all_of_it(
    launch: Launch,
) -> None:
    # A subshell forks until the kernel refuses; the job then goes on running.
    bomb = "(while :; do sleep 300 & done); echo contained; exec sleep 300"
    server = await as_nobody(launch)
    async with server.connect() as client:
        job = await client.start(["sh", "-c", bomb], limits=jobs_pb2.Limits(pids=16))
        require_cgroups(job)
        assert b"Cannot fork" in await output_until(client, job.job_id, b"contained\n")
        bombed = members(job.job_id)
        assert 8 <= len(bombed) <= 16
        assert (await client.status(job.job_id)).state == RUNNING
        await assert_serving(client)  # meanwhile
        with trio.fail_after(60):
            final = await client.stop(job.job_id, grace=2)
        assert final.state == STOPPED
        assert not any(is_alive(pid) for pid in bombed)
        assert job_groups(job.job_id) == []
        await assert_serving(client)


@needs_root
async def test_one_users_fork_bombs_share_their_budget_and_spare_other_users(
    launch: Launch,
) -> None:
    # Two fork bombs of alice, with no per-job pids limit: her budget of 64 holds both. Each
    # bomb's subshell is forked before the gate opens, so that neither job's own shell can
    # find the budget already taken by the other bomb (it would die of "Cannot fork"). The
    # gate is in /tmp itself, where the jobs (as nobody) can see it.
    gate = trio.Path(f"/tmp/jogger-gate-{os.getpid()}-{time.monotonic_ns()}")
    bomb = (
        f"(while [ ! -e {gate} ]; do sleep 0.01; done; while :; do sleep 300 & done); "
        "echo contained; exec sleep 300"
    )
    server = await as_nobody(launch, user_limits=JobLimits(pids=64))
    async with server.connect("alice") as alice, server.connect("daemon") as other:
        bombs = [await alice.start(["sh", "-c", bomb]) for _ in range(2)]
        require_cgroups(bombs[0])
        for job in bombs:

            async def forked(job_id: str = job.job_id) -> bool:
                await trio.lowlevel.checkpoint()
                return len(members(job_id)) >= 2  # the job's shell and its subshell

            await eventually(forked)
        await gate.touch()
        for job in bombs:
            assert b"Cannot fork" in await output_until(alice, job.job_id, b"contained\n")
        (pids,) = {
            g.parent for job in bombs for g in job_groups(job.job_id) if (g / "pids.max").exists()
        }
        assert pids.name == "user-alice"
        assert 32 <= int((pids / "pids.current").read_text()) <= 64
        # Another user is served as usual, meanwhile: their own budget is untouched.
        started = time.monotonic()
        await assert_serving(other)
        logging.getLogger("tests.adversarial").info(
            "another user's job beside the bombs took %.3f s", time.monotonic() - started
        )
        bombed = {pid for job in bombs for pid in members(job.job_id)}
        for job in bombs:
            with trio.fail_after(60):
                assert (await alice.stop(job.job_id, grace=2)).state == STOPPED
        # One scan of /proc for all of them (a scan each would be this test's own stall).
        assert not bombed & {p.pid for p in processes() if p.state not in ("Z", "X")}
    await gate.unlink(missing_ok=True)


@needs_root
async def test_a_memory_hog_is_ended_by_the_oom_killer_and_status_says_oom(
    launch: Launch,
) -> None:
    # tail keeps its last "line", and /dev/zero has no newline. (Engine level:
    # test_cgroups.py; here as nobody, through the RPC.)
    server = await as_nobody(launch)
    async with server.connect() as client:
        job = await client.start(["tail", "/dev/zero"], limits=jobs_pb2.Limits(memory=32 * MiB))
        require_cgroups(job)
        _, final = await follow(client, job.job_id)
        assert (final.state, final.signal, final.reason) == (FAILED, 9, "oom")
        assert 0 < final.memory_peak <= 32 * MiB
        await assert_serving(client)


async def test_output_past_the_cap_is_dropped_and_the_job_runs_on(launch: Launch) -> None:
    cap = 64 * 1024
    server = await launch(max_output_bytes=cap)
    async with server.connect() as client:
        # head writes 1 MB, 16 times the cap: only if the server keeps draining the pipe
        # does it finish and exec sleep.
        job = await client.start(["sh", "-c", "head -c 1000000 /dev/zero; exec sleep 300"])

        seen: list[object] = []

        async def drained() -> bool:
            status = await client.status(job.job_id)
            seen[:] = [status.output_bytes, status.output_truncated, cmdline(job.pid)]
            return status.output_truncated and seen[2] == b"sleep\x00300\x00"

        try:
            await eventually(drained)
        except trio.TooSlowError:
            wchan = await trio.Path(f"/proc/{job.pid}/wchan").read_text()
            raise AssertionError(
                f"not drained: output_bytes, truncated, cmdline = {seen}; the job waits in "
                f"{wchan}; its children: {[p for p in processes() if p.ppid == job.pid]}"
            ) from None
        status = await client.status(job.job_id)
        assert (status.state, status.output_bytes) == (RUNNING, cap)
        with trio.fail_after(30):
            async with client.output(job.job_id, follow=False) as chunks:
                assert b"".join([c.data async for c in chunks]) == b"\0" * cap
        stopped = await client.stop(job.job_id, grace=2)
        assert (stopped.state, stopped.output_bytes, stopped.output_truncated) == (
            STOPPED,
            cap,
            True,
        )

        ends = await client.start(["head", "-c", "1000000", "/dev/zero"])
        data, final = await follow(client, ends.job_id)
        assert (final.state, final.output_bytes, final.output_truncated) == (COMPLETED, cap, True)
        assert data == b"\0" * cap
        await assert_serving(client)


async def test_a_job_that_closes_its_output_runs_on_and_its_followers_end_with_it(
    launch: Launch,
) -> None:
    # The output is at EOF once the job closes it, but a follower's stream ends with the
    # job's final status: it stays open, quiet, until the job ends.
    server = await launch()
    async with server.connect() as client, trio.open_nursery() as nursery:
        job = await client.start(["sh", "-c", "echo before; exec sleep 300 >&- 2>&-"])
        seen: list[jobs_pb2.OutputChunk] = []
        got_output = trio.Event()
        stream_ended = trio.Event()

        async def follower() -> None:
            async with client.output(job.job_id) as chunks:
                async for chunk in chunks:
                    seen.append(chunk)
                    got_output.set()
            stream_ended.set()

        nursery.start_soon(follower)
        with trio.fail_after(30):
            await got_output.wait()

        async def output_closed() -> bool:
            await trio.lowlevel.checkpoint()
            return not has_output(job.pid)

        await eventually(output_closed)
        with trio.move_on_after(1):
            await stream_ended.wait()
        assert not stream_ended.is_set()
        assert (await client.status(job.job_id)).state == RUNNING
        await assert_serving(client)

        with trio.fail_after(60):
            stopped = await client.stop(job.job_id, grace=2)
            await stream_ended.wait()
        assert stopped.state == STOPPED
        assert b"".join(c.data for c in seen) == b"before\n"
        assert seen[-1].final.state == STOPPED
        assert not is_alive(job.pid)


@needs_root
async def test_stop_kills_a_grandchild_in_a_session_of_its_own(launch: Launch) -> None:
    # setsid -f: a child that leaves the job's session and process group, as nobody.
    # (Engine level: test_cgroups.py and test_stop.py.)
    script = "setsid -f sh -c 'echo \"escaped $$\"; exec sleep 300'; exec sleep 300"
    server = await as_nobody(launch)
    async with server.connect() as client:
        job = await client.start(["sh", "-c", script])
        require_cgroups(job)
        line = await output_until(client, job.job_id, b"\n")
        escaped = int(line.split()[1])
        (proc,) = [p for p in processes() if p.pid == escaped]
        assert proc.sid == escaped != job.pid
        assert proc.pgid != job.pid
        with trio.fail_after(60):
            final = await client.stop(job.job_id, grace=2)
        assert final.state == STOPPED
        assert not is_alive(escaped)
        await assert_serving(client)


ATTACK_CGROUPS = (
    NOT_AS_ROOT
    + """try() { if msg=$( { printf '%s\\n' "$2" > "$1"; } 2>&1 ); then echo "WROTE $1"; \
else echo "REFUSED $1: $msg"; fi; }
while IFS=: read -r _ controllers path; do
  case ",$controllers," in
    *,memory,*) d=/sys/fs/cgroup/memory$path
       try "$d/memory.limit_in_bytes" -1; try "$d/../memory.limit_in_bytes" -1 ;;
    *,pids,*) d=/sys/fs/cgroup/pids$path; try "$d/pids.max" max; try "$d/../pids.max" max ;;
    ,,) if [ -e /sys/fs/cgroup/cgroup.controllers ]; then d=/sys/fs/cgroup$path
       try "$d/memory.max" max; try "$d/pids.max" max; try "$d/../memory.max" max; fi ;;
  esac
done < /proc/self/cgroup
for f in "$@"; do try "$f" $$; done
echo done
exec sleep 300
"""
)


def server_procs_files() -> list[str]:
    """cgroup.procs of this process's (the server's) own cgroups: memory, pids and v2."""
    found = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for name in set(controllers.split(",")) & {"memory", "pids"}:
                found.append(f"/sys/fs/cgroup/{name}{path.rstrip('/')}/cgroup.procs")
            if not controllers and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
                found.append(f"/sys/fs/cgroup{path.rstrip('/')}/cgroup.procs")
    return found


@needs_root
async def test_a_job_cannot_write_its_own_or_the_servers_cgroup_files(launch: Launch) -> None:
    targets = server_procs_files()
    server = await as_nobody(launch)
    async with server.connect() as client:
        limits = jobs_pb2.Limits(memory=64 * MiB, pids=32)
        job = await client.start(["sh", "-c", ATTACK_CGROUPS, "sh", *targets], limits=limits)
        require_cgroups(job)
        lines = (await output_until(client, job.job_id, b"done\n")).decode().splitlines()
        assert lines[-1] == "done"
        tried = lines[:-1]
        assert len(tried) >= 3 + len(targets)  # own limits, the parent's, the server's groups
        for line in tried:
            assert line.startswith("REFUSED "), line
            assert "Permission denied" in line or "Operation not permitted" in line, line
        assert limit_file(job.job_id, "memory.limit_in_bytes", "memory.max") == str(64 * MiB)
        assert limit_file(job.job_id, "pids.max", "pids.max") == "32"
        assert job.pid in members(job.job_id)  # still inside its groups
        assert (await client.status(job.job_id)).limits == limits
        await client.stop(job.job_id, grace=2)
        await assert_serving(client)


@needs_root
async def test_a_job_cannot_signal_the_server(launch: Launch) -> None:
    attack = NOT_AS_ROOT + (
        'for sig in KILL TERM INT HUP STOP; do if msg=$(kill -s $sig "$1" 2>&1); '
        'then echo "SENT $sig"; else echo "REFUSED $sig: $msg"; fi; done\n'
    )
    server = await as_nobody(launch)
    async with server.connect() as client:
        job = await client.start(["sh", "-c", attack, "sh", str(os.getpid())])
        data, final = await follow(client, job.job_id)
        lines = data.decode().splitlines()
        assert len(lines) == 5
        for line in lines:
            assert line.startswith("REFUSED "), line
            assert "Operation not permitted" in line, line
        assert final.state == COMPLETED
        await assert_serving(client)


@needs_root
@pytest.mark.parametrize(
    ("mode", "job_user", "caller", "admin"),
    [
        ("user", "nobody", "root", "root-admin"),  # the CN names the local account root
        ("fixed", "root", "alice", "alice-admin"),  # every job would run as root
    ],
)
async def test_jobs_as_root_are_for_admins_only(
    launch: Launch, mode: str, job_user: str, caller: str, admin: str
) -> None:
    server = await launch(RunAs.create(mode, job_user))  # type: ignore[arg-type]
    async with server.connect(caller) as client:
        with trio.fail_after(30), pytest.raises(RpcError) as refused:
            await client.start(["true"])
        assert refused.value.code == StatusCode.PERMISSION_DENIED
        assert "uid 0" in refused.value.message
        assert "only admins" in refused.value.message
        assert await client.list() == ([], False)  # no job, no record
        assert my_children() == []
    async with server.connect(admin) as client:
        job = await client.start(["id", "-u"])
        data, final = await follow(client, job.job_id)
        assert (data, final.state) == (b"0\n", COMPLETED)


@needs_root
async def test_jobs_in_roots_group_are_for_admins_only(launch: Launch) -> None:
    # root, usually the only local account in group 0, is refused for its uid already: this
    # account is made up, nobody's uid with group 0 (the engine needs no passwd entry).
    if not account_exists("nobody"):
        pytest.skip("no local account nobody")
    uid = pwd.getpwnam("nobody").pw_uid
    server = await launch(RunAs("fixed", Account("nobody", uid, 0, (0,), "/")))
    async with server.connect() as client:
        with trio.fail_after(30), pytest.raises(RpcError) as refused:
            await client.start(["true"])
        assert refused.value.code == StatusCode.PERMISSION_DENIED
        assert refused.value.message == (
            f"your jobs would run as nobody (uid {uid} in group 0, root's group) on this "
            "server, which only admins may do"
        )
        assert await client.list() == ([], False)  # no job, no record
        assert my_children() == []
    async with server.connect("alice-admin") as client:
        job = await client.start(["sh", "-c", "id -u; id -G"])
        data, final = await follow(client, job.job_id)
        assert (data, final.state) == (f"{uid}\n0\n".encode(), COMPLETED)


def expected_ids(name: str) -> list[str]:
    entry = pwd.getpwnam(name)
    groups = sorted(set(os.getgrouplist(name, entry.pw_gid)))
    return [
        f"Uid:\t{entry.pw_uid}\t{entry.pw_uid}\t{entry.pw_uid}\t{entry.pw_uid}",
        f"Gid:\t{entry.pw_gid}\t{entry.pw_gid}\t{entry.pw_gid}\t{entry.pw_gid}",
        "Groups:\t" + " ".join(map(str, groups)),
        "CapEff:\t0000000000000000",
        f"USER={name}",
        f"HOME={entry.pw_dir}",
        f"PWD={entry.pw_dir if os.path.isdir(entry.pw_dir) else '/'}",
    ]


SHOW_IDS = (
    "grep -E '^(Uid|Gid|Groups|CapEff):' /proc/self/status | sed 's/[[:space:]]*$//'; "
    'echo "USER=$USER"; echo "HOME=$HOME"; echo "PWD=$(pwd)"'
)


@needs_root
@pytest.mark.parametrize(
    ("mode", "caller", "account"),
    [
        ("user", "daemon", "daemon"),  # the CN names a local account
        ("user", "alice", "nobody"),  # no local account alice: the job user
        ("fixed", "daemon", "nobody"),  # fixed: the job user, whatever the CN
    ],
)
async def test_a_job_runs_with_the_mapped_accounts_ids_and_groups(
    launch: Launch, mode: str, caller: str, account: str
) -> None:
    for name in ("daemon", "nobody"):
        if not account_exists(name):
            pytest.skip(f"no local account {name}")
    if account_exists("alice"):
        pytest.skip("a local account alice exists here")
    server = await launch(RunAs.create(mode, "nobody"))  # type: ignore[arg-type]
    async with server.connect(caller) as client:
        job = await client.start(["sh", "-c", SHOW_IDS])
        data, final = await follow(client, job.job_id)
        assert data.decode().splitlines() == expected_ids(account)
        assert (final.owner, final.state) == (caller, COMPLETED)


async def test_run_as_server_runs_jobs_as_the_servers_own_user(launch: Launch) -> None:
    server = await launch(RunAs.create("server"))
    async with server.connect() as client:
        job = await client.start(["sh", "-c", 'id -u; echo "USER=${USER-unset}"'])
        data, _ = await follow(client, job.job_id)
        assert data == f"{os.geteuid()}\nUSER=unset\n".encode()

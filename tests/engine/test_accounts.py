"""Jobs started with an account: they run as that user, with its login variables and home.

Switching users needs root; these skip without it. They use the account nobody (Debian's
65534, present on every Debian-based system) and create none.
"""

import ctypes
import ctypes.util
import functools
import glob
import hashlib
import os
import pwd
import subprocess
import tempfile
from pathlib import Path

import pytest
import trio

from jogger import Account, InvalidRequest, JobManager, ManagerLimits, SpawnError
from jogger.engine import supervisor as process
from jogger.engine.manager import DEFAULT_PATH
from tests.engine.test_start import assert_nothing_left, run_to_end, tick
from tests.procs import my_children

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")

PR_GET_DUMPABLE = 3


def nobody() -> Account:
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no local account nobody")
    return Account("nobody", entry.pw_uid, entry.pw_gid, (entry.pw_gid,), entry.pw_dir)


async def assert_no_trace(jobs: JobManager, state_dir: Path) -> None:
    """No job, log, process or job cgroup was left by a failed start."""
    await assert_nothing_left(jobs, state_dir)
    assert my_children() == []
    assert job_cgroups(state_dir) == []


def job_cgroups(state_dir: Path) -> list[str]:
    """The job cgroups of the manager on ``state_dir`` (named as the manager names them)."""
    digest = hashlib.sha256(os.fsencode(os.path.realpath(state_dir))).hexdigest()[:12]
    return glob.glob(f"/sys/fs/cgroup/**/jogger-{digest}/*/", recursive=True)


def status_ids(out: bytes) -> dict[str, list[str]]:
    fields = {}
    for line in out.decode().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.split()
    return fields


async def test_a_job_runs_as_its_account_with_no_capabilities(jobs: JobManager) -> None:
    account = nobody()
    out = await run_to_end(jobs, ["cat", "/proc/self/status"], account=account)
    fields = status_ids(out)
    assert fields["Uid"] == [str(account.uid)] * 4  # real, effective, saved, filesystem
    assert fields["Gid"] == [str(account.gid)] * 4
    assert fields["Groups"] == [str(account.gid)]
    assert fields["CapEff"] == fields["CapPrm"] == fields["CapAmb"] == ["0" * 16]


async def test_the_jobs_status_names_its_account_from_start_to_end(jobs: JobManager) -> None:
    account = nobody()
    started = await jobs.start("alice", ["true"], account=account)
    with trio.fail_after(10):
        done = await jobs.wait("alice", started.id)
    for status in (started, done, await jobs.status("alice", started.id)):
        assert (status.run_as, status.run_as_uid) == ("nobody", account.uid)


async def test_a_job_gets_its_accounts_login_variables_unless_it_sets_them(
    jobs: JobManager,
) -> None:
    account = nobody()
    out = await run_to_end(jobs, ["env"], account=account)
    assert sorted(out.decode().split("\n")[:-1]) == sorted(
        [
            f"HOME={account.home}",
            "USER=nobody",
            "LOGNAME=nobody",
            f"PATH={DEFAULT_PATH}",
            *[line for line in out.decode().split("\n") if line.startswith("JOGGER_JOB_ID=")],
        ]
    )
    mine = await run_to_end(jobs, ["env"], account=account, env={"HOME": "/tmp", "USER": "x"})
    assert {b"HOME=/tmp", b"USER=x", b"LOGNAME=nobody"} <= set(mine.split(b"\n"))


async def test_without_a_cwd_the_job_starts_in_its_home_or_in_root(jobs: JobManager) -> None:
    account = nobody()
    with tempfile.TemporaryDirectory(dir="/tmp") as home:  # (pytest's tmp_path is 0700)
        os.chown(home, account.uid, account.gid)
        homed = Account(account.name, account.uid, account.gid, account.groups, home)
        assert await run_to_end(jobs, ["pwd"], account=homed) == f"{home}\n".encode()
    missing = Account(account.name, account.uid, account.gid, account.groups, "/nonexistent/x")
    assert await run_to_end(jobs, ["pwd"], account=missing) == b"/\n"


async def test_the_cwd_is_checked_as_the_jobs_user(jobs: JobManager, tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(SpawnError, match=r"cannot use working directory .*: Permission denied"):
        await jobs.start("alice", ["true"], cwd=str(private), account=nobody())
    await assert_no_trace(jobs, tmp_path / "state")


async def test_a_failed_switch_is_a_spawn_error_and_leaves_nothing(
    jobs: JobManager, tmp_path: Path
) -> None:
    # The kernel refuses more than NGROUPS_MAX (65536) supplementary groups with EINVAL.
    account = nobody()
    too_many = Account("nobody", account.uid, account.gid, tuple(range(70_000)), account.home)
    with pytest.raises(SpawnError, match=r"cannot run the job as nobody \(uid 65534.*Invalid"):
        await jobs.start("alice", ["true"], account=too_many)
    await assert_no_trace(jobs, tmp_path / "state")


async def test_switching_users_in_the_child_leaves_the_server_dumpable(jobs: JobManager) -> None:
    # The child shares our memory until it execs, and makes the shared mm non-dumpable
    # before its credentials change; the spawner puts the flag back, once the last of the
    # spawns under way at once is done.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    assert prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1
    await run_to_end(jobs, ["true"], account=nobody())
    assert prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(functools.partial(run_to_end, account=nobody()), jobs, ["true"])
    assert prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1


KEY_SPEC_SESSION_KEYRING = -3


def session_keyring() -> int:
    """The serial of this process's session keyring (it gets one if it had none)."""
    name = ctypes.util.find_library("keyutils")
    if name is None or not os.path.exists("/proc/keys"):
        pytest.skip("no libkeyutils, or a kernel without keyrings")
    keyutils = ctypes.CDLL(name, use_errno=True)
    serial: int = keyutils.keyctl_get_keyring_ID(KEY_SPEC_SESSION_KEYRING, 1)
    if serial < 0:
        pytest.skip(f"no session keyring here: {os.strerror(ctypes.get_errno())}")
    return serial


async def test_a_job_does_not_possess_the_servers_session_keyring(jobs: JobManager) -> None:
    # /proc/keys lists the keys its reader may view: those it possesses (through its
    # session keyring), and those its uid may view. Our session keyring belongs to root.
    ours = session_keyring()
    out = await run_to_end(jobs, ["cat", "/proc/keys"], account=nobody())
    keys = [line.split() for line in out.decode().splitlines()]
    assert f"{ours:08x}" not in [key[0] for key in keys]
    # Its own, made before the switch: root's, so no other process of nobody's may view it.
    assert [key[5:9] for key in keys if key[8] == "_ses:"] == [["0", "0", "keyring", "_ses:"]]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"uid": -1}, "bad uid"),
        ({"gid": 1 << 32}, "bad gid"),
        ({"groups": (1, -2)}, "bad group"),
        ({"home": "relative"}, "absolute"),
        ({"name": ""}, "account name"),
    ],
)
def test_a_bad_account_is_refused(fields: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"name": "x", "uid": 1, "gid": 1, "groups": (), "home": "/"}
    with pytest.raises(InvalidRequest, match=message):
        Account(**{**values, **fields})  # type: ignore[arg-type]


# Run as nobody by the test below. It SIGSTOPs exactly the test's own jobs: children of the
# test process (argv[1]) that run as its own uid (nobody), itself excepted. No `kill -1`: that
# would stop every process of nobody's on the machine, other people's jobs included. Until
# its stdin closes (or argv[2] seconds pass); then it resumes what it stopped and prints
# how many it stopped, and of those still sharing the server's memory (before exec) how
# many let it read their environment: the server's.
ATTACKER = r"""
import os, select, signal, sys, time
server, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
me, uid = os.getpid(), os.getuid()
if uid == 0:
    sys.exit("running as root: not trying")

def children(pid):
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(child) for child in f.read().split()]
        except OSError:
            continue
    return found

def ours(pid, parents):
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f)
    except (OSError, ValueError):
        return False
    return pid != me and int(fields["PPid"]) in parents and int(fields["Uid"].split()[0]) == uid

# A job's process is a child of its supervisor, itself a child of the server.
stopped, leaked, parents = set(), 0, set()
while time.monotonic() < deadline and not select.select([0], [], [], 0)[0]:
    supervisors = children(server)
    parents = set(supervisors)
    for supervisor in supervisors:
        for pid in children(supervisor):
            if pid in stopped or not ours(pid, parents):
                continue
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                continue
            stopped.add(pid)
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = f.read()
            except OSError:
                continue
            if env and b"JOGGER_JOB_ID=" not in env:
                leaked += 1
    time.sleep(0.001)
for pid in stopped:
    try:
        os.kill(pid, signal.SIGCONT)
    except OSError:
        pass
print(len(stopped), leaked, flush=True)
"""

# execve is tried in each PATH directory in turn: 10000 missing ones keep the child between
# its switch to nobody and its exec for some 20 ms, for the attacker to find it there.
WIDE_PATH = ":".join(["/no-jogger"] * 10000 + ["/usr/bin", "/bin"])


def attacker_python() -> str:
    python = "/usr/bin/python3"  # (the virtualenv's may not be readable by nobody)
    if not os.access(python, os.X_OK):
        pytest.skip(f"no {python} to run the attacker with")
    assert not os.path.exists("/no-jogger")
    return python


async def test_jobs_of_the_same_user_stopping_spawns_cannot_freeze_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process of the job account's uid may SIGSTOP a new job's process between its switch
    # to that uid and its exec, while it still shares our memory. The event loop must go
    # on meanwhile, each such start fail cleanly after the spawn timeout, and the others
    # start; nothing may be left, stopped or otherwise.
    python = attacker_python()
    account = nobody()
    monkeypatch.setattr(process, "SPAWN_TIMEOUT", 2.0)
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    limits = ManagerLimits(max_jobs=256, max_jobs_per_owner=256)
    starts, started, failures = 100, [], []
    lateness: list[float] = []
    state = tmp_path / "state"

    async def start(jobs: JobManager, limiter: trio.CapacityLimiter, path: str) -> None:
        async with limiter:
            try:
                status = await jobs.start("alice", ["true"], env={"PATH": path}, account=account)
            except SpawnError as exc:
                failures.append(str(exc))
            else:
                started.append(status.id)

    with trio.fail_after(100):
        async with JobManager(state, grace=1.0, limits=limits) as jobs:
            async with trio.open_nursery() as nursery:
                run_attacker = functools.partial(
                    trio.run_process,
                    [python, "-I", "-c", ATTACKER, str(os.getpid()), "80"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    user=account.uid,
                    group=account.gid,
                    extra_groups=[],
                    cwd="/",
                    env={},
                )
                attacker: trio.Process = await nursery.start(run_attacker)
                assert attacker.stdin is not None
                assert attacker.stdout is not None
                nursery.start_soon(tick, lateness)
                async with trio.open_nursery() as starters:
                    limiter = trio.CapacityLimiter(10)
                    for i in range(starts):  # every other one quick to exec
                        starters.start_soon(start, jobs, limiter, WIDE_PATH if i % 2 else "/bin")
                await attacker.stdin.aclose()  # the attacker resumes what it stopped, and ends
                report = b""
                while chunk := await attacker.stdout.receive_some():
                    report += chunk
                assert await attacker.wait() == 0
                nursery.cancel_scope.cancel()  # the ticker has done its part
            stopped, leaked = map(int, report.split())
            for job_id in started:
                await jobs.wait("alice", job_id)
            assert len((await jobs.list("alice")).jobs) == len(started)
            # A log and its time index each: no start left a stray one behind.
            assert len(list((state / "logs").glob("*.log"))) == len(started)
            assert len(list((state / "logs").glob("*.times"))) == len(started)
            assert job_cgroups(state) == []
            assert await run_to_end(jobs, ["echo", "still serving"], account=account) == (
                b"still serving\n"
            )
    assert max(lateness) < 2.0
    assert len(lateness) > 20
    assert len(started) + len(failures) == starts
    assert 1 <= len(failures) <= stopped
    assert {message.split(" (")[0] for message in failures} == {
        "the job's process did not reach exec within 2 s"
    }
    assert leaked == 0  # no stopped child still sharing our memory let nobody read it
    assert prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1
    assert my_children() == []

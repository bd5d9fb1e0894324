"""Jobs started with an account: they run as that user, with its login variables and home.

Switching users needs root; these skip without it. They use the account nobody (Debian's
65534, present on every Debian-based system) and create none.
"""

import ctypes
import glob
import hashlib
import os
import pwd
import tempfile
from pathlib import Path

import pytest

from jogger import Account, InvalidRequest, JobManager, SpawnError
from jogger.engine.manager import DEFAULT_PATH
from tests.engine.test_start import assert_nothing_left, run_to_end
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
    # The child shares our memory until it execs, and the kernel marks a shared mm
    # non-dumpable when its credentials change; the spawner puts the flag back.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    assert prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1
    await run_to_end(jobs, ["true"], account=nobody())
    assert prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1


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

"""jogger-server's --run-as and --job-user: checked at start-up against this host, which
callers may have jobs run as a privileged account, and the account each job's status names.

What the jobs then run as is tested with real jobs in tests/adversarial/test_hostile_jobs.py.
"""

import os
import pwd
from pathlib import Path

import pytest
import trio

from jogger import Account
from jogger.rpc.auth import Identity
from jogger.server.accounts import AccountRefused, RunAs, RunAsMode, lookup
from jogger.server.config import ConfigError, ServerConfig, load
from jogger.v1 import jobs_pb2
from tests.pki import Pki
from tests.servers import Server, start_server

# A CN with no local account: under --run-as user its jobs run as the job user.
USER = Identity("no-such-user-jogger", admin=False)
ADMIN = Identity("no-such-user-jogger", admin=True)


def load_with(pki: Pki, *flags: str) -> ServerConfig:
    tls = ["--ca-cert", str(pki.ca), "--cert", str(pki.server.cert), "--key", str(pki.server.key)]
    return load([*tls, *flags])


def test_an_unknown_job_user_is_a_config_error(pki: Pki) -> None:
    with pytest.raises(ConfigError, match="--job-user no-such-user-jogger: no such local account"):
        load_with(pki, "--run-as", "fixed", "--job-user", "no-such-user-jogger")


def test_run_as_server_needs_no_job_user(pki: Pki) -> None:
    config = load_with(pki, "--run-as", "server", "--job-user", "no-such-user-jogger")
    assert config.run_as.mode == "server"
    assert config.run_as.job_account is None


@pytest.mark.skipif(os.geteuid() != 0, reason="the default as root")
def test_as_root_jobs_run_as_nobody_by_default(pki: Pki) -> None:
    config = load_with(pki)
    assert config.run_as.mode == "fixed"
    assert config.run_as.job_account is not None
    assert config.run_as.job_account.name == "nobody"
    assert load_with(pki, "--run-as", "user").run_as.mode == "user"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can switch users")
def test_without_root_jobs_run_as_the_server_and_switching_is_a_config_error(pki: Pki) -> None:
    assert load_with(pki).run_as.mode == "server"
    with pytest.raises(ConfigError, match="--run-as user needs root"):
        load_with(pki, "--run-as", "user")
    with pytest.raises(ConfigError, match="needs root to switch to uid 0"):
        load_with(pki, "--run-as", "fixed", "--job-user", "root")
    me = pwd.getpwuid(os.geteuid()).pw_name  # its own account needs no switch
    assert load_with(pki, "--run-as", "fixed", "--job-user", me).run_as.mode == "fixed"


@pytest.mark.parametrize("mode", ["user", "fixed"])
@pytest.mark.parametrize(
    ("gid", "groups"), [(0, (0,)), (65534, (65534, 0))], ids=["group", "supplementary group"]
)
async def test_jobs_as_an_account_in_roots_group_are_for_admins_only(
    mode: RunAsMode, gid: int, groups: tuple[int, ...]
) -> None:
    # Made up: the only local account in group 0 is usually root, refused for its uid.
    account = Account("operator-jogger", 65534, gid, groups, "/")
    policy = RunAs(mode, account)
    with pytest.raises(AccountRefused) as refused:
        await policy.account_for(USER)
    assert str(refused.value) == (
        "your jobs would run as operator-jogger (uid 65534 in group 0, root's group) on this "
        "server, which only admins may do"
    )
    assert await policy.account_for(ADMIN) == account


async def test_every_local_account_in_roots_group_is_for_admins_only() -> None:
    members = [
        entry.pw_name
        for entry in pwd.getpwall()
        if entry.pw_gid == 0 or 0 in os.getgrouplist(entry.pw_name, entry.pw_gid)
    ]
    if not members:
        pytest.skip("no local account is in group 0")
    for name in members:
        account = lookup(name)
        assert account is not None
        with pytest.raises(AccountRefused, match="which only admins may do"):
            await RunAs("fixed", account).account_for(USER)
        assert await RunAs("fixed", account).account_for(ADMIN) == account


async def serve_with(pki: Pki, state_dir: Path, nursery: trio.Nursery, *flags: str) -> Server:
    """jogger-server in this process, configured from its command-line ``flags``."""
    config = load_with(pki, "--listen", "127.0.0.1:0", "--state-dir", str(state_dir), *flags)
    return await start_server(nursery, pki, config)


async def final_status(server: Server, job_id: str) -> jobs_pb2.JobStatus:
    async with server.connect() as client, client.output(job_id) as chunks:
        with trio.fail_after(30):
            async for chunk in chunks:
                if chunk.HasField("final"):
                    return chunk.final
    raise AssertionError("the followed output ended without a final status")


@pytest.mark.skipif(os.geteuid() != 0, reason="running jobs as nobody needs root")
async def test_under_run_as_fixed_every_status_names_nobody(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    account = lookup("nobody")
    if account is None:
        pytest.skip("no local account nobody")
    server = await serve_with(pki, tmp_path / "state", nursery, "--run-as", "fixed")
    expected = jobs_pb2.Account(name="nobody", uid=account.uid)
    async with server.connect() as client:
        started = await client.start(["true"])
        assert started.run_as == expected
        final = await final_status(server, started.job_id)
        assert (final.state, final.run_as) == (jobs_pb2.JOB_STATE_COMPLETED, expected)
        assert (await client.status(started.job_id)).run_as == expected
        [listed], _ = await client.list()
        assert listed.run_as == expected


async def test_under_run_as_server_no_status_names_an_account(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    server = await serve_with(pki, tmp_path / "state", nursery, "--run-as", "server")
    async with server.connect() as client:
        started = await client.start(["true"])
        final = await final_status(server, started.job_id)
        for status in (started, final, await client.status(started.job_id)):
            assert not status.HasField("run_as")

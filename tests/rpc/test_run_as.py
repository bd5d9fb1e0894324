"""jogger-server's --run-as and --job-user: checked at start-up against this host.

What the jobs then run as is tested with real jobs in tests/adversarial/test_hostile_jobs.py.
"""

import os
import pwd

import pytest

from jogger.server.config import ConfigError, ServerConfig, load
from tests.rpc.pki import Pki


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

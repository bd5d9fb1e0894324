"""jogger-server's --user-limits and --total-limits: derived from this host unless given."""

import pytest

from jogger import JobLimits
from jogger.server.config import ConfigError, budgets, load
from tests.pki import Pki

GiB = 1 << 30


def pid_max() -> int:
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read())


def test_the_defaults_fit_the_host() -> None:
    users, total = budgets(8 * GiB, JobLimits(), JobLimits())
    assert total == JobLimits(memory=8 * GiB, pids=max(1024, pid_max() // 2))
    assert users.memory == 4 * GiB
    assert users.cpu_weight == 100
    assert users.pids is not None
    assert total.pids is not None
    assert 1024 <= users.pids <= total.pids < pid_max() or pid_max() < 2048


def test_flags_override_each_part() -> None:
    users, total = budgets(
        8 * GiB, JobLimits(memory=GiB, cpu_weight=300), JobLimits(pids=4000, memory=6 * GiB)
    )
    assert total == JobLimits(memory=6 * GiB, pids=4000)
    assert users == JobLimits(memory=GiB, pids=1024, cpu_weight=300)


def test_the_flags_reach_the_config(pki: Pki) -> None:
    tls = ["--ca-cert", str(pki.ca), "--cert", str(pki.server.cert), "--key", str(pki.server.key)]
    config = load([*tls, "--user-limits", "memory=1G,pids=500", "--total-limits", "pids=2000"])
    assert (config.user_limits.memory, config.user_limits.pids) == (GiB, 500)
    assert config.total_limits.pids == 2000


@pytest.mark.parametrize(
    ("flag", "value", "told"),
    [
        ("--total-limits", "cpu=1", "--total-limits takes memory and pids only"),
        ("--user-limits", "io-weight=200", "an I/O weight is per job only"),
    ],
)
def test_what_a_budget_cannot_hold_is_refused(pki: Pki, flag: str, value: str, told: str) -> None:
    tls = ["--ca-cert", str(pki.ca), "--cert", str(pki.server.cert), "--key", str(pki.server.key)]
    with pytest.raises(ConfigError, match=told):
        load([*tls, flag, value])

"""--default-timeout and --max-timeout: the timeout in force for each request (pure), the
flags, refused at start-up with one line naming the flag, and the Start's timeout on the wire
(the server in-process)."""

from datetime import timedelta

import pytest

from jogger.rpc.errors import RpcError, StatusCode
from jogger.server.config import ConfigError, load
from jogger.server.timeouts import TimeoutOverMaximum, TimeoutPolicy
from tests.pki import Pki
from tests.servers import Server


def tls(pki: Pki) -> list[str]:
    return ["--ca-cert", str(pki.ca), "--cert", str(pki.server.cert), "--key", str(pki.server.key)]


def test_without_flags_a_job_has_the_timeout_it_asks_for_or_none() -> None:
    policy = TimeoutPolicy.create(None, None)
    assert policy.resolve(None) is None
    assert policy.resolve(7.5) == 7.5
    assert policy.describe() == "default_timeout=none max_timeout=none"


def test_a_job_that_does_not_ask_gets_the_default_and_one_that_asks_its_own() -> None:
    policy = TimeoutPolicy.create("15m", None)
    assert policy.resolve(None) == 900.0
    assert policy.resolve(3 * 3600.0) == 3 * 3600.0  # no maximum: longer is fine


def test_a_timeout_over_the_maximum_is_refused_not_cut_down() -> None:
    policy = TimeoutPolicy.create("90s", "1h30m")
    assert policy.resolve(5400.0) == 5400.0
    with pytest.raises(
        TimeoutOverMaximum, match=r"^timeout 2h is over the server's maximum of 1h30m$"
    ):
        policy.resolve(7200.0)
    assert policy.describe() == "default_timeout=1m30s max_timeout=1h30m"


def test_a_maximum_without_a_default_is_the_default_too() -> None:
    # Else a job would get around the maximum by not asking for a timeout.
    policy = TimeoutPolicy.create(None, "2h")
    assert policy.resolve(None) == 7200.0


def test_the_flags_reach_the_config(pki: Pki) -> None:
    config = load([*tls(pki), "--default-timeout", "10m", "--max-timeout", "1d"])
    assert config.timeouts == TimeoutPolicy(600.0, 86400.0)
    assert load(tls(pki)).timeouts == TimeoutPolicy()


@pytest.mark.parametrize(
    ("flags", "told"),
    [
        (["--default-timeout", "abc"], "--default-timeout: 'abc' is not a duration"),
        (["--max-timeout", "10"], "--max-timeout: '10' is not a duration"),
        (["--max-timeout=-1s"], "--max-timeout: '-1s' is not a duration"),
        (["--default-timeout", "0s"], "--default-timeout 0s: must be more than 0s"),
        (["--max-timeout", "400d"], "--max-timeout 400d: must be more than 0s and at most 366d"),
        (["--max-timeout", "9" * 30 + "d"], "must be more than 0s and at most 366d"),
        (
            ["--default-timeout", "2h", "--max-timeout", "1h"],
            "--default-timeout 2h is over --max-timeout 1h",
        ),
    ],
)
def test_a_bad_timeout_flag_is_refused_by_name(pki: Pki, flags: list[str], told: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load([*tls(pki), *flags])
    assert told in str(refused.value)


@pytest.mark.parametrize("seconds", [-1.0, 0.0, 1e-10, 400 * 86400.0])
async def test_a_start_whose_timeout_is_not_above_0_or_over_a_year_is_invalid_argument(
    server: Server, seconds: float
) -> None:
    async with server.connect() as client:
        with pytest.raises(RpcError) as info:
            await client.start(["true"], timeout=seconds)
        assert info.value.code == StatusCode.INVALID_ARGUMENT
        assert info.value.message.startswith("a timeout must be more than 0s")
        assert await client.list() == ([], False)


async def test_a_started_job_says_its_timeout_and_deadline_on_the_wire(server: Server) -> None:
    async with server.connect() as client:
        status = await client.start(["true"], timeout=90.5)
        assert status.timeout.ToTimedelta() == timedelta(seconds=90.5)
        deadline = status.started_at.ToDatetime() + timedelta(seconds=90.5)
        assert abs(status.deadline.ToDatetime() - deadline) < timedelta(microseconds=2)

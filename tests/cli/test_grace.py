"""jog's --grace and the service accept the same grace periods: 0 to MAX_GRACE, inclusive."""

import pytest

from jogger.cli.main import UsageError, parser
from jogger.rpc.jobs_api import MAX_GRACE


def grace(text: str) -> float:
    args = parser().parse_args(["stop", "--grace", text, "x"])
    return float(args.grace)


@pytest.mark.parametrize("text", ["0", "2.5", str(MAX_GRACE)])
def test_jog_takes_every_grace_the_service_takes(text: str) -> None:
    assert grace(text) == float(text)


@pytest.mark.parametrize("text", ["-0.001", str(MAX_GRACE + 0.001), "inf", "nan"])
def test_jog_refuses_a_grace_the_service_would_refuse(text: str) -> None:
    with pytest.raises(UsageError, match=f"the grace period must be from 0 to {MAX_GRACE}"):
        grace(text)

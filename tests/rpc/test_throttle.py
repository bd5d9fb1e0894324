"""The token bucket behind the log throttle and the reset allowance, on a clock we turn."""

from jogger.rpc.throttle import Allowance


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def takes(allowance: Allowance, n: int) -> list[bool]:
    return [allowance.take() for _ in range(n)]


def test_a_burst_is_allowed_at_once_and_no_more() -> None:
    allowance = Allowance(3, 1.0, clock=Clock())
    assert takes(allowance, 4) == [True, True, True, False]


def test_tokens_come_back_at_the_rate() -> None:
    clock = Clock()
    allowance = Allowance(2, 4.0, clock=clock)
    assert takes(allowance, 3) == [True, True, False]
    clock.now += 0.2  # 0.8 of a token
    assert not allowance.take()
    clock.now += 0.05  # 1.0
    assert takes(allowance, 2) == [True, False]


def test_an_idle_bucket_fills_only_to_its_burst() -> None:
    clock = Clock()
    allowance = Allowance(2, 10.0, clock=clock)
    assert takes(allowance, 2) == [True, True]
    clock.now += 3600
    assert takes(allowance, 3) == [True, True, False]


def test_a_refusal_costs_nothing() -> None:
    # Asking while empty does not push the next token further away.
    clock = Clock()
    allowance = Allowance(1, 1.0, clock=clock)
    assert allowance.take()
    for _ in range(100):
        clock.now += 0.001
        assert not allowance.take()
    clock.now += 0.91  # a second since the token was taken, refusals or not
    assert allowance.take()

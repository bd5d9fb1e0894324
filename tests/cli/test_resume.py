"""When jog tries a dropped output stream again: what counts as a drop, the waits between
attempts, and when it gives up (cli/resume.py, pure)."""

import ssl
from collections.abc import Callable, Iterator

import pytest

from jogger.cli.resume import (
    FIRST_DELAY,
    MAX_DELAY,
    Outage,
    backoff,
    describe_drop,
    is_drop,
)
from jogger.rpc.errors import RpcError, StatusCode
from jogger.rpc.failures import PeerBrokeProtocol, TransportError, failure_error

VERIFY_FAILED = (
    "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired (_ssl.c)"
)


def no_jitter(low: float, high: float) -> float:
    return (low + high) / 2


def take(delays: Iterator[float], count: int) -> list[float]:
    return [round(next(delays), 6) for _ in range(count)]


def test_the_waits_double_from_a_tenth_of_a_second_up_to_two() -> None:
    assert take(backoff(uniform=no_jitter), 8) == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    assert (FIRST_DELAY, MAX_DELAY) == (0.1, 2.0)


@pytest.mark.parametrize(("extreme", "scale"), [(min, 0.9), (max, 1.1)])
def test_jitter_moves_each_wait_by_a_tenth_at_most(
    extreme: Callable[[float, float], float], scale: float
) -> None:
    expected = [round(d * scale, 6) for d in (0.1, 0.2, 0.4, 0.8, 1.6, 2.0)]
    assert take(backoff(uniform=extreme), 6) == expected


def test_jittered_waits_stay_within_their_bounds() -> None:
    for delay, plain in zip(backoff(), [0.1, 0.2, 0.4, 0.8, 1.6] + [2.0] * 200, strict=False):
        assert plain * 0.9 <= delay <= plain * 1.1


def test_an_outage_waits_until_its_timeout_and_then_gives_up() -> None:
    outage = Outage(2.0, now=100.0, delays=backoff(uniform=no_jitter))
    assert outage.deadline == 102.0
    now = 100.0
    waits = []
    while (wait := outage.wait(now)) is not None:
        waits.append(round(wait, 6))
        now += wait + 0.05  # each attempt fails after 50 ms
    # The last wait is cut to the time left, and then there is none.
    assert waits == [0.1, 0.2, 0.4, 0.8, 0.3]
    assert now >= 102.0


def test_a_timeout_of_zero_gives_up_at_once() -> None:
    assert Outage(0.0, now=5.0).wait(5.0) is None


def test_the_user_is_told_once_per_outage() -> None:
    outage = Outage(60.0, now=0.0)
    assert outage.reconnected(1.0) is True
    outage.dropped(1.5)  # down again before the stream delivered a byte
    assert outage.reconnected(2.0) is False


def test_a_stream_that_was_back_but_quiet_does_not_use_up_the_time() -> None:
    outage = Outage(10.0, now=0.0, delays=backoff(uniform=no_jitter))
    outage.reconnected(4.0)  # 4 s to get back
    outage.dropped(1000.0)  # then a quiet job, and the next drop
    assert outage.deadline == 1006.0  # the 6 s left
    # And the backoff goes on where it was, rather than hammering from 0.1 s again.
    assert round(outage.wait(1000.0) or 0, 6) == 0.1
    outage.dropped(1000.2)  # a drop while still down changes nothing
    assert outage.deadline == 1006.0


@pytest.mark.parametrize(
    "failure",
    [
        TransportError("cannot connect: Connection refused"),
        TransportError("cannot connect: no answer within 10 s"),
        TransportError("the server closed the connection"),
        TransportError("connected, but the TLS handshake did not finish within 10 s"),
        failure_error(ConnectionResetError(104, "Connection reset by peer")),
        # A server that died mid-stream: TLS sees an EOF without close_notify.
        failure_error(ssl.SSLEOFError(8, "EOF occurred in violation of protocol")),
        RpcError(StatusCode.UNAVAILABLE, "the server is shutting down"),
        ExceptionGroup(
            "both",
            [
                TransportError("the server closed the connection"),
                RpcError(StatusCode.UNAVAILABLE, "the server is shutting down"),
            ],
        ),
    ],
)
def test_drops_are_tried_again(failure: BaseException) -> None:
    assert is_drop(failure)


@pytest.mark.parametrize(
    "failure",
    [
        RpcError(StatusCode.NOT_FOUND, "job 1 not found"),
        RpcError(StatusCode.PERMISSION_DENIED, "no"),
        RpcError(StatusCode.UNAUTHENTICATED, "client certificate rejected: expired"),
        RpcError(StatusCode.RESOURCE_EXHAUSTED, "too many calls"),
        RpcError(StatusCode.INTERNAL, "internal error"),
        failure_error(ssl.SSLCertVerificationError(1, VERIFY_FAILED)),
        failure_error(ssl.SSLError(1, "[SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] sslv3 alert x")),
        failure_error(
            ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate")
        ),
        failure_error(PeerBrokeProtocol("bad frame")),
        OSError(28, "No space left on device"),  # stdout, not the network
        ExceptionGroup(
            "mixed",
            [
                TransportError("the server closed the connection"),
                RpcError(StatusCode.NOT_FOUND, "job 1 not found"),
            ],
        ),
    ],
)
def test_refusals_and_other_failures_are_not(failure: BaseException) -> None:
    assert not is_drop(failure)


def test_the_last_failure_is_described_in_a_few_words() -> None:
    assert describe_drop(TransportError("cannot connect: Connection refused")) == (
        "cannot connect: Connection refused"
    )
    unavailable = RpcError(StatusCode.UNAVAILABLE, "the server is shutting down")
    assert describe_drop(unavailable) == "unavailable: the server is shutting down"
    assert describe_drop(ExceptionGroup("g", [unavailable])) == (
        "unavailable: the server is shutting down"
    )

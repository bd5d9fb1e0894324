"""jog output --timestamps' prefixes, and --since's and --tail's parsing."""

import argparse
import time

import pytest

from jogger.cli.stamps import Stamper
from jogger.cli.window_args import since_ns
from jogger.v1 import jobs_pb2

T1 = 1_796_619_662_123_456_789  # 2026-12-07T05:01:02.123456789Z
P1 = b"2026-12-07T05:01:02.123456Z "
P2 = b"2026-12-07T05:01:03.000000Z "


def chunk(data: bytes, ns: int | None) -> jobs_pb2.OutputChunk:
    message = jobs_pb2.OutputChunk(data=data)
    if ns is not None:
        message.time.FromNanoseconds(ns)
    return message


def stamped(*chunks: jobs_pb2.OutputChunk) -> bytes:
    stamper = Stamper()
    return b"".join(stamper(c) for c in chunks)


def test_each_line_gets_the_time_of_the_chunk_holding_its_first_byte() -> None:
    assert stamped(chunk(b"a\nb\n", T1), chunk(b"c\n", T1 + 876_543_211)) == (
        P1 + b"a\n" + P1 + b"b\n" + P2 + b"c\n"
    )


def test_a_line_longer_than_a_chunk_has_one_prefix_with_its_first_chunks_time() -> None:
    long_line = [chunk(b"x" * 10, T1), chunk(b"y" * 10, T1 + 5), chunk(b"z\nw\n", T1 + 876_543_211)]
    assert stamped(*long_line) == P1 + b"x" * 10 + b"y" * 10 + b"z\n" + P2 + b"w\n"


def test_a_newline_at_a_chunks_end_gives_the_next_line_the_next_chunks_time() -> None:
    assert stamped(chunk(b"a\n", T1), chunk(b"b", T1 + 876_543_211)) == P1 + b"a\n" + P2 + b"b"


def test_the_last_line_without_a_newline_is_prefixed_too() -> None:
    assert stamped(chunk(b"a\nno end", T1)) == P1 + b"a\n" + P1 + b"no end"


def test_binary_bytes_pass_unchanged_with_a_prefix_after_each_newline() -> None:
    data = bytes(range(256))
    before, after = data.split(b"\n")
    assert stamped(chunk(data, T1)) == P1 + before + b"\n" + P1 + after


def test_empty_chunks_and_unknown_times() -> None:
    assert stamped(chunk(b"", T1), chunk(b"a\n", None), chunk(b"", None)) == b"- a\n"


def test_since_takes_a_duration_ago_or_an_rfc3339_time() -> None:
    now = time.time_ns()
    assert abs(since_ns("10m") - (now - 600 * 10**9)) < 5 * 10**9
    assert since_ns("2026-12-07T05:01:02.123456Z") == T1 // 1000 * 1000
    assert since_ns("2026-12-07T06:01:02.123456+01:00") == T1 // 1000 * 1000
    assert since_ns("2026-12-07t05:01:02z") == 1_796_619_662 * 10**9


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("10", "neither a duration"),
        ("10x", "neither a duration"),
        ("2026-12-07T05:00:00", "neither a duration"),  # no zone: ambiguous
        ("2026-13-07T05:00:00Z", "not a valid RFC 3339 time"),
        ("yesterday", "neither a duration"),
    ],
)
def test_since_refuses_what_is_neither(text: str, says: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=says):
        since_ns(text)

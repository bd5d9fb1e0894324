"""The detach sequence, Ctrl-P Ctrl-Q, found in keystrokes (jogger/cli/detach.py)."""

import pytest

from jogger.cli.detach import DetachKeys

P = b"\x10"
Q = b"\x11"


def feed_all(*reads: bytes) -> tuple[bytes, bool]:
    keys = DetachKeys()
    sent = b""
    for data in reads:
        out, detached = keys.feed(data)
        sent += out
        if detached:
            return sent, True
    return sent, False


def test_keys_without_ctrl_p_pass_untouched() -> None:
    assert feed_all(b"ls -l\r", bytes(range(256)).replace(P, b"")) == (
        b"ls -l\r" + bytes(range(256)).replace(P, b""),
        False,
    )


def test_ctrl_p_ctrl_q_detaches_and_sends_what_came_before() -> None:
    assert feed_all(b"abc" + P + Q + b"after") == (b"abc", True)


def test_the_sequence_split_across_two_reads_detaches() -> None:
    assert feed_all(b"abc" + P, Q + b"after") == (b"abc", True)
    assert feed_all(P, b"", Q) == (b"", True)


def test_ctrl_p_followed_by_another_key_sends_both() -> None:
    assert feed_all(b"a" + P + b"b") == (b"a" + P + b"b", False)
    assert feed_all(b"a" + P, b"b") == (b"a" + P + b"b", False)


def test_ctrl_p_twice_then_ctrl_q_sends_all_three() -> None:
    # Ctrl-P then anything else sends both: the second Ctrl-P is taken, not a new start.
    assert feed_all(P + P + Q) == (P + P + Q, False)
    assert feed_all(P, P, Q) == (P + P + Q, False)


def test_a_ctrl_p_at_the_end_of_a_read_is_held_until_the_next() -> None:
    keys = DetachKeys()
    assert keys.feed(b"x" + P) == (b"x", False)
    assert keys.feed(b"y") == (P + b"y", False)


@pytest.mark.parametrize("data", [b"\x03", b"\x1a", b"\x1c", b"\x04"])
def test_ctrl_c_ctrl_z_ctrl_backslash_and_ctrl_d_are_keys_for_the_job(data: bytes) -> None:
    assert feed_all(data) == (data, False)

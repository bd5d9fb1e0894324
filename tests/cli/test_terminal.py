"""jog's terminal handling on a real pseudo-terminal (jogger/cli/terminal.py): raw mode is
restored however the session ends; window sizes are read as (rows, cols)."""

import fcntl
import os
import pty
import signal
import struct
import termios
from collections.abc import Iterator

import pytest
import trio

from jogger.cli.terminal import Signalled, open_raw_terminal, raw_mode
from jogger.cli.winsize import window_size


@pytest.fixture
def terminal() -> Iterator[int]:
    """The slave side of a fresh pseudo-terminal, in its default (cooked) modes."""
    master, slave = pty.openpty()
    try:
        yield slave
    finally:
        os.close(slave)
        os.close(master)


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def test_raw_mode_is_raw_inside_and_restored_after(terminal: int) -> None:
    before = termios.tcgetattr(terminal)
    with raw_mode(terminal):
        inside = termios.tcgetattr(terminal)
        assert not inside[3] & (termios.ECHO | termios.ICANON | termios.ISIG)
        assert not inside[1] & termios.OPOST
        assert inside[6][termios.VMIN] == 1
    assert termios.tcgetattr(terminal) == before


def test_raw_mode_is_restored_after_an_exception(terminal: int) -> None:
    before = termios.tcgetattr(terminal)
    with pytest.raises(ValueError, match="boom"), raw_mode(terminal):
        raise ValueError("boom")
    assert termios.tcgetattr(terminal) == before


async def test_a_raw_session_is_restored_when_cancelled(terminal: int) -> None:
    before = termios.tcgetattr(terminal)
    with trio.move_on_after(0.05) as scope:
        async with open_raw_terminal(terminal):
            assert termios.tcgetattr(terminal) != before
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert termios.tcgetattr(terminal) == before


async def test_a_raw_session_is_restored_after_an_error(terminal: int) -> None:
    before = termios.tcgetattr(terminal)

    async def failing() -> None:
        async with open_raw_terminal(terminal):
            await trio.lowlevel.checkpoint()
            raise KeyError("x")

    with pytest.raises(KeyError):
        await failing()
    assert termios.tcgetattr(terminal) == before


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
async def test_sigterm_and_sighup_end_a_raw_session_restored(
    terminal: int, signum: signal.Signals
) -> None:
    before = termios.tcgetattr(terminal)

    async def signalled() -> None:
        async with open_raw_terminal(terminal):
            os.kill(os.getpid(), signum)
            await trio.sleep_forever()

    with trio.fail_after(5), pytest.raises(Signalled) as caught:
        await signalled()
    assert caught.value.signum == signum
    assert termios.tcgetattr(terminal) == before


async def test_a_raw_session_that_ends_normally_is_restored(terminal: int) -> None:
    before = termios.tcgetattr(terminal)
    async with open_raw_terminal(terminal):
        await trio.lowlevel.checkpoint()
    assert termios.tcgetattr(terminal) == before


def test_window_size_is_rows_then_columns(terminal: int) -> None:
    set_size(terminal, 33, 101)
    assert window_size(terminal) == (33, 101)


def test_an_unsized_terminal_or_a_file_has_no_window_size(terminal: int) -> None:
    set_size(terminal, 0, 0)
    assert window_size(terminal) is None
    read, write = os.pipe()
    try:
        assert window_size(read) is None
    finally:
        os.close(read)
        os.close(write)

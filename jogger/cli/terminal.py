"""jog's own terminal in a terminal session (``jog run -t``, ``jog attach``): raw mode for the
session, its window size, and the signals that must not leave it raw.

In raw mode every key is a byte for the job (Ctrl-C is 0x03, not SIGINT to jog), as under
``ssh -t``. The terminal's modes are restored on every way out: the job's end, the detach
sequence, an error, a lost connection, Ctrl-C sent to jog as a signal (KeyboardInterrupt
unwinds), and SIGTERM or SIGHUP, which end the session as ``Signalled`` so that the
``finally`` runs before jog exits. Only SIGKILL leaves it raw (``reset`` or ``stty sane``).
"""

import signal
import termios
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any

import trio

from .._exceptiongroups import single_errors

_ENDING = (signal.SIGTERM, signal.SIGHUP)


class Signalled(Exception):
    """SIGTERM or SIGHUP ended the session; jog exits 128+N, its terminal restored."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_Attributes = list[Any]
"""What tcgetattr gives: iflag, oflag, cflag, lflag, ispeed, ospeed, and the cc list."""


def raw_attributes(attributes: _Attributes) -> _Attributes:
    """``attributes`` (as tcgetattr gives them) made raw, as cfmakeraw(3) does: no echo, no
    line editing, no signals from keys, no output processing, 8-bit bytes."""
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = attributes
    cc = list(cc)
    iflag &= ~(
        termios.IGNBRK
        | termios.BRKINT
        | termios.PARMRK
        | termios.ISTRIP
        | termios.INLCR
        | termios.IGNCR
        | termios.ICRNL
        | termios.IXON
    )
    oflag &= ~termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cflag = (cflag & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    cc[termios.VMIN] = 1
    cc[termios.VTIME] = 0
    return [iflag, oflag, cflag, lflag, ispeed, ospeed, cc]


@contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """The terminal on ``fd`` in raw mode for the block, its modes restored on the way out."""
    saved = termios.tcgetattr(fd)
    # TCSADRAIN, as ssh: output already written goes out in the old modes; keys typed ahead
    # are kept, for the job.
    termios.tcsetattr(fd, termios.TCSADRAIN, raw_attributes(saved))
    try:
        yield
    finally:
        # A terminal that is gone (hung up) has nothing left to restore.
        with suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@asynccontextmanager
async def open_raw_terminal(fd: int) -> AsyncIterator[None]:
    """Raw mode on ``fd`` for the block. SIGTERM or SIGHUP cancel the block, and it raises
    Signalled once the terminal is restored.

    Cancellation: the block's own; the modes are restored whichever way it ends.
    """
    signalled: list[int] = []
    with raw_mode(fd), trio.open_signal_receiver(*_ENDING) as signals, single_errors():
        async with trio.open_nursery() as nursery:

            async def on_signal() -> None:
                async for signum in signals:
                    signalled.append(signum)
                    # Unwind the session: the finally clauses restore the terminal.
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(on_signal)
            yield
            # The session is over: stop listening for signals.
            nursery.cancel_scope.cancel()
    if signalled:
        raise Signalled(signalled[0])

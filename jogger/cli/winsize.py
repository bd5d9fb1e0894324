"""The size of a terminal, as jog tells the server (``jog start -t``, ``jog run -t``)."""

import os

MAX_SIDE = 65535
"""The largest window side the service takes."""


def window_size(fd: int) -> tuple[int, int] | None:
    """The window of the terminal on ``fd`` as (rows, cols); None without a sized terminal
    (a pseudo-terminal nobody sized says 0 by 0)."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    if size.lines <= 0 or size.columns <= 0:
        return None
    return min(size.lines, MAX_SIDE), min(size.columns, MAX_SIDE)

"""What jog does when its stdout cannot take the output.

- **Closed** (EPIPE: ``jog output ID | head -c 10``, ``jog list | head -1``): the reader has
  what it wanted. jog stops writing, says nothing, and exits as if the output had all been
  read: 0, whatever the output's size. ``jog run`` stops the job first, as SIGPIPE would
  end a local command in a pipeline, and exits with the job's status as always.
- **Failing** (ENOSPC, EIO: ``jog list > /dev/full``): an error. One line on stderr, exit 1.

Either way the bytes still buffered are thrown away, so that the interpreter's final flush
cannot fail a second time (which would print a traceback-like report and exit 120).
"""

import os
import sys

from .exits import CliError, Exit


class StdoutClosed(CliError):
    """Whoever reads our stdout went away: stop quietly."""

    def __init__(self) -> None:
        super().__init__("", Exit.OK)


def discard() -> None:
    """Point stdout at /dev/null: what is still buffered goes nowhere, quietly."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, sys.stdout.fileno())
    finally:
        os.close(null)


def write_error(exc: OSError) -> CliError:
    """The error for a write to stdout that failed; stdout is discarded from now on."""
    discard()
    if isinstance(exc, BrokenPipeError):
        return StdoutClosed()
    return CliError(f"cannot write the output: {exc.strerror or exc}")


def flush() -> None:
    """Flush stdout now, so that a failing write is reported by us and not at exit.

    Raises StdoutClosed or a CliError (see write_error).
    """
    try:
        sys.stdout.flush()
    except OSError as exc:
        raise write_error(exc) from None


def write(data: bytes) -> None:
    """Write ``data`` to stdout untouched, and flush it.

    Raises StdoutClosed or a CliError (see write_error).
    """
    out = sys.stdout.buffer
    try:
        out.write(data)
        out.flush()
    except OSError as exc:
        raise write_error(exc) from None

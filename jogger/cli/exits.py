"""jog's exit codes."""

import enum


class Exit(enum.IntEnum):
    OK = 0
    ERROR = 1
    """The server refused the request: unknown job, bad argument, a limit reached."""
    USAGE = 2
    """Bad command line, or missing settings (host, certificate files)."""
    UNREACHABLE = 3
    """No connection: the host is down, or TLS failed (a certificate was rejected), or it
    dropped and did not come back within the reconnect timeout."""
    TIMED_OUT = 124
    """``jog wait --timeout``: a job had not ended in time (as timeout(1) exits)."""
    INTERRUPTED = 130
    """Ctrl-C."""


class CliError(Exception):
    """A user-facing error: printed as one line, exit with ``code``."""

    def __init__(self, message: str, code: Exit = Exit.ERROR) -> None:
        super().__init__(message)
        self.code = code

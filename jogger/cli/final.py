"""What a followed job's end means for jog: a line on stderr when it has something to say,
and the exit code (``jog run`` and ``jog attach``)."""

import sys

from .._text import escape
from ..v1 import jobs_pb2
from .exits import Exit
from .render import summary


def exit_code(
    final: jobs_pb2.JobStatus, *, interrupted: bool, closed: bool, name: str | None = None
) -> int:
    """The job's exit code, 128+N for signal N; ``interrupted``: jog was asked to stop it
    (130); ``closed``: stdout was closed, so nothing more is said. ``name``: the host, in
    the line on stderr, when there are several."""
    said = f"jog: {escape(name)}: " if name else "jog: "
    if interrupted:
        print(f"{said}job {final.job_id} {summary(final)}", file=sys.stderr)
        return Exit.INTERRUPTED
    if (final.output_truncated or final.output_error) and not closed:
        # Like ssh, a run that went well says nothing; unless what you saw was not all of it.
        why = escape(final.output_error) or "it passed the server's size limit"
        print(
            f"{said}job {final.job_id} {summary(final)}; output incomplete: {why}", file=sys.stderr
        )
    which = final.WhichOneof("end")
    if which == "exit_code" and final.reason != "timeout":
        return final.exit_code
    if not closed:
        # Ended by a signal, or without an end of its own (killed after a server crash), or
        # by its timeout (whatever code it exited with as it went).
        print(f"{said}job {final.job_id} {summary(final)}", file=sys.stderr)
    return shell_code(final)


def shell_code(final: jobs_pb2.JobStatus) -> int:
    """A job's exit code as a shell gives it: its own, 128+N for signal N, and 1 for one
    that ended without either (killed while no server ran, its supervisor lost)."""
    which = final.WhichOneof("end")
    if which == "exit_code":
        return final.exit_code
    if which == "signal":
        return 128 + final.signal
    return Exit.ERROR

"""``jog attach ID``: a running job's input and output, for a job started with ``-t`` or
``-i`` (cli/feed.py).

A terminal job: jog's terminal goes raw, the output is followed from its current end (as
``docker attach``: the job's next redraw, Ctrl-L or a resize, fills the screen), keys go to
the job, and Ctrl-P Ctrl-Q detaches. A pipe job: stdin is fed to it (its first writer's EOF
is the pipe's end) and the output is followed from the start, as ``jog output`` does.

One client writes at a time: another attach follows the output read-only. The job's end
ends attach with its exit code, as ``jog run``.
"""

import argparse
import os
import sys

from ...v1 import jobs_pb2
from ..connect import Dialer
from ..exits import CliError, Exit
from ..feed import Detached, Feeder, come_back
from ..final import exit_code
from ..follow import Follower
from ..render import summary
from ..stdin import LocalInput
from ..terminal import Signalled, open_raw_terminal


async def run(dial: Dialer, args: argparse.Namespace) -> int:
    job_id: str = args.job_id
    async with dial() as client:
        status = await client.status(job_id)
    _check_attachable(status)
    terminal = status.input == jobs_pb2.INPUT_TERMINAL
    if terminal and os.isatty(0):
        return await _attach_terminal(dial, args, status)
    # A terminal job from a stdin that is not a terminal: its bytes are typed, as they are.
    follower = Follower(
        job_id,
        offset=status.output_bytes if terminal else 0,
        reconnect_timeout=args.reconnect_timeout,
        beside=Feeder(job_id, LocalInput(), attaching=True),
    )
    final = await follower.run(dial)
    return exit_code(final, interrupted=False, closed=False)


async def _attach_terminal(
    dial: Dialer, args: argparse.Namespace, status: jobs_pb2.JobStatus
) -> int:
    job_id = status.job_id
    try:
        async with open_raw_terminal(0):
            feeder = Feeder(job_id, LocalInput(), terminal_fd=0, attaching=True)
            follower = Follower(
                job_id,
                offset=status.output_bytes,
                reconnect_timeout=args.reconnect_timeout,
                beside=feeder,
            )
            final = await follower.run(dial)
    except Detached:
        print(f"jog: detached from job {job_id}; {come_back(job_id)}", file=sys.stderr)
        return Exit.OK
    except Signalled as exc:
        print(f"jog: {exc}: job {job_id} keeps running; {come_back(job_id)}", file=sys.stderr)
        return 128 + exc.signum
    return exit_code(final, interrupted=False, closed=False)


def _check_attachable(status: jobs_pb2.JobStatus) -> None:
    job_id = status.job_id
    if status.state not in (jobs_pb2.JOB_STATE_RUNNING, jobs_pb2.JOB_STATE_QUEUED):
        raise CliError(
            f"job {job_id} has ended ({summary(status)}); jog output {job_id} shows its output"
        )
    if status.input == jobs_pb2.INPUT_NONE:
        raise CliError(
            f"job {job_id} takes no input (it was started without -i or -t); "
            f"jog output {job_id} follows its output"
        )

"""``jog start -- cmd``: start a job and print its id. Its stdin is /dev/null, a pipe (``-i``)
or a terminal (``-t``), which ``jog attach`` writes to."""

import argparse
import os
import sys

from ...rpc.client import JobsClient
from ...rpc.jobs_api import limits_message
from ...v1 import jobs_pb2
from ..connect import Dialer
from ..exits import Exit
from ..terminal import window_size


async def start_job(
    client: JobsClient,
    args: argparse.Namespace,
    *,
    input: int = jobs_pb2.INPUT_NONE,
    window: tuple[int, int] | None = None,
) -> jobs_pb2.JobStatus:
    """Start the job the command line describes, with that input (a terminal gets our
    TERM, or "dumb")."""
    terminal = input == jobs_pb2.INPUT_TERMINAL
    return await client.start(
        args.job,
        cwd=args.cwd or "",
        env=dict(args.env),
        limits=limits_message(args),
        input=input,
        term=(os.environ.get("TERM") or "dumb") if terminal else "",
        window=window,
    )


async def run(dial: Dialer, args: argparse.Namespace) -> int:
    stdin = jobs_pb2.INPUT_NONE
    window = None
    if args.tty:
        stdin = jobs_pb2.INPUT_TERMINAL
        # The size of jog's terminal, if it has one: the likely size of the next attach's.
        window = window_size(0) or window_size(1)
    elif args.stdin:
        stdin = jobs_pb2.INPUT_PIPE
    async with dial() as client:
        status = await start_job(client, args, input=stdin, window=window)
    print(f"started: {status.job_id}", file=sys.stdout)
    return Exit.OK

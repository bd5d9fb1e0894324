"""``jog start -- cmd``: start a job and print its id. Its stdin is /dev/null, a pipe (``-i``)
or a terminal (``-t``), which ``jog attach`` writes to."""

import argparse
import os
import sys

from ...rpc.jobs_api import limits_message
from ...v1 import jobs_pb2
from ..connect import Dialer
from ..exits import Exit
from ..terminal import window_size


async def run(dial: Dialer, args: argparse.Namespace) -> int:
    stdin = jobs_pb2.INPUT_NONE
    term = ""
    window = None
    if args.tty:
        stdin = jobs_pb2.INPUT_TERMINAL
        term = os.environ.get("TERM") or "dumb"
        # The size of jog's terminal, if it has one: the likely size of the next attach's.
        window = window_size(0) or window_size(1)
    elif args.stdin:
        stdin = jobs_pb2.INPUT_PIPE
    async with dial() as client:
        status = await client.start(
            args.job,
            cwd=args.cwd or "",
            env=dict(args.env),
            limits=limits_message(args),
            input=stdin,
            term=term,
            window=window,
        )
    print(f"started: {status.job_id}", file=sys.stdout)
    return Exit.OK

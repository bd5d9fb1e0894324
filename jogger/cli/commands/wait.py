import argparse
import math

import trio

from ...v1 import jobs_pb2
from .. import stdout
from ..connect import Dialer
from ..exits import CliError, Exit
from ..final import shell_code
from ..render import as_dict, as_json, block
from ..waiting import MAX_CALLS, Waiter


async def run(dial: Dialer, args: argparse.Namespace) -> int:
    job_ids = list(dict.fromkeys(args.job_ids))
    if args.any and len(job_ids) > MAX_CALLS:
        raise CliError(f"--any waits on at most {MAX_CALLS} jobs", Exit.USAGE)
    codes: list[int] = []

    def ended(status: jobs_pb2.JobStatus) -> None:
        if codes and not args.json:
            print()
        print(as_json(as_dict(status)) if args.json else block(status))
        # Now, not at exit: whoever reads is waiting for each job as it ends.
        stdout.flush()
        codes.append(shell_code(status))

    waiter = Waiter(
        job_ids, ended=ended, reconnect_timeout=args.reconnect_timeout, first_only=args.any
    )
    deadline = math.inf if args.timeout is None else trio.current_time() + args.timeout
    if not await waiter.run(dial, deadline):
        raise CliError(f"timed out after {args.timeout:g} s; {_running(waiter)}", Exit.TIMED_OUT)
    # --any: the one that ended; else the worst, the highest (0 only if every job's was).
    return max(codes)


def _running(waiter: Waiter) -> str:
    if len(waiter.pending) == 1:
        return f"job {waiter.pending[0]} had not ended"
    return f"{len(waiter.pending)} jobs had not ended: {' '.join(waiter.pending)}"

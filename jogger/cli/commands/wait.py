import argparse
import math

import trio

from ...v1 import jobs_pb2
from .. import stdout
from ..connect import Dialer
from ..exits import CliError, Exit
from ..render import as_dict, as_json, block
from ..waiting import MAX_CALLS, Waiter


def job_code(status: jobs_pb2.JobStatus) -> int:
    """A job's exit code as a shell gives it: its own, 128+N for signal N, and 1 for one
    that ended without either (killed while no server ran, its supervisor lost)."""
    which = status.WhichOneof("end")
    if which == "exit_code":
        return status.exit_code
    if which == "signal":
        return 128 + status.signal
    return Exit.ERROR


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
        codes.append(job_code(status))

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

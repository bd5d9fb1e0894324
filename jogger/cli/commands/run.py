"""``jog run -- cmd``: like ``ssh host cmd``. Ctrl-C stops the job; a second one leaves."""

import argparse
import signal
import sys

import trio

from ...rpc.client import JobsClient
from ..exits import Exit
from ..render import summary
from .output import copy_output


async def run(client: JobsClient, args: argparse.Namespace) -> int:
    status = await client.start(args.job, cwd=args.cwd or "", env=dict(args.env))
    interrupted = False

    async def stop_on_ctrl_c(*, task_status: trio.TaskStatus[None]) -> None:
        nonlocal interrupted
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            task_status.started()
            async for _ in signals:
                if interrupted:
                    # A second Ctrl-C: leave now; the server finishes the stop on its own.
                    nursery.cancel_scope.cancel()
                    return
                interrupted = True
                print(f"jog: stopping job {status.job_id}", file=sys.stderr)
                nursery.start_soon(client.stop, status.job_id)

    final = None
    async with trio.open_nursery() as nursery:
        await nursery.start(stop_on_ctrl_c)
        final = await copy_output(client, status.job_id, follow=True)
        # The output has ended, so has the job: stop listening for Ctrl-C.
        nursery.cancel_scope.cancel()
    if final is None:
        return Exit.INTERRUPTED  # left before the end
    if interrupted:
        print(f"jog: job {final.job_id} {summary(final)}", file=sys.stderr)
        return Exit.INTERRUPTED
    which = final.WhichOneof("end")
    if which == "exit_code":
        return final.exit_code
    if which == "signal":
        print(f"jog: job {final.job_id} {summary(final)}", file=sys.stderr)
        return 128 + final.signal
    return Exit.ERROR

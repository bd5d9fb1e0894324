"""``jog run -- cmd``: like ``ssh host cmd``. Ctrl-C stops the job; a second one leaves."""

import argparse
import signal
import sys

import trio

from ..._text import escape
from ...rpc.jobs_api import limits_message
from ..connect import Dialer
from ..exits import Exit
from ..render import summary
from ..stdout import StdoutClosed
from .output import copy_output


async def run(dial: Dialer, args: argparse.Namespace) -> int:
    job_id: str | None = None
    interrupted = False

    def stop_job() -> None:
        assert job_id is not None
        print(f"jog: stopping job {job_id}", file=sys.stderr)
        nursery.start_soon(client.stop, job_id)

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
                if job_id is not None:
                    stop_job()
                # Otherwise the Start is in flight: the job is stopped once it has an id.

    final = None
    closed = False
    async with dial() as client, trio.open_nursery() as nursery:
        # Listening for Ctrl-C before the Start: a job must not be left running unseen.
        await nursery.start(stop_on_ctrl_c)
        status = await client.start(
            args.job, cwd=args.cwd or "", env=dict(args.env), limits=limits_message(args)
        )
        job_id = status.job_id
        if interrupted:
            stop_job()
        try:
            final = await copy_output(client, job_id, follow=True)
        except StdoutClosed:
            # Nobody reads the output any more (``jog run -- yes | head -1``): end the job,
            # as SIGPIPE ends a local command in a pipeline, and exit with its status.
            closed = True
            final = await client.stop(job_id)
        # The output has ended, so has the job: stop listening for Ctrl-C.
        nursery.cancel_scope.cancel()
    if final is None:
        if job_id is None:
            print("jog: left during the Start; see `jog list` for the job", file=sys.stderr)
        return Exit.INTERRUPTED  # left before the end
    if interrupted:
        print(f"jog: job {final.job_id} {summary(final)}", file=sys.stderr)
        return Exit.INTERRUPTED
    if (final.output_truncated or final.output_error) and not closed:
        # Like ssh, a run that went well says nothing; unless what you saw was not all of it.
        why = escape(final.output_error) or "it passed the server's size limit"
        print(
            f"jog: job {final.job_id} {summary(final)}; output incomplete: {why}", file=sys.stderr
        )
    which = final.WhichOneof("end")
    if which == "exit_code":
        return final.exit_code
    if which == "signal":
        if not closed:
            print(f"jog: job {final.job_id} {summary(final)}", file=sys.stderr)
        return 128 + final.signal
    return Exit.ERROR

"""``jog run -- cmd``: like ``ssh host cmd``. Ctrl-C stops the job; a second one leaves.

The output rides through a restart of the server (cli/follow.py); the Start does not: it is
not safe to send twice. A stop asked for while the connection is down goes out on the next.
"""

import argparse
import signal
import sys

import trio

from ..._text import escape
from ...rpc.client import JobsClient
from ...rpc.jobs_api import limits_message
from ...v1 import jobs_pb2
from ..connect import Dialer
from ..exits import CliError, Exit
from ..follow import Follower, GaveUp
from ..render import summary
from ..stdout import StdoutClosed


async def run(dial: Dialer, args: argparse.Namespace) -> int:
    job_id: str | None = None
    interrupted = False
    stop_asked = trio.Event()
    stopped = False

    def stop_job() -> None:
        print(f"jog: stopping job {job_id}", file=sys.stderr)
        stop_asked.set()

    async def stop_when_asked(client: JobsClient) -> None:
        # Beside the output on each connection: the stop goes out on the one there is, and
        # again on the next if this one drops before the server answered.
        nonlocal stopped
        await stop_asked.wait()
        if not stopped:
            assert job_id is not None
            await client.stop(job_id)
            stopped = True

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
    async with trio.open_nursery() as nursery:
        # Listening for Ctrl-C before the Start: a job must not be left running unseen.
        await nursery.start(stop_on_ctrl_c)
        try:
            async with dial() as client:
                status = await client.start(
                    args.job, cwd=args.cwd or "", env=dict(args.env), limits=limits_message(args)
                )
                job_id = status.job_id
                if interrupted:
                    stop_job()
                follower = Follower(
                    job_id, reconnect_timeout=args.reconnect_timeout, beside=stop_when_asked
                )
                final = await follower.follow(client)
            if final is None:  # the connection dropped
                final = await follower.resume(dial)
        except StdoutClosed:
            # Nobody reads the output any more (``jog run -- yes | head -1``): end the job,
            # as SIGPIPE ends a local command in a pipeline, and exit with its status.
            closed = True
            final = await _stop(dial, job_id)
        except GaveUp as exc:
            if stop_asked.is_set() and not stopped:
                raise CliError(
                    f"{exc.lost}; job {job_id} may still be running: the stop did not get through",
                    Exit.UNREACHABLE,
                ) from None
            raise
        # The output has ended, so has the job: stop listening for Ctrl-C.
        nursery.cancel_scope.cancel()
    if final is None:
        if job_id is None:
            print("jog: left during the Start; see `jog list` for the job", file=sys.stderr)
        return Exit.INTERRUPTED  # left before the end
    return _exit_code(final, interrupted=interrupted, closed=closed)


async def _stop(dial: Dialer, job_id: str | None) -> jobs_pb2.JobStatus:
    assert job_id is not None  # the output, which has a job, ran into the closed stdout
    async with dial() as client:
        return await client.stop(job_id)


def _exit_code(final: jobs_pb2.JobStatus, *, interrupted: bool, closed: bool) -> int:
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
    if not closed:
        # Ended by a signal, or without an end of its own (killed after a server crash).
        print(f"jog: job {final.job_id} {summary(final)}", file=sys.stderr)
    if which == "signal":
        return 128 + final.signal
    return Exit.ERROR

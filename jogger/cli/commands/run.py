"""``jog run -- cmd``: like ``ssh host cmd``. Ctrl-C stops the job; a second one leaves.

jog's stdin is the job's (cli/feed.py), unless it is /dev/null or ``-n`` says so. With ``-t``
the job gets a terminal, and jog's own is raw: every key goes to the job, Ctrl-C included,
and Ctrl-P Ctrl-Q detaches.

The output rides through a restart of the server (cli/follow.py); the Start does not: it is
not safe to send twice. A stop asked for while the connection is down goes out on the next.
The input does not ride through: a lost stream ends a pipe's input.
"""

import argparse
import signal
import sys

import trio

from ...rpc.client import JobsClient
from ...v1 import jobs_pb2
from ..connect import Dialer
from ..exits import CliError, Exit
from ..feed import Detached, Feeder, come_back
from ..final import exit_code
from ..follow import Beside, Follower, GaveUp
from ..stdin import LocalInput, stdin_is_null
from ..stdout import StdoutClosed
from ..terminal import Signalled, open_raw_terminal
from ..winsize import window_size
from .start import start_job


async def run(dial: Dialer, args: argparse.Namespace) -> int:
    if args.tty:
        return await _run_in_terminal(dial, args)
    return await _run(dial, args)


async def _run(dial: Dialer, args: argparse.Namespace) -> int:
    # Without a terminal: Ctrl-C stops the job; stdin is fed to it.
    feeding = not args.no_stdin and not stdin_is_null()
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
                status = await start_job(
                    client,
                    args,
                    input=jobs_pb2.INPUT_PIPE if feeding else jobs_pb2.INPUT_NONE,
                    tell_queued=True,
                )
                job_id = status.job_id
                if interrupted:
                    stop_job()
                follower = Follower(
                    job_id,
                    reconnect_timeout=args.reconnect_timeout,
                    beside=_together(stop_when_asked, *_feeders(job_id, feeding=feeding)),
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
    return exit_code(final, interrupted=interrupted, closed=closed)


def _feeders(job_id: str, *, feeding: bool) -> list[Beside]:
    return [Feeder(job_id, LocalInput())] if feeding else []


def _together(*tasks: Beside) -> Beside:
    """One ``beside`` task that runs ``tasks`` side by side."""

    async def beside(client: JobsClient) -> None:
        async with trio.open_nursery() as nursery:
            for task in tasks:
                nursery.start_soon(task, client)

    return beside


async def _run_in_terminal(dial: Dialer, args: argparse.Namespace) -> int:
    """``jog run -t``: no Ctrl-C of jog's own; the keys are the job's, and detaching leaves
    the job running. A closed stdout leaves it running too: it has its terminal."""
    job_id: str | None = None
    try:
        # Raw before the Start: keys typed meanwhile wait for the job, not echoed here.
        async with open_raw_terminal(0):
            async with dial() as client:
                status = await start_job(
                    client, args, input=jobs_pb2.INPUT_TERMINAL, window=window_size(0)
                )
                job_id = status.job_id
                feeder = Feeder(job_id, LocalInput(), terminal_fd=0)
                follower = Follower(job_id, reconnect_timeout=args.reconnect_timeout, beside=feeder)
                final = await follower.follow(client)
            if final is None:  # the connection dropped
                final = await follower.resume(dial)
    except Detached:
        print(f"jog: detached from job {job_id}; {come_back(job_id)}", file=sys.stderr)
        return Exit.OK
    except Signalled as exc:
        if job_id is not None:
            print(f"jog: {exc}: job {job_id} keeps running; {come_back(job_id)}", file=sys.stderr)
        return 128 + exc.signum
    return exit_code(final, interrupted=False, closed=False)


async def _stop(dial: Dialer, job_id: str | None) -> jobs_pb2.JobStatus:
    assert job_id is not None  # the output, which has a job, ran into the closed stdout
    async with dial() as client:
        return await client.stop(job_id)

"""``jog run --hosts A,B -- cmd``: the job on every host at once, each line of its output on
stdout whole and with its host's name in front (cli/merge.py); jog's own lines about a host
name it too. The exit code is the worst of the hosts' (cli/fanout.py).

- The jobs read /dev/null: jog's stdin is not shared out (``-n`` is implied, ``-t``
  refused).
- Ctrl-C stops the job on every host (SIGTERM, grace, SIGKILL), as ``jog run`` stops its
  one, and still shows their last output; a second Ctrl-C leaves at once, and the stops
  that went out finish on their servers.
- A closed stdout stops them all, quietly, as SIGPIPE would.
"""

import argparse
import signal
import sys
from functools import partial

import trio

from ...rpc.client import JobsClient
from ...v1 import jobs_pb2
from ..connect import Host
from ..exits import CliError, Exit
from ..fanout import each_host, guarded, worst
from ..final import exit_code
from ..follow import Follower, GaveUp
from ..merge import HostLines, MergedStdout, open_merged_stdout
from .start import start_job


class _Shared:
    """What the hosts' tasks share: whether to stop the jobs, and why."""

    def __init__(self) -> None:
        self.stop = trio.Event()
        self.interrupted = False
        """Ctrl-C: each job is stopped, and its end said."""
        self.closed = False
        """stdout was closed: each job is stopped, quietly."""


async def run(hosts: list[Host], args: argparse.Namespace) -> int:
    shared = _Shared()
    codes: list[int] = []

    def stdout_closed() -> None:
        shared.closed = True
        shared.stop.set()

    async def on_ctrl_c(*, task_status: trio.TaskStatus[None]) -> None:
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            task_status.started()
            async for _ in signals:
                if shared.interrupted:
                    # A second Ctrl-C: leave now; the servers finish the stops on their own.
                    nursery.cancel_scope.cancel()
                    return
                shared.interrupted = True
                shared.stop.set()

    async with trio.open_nursery() as nursery:
        # Listening for Ctrl-C before the Starts: no job may be left running unseen.
        await nursery.start(on_ctrl_c)
        async with open_merged_stdout(stdout_closed) as out:
            codes = await each_host(hosts, partial(_on_host, out=out, shared=shared, args=args))
        # Every host is done: stop listening for Ctrl-C.
        nursery.cancel_scope.cancel()
    if shared.interrupted:
        return Exit.INTERRUPTED
    return worst(codes)


async def _on_host(
    host: Host, *, out: MergedStdout, shared: _Shared, args: argparse.Namespace
) -> int:
    with out.lines(host.name) as lines:
        code = await guarded(host, partial(_run_job, lines=lines, shared=shared, args=args))
        # After a failure too: what the host sent of its last line is shown.
        await lines.end()
    return code


async def _run_job(
    host: Host, *, lines: HostLines, shared: _Shared, args: argparse.Namespace
) -> int:
    job_id: str | None = None
    stopped = False

    async def stop_when_asked(client: JobsClient) -> None:
        # Beside the output on each connection, as in `jog run`: the stop goes out on the
        # one there is, and again on the next if this one drops before the server answered.
        nonlocal stopped
        await shared.stop.wait()
        if not stopped:
            assert job_id is not None
            if shared.interrupted:
                print(f"jog: {host.name}: stopping job {job_id}", file=sys.stderr)
            await client.stop(job_id)
            stopped = True

    try:
        async with host.dial() as client:
            status = await start_job(client, args, input=jobs_pb2.INPUT_NONE)
            job_id = status.job_id
            follower = Follower(
                job_id,
                reconnect_timeout=args.reconnect_timeout,
                beside=stop_when_asked,
                write=lines.write,
                name=host.name,
            )
            final = await follower.follow(client)
        if final is None:  # the connection dropped
            final = await follower.resume(host.dial)
    except GaveUp as exc:
        if shared.stop.is_set() and not stopped:
            raise CliError(
                f"{exc.lost}; job {job_id} may still be running: the stop did not get through",
                Exit.UNREACHABLE,
            ) from None
        raise
    return exit_code(final, interrupted=shared.interrupted, closed=shared.closed, name=host.name)

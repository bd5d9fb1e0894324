"""``jog start -- cmd``: start a job and print its id. Its stdin is /dev/null, a pipe (``-i``)
or a terminal (``-t``), which ``jog attach`` writes to. Its isolation is the server's
default unless ``--isolate``, ``--network`` or ``--read-only-root`` say otherwise. With
``--queue``, a job a job limit refuses waits in the server's queue instead."""

import argparse
import os
import sys

from ...rpc.calls import Dial, JobsCalls
from ...rpc.jobs_api import limits_message
from ...v1 import jobs_pb2
from ..exits import Exit
from ..render import NAMESPACE_NAMES, in_queue
from ..winsize import window_size

_NAMESPACES = {name: kind for kind, name in NAMESPACE_NAMES.items()}
_NETWORKS = {
    None: jobs_pb2.NETWORK_UNSPECIFIED,
    "none": jobs_pb2.NETWORK_NONE,
    "host": jobs_pb2.NETWORK_HOST,
}


async def start_job(
    client: JobsCalls,
    args: argparse.Namespace,
    *,
    input: int = jobs_pb2.INPUT_NONE,
    window: tuple[int, int] | None = None,
    tell_queued: bool = False,
) -> jobs_pb2.JobStatus:
    """Start the job the command line describes, with that input (a terminal gets our
    TERM, or "dumb"). ``tell_queued``: say on stderr when the server queued it (jog run,
    which then waits)."""
    terminal = input == jobs_pb2.INPUT_TERMINAL
    status = await client.start(
        args.job,
        cwd=args.cwd or "",
        env=dict(args.env),
        limits=limits_message(args),
        input=input,
        term=(os.environ.get("TERM") or "dumb") if terminal else "",
        window=window,
        isolation=isolation_message(args),
        network=_NETWORKS[args.network],
        read_only_root=args.read_only_root,
        timeout=args.timeout,
        name=args.name,
        labels=args.labels,
        queue=args.queue,
    )
    if tell_queued and in_queue(status):
        print(f"jog: {started(status)}; waiting for room", file=sys.stderr)
    return status


def isolation_message(args: argparse.Namespace) -> jobs_pb2.Isolation | None:
    """The isolation the command line asks for; None when it does not say (the server's
    default; ``--read-only-root`` applies over it, in its own field)."""
    if args.isolate is None:
        return None
    asked = args.isolate
    return jobs_pb2.Isolation(
        namespaces=[kind for name, kind in _NAMESPACES.items() if name in asked.namespaces],
        read_only_root=asked.read_only_root,
    )


async def run(dial: Dial, args: argparse.Namespace) -> int:
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
    print(started(status), file=sys.stdout)
    return Exit.OK


def started(status: jobs_pb2.JobStatus) -> str:
    """``started: ID``, or for a job the server queued, ``queued: ID (position N)``: the id
    is the second word either way, for scripts."""
    if not in_queue(status):
        return f"started: {status.job_id}"
    if not status.queue_position:
        return f"queued: {status.job_id} (starting: there was room)"
    return f"queued: {status.job_id} (position {status.queue_position} among your queued jobs)"

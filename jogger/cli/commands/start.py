import argparse
import sys

from ...rpc.client import JobsClient
from ...v1 import jobs_pb2
from ..exits import Exit


def limits(args: argparse.Namespace) -> jobs_pb2.Limits:
    """The limits asked for on the command line; 0 (unset) leaves the server's default."""
    return jobs_pb2.Limits(
        cpu=args.cpu or 0.0,
        cpu_weight=args.cpu_weight or 0,
        memory=args.memory or 0,
        io_weight=args.io_weight or 0,
        pids=args.pids or 0,
    )


async def run(client: JobsClient, args: argparse.Namespace) -> int:
    status = await client.start(
        args.job, cwd=args.cwd or "", env=dict(args.env), limits=limits(args)
    )
    print(f"started: {status.job_id}", file=sys.stdout)
    return Exit.OK

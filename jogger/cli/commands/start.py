import argparse
import sys

from ...rpc.client import JobsClient
from ..exits import Exit


async def run(client: JobsClient, args: argparse.Namespace) -> int:
    status = await client.start(args.job, cwd=args.cwd or "", env=dict(args.env))
    print(f"started: {status.job_id}", file=sys.stdout)
    return Exit.OK

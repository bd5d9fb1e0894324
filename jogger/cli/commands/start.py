import argparse
import sys

from ...rpc.client import JobsClient
from ...rpc.jobs_api import limits_message
from ..exits import Exit


async def run(client: JobsClient, args: argparse.Namespace) -> int:
    status = await client.start(
        args.job, cwd=args.cwd or "", env=dict(args.env), limits=limits_message(args)
    )
    print(f"started: {status.job_id}", file=sys.stdout)
    return Exit.OK

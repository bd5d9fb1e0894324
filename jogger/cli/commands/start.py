import argparse
import sys

from ...rpc.jobs_api import limits_message
from ..connect import Dialer
from ..exits import Exit


async def run(dial: Dialer, args: argparse.Namespace) -> int:
    async with dial() as client:
        status = await client.start(
            args.job, cwd=args.cwd or "", env=dict(args.env), limits=limits_message(args)
        )
    print(f"started: {status.job_id}", file=sys.stdout)
    return Exit.OK

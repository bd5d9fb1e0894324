import argparse

from ...rpc.calls import Dial
from ..exits import Exit
from ..render import summary


async def run(dial: Dial, args: argparse.Namespace) -> int:
    async with dial() as client:
        before = await client.status(args.job_id)
        status = await client.stop(args.job_id, grace=args.grace)
    if before.ended_at.ToNanoseconds():
        print(f"{status.job_id} already exited with status: {summary(status)}")
    else:
        print(f"{status.job_id} {summary(status)}")
    return Exit.OK

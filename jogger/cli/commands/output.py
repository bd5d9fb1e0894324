import argparse
import sys

from ...rpc.client import JobsClient
from .. import stdout
from ..connect import Dialer
from ..exits import Exit
from ..follow import Follower
from ..render import summary


async def copy_output(client: JobsClient, job_id: str, *, offset: int) -> None:
    """Write the bytes the job's output has now to stdout, untouched."""
    async with client.output(job_id, offset=offset, follow=False) as chunks:
        async for chunk in chunks:
            stdout.write(chunk.data)


async def run(dial: Dialer, args: argparse.Namespace) -> int:
    if not args.follow:
        async with dial() as client:
            await copy_output(client, args.job_id, offset=args.offset)
        return Exit.OK
    follower = Follower(args.job_id, offset=args.offset, reconnect_timeout=args.reconnect_timeout)
    final = await follower.run(dial)
    print(f"jog: job {final.job_id} {summary(final)}", file=sys.stderr)
    return Exit.OK

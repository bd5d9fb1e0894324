import argparse
import sys

from ...rpc.client import JobsClient
from .. import stdout
from ..connect import Dialer
from ..exits import Exit
from ..follow import Follower
from ..render import summary
from ..stamps import Stamper
from ..window_args import WHOLE, Window


async def copy_output(
    client: JobsClient, job_id: str, *, offset: int, window: Window = WHOLE
) -> None:
    """Write the bytes the job's output has now (in ``window``) to stdout, untouched but
    for the timestamps asked for."""
    stamper = Stamper() if window.timestamps else None
    async with client.output(
        job_id,
        offset=offset,
        follow=False,
        tail=window.tail,
        since_ns=window.since_ns,
        timestamps=window.timestamps,
    ) as chunks:
        async for chunk in chunks:
            stdout.write(stamper(chunk) if stamper else chunk.data)


async def run(dial: Dialer, args: argparse.Namespace) -> int:
    window = Window.of(args)
    if not args.follow:
        async with dial() as client:
            await copy_output(client, args.job_id, offset=args.offset, window=window)
        return Exit.OK
    follower = Follower(
        args.job_id,
        offset=args.offset,
        reconnect_timeout=args.reconnect_timeout,
        window=window,
    )
    final = await follower.run(dial)
    print(f"jog: job {final.job_id} {summary(final)}", file=sys.stderr)
    return Exit.OK

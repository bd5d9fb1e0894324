"""``jog restart ID``: start a new job as an ended one was started, and print its id; the old
one stays in the history. The server applies its policy as it is now (see
server/restart.py)."""

import argparse
import sys

from ...rpc.calls import Dial
from ..exits import Exit
from .start import started


async def run(dial: Dial, args: argparse.Namespace) -> int:
    async with dial() as client:
        status = await client.restart(args.job_id, queue=args.queue)
    print(started(status), file=sys.stdout)
    return Exit.OK

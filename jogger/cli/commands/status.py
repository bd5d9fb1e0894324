import argparse

from ...rpc.calls import Dial
from ..exits import Exit
from ..render import as_dict, as_json, block


async def run(dial: Dial, args: argparse.Namespace) -> int:
    async with dial() as client:
        status = await client.status(args.job_id)
    print(as_json(as_dict(status)) if args.json else block(status))
    return Exit.OK

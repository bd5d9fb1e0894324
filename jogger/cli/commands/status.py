import argparse

from ...rpc.client import JobsClient
from ..exits import Exit
from ..render import as_dict, as_json, block


async def run(client: JobsClient, args: argparse.Namespace) -> int:
    status = await client.status(args.job_id)
    print(as_json(as_dict(status)) if args.json else block(status))
    return Exit.OK

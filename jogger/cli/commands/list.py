import argparse

from ...rpc.client import JobsClient
from ..exits import Exit
from ..render import as_dict, as_json, table


async def run(client: JobsClient, args: argparse.Namespace) -> int:
    statuses = await client.list(all_users=args.all)
    if args.json:
        print(as_json([as_dict(s) for s in statuses]))
    elif statuses:
        print(table(statuses, owners=args.all))
    return Exit.OK

import argparse
import sys

from ..connect import Dialer
from ..exits import Exit
from ..render import as_dict, as_json, table


async def run(dial: Dialer, args: argparse.Namespace) -> int:
    async with dial() as client:
        statuses, more = await client.list(all_users=args.all, limit=args.limit or None)
    if args.ids:
        for status in statuses:
            print(status.job_id)
    elif args.json:
        print(as_json([as_dict(s) for s in statuses]))
    elif statuses:
        print(table(statuses, owners=args.all))
    if more:
        print(f"jog: showing the newest {len(statuses)} jobs; --limit 0 shows all", file=sys.stderr)
    return Exit.OK

import argparse
import sys
from typing import Any

from ...rpc.calls import Dial
from ..exits import Exit
from ..render import STATE_VALUES, as_dict, as_json, table


def filters(args: argparse.Namespace) -> dict[str, Any]:
    """JobsClient.list's filters, as --label, --state and --name ask."""
    return {
        "labels": args.labels,
        "states": sorted({STATE_VALUES[name] for name in args.states}),
        "name": args.name,
    }


async def run(dial: Dial, args: argparse.Namespace) -> int:
    async with dial() as client:
        statuses, more = await client.list(
            all_users=args.all, limit=args.limit or None, **filters(args)
        )
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

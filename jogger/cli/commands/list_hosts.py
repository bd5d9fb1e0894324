"""``jog list --hosts A,B``: every host's list at once, merged into one, newest first, with a
HOST column (and a ``host`` key in ``--json``). ``--limit N`` is the newest N of all of
them. A host that fails is one line on stderr; the others are listed."""

import argparse
import sys

from ...v1 import jobs_pb2
from ..connect import Host
from ..exits import Exit
from ..fanout import each_host, guarded, worst
from ..render import as_dict, as_json, table
from .list import filters


async def run(hosts: list[Host], args: argparse.Namespace) -> int:
    found: list[tuple[str, jobs_pb2.JobStatus]] = []
    more = False

    async def list_on(host: Host) -> int:
        nonlocal more
        async with host.dial() as client:
            statuses, more_here = await client.list(
                all_users=args.all, limit=args.limit or None, **filters(args)
            )
        found.extend((host.name, status) for status in statuses)
        more |= more_here
        return Exit.OK

    codes = await each_host(hosts, lambda host: guarded(host, list_on))
    order = {host.name: at for at, host in enumerate(hosts)}
    # Newest first, by each server's clock; a tie in the order of --hosts.
    found.sort(key=lambda pair: (-_started(pair[1]), order[pair[0]]))
    if args.limit and len(found) > args.limit:
        del found[args.limit :]
        more = True
    if args.json:
        print(as_json([{"host": name, **as_dict(status)} for name, status in found]))
    elif found:
        print(table([s for _, s in found], owners=args.all, hosts=[n for n, _ in found]))
    if more:
        print(f"jog: showing the newest {len(found)} jobs; --limit 0 shows all", file=sys.stderr)
    return worst(codes)


def _started(status: jobs_pb2.JobStatus) -> int:
    """When the job started, in nanoseconds since the epoch (0 if the server did not say)."""
    if not status.HasField("started_at"):
        return 0
    return status.started_at.seconds * 10**9 + status.started_at.nanos

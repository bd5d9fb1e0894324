import argparse
import sys

from ...rpc.client import JobsClient
from ...v1 import jobs_pb2
from .. import stdout
from ..connect import Dialer
from ..exits import Exit
from ..render import summary


async def copy_output(
    client: JobsClient, job_id: str, *, follow: bool, offset: int = 0
) -> jobs_pb2.JobStatus | None:
    """Write the job's bytes to stdout untouched; return the final status when following."""
    out = sys.stdout.buffer
    final = None
    async with client.output(job_id, offset=offset, follow=follow) as chunks:
        async for chunk in chunks:
            if chunk.HasField("final"):
                final = chunk.final
            try:
                out.write(chunk.data)
                out.flush()
            except OSError as exc:
                # Closed (StdoutClosed: ``| head``) or failing: see cli/stdout.py.
                raise stdout.write_error(exc) from None
    return final


async def run(dial: Dialer, args: argparse.Namespace) -> int:
    async with dial() as client:
        final = await copy_output(client, args.job_id, follow=args.follow, offset=args.offset)
    if final is not None:
        print(f"jog: job {final.job_id} {summary(final)}", file=sys.stderr)
    return Exit.OK

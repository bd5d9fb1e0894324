"""The one-shot commands (``status``, ``start``, ``stop``, ``list``, ``restart`` on one
server) on the blocking client, without trio.

Each makes a unary call or two and exits, and importing trio would cost it more than the
calls (bench/README.md, issue 21). The commands are the same coroutines that run on trio
(cli/commands/), given a dialer of blocking connections (rpc/blocking.py): their calls
never suspend, so they run to their end without an event loop. Failures read as they do
on trio (cli/reach.py).
"""

import argparse
import importlib
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from ..rpc.address import format_address
from ..rpc.blocking import open_blocking
from ..rpc.calls import JobsCalls
from ..rpc.errors import RpcError
from ..rpc.failures import TransportError
from . import stdout
from .reach import connection_error, tls_context
from .settings import load


def run_one_shot(args: argparse.Namespace) -> int:
    settings = load(args.host, args.context)
    context = tls_context(settings)
    command = importlib.import_module(f".commands.{args.command}", __package__)

    @asynccontextmanager
    async def dial() -> AsyncIterator[JobsCalls]:
        with open_blocking(settings.host, settings.port, context) as client:
            yield client

    try:
        result = run_to_end(command.run(dial, args))
        stdout.flush()  # so that a failing write is reported here, not at exit
    except (TransportError, RpcError) as exc:
        where = format_address(settings.host, settings.port)
        raise connection_error(exc, settings, where) from None
    except OSError as exc:
        # The blocking client reports its failures as TransportError: this is our output.
        raise stdout.write_error(exc) from None
    return result


def run_to_end(coroutine: Coroutine[Any, Any, int]) -> int:
    """The result of a coroutine that never suspends (its calls block): run it to its end."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return int(done.value)
    coroutine.close()
    raise RuntimeError("a one-shot command waited for an event loop")

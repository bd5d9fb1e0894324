"""Connect, run one command (on one server, or with ``--hosts`` on several), and turn every
failure into one line and an exit code."""

import argparse
import importlib
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import trio

from .._exceptiongroups import single_errors
from ..rpc.address import format_address
from ..rpc.client import JobsClient, connect
from ..rpc.errors import RpcError
from ..rpc.failures import TransportError
from . import stdout
from .exits import Exit
from .reach import connection_error, tls_context
from .settings import Settings, Target, load, load_targets

# Ctrl-C ends these commands where they are; `run` handles it itself (it stops the job).
# In a terminal session (`run -t`, `attach`) it is a key for the job, not a signal.
_DETACHING = {"start", "stop", "status", "output", "list", "attach", "wait"}


class Dialer:
    """Opens a connection to the server each time it is called: a command opens its own, and
    ``jog output`` and ``jog run`` open another when theirs drops (cli/follow.py)."""

    def __init__(
        self, host: str, port: int, context: ssl.SSLContext, where: str | None = None
    ) -> None:
        self._host = host
        self._port = port
        self._context = context
        self.where = where or format_address(host, port)
        """The server as errors name it: its address (with ``--hosts``, the entry's name)."""

    def __call__(self) -> AbstractAsyncContextManager[JobsClient]:
        return connect(self._host, self._port, self._context)


@dataclass(frozen=True)
class Host:
    """One server of ``--hosts``: its name (its lines' prefix), its settings, its dialer."""

    name: str
    settings: Settings
    dial: Dialer


def run_command(args: argparse.Namespace) -> int:
    if getattr(args, "hosts", None):
        targets = load_targets(args.hosts, args.context)
        with single_errors():
            return trio.run(_main_hosts, targets, args)
    settings = load(args.host, args.context)
    with single_errors():
        return trio.run(_main, settings, args)


async def _main(settings: Settings, args: argparse.Namespace) -> int:
    command = importlib.import_module(f".commands.{args.command}", __package__)
    dial = Dialer(settings.host, settings.port, tls_context(settings))
    try:
        return await _run(lambda: command.run(dial, args), args)
    except (TransportError, RpcError) as exc:
        raise connection_error(exc, settings, dial.where) from None


async def _main_hosts(targets: list[Target], args: argparse.Namespace) -> int:
    """The command's ``_hosts`` variant, with a Host for each target; every TLS file is
    read (once) before any host is dialled."""
    command = importlib.import_module(f".commands.{args.command}_hosts", __package__)
    contexts: dict[tuple[Path, Path, Path], ssl.SSLContext] = {}
    hosts = []
    for target in targets:
        s = target.settings
        files = (s.ca, s.cert, s.key)
        if files not in contexts:
            contexts[files] = tls_context(s)
        hosts.append(Host(target.name, s, Dialer(s.host, s.port, contexts[files], target.where)))
    return await _run(lambda: command.run(hosts, args), args)


async def _run(command: Callable[[], Awaitable[int]], args: argparse.Namespace) -> int:
    interrupted = False
    try:
        # The command's errors leave the nursery as themselves, for the callers' clauses.
        with single_errors():
            async with trio.open_nursery() as nursery:
                if args.command in _DETACHING:

                    async def on_ctrl_c(*, task_status: trio.TaskStatus[None]) -> None:
                        nonlocal interrupted
                        with trio.open_signal_receiver(signal.SIGINT) as signals:
                            task_status.started()
                            async for _ in signals:
                                interrupted = True
                                # Ctrl-C: give up the command where it is.
                                nursery.cancel_scope.cancel()

                    await nursery.start(on_ctrl_c)
                result = int(await command())
                stdout.flush()  # so that a failing write is reported here, not at exit
                # The command is done; stop listening for Ctrl-C.
                nursery.cancel_scope.cancel()
    except OSError as exc:
        # The network layer reports its failures as TransportError: this is our output.
        raise stdout.write_error(exc) from None
    if interrupted:
        if args.command in ("output", "attach"):
            print(f"jog: detached; job {args.job_id} keeps running", file=sys.stderr)
        return Exit.INTERRUPTED
    return result

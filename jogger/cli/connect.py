"""Connect, run one command, and turn every failure into one line and an exit code."""

import argparse
import importlib
import os
import signal
import ssl
import sys

import trio

from .._groups import single_errors
from ..rpc.channel import TransportError
from ..rpc.client import connect
from ..rpc.errors import RpcError, StatusCode
from ..rpc.tls import client_context
from .exits import CliError, Exit
from .settings import Settings, load

# Ctrl-C ends these commands where they are; `run` handles it itself (it stops the job).
_DETACHING = {"start", "stop", "status", "output", "list"}


def run_command(args: argparse.Namespace) -> int:
    settings = load(args.host)
    with single_errors():
        return trio.run(_main, settings, args)


async def _main(settings: Settings, args: argparse.Namespace) -> int:
    command = importlib.import_module(f".commands.{args.command}", __package__)
    where = f"{settings.host}:{settings.port}"
    interrupted = False
    try:
        context = client_context(settings.ca, settings.cert, settings.key)
    except ssl.SSLError as exc:
        raise CliError(f"cannot load the TLS files: {exc.reason or exc}", Exit.USAGE) from None
    except OSError as exc:
        raise CliError(f"cannot read the TLS files: {exc}", Exit.USAGE) from None
    try:
        async with (
            connect(settings.host, settings.port, context) as client,
            trio.open_nursery() as nursery,
        ):
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
            result = int(await command.run(client, args))
            sys.stdout.flush()  # so that a failing write is reported here, not at exit
            # The command is done; stop listening for Ctrl-C.
            nursery.cancel_scope.cancel()
    except BrokenPipeError:
        # Whoever read our stdout went away (``jog list | head -1``): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return Exit.ERROR
    except OSError as exc:
        # The network layer reports its failures as TransportError: this is our output.
        raise CliError(f"cannot write the output: {exc.strerror or exc}") from None
    except TransportError as exc:
        raise CliError(f"{where}: {exc}", Exit.UNREACHABLE) from None
    except RpcError as exc:
        raise _rpc_error(exc, where) from None
    if interrupted:
        if args.command == "output":
            print(f"jog: detached; job {args.job_id} keeps running", file=sys.stderr)
        return Exit.INTERRUPTED
    return result


def _rpc_error(exc: RpcError, where: str) -> CliError:
    if exc.code == StatusCode.UNAUTHENTICATED:
        return CliError(f"{where}: the server rejected us: {exc.message}", Exit.UNREACHABLE)
    if exc.code == StatusCode.UNAVAILABLE:
        return CliError(f"{where}: unavailable: {exc.message}", Exit.UNREACHABLE)
    return CliError(exc.message)

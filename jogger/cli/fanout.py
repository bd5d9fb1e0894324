"""One command on many hosts at once (``--hosts``): a task per host, each with its own
connection. A host that fails (cannot be reached, refuses, drops and does not come back) is
one line on stderr, and the others go on. The exit code is the worst of the hosts': the
highest, where a host that failed counts as its error's code (3 for an unreachable host).
"""

import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence

import trio

from .._exceptiongroups import single_errors
from .._text import escape
from ..rpc.errors import RpcError
from ..rpc.failures import TransportError
from .connect import Host
from .exits import CliError, Exit
from .reach import connection_error
from .stdout import StdoutClosed

_FAILURES = (CliError, TransportError, RpcError)
"""What ends one host's part and no other's."""


async def each_host(hosts: Sequence[Host], task: Callable[[Host], Awaitable[int]]) -> list[int]:
    """``task(host)`` for every host at once, each in its own task; their exit codes, in the
    hosts' order. ``task`` reports its own failures (``guarded``): one that escapes is not
    one host's, and cancels every host.

    Cancellation: every host's task is cancelled with it.
    """
    codes = [int(Exit.OK)] * len(hosts)

    async def one(at: int) -> None:
        codes[at] = await task(hosts[at])

    async with trio.open_nursery() as nursery:
        for at in range(len(hosts)):
            nursery.start_soon(one, at)
    return codes


async def guarded(host: Host, task: Callable[[Host], Awaitable[int]]) -> int:
    """``task(host)``'s exit code; if it fails, one line on stderr that names the host,
    and the failure's exit code."""
    try:
        with single_errors():
            return await task(host)
    except StdoutClosed:
        raise  # not this host's: everyone's
    except _FAILURES as exc:
        return report(host, exc)
    except ExceptionGroup as group:
        # Two failures at once on one host's connection (its output and its stop, say).
        ours, others = group.split(_FAILURES)
        if ours is None or others is not None:
            raise
        return report(host, _first(ours))


def report(host: Host, exc: BaseException) -> int:
    """Say on stderr what went wrong on ``host``; its exit code."""
    if isinstance(exc, TransportError | RpcError):
        error = connection_error(exc, host.settings, host.dial.where)
    else:
        assert isinstance(exc, CliError)
        error = exc
    text = str(error)
    # With one host a refusal is worded without its address (the server said no); here
    # every line names its host.
    if not text.startswith(f"{host.dial.where}: "):
        text = f"{host.dial.where}: {text}"
    print(f"jog: error: {escape(text)}", file=sys.stderr)
    return int(error.code)


def worst(codes: Iterable[int]) -> int:
    """The exit code of many: the highest."""
    return max(codes, default=int(Exit.OK))


def _first(group: BaseExceptionGroup[Exception]) -> Exception:
    inner: Exception | BaseExceptionGroup[Exception] = group
    while isinstance(inner, BaseExceptionGroup):
        inner = inner.exceptions[0]
    return inner

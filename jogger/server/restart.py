"""``Restart``: a new job from an ended one's start request, under the server's policy as it
is now, so that a policy tightened since cannot be got around by restarting an old job.

- The account is the one ``--run-as`` gives the caller now, not the one on record.
- The isolation on record (the policy of its day applied) gets what ``--require-isolation``
  adds now.
- The timeout on record is checked against ``--max-timeout`` now: past it, the restart is
  refused as such a Start would be, never cut down.
- The name and labels are the old job's.
- The limits as asked are checked against ``--max-limits`` by the engine, and the defaults
  in force now fill in the rest.
"""

from typing import Any

from ..engine import Account
from ..engine.request import StartRequest
from ..rpc.errors import RpcError, StatusCode
from .isolation import IsolationPolicy
from .timeouts import TimeoutOverMaximum, TimeoutPolicy


def restart_arguments(
    asked: StartRequest,
    account: Account | None,
    isolation: IsolationPolicy,
    timeouts: TimeoutPolicy,
) -> dict[str, Any]:
    """JobManager.start's arguments, argv and queue apart, to start ``asked`` again as
    ``account``. INVALID_ARGUMENT for a timeout over today's maximum."""
    try:
        timeout = timeouts.resolve(asked.timeout)
    except TimeoutOverMaximum as exc:
        raise RpcError(StatusCode.INVALID_ARGUMENT, f"the job's {exc}") from None
    return {
        "cwd": asked.cwd,
        "env": dict(asked.env),
        "limits": asked.limits,
        "account": account,
        "input": asked.input,
        "window": asked.window,
        "isolation": isolation.resolve(asked.isolation),
        "timeout": timeout,
        "name": asked.name,
        "labels": dict(asked.labels),
    }

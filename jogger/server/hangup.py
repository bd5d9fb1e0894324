"""SIGHUP: reread what an operator may change under a running server.

Each reload action is named, runs in turn on every SIGHUP, and must not raise: an action
that fails keeps what it had and logs why (a bad new certificate must not take down a
server whose old one still works). Connections and jobs are never touched. The service
manager, if any, is told that a reload runs (RELOADING=1) and when it is over (READY=1).
"""

import logging
import signal
from collections.abc import Callable, Sequence

import trio

from .notify import NOT_NOTIFYING, Notifier

log = logging.getLogger("jogger.server")

Reload = tuple[str, Callable[[], None]]
"""A name for the log, and the action."""


async def watch_hangups(
    reloads: Sequence[Reload],
    notify: Notifier = NOT_NOTIFYING,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run every action on each SIGHUP, until cancelled.

    Started before the server reports itself ready, so that a SIGHUP sent as soon as the
    server is up is never the default action (which ends the process).
    """
    with trio.open_signal_receiver(signal.SIGHUP) as signals:
        task_status.started()
        async for _ in signals:
            log.info("SIGHUP: reloading %s", ", ".join(name for name, _ in reloads) or "nothing")
            notify.reloading()
            for _name, action in reloads:
                action()
            notify.reloaded()

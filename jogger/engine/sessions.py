"""What is left of a job whose supervisor is gone, found by its session.

A job without a cgroup was its own session (the spawner calls setsid), so its processes are
those whose session id is the job's main pid, unless they called setsid themselves (the
supervisor, their subreaper, reaches those; once it is gone, nothing can). A pid is only
trusted with proof that it is still the job's: the record holds the main process's start
time and the boot it ran in, and the main process must still be there with that start time
(Linux does not hand out its pid while it lives, nor the session id while any member does).
Every process is signalled through a pidfd, after checking it again, so that no pid reused
in between is ever hit.
"""

import logging
import os
import signal

import trio

from .cgroups import KILL_TIMEOUT
from .procfs import boot_id, live_processes, proc_stat
from .rows import ProcessIdentity

log = logging.getLogger("jogger.engine")


async def kill_session(process: ProcessIdentity) -> int:
    """SIGKILL what is left of a job that ran as session ``process.pid``; return how many.

    Does nothing unless the record is from this boot and the job's main process is still
    there (see the module's docstring). Raises OSError if /proc cannot be read.
    """
    if process.pid <= 1 or not process.boot_id or process.boot_id != boot_id():
        return 0
    leader = proc_stat(process.pid)
    if leader is None or leader.start_ticks != process.start_ticks:
        # Gone, or the pid is someone else's now: nothing here can be proven to be the job's.
        suspects = _session_members(process) if leader is None else []
        if suspects:
            log.warning(
                "session %d has processes %s that may be a job's leftovers; its main process "
                "is gone, so they cannot be proven to be the job's, and are not killed",
                process.pid,
                suspects[:10],
            )
        return 0
    killed = []
    for pid in _session_members(process):
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            continue
        found = proc_stat(pid)
        if (
            found is not None
            and found.sid == process.pid
            and found.start_ticks >= process.start_ticks
        ):
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                killed.append(pidfd)
                continue
            except OSError:
                pass
        os.close(pidfd)
    try:
        with trio.move_on_after(KILL_TIMEOUT) as timer:
            for pidfd in killed:
                await trio.lowlevel.wait_readable(pidfd)
        if timer.cancelled_caught:
            log.warning("leftovers of session %d survived SIGKILL", process.pid)
    finally:
        for pidfd in killed:
            os.close(pidfd)
    return len(killed)


def _session_members(process: ProcessIdentity) -> list[int]:
    return live_processes(lambda found: found.sid == process.pid)

"""After a crash: resolve what a crashed manager left, killing what is left of its jobs.

At every start (``recover``): job cgroups left under our name are killed and removed (see the
backends' ``cleanup_leftovers``); each record still marked running is recorded as killed,
with reason ``server-crash``, its output kept to the last byte written, and what is left of
a job without a cgroup is found by its session and killed (below); after a crash, output
logs without a record are deleted.
A job without one was its own session (the spawner calls setsid), so its processes are those
whose session id is the job's main pid, unless they called setsid themselves.

A pid is only trusted with proof that it is still the job's: the record holds the main
process's start time and the boot it ran in, and the main process must still be there with
that start time (Linux does not hand out its pid while it lives, nor the session id while
any member does). Once the main process is gone, the session id proves nothing: the number
may have been reused by a daemon that called setsid and left children behind. Those jobs'
leftovers, if any, are logged and left alone. Every process is signalled through a pidfd,
after checking it again, so that no pid reused in between is ever hit.
"""

import functools
import logging
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import trio

from .cgroups import KILL_TIMEOUT, Backend
from .errors import StoreError
from .procfs import live_processes, proc_stat
from .retention import Retainer
from .rows import ProcessIdentity
from .store import JobStore

log = logging.getLogger("jogger.engine")


async def recover(
    store: JobStore, backend: Backend, retainer: Retainer, logs_dir: Path, *, crashed: bool
) -> None:
    """Clean up after the manager that used the state dir last; ``crashed``: whether it
    ended without saying that it ended cleanly."""
    await backend.cleanup_leftovers()
    await _resolve_unfinished(store, logs_dir)
    if crashed:  # orphaned logs come only from a crash
        try:
            await retainer.sweep_orphans()
        except (StoreError, OSError) as exc:
            log.error("looking for output logs without a record failed: %s", exc)


async def _resolve_unfinished(store: JobStore, logs_dir: Path) -> None:
    """Resolve the jobs a crashed manager left marked running in ``store``."""
    unfinished = await store.unfinished()
    if not unfinished:
        return
    resolved = []
    for record in unfinished:
        # Also for jobs that had a cgroup: if this manager uses another backend (or none),
        # its cleanup_leftovers did not see their groups. The checks make it safe either way.
        try:
            killed = await kill_session(record.process)
        except OSError as exc:
            log.error("job %s: cannot look for its leftover processes: %s", record.job_id, exc)
            killed = 0
        try:
            size = (logs_dir / f"{record.job_id}.log").stat().st_size
        except OSError:
            size = 0
        resolved.append((record.seq, size))
        log.warning(
            "job %s was running when its server died: recorded as killed (server-crash); "
            "%d leftover processes killed",
            record.job_id,
            killed,
        )
    await store.resolve_unfinished(resolved, datetime.now(UTC))


@functools.cache  # read once: it changes only with a reboot
def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def identify(pid: int) -> ProcessIdentity:
    """The identity of our own child ``pid`` (alive, or a zombie we have not reaped)."""
    found = proc_stat(pid)
    return ProcessIdentity(pid, found.start_ticks if found is not None else 0, boot_id())


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

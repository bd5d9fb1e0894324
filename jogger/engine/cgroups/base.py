"""What the engine needs from a job's container: its processes, signals, kill, usage, removal.

Three backends implement it: cgroup v2, cgroup v1 and none (the process group alone). The
engine runs the job's watcher (``JobGroup.watch``) as a task of the job's nursery; it
reports when the job's last process is gone and removes the group once the job has ended.

The cgroup backends keep a level per user between the server's group and the jobs', as
systemd's ``user-UID.slice``: ``<root>/user-<owner>/<job id>``. It holds the owner's
budget (``user_limits``: memory and pids for all their jobs together, and one CPU weight,
so that sixteen busy jobs of one user get the CPU one busy job of another does), and the
root holds what all jobs together may use (``total_limits``).
"""

import contextlib
import errno
import hashlib
import logging
import os
import re
import signal
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import trio

from ..limits import JobLimits
from ..procfs import proc_stat

log = logging.getLogger("jogger.engine")

# Removing the group is bounded: a process in uninterruptible sleep (a hung NFS mount) may
# keep it populated; then it is left, and logged.
REMOVE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Usage:
    """What the group's accounting says. None where the backend cannot tell."""

    cpu_seconds: float | None = None
    memory_peak: int | None = None
    oom_killed: bool = False


class JobGroup(ABC):
    """One job's group. Created empty before the job starts; ``attach`` once it runs."""

    backend: str
    limits: JobLimits

    def __init__(self) -> None:
        self.emptied = trio.Event()
        """Set once no process of the job is left (a zombie main process does not count)."""
        self._pid = 0

    def placement(self) -> list[int]:
        """Open fds of cgroup.procs files: the new process writes "0" to each (moving itself)
        before it execs (see JobProcess.spawn)."""
        return []

    def birthplace(self) -> int:
        """An open fd of a cgroup v2 directory to create the new process in (clone3's
        CLONE_INTO_CGROUP), or -1; ``placement()`` still says where the process moves itself
        should the kernel not do that (see JobProcess.spawn)."""
        return -1

    def attach(self, pid: int) -> None:
        """The job's main process is running (and already inside the group)."""
        self._pid = pid

    @abstractmethod
    def members(self) -> list[int]:
        """Live processes of the job (not zombies). Raises OSError if it cannot tell."""

    @abstractmethod
    def is_member(self, pid: int) -> bool:
        """Whether ``pid`` (held by a pidfd, so not reused) belongs to the job."""

    def signal(self, sig: int) -> None:
        """Send ``sig`` to every process of the job: its process group, then each member.

        Called only while the main process is unreaped, so that its group id is still
        ours; members are signalled by pidfd, never by a pid that may have been reused.
        """
        if self._pid > 0:  # never killpg(0): that is our own process group
            try:
                os.killpg(self._pid, sig)
            except ProcessLookupError:
                pass
            except OSError as exc:  # EPERM: a member changed its user (setuid)
                log.warning("cannot signal a job's process group: %s", exc)
        try:
            pids = self.members()
        except OSError as exc:
            log.warning("cannot list the processes of job group: %s", exc)
            return
        for pid in pids:
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                continue  # gone
            try:
                found = proc_stat(pid)
                # Those in the process group have had it: never signal anyone twice.
                if found is not None and found.pgid != self._pid and self.is_member(pid):
                    signal.pidfd_send_signal(pidfd, sig)
            except (ProcessLookupError, OSError):
                pass  # gone, or /proc unreadable: the process group signal is what it gets
            finally:
                os.close(pidfd)

    @abstractmethod
    async def kill(self) -> None:
        """SIGKILL every process of the job; ``emptied`` is set once they are all gone."""

    def usage(self) -> Usage:
        return Usage()

    async def wait_empty(self) -> None:
        """Return once the job has no live process left.

        There is no event for the death of processes that are not our children, so each
        member is watched through a pidfd; then the members are listed again, for those
        that forked meanwhile. If listing fails (out of fds), retry with a backoff.
        """
        delay = 0.01
        # The group is not empty while its main process lives: wait for that first, which
        # costs no listing (and no thread) at the start of every job.
        if self._pid > 0:
            await self._wait_dead([self._pid])
        while True:
            try:
                members = await trio.to_thread.run_sync(self.members)
                if not members:
                    return
                await self._wait_dead(members)
            except (OSError, RuntimeError) as exc:
                # RuntimeError: no thread could be started (out of memory or threads).
                log.warning("waiting for a job's processes: %s; retrying", exc)
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _wait_dead(self, pids: list[int]) -> None:
        # One pidfd at a time, so that a job of thousands of processes costs one fd: each
        # wait returns at once for those already dead, and the caller lists the rest again.
        for pid in pids:
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                # The pid may have died and been reused between the listing and the open.
                if self.is_member(pid):
                    await trio.lowlevel.wait_readable(pidfd)
            finally:
                os.close(pidfd)

    async def watch(self, ended: trio.Event) -> None:
        """The watcher task: report the group empty; once the job has ended, remove it."""
        await self.wait_empty()
        self.emptied.set()
        await ended.wait()
        with trio.move_on_after(REMOVE_TIMEOUT) as timer:
            try:
                await self.remove()
            except OSError as exc:
                log.warning("cannot remove a job's cgroup: %s", exc)
        if timer.cancelled_caught:
            log.warning("a job's cgroup could not be removed in %.0f s", REMOVE_TIMEOUT)

    async def remove(self) -> None:
        """Remove the group (it is empty). Also used when the job could not start."""
        await trio.lowlevel.checkpoint()

    def remove_now(self) -> None:  # noqa: B027 - nothing to remove for most backends
        """Remove a group whose job never started (synchronous, best effort)."""


USER_PREFIX = "user-"
_PLAIN = re.compile(r"[a-z_][a-z0-9_.-]{0,63}")


def user_dir(owner: str) -> str:
    """The name of an owner's group: ``user-alice``; a hash for names that are not plain
    (an owner of the embedding API may be any printable string, "/" included)."""
    if _PLAIN.fullmatch(owner):
        return USER_PREFIX + owner
    return USER_PREFIX + "h" + hashlib.sha256(owner.encode()).hexdigest()[:16]


def remove_if_unused(user: Path) -> None:
    """Remove an owner's group once it holds no job (another job may still be in it)."""
    with contextlib.suppress(FileNotFoundError):
        try:
            user.rmdir()
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                log.warning("cannot remove %s: %s", user, exc.strerror)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (zombies have)."""
    found = proc_stat(pid)
    return found is not None and not found.exited

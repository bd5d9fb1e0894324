"""What the engine needs from job containment: a Backend, chosen once, and a JobGroup per job.

A JobGroup has the shape of Nomad's executor lifecycle. Set up: the backend creates it,
empty, with the job's limits; the job's main process is spawned into it (``placement``,
``birthplace``) and ``attach``-ed. Kill: ``signal`` (the kill sequence's SIGTERM) and
``kill`` (SIGKILL to all of it). Tear down: ``watch``, run by the engine as a task of the
job's nursery, reports when the job's last process is gone and removes the group once the
job has ended; ``discard`` removes the group of a job that never started.

Three backends implement it: cgroup v2 and cgroup v1 (a tree of cgroups, see tree.py) and
none (the job's process group alone, see none.py).
"""

import logging
import os
import signal
from abc import ABC, abstractmethod
from dataclasses import dataclass

import trio

from ..limits import JobLimits
from ..procfs import proc_stat

log = logging.getLogger("jogger.engine")

KILL_TIMEOUT = 10.0
"""SIGKILL is prompt unless a process sleeps uninterruptibly (a hung NFS mount, say): every
wait for killed processes to die ends after this long all the same, and says so."""
REMOVE_TIMEOUT = 10.0
"""Removing a group is bounded: a process in uninterruptible sleep may keep it populated;
then it is left, and logged."""


@dataclass(frozen=True, slots=True)
class Usage:
    """What the group's accounting says. None where the backend cannot tell."""

    cpu_seconds: float | None = None
    memory_peak: int | None = None
    oom_killed: bool = False


class JobGroup(ABC):
    """One job's group. Created empty before the job starts; ``attach`` once it runs."""

    containment: str
    """The backend that made it: "cgroup2", "cgroup1" or "none"."""
    limits: JobLimits
    """The limits in force."""

    def __init__(self) -> None:
        self.emptied = trio.Event()
        """Set once no process of the job is left (a zombie main process does not count)."""
        self._pid = 0

    # --- set up ----------------------------------------------------------------------------

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
        """The job's main process is running (and already inside the group): a child of its
        supervisor, which alone may signal its process group."""
        self._pid = pid

    # --- kill --------------------------------------------------------------------------------

    def signal(self, sig: int) -> None:
        """Send ``sig`` to every process of the job's cgroup that left its process group.

        The process group itself is the supervisor's to signal: it holds the main process
        unreaped, so only it knows that the group id is still the job's. The others are
        signalled by pidfd, never by a pid that may have been reused.
        """
        try:
            pids = self._members()
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
                if found is not None and found.pgid != self._pid and self._is_member(pid):
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

    # --- tear down ---------------------------------------------------------------------------

    async def watch(self, ended: trio.Event) -> None:
        """The watcher task: report the group empty; once the job has ended, remove it."""
        await self._wait_empty()
        self.emptied.set()
        await ended.wait()
        with trio.move_on_after(REMOVE_TIMEOUT) as timer:
            try:
                await self._remove()
            except OSError as exc:
                log.warning("cannot remove a job's cgroup: %s", exc)
        if timer.cancelled_caught:
            log.warning("a job's cgroup could not be removed in %.0f s", REMOVE_TIMEOUT)

    def discard(self) -> None:  # noqa: B027 - nothing to remove for the none backend
        """Remove a group whose job never started (synchronous, best effort)."""

    # --- for the backends --------------------------------------------------------------------

    @abstractmethod
    def _members(self) -> list[int]:
        """Live processes of the job (not zombies). Raises OSError if it cannot tell."""

    @abstractmethod
    def _is_member(self, pid: int) -> bool:
        """Whether ``pid`` (held by a pidfd, so not reused) belongs to the job."""

    async def _wait_empty(self) -> None:
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
                members = await trio.to_thread.run_sync(self._members)
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
                if self._is_member(pid):
                    await trio.lowlevel.wait_readable(pidfd)
            finally:
                os.close(pidfd)

    async def _remove(self) -> None:
        """Remove the group (it is empty)."""
        await trio.lowlevel.checkpoint()


class Backend(ABC):
    """How jobs are contained, chosen once at start-up (see ``open_backend``)."""

    containment: str
    """"cgroup2", "cgroup1" or "none"."""

    @abstractmethod
    def describe(self) -> str:
        """The backend and where its groups are, in words (for the start-up log line)."""

    @abstractmethod
    def create(self, owner: str, job_id: str, limits: JobLimits) -> JobGroup:
        """A new, empty group for one job, with ``limits`` in force. Raises SpawnError."""

    @abstractmethod
    def adopt(self, owner: str, job_id: str, limits: JobLimits) -> JobGroup:
        """The group of a job a server before us started: to watch, kill, read the usage of
        and remove, as if we had made it. (It may be gone; it is then empty.)"""

    def group_name(self, owner: str, job_id: str) -> str:
        """What names the job's group for ``cleanup_leftovers``."""
        return job_id

    @abstractmethod
    async def cleanup_leftovers(self, keep: frozenset[str] = frozenset()) -> None:
        """Kill and remove the job groups a server before us left behind (at start-up),
        but those named in ``keep`` (``group_name``s of adopted jobs)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Remove what the backend set up (at shutdown, once every job has ended)."""

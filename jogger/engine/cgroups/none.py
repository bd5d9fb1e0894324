"""No cgroup: the job's process group is its only boundary (not root, or no cgroup fs).

A process that calls setsid() leaves the group and is out of reach; limits cannot be set.
"""

import signal

import trio

from ..limits import JobLimits
from ..procfs import live_processes, proc_stat
from .base import Backend, JobGroup


class NoCgroupBackend(Backend):
    containment = "none"

    def describe(self) -> str:
        return "none (process groups only: no resource limits, setsid() escapes)"

    def create(self, owner: str, job_id: str, limits: JobLimits) -> JobGroup:
        return ProcessGroup()

    async def cleanup_leftovers(self) -> None:
        # Nothing to find here: a crashed server's jobs are found by their session (see
        # recovery.py).
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class ProcessGroup(JobGroup):
    """A job contained by its process group alone."""

    containment = "none"
    limits = JobLimits()

    def signal(self, sig: int) -> None:
        # The main process is not reaped before the job has ended, so while we may signal,
        # the group id is still ours: one killpg reaches everyone, forks in flight included.
        self._killpg(sig)

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        await trio.lowlevel.checkpoint()

    def _members(self) -> list[int]:
        if self._pid <= 0:
            return []
        return live_processes(lambda found: found.pgid == self._pid)

    def _is_member(self, pid: int) -> bool:
        found = proc_stat(pid)
        return found is not None and found.pgid == self._pid

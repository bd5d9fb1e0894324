"""No cgroup: the job's process group is its only boundary (not root, or no cgroup fs).

A process that calls setsid() leaves the group and is out of reach; limits cannot be set.
"""

import logging
import os
import signal

import trio

from ..limits import JobLimits
from ..procfs import live_processes, proc_stat
from .base import JobGroup

log = logging.getLogger("jogger.engine")


class ProcessGroupBackend:
    name = "none"

    def describe(self) -> str:
        return "none (process groups only: no resource limits, setsid() escapes)"

    def create(self, owner: str, job_id: str, limits: JobLimits) -> JobGroup:
        return ProcessGroup()

    async def cleanup_leftovers(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class ProcessGroup(JobGroup):
    backend = "none"
    limits = JobLimits()

    def members(self) -> list[int]:
        if self._pid <= 0:
            return []
        return live_processes(lambda found: found.pgid == self._pid)

    def is_member(self, pid: int) -> bool:
        found = proc_stat(pid)
        return found is not None and found.pgid == self._pid

    def signal(self, sig: int) -> None:
        # The main process is not reaped before the job has ended, so while we may signal,
        # the group id is still ours: one killpg reaches everyone, forks in flight included.
        if self._pid > 0:  # never killpg(0): that is our own process group
            try:
                os.killpg(self._pid, sig)
            except ProcessLookupError:
                pass
            except OSError as exc:  # EPERM: a member changed its user (setuid)
                log.warning("cannot signal a job's process group: %s", exc)

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        await trio.lowlevel.checkpoint()

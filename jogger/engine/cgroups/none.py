"""No cgroup: the job's supervisor is its only boundary (not root, or no cgroup fs).

The supervisor is the subreaper of every process of the job, so a stop reaches those that
called setsid() too, but only while the supervisor lives; limits cannot be set.
"""

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

    def adopt(self, owner: str, job_id: str, limits: JobLimits) -> JobGroup:
        return ProcessGroup()

    async def cleanup_leftovers(self, keep: frozenset[str] = frozenset()) -> None:
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
        # The supervisor signals the process group (it alone knows that the id is still the
        # job's), and as their subreaper it reaches those that called setsid too.
        pass

    async def kill(self) -> None:
        await trio.lowlevel.checkpoint()  # the supervisor's, as signal()

    def _members(self) -> list[int]:
        if self._pid <= 0:
            return []
        return live_processes(lambda found: found.pgid == self._pid)

    def _is_member(self, pid: int) -> bool:
        found = proc_stat(pid)
        return found is not None and found.pgid == self._pid

"""Where a job's cgroup will live. Until the cgroup backends land, jobs get none.

The engine runs one watcher per job as a task of the job's nursery. With a cgroup, the
watcher waits for the group to become empty and removes it; without one there is nothing
to watch.
"""

from typing import Protocol

import trio


class CgroupWatcher(Protocol):
    async def watch(self) -> None:
        """Return once the job's cgroup is empty and removed."""


class NoCgroup:
    """The job runs without a cgroup; its process group is its only boundary."""

    async def watch(self) -> None:
        await trio.lowlevel.checkpoint()

"""What the cgroup v1 and v2 backends share: their tree of groups, and its cleanup.

Each keeps its groups under the server's own cgroup, in ``<root>/user-<owner>/<job id>``:
a level per user between the server's group and the jobs', as systemd's
``user-UID.slice``. It holds the owner's budget (``user_limits``: memory and pids for all
their jobs together, and one CPU weight, so that sixteen busy jobs of one user get the CPU
one busy job of another does), and the root holds what all jobs together may use
(``total_limits``) and a CPU weight below the server's (``JOBS_CPU_WEIGHT``): the
jobs never starve the server that runs them.
"""

import contextlib
import errno
import hashlib
import logging
import os
import re
from abc import abstractmethod
from pathlib import Path

import trio

from ..procfs import proc_stat
from . import fs
from .base import KILL_TIMEOUT, Backend, JobGroup

log = logging.getLogger("jogger.engine")

USER_PREFIX = "user-"
_PLAIN = re.compile(r"[a-z_][a-z0-9_.-]{0,63}")
CPU_PERIOD_US = 100_000
"""The period a CPU limit's quota is given in (cpu.max, cpu.cfs_period_us)."""
JOBS_CPU_WEIGHT = 50
"""The CPU weight of the root of all jobs (cpu.weight; cpu.shares 512 on v1), against the
server's 100 (cpu.weight of its leaf on v2; on v1, or in a v2 root cgroup, the weight of each
of its threads at nice 0, which is the same). When the jobs and the server both want the
CPU, the server gets twice what all jobs together get; when it is idle the jobs get all of
it (a weight only divides what is contended). The owners' weights divide the jobs' share.

Not lower: a start is answered once the job's process has reached exec, which it does in
its cpu group, at this weight. Under the soak (bench/README.md, issue 21) a weight of 10
made that step take 335 to 437 ms (p50) instead of 48 to 128 ms at 100 and 50; the server gained
nothing it needed: its own wait was elsewhere."""
SERVER_CPU_WEIGHT = 100
"""The CPU weight of the server's own leaf group, where it has one (cgroup v2): the
kernel's default, written all the same, so that it is known to be above JOBS_CPU_WEIGHT."""


class CgroupBackend(Backend):
    """A backend whose groups are cgroups in the tree above, under one root per hierarchy."""

    @abstractmethod
    def setup(self) -> None:
        """Make the root, with the controllers and the limits of all jobs together. Raises
        OSError if that cannot be done here."""

    @abstractmethod
    def _roots(self) -> list[Path]:
        """The root in each hierarchy, each once (co-mounted hierarchies share one)."""

    @abstractmethod
    def _leftover(self, name: str) -> JobGroup:
        """The group ``name`` (``user-<owner>/<job id>``) as found under the roots."""

    def group_name(self, owner: str, job_id: str) -> str:
        return f"{user_dir(owner)}/{job_id}"

    async def cleanup_leftovers(self, keep: frozenset[str] = frozenset()) -> None:
        """Kill and remove job groups a server before us left behind, and then their
        owners', but for those named in ``keep`` (``group_name``: adopted jobs')."""
        await trio.lowlevel.checkpoint()
        names = set()
        users = []
        for root in self._roots():
            for entry in (p for p in root.iterdir() if p.is_dir()):
                if entry.name.startswith(USER_PREFIX):
                    users.append(entry)
                    names |= {f"{entry.name}/{p.name}" for p in entry.iterdir() if p.is_dir()}
                else:
                    names.add(entry.name)  # a job group of an older jogger, without a user
        for name in sorted(names - keep):
            log.warning("removing leftover job cgroup %s", self._roots()[0] / name)
            group = self._leftover(name)
            await group.kill()
            with trio.move_on_after(KILL_TIMEOUT):
                await group._wait_empty()
            await group._remove()
        for user in users:
            remove_if_unused(user)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
        for root in self._roots():
            try:
                # With retries: a group whose last process just died refuses for a moment.
                await fs.remove_tree(root)
            except OSError as exc:
                log.info("leaving %s: %s", root, exc.strerror)


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


def in_pages(size: int) -> str:
    """A memory limit as it reads back: the kernel keeps it in whole pages, rounded down."""
    page = os.sysconf("SC_PAGE_SIZE")
    return str(size // page * page)

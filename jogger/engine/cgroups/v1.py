"""cgroup v1 (and hybrid hosts): one group per job in each hierarchy, under the server's own.

Hierarchies used: cpu (cfs quota, shares), cpuacct (CPU time), memory (limit, peak, OOM
kills), pids (pids.max), blkio (weight, where the I/O scheduler offers one) and freezer
(to kill a job whole). Each job gets
``<mount>/<the server's own cgroup there>/<name>/user-<owner>/<id>`` in every one, so the
server never creates groups outside its own. ``<name>`` holds the limits of all jobs
together (memory, pids) and a CPU weight below the server's (cpu.shares 512, see
tree.JOBS_CPU_WEIGHT: the server's threads sit in its own group beside ``<name>``, each
weighing 1024 at nice 0, so it needs no group of its own), ``user-<owner>`` its owner's
budget (memory, pids, CPU shares: every job is in the cpu hierarchy, so that an owner's
jobs share one owner's weight).

Kill: freeze the group, so that nothing can fork or exit, SIGKILL every process listed,
thaw, and repeat until the group is empty. Without a freezer hierarchy the loop runs
without freezing (pids.max still bounds a fork bomb).
"""

import contextlib
import errno
import logging
import os
import signal
from pathlib import Path

import trio
import trio.lowlevel

from ..errors import SpawnError
from ..limits import JobLimits
from . import fs
from .base import JobGroup, Usage
from .tree import (
    CPU_PERIOD_US,
    JOBS_CPU_WEIGHT,
    CgroupBackend,
    alive,
    in_pages,
    remove_if_unused,
    user_dir,
)

log = logging.getLogger("jogger.engine")

HIERARCHIES = ("cpu", "cpuacct", "memory", "pids", "blkio", "freezer")
FREEZE_TIMEOUT = 5.0
"""Seconds a freeze or thaw may take to be reported done (the kernel gives no event)."""


class V1Backend(CgroupBackend):
    containment = "cgroup1"

    def __init__(
        self,
        bases: dict[str, tuple[Path, str]],
        name: str,
        user_limits: JobLimits,
        total_limits: JobLimits,
    ) -> None:
        """``bases``: hierarchy -> (its mount point, the server's own cgroup in it)."""
        self.mounts = {h: mount for h, (mount, _) in bases.items()}
        self.roots = {h: mount / own.lstrip("/") / name for h, (mount, own) in bases.items()}
        self.user_limits = user_limits
        self.total_limits = total_limits

    def describe(self) -> str:
        return f"cgroup1 ({' '.join(sorted(self.roots))}) under {self.roots.get('memory', '')}"

    def setup(self) -> None:
        for root in self._roots():
            root.mkdir(exist_ok=True)
        total = self.total_limits
        configure(
            self.roots,
            JobLimits(
                memory=total.memory if "memory" in self.roots else None,
                pids=total.pids if "pids" in self.roots else None,
                cpu_weight=JOBS_CPU_WEIGHT if "cpu" in self.roots else None,
            ),
        )

    def _roots(self) -> list[Path]:
        # Co-mounted hierarchies (cpu,cpuacct) share one directory.
        return list(dict.fromkeys(self.roots.values()))

    def adopt(self, owner: str, job_id: str, limits: JobLimits) -> "V1Group":
        users = {h: root / user_dir(owner) for h, root in self.roots.items()}
        paths = {h: user / job_id for h, user in users.items() if (user / job_id).is_dir()}
        return V1Group(paths, self.mounts, limits, {h: users[h] for h in paths})

    def _leftover(self, name: str) -> "V1Group":
        paths = {h: root / name for h, root in self.roots.items() if (root / name).is_dir()}
        return V1Group(paths, self.mounts, JobLimits(), {})

    def create(self, owner: str, job_id: str, limits: JobLimits) -> "V1Group":
        # Accounting, census, kill and the owner's share of the CPU always; blkio only when
        # a limit needs it (each hierarchy costs a mkdir, an open and an rmdir per job).
        wanted = {"cpu", "cpuacct", "memory", "pids", "freezer"}
        if limits.io_weight is not None:
            wanted.add("blkio")
        users = {h: root / user_dir(owner) for h, root in self.roots.items() if h in wanted}
        paths = {h: user / job_id for h, user in users.items()}
        if (limits.cpu is not None or limits.cpu_weight is not None) and "cpu" not in paths:
            raise SpawnError("cannot limit CPU: the cpu hierarchy is not mounted")
        if "blkio" in wanted and "blkio" not in paths:
            raise SpawnError("cannot set an I/O weight: the blkio hierarchy is not mounted")
        group = V1Group(paths, self.mounts, limits, users)
        try:
            self._enter_user(users)
        except OSError as exc:
            raise SpawnError(f"cannot set up the cgroups of {owner}: {exc}") from None
        try:
            for path in dict.fromkeys(paths.values()):
                path.mkdir()
            configure(paths, limits)
        except FileExistsError:
            group.discard()
            raise SpawnError(f"cgroup {job_id} exists already; refusing to reuse it") from None
        except OSError as exc:
            group.discard()
            raise SpawnError(f"cannot set up the job's cgroups: {exc}") from None
        return group

    def _enter_user(self, users: dict[str, Path]) -> None:
        """Make the owner's groups where they are missing, with the owner's budget."""
        fresh: dict[str, Path] = {}
        try:
            for hierarchy, user in users.items():
                if user not in fresh.values():
                    try:
                        user.mkdir()
                    except FileExistsError:
                        continue
                fresh[hierarchy] = user
            budget = self.user_limits
            configure(
                fresh,
                JobLimits(
                    **{
                        name: getattr(budget, name)
                        for name, hierarchy in _HIERARCHY_OF.items()
                        if hierarchy in fresh
                    }
                ),
            )
        except OSError:
            for user in dict.fromkeys(fresh.values()):
                remove_if_unused(user)
            raise


class V1Group(JobGroup):
    containment = "cgroup1"

    def __init__(
        self,
        paths: dict[str, Path],
        mounts: dict[str, Path],
        limits: JobLimits,
        users: dict[str, Path],
    ) -> None:
        super().__init__()
        self.paths = paths
        self.limits = limits
        self._users = users
        self._relative = {h: "/" + str(p.relative_to(mounts[h])) for h, p in paths.items()}
        self._fds: list[int] = []
        # The hierarchy whose cgroup.procs says who is in the job.
        self._census = next((h for h in ("pids", "freezer", "memory", "cpu") if h in paths), None)

    def placement(self) -> list[int]:
        if not self._fds:
            for path in placement_order(self.paths):
                self._fds.append(os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        return self._fds

    def attach(self, pid: int) -> None:
        super().attach(pid)
        self._close_fds()

    def _close_fds(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def _members(self) -> list[int]:
        if self._census is None:
            return []
        return [pid for pid in fs.procs(self.paths[self._census]) if alive(pid)]

    def _is_member(self, pid: int) -> bool:
        if self._census is None:
            return False
        try:
            lines = fs.read(Path(f"/proc/{pid}/cgroup")).splitlines()
        except (FileNotFoundError, ProcessLookupError):
            return False
        mine = self._relative[self._census] + "/"
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if self._census in controllers.split(",") and (path + "/").startswith(mine):
                return True
        return False

    async def kill(self) -> None:
        freezer = self.paths.get("freezer")
        if not self._members():
            await trio.lowlevel.checkpoint()
            return  # the usual case at a job's end: nothing left to freeze
        for _ in range(100):
            if freezer is not None:
                await self._set_frozen(freezer, frozen=True)
            try:
                # Frozen processes can neither fork nor exit: this list is complete, and
                # every pid on it is still the job's.
                pids = self._members()
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            finally:
                if freezer is not None:
                    await self._set_frozen(freezer, frozen=False)
            if not pids:
                return
            await trio.lowlevel.checkpoint()
        log.warning("job group %s: processes keep appearing under SIGKILL", self.paths)

    async def _set_frozen(self, freezer: Path, *, frozen: bool) -> None:
        state = "FROZEN" if frozen else "THAWED"
        fs.write(freezer / "freezer.state", state)
        delay = 0.0005
        with trio.move_on_after(FREEZE_TIMEOUT):
            # FREEZING becomes FROZEN once every task has stopped; the kernel gives no event.
            while fs.read(freezer / "freezer.state") != state:
                await trio.sleep(delay)
                delay = min(delay * 2, 0.05)

    def usage(self) -> Usage:
        cpu = memory_peak = None
        oom = False
        try:
            if "cpuacct" in self.paths:
                cpu = int(fs.read(self.paths["cpuacct"] / "cpuacct.usage")) / 1e9
            if "memory" in self.paths:
                memory = self.paths["memory"]
                memory_peak = int(fs.read(memory / "memory.max_usage_in_bytes"))
                oom = fs.keyed(memory / "memory.oom_control").get("oom_kill", 0) > 0
        except OSError as exc:
            log.warning("cannot read the accounting of job group: %s", exc)
        return Usage(cpu_seconds=cpu, memory_peak=memory_peak, oom_killed=oom)

    async def _remove(self) -> None:
        self._close_fds()
        for path in dict.fromkeys(self.paths.values()):
            await fs.remove_tree(path)
        for user in dict.fromkeys(self._users.values()):
            remove_if_unused(user)

    def discard(self) -> None:
        self._close_fds()
        for path in dict.fromkeys(self.paths.values()):
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove %s: %s", path, exc.strerror)
        for user in dict.fromkeys(self._users.values()):
            remove_if_unused(user)


def placement_order(paths: dict[str, Path]) -> list[Path]:
    """The groups a new job moves itself into, each once, the cpu hierarchy's last.

    Each move (a write to cgroup.procs) takes cgroup_mutex and the kernel's threadgroup
    rwsem, for which every fork and exit on the host waits, the server's spawns included.
    Once in its cpu group the child runs at the jobs' low weight (JOBS_CPU_WEIGHT), among
    all the busy jobs: were it to take those locks again from there, it would hold up the
    whole host while it waits for the CPU (under the soak, starts took tens of seconds).
    Last, it is in the server's cpu group for every move but the one that ends its
    placement.
    """
    ordered = dict.fromkeys(paths.values())
    cpu = paths.get("cpu")
    if cpu is not None:
        del ordered[cpu]
        ordered[cpu] = None
    return list(ordered)


def configure(paths: dict[str, Path], limits: JobLimits) -> None:
    """Write ``limits`` into the groups at ``paths`` (hierarchy -> group): a job's, an
    owner's or the root. Raises OSError if a limit cannot be set."""
    if limits.memory is not None:
        need(paths, "memory")
        fs.write_checked(
            paths["memory"] / "memory.limit_in_bytes", str(limits.memory), in_pages(limits.memory)
        )
        # No swapping past the limit: the job is OOM-killed, as with memory.swap.max 0.
        if (paths["memory"] / "memory.memsw.limit_in_bytes").exists():
            fs.write(paths["memory"] / "memory.memsw.limit_in_bytes", str(limits.memory))
        fs.write(paths["memory"] / "memory.swappiness", "0")
    if limits.cpu is not None:
        need(paths, "cpu")
        fs.write_checked(paths["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        fs.write_checked(paths["cpu"] / "cpu.cfs_quota_us", str(round(limits.cpu * CPU_PERIOD_US)))
    if limits.cpu_weight is not None:
        need(paths, "cpu")
        # cpu.shares: 1024 is the default, as cpu.weight's 100.
        fs.write_checked(paths["cpu"] / "cpu.shares", str(max(2, limits.cpu_weight * 1024 // 100)))
    if limits.io_weight is not None:
        need(paths, "blkio")
        weight = next(
            (
                paths["blkio"] / f
                for f in ("blkio.bfq.weight", "blkio.weight")
                if (paths["blkio"] / f).exists()
            ),
            None,
        )
        if weight is None:
            raise OSError(errno.ENOTSUP, "no I/O weight: the block I/O scheduler has none")
        # v1 weights run from 10 to 1000.
        fs.write_checked(weight, str(min(1000, max(10, limits.io_weight // 10))))
    if limits.pids is not None:
        need(paths, "pids")
        fs.write_checked(paths["pids"] / "pids.max", str(limits.pids))


_HIERARCHY_OF = {"cpu": "cpu", "cpu_weight": "cpu", "memory": "memory", "pids": "pids"}
"""Which hierarchy holds each limit of an owner's budget (an I/O weight is per job only)."""


def need(paths: dict[str, Path], hierarchy: str) -> None:
    if hierarchy not in paths:
        raise OSError(errno.ENOTSUP, f"the {hierarchy} hierarchy is not mounted")

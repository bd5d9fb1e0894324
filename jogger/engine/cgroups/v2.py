"""cgroup v2: one group per job under ``<the server's own cgroup>/<name>/user-<owner>/``.

Set-up (once): the server's own cgroup must enable controllers for its children, which the
no-internal-process rule allows only if no process sits in it; so the server first moves
itself into a leaf ``<own>/server`` when it must (never other processes: if there are
others, start-up fails and says so). Then ``+cpu +memory +io +pids`` go into
``<own>/cgroup.subtree_control`` and ``<own>/<name>/cgroup.subtree_control``.

The leaf ``server`` gets cpu.weight 100 and ``<name>`` cpu.weight 50 (tree.JOBS_CPU_WEIGHT):
the jobs never starve the server. (A server left in the root cgroup competes there with the
weight of its threads, 100 each at nice 0.)

``<name>`` holds the limits of all jobs together (memory.max, pids.max), ``user-<owner>``
(made with the owner's first job, removed after their last) the owner's budget (memory.max,
pids.max, cpu.weight: an owner's jobs share one owner's weight), and delegates the same
controllers to the jobs. Per job: the limits are written and read back, memory.swap.max
is 0 and memory.oom.group 1 (an OOM kill ends the whole job), cgroup.kill ends it (kernel
>= 5.14; else freeze, kill, thaw), and cgroup.events, watched with inotify, says when it
is empty.
"""

import errno
import logging
import os
import signal
from pathlib import Path

import trio

from ..errors import SpawnError
from ..limits import JobLimits
from . import fs
from .base import JobGroup, Usage
from .tree import (
    CPU_PERIOD_US,
    JOBS_CPU_WEIGHT,
    SERVER_CPU_WEIGHT,
    CgroupBackend,
    alive,
    in_pages,
    remove_if_unused,
    user_dir,
)

log = logging.getLogger("jogger.engine")

CONTROLLERS = ("cpu", "memory", "io", "pids")


class V2Backend(CgroupBackend):
    containment = "cgroup2"

    def __init__(
        self, mount: Path, own: str, name: str, user_limits: JobLimits, total_limits: JobLimits
    ) -> None:
        self.mount = mount
        self.own = mount / own.lstrip("/")
        self.root = self.own / name
        self.controllers: list[str] = []
        self.server_leaf: Path | None = None
        """The leaf the server moved itself into, if it had to (see _leave_own_cgroup)."""
        self.user_limits = user_limits
        self.total_limits = total_limits

    def describe(self) -> str:
        return f"cgroup2 at {self.root} ({' '.join(self.controllers) or 'no controllers'})"

    def setup(self) -> None:
        """Prepare ``root`` with every controller we use that the kernel offers."""
        available = fs.read(self.own / "cgroup.controllers").split()
        self.controllers = [c for c in CONTROLLERS if c in available]
        wanted = " ".join(f"+{c}" for c in self.controllers)
        if self.own != self.mount:
            self._leave_own_cgroup()
        if wanted:
            fs.write(self.own / "cgroup.subtree_control", wanted)
        self.root.mkdir(exist_ok=True)
        if wanted:
            fs.write(self.root / "cgroup.subtree_control", wanted)
        enabled = fs.read(self.root / "cgroup.subtree_control").split()
        missing = [c for c in self.controllers if c not in enabled]
        if missing:
            raise OSError(errno.EPERM, f"cannot enable {' '.join(missing)} in {self.root}")
        total = JobLimits(
            memory=self.total_limits.memory,
            pids=self.total_limits.pids,
            cpu_weight=JOBS_CPU_WEIGHT,
        )
        write_limits(self.root, total, self.controllers)
        if self.server_leaf is not None:
            # Only now has the leaf a cpu.weight: its parent has just enabled cpu for it.
            write_limits(
                self.server_leaf, JobLimits(cpu_weight=SERVER_CPU_WEIGHT), self.controllers
            )

    def _leave_own_cgroup(self) -> None:
        others = [p for p in fs.procs_here(self.own) if p != os.getpid()]
        if fs.read(self.own / "cgroup.subtree_control") and not fs.procs_here(self.own):
            return  # already delegated and empty
        if others:
            raise OSError(
                errno.EBUSY,
                f"{self.own} holds other processes ({', '.join(map(str, others[:5]))}); "
                "run the server in a cgroup of its own (systemd: Delegate=yes)",
            )
        leaf = self.own / "server"
        leaf.mkdir(exist_ok=True)
        fs.write(leaf / "cgroup.procs", str(os.getpid()))
        self.server_leaf = leaf

    def create(self, owner: str, job_id: str, limits: JobLimits) -> "V2Group":
        user = self.root / user_dir(owner)
        try:
            self._enter_user(user)
        except OSError as exc:
            raise SpawnError(f"cannot set up the cgroup of {owner} in {user}: {exc}") from None
        path = user / job_id
        try:
            path.mkdir()
        except FileExistsError:
            raise SpawnError(f"cgroup {path} exists already; refusing to reuse it") from None
        except OSError as exc:
            remove_if_unused(user)
            raise SpawnError(f"cannot create the job's cgroup {path}: {exc.strerror}") from None
        group = V2Group(path, self.mount, limits, user)
        try:
            group._configure(self.controllers)
        except OSError as exc:
            group.discard()
            raise SpawnError(f"cannot set the job's limits in {path}: {exc}") from None
        return group

    def _enter_user(self, user: Path) -> None:
        """Make the owner's group if it is missing: their budget, the controllers delegated."""
        try:
            user.mkdir()
        except FileExistsError:
            return
        try:
            if self.controllers:
                fs.write(
                    user / "cgroup.subtree_control", " ".join(f"+{c}" for c in self.controllers)
                )
            write_limits(user, self.user_limits, self.controllers)
        except OSError:
            remove_if_unused(user)
            raise

    def _roots(self) -> list[Path]:
        return [self.root]

    def adopt(self, owner: str, job_id: str, limits: JobLimits) -> "V2Group":
        user = self.root / user_dir(owner)
        return V2Group(user / job_id, self.mount, limits, user)

    def _leftover(self, name: str) -> "V2Group":
        return V2Group(self.root / name, self.mount, JobLimits(), None)


class V2Group(JobGroup):
    containment = "cgroup2"

    def __init__(self, path: Path, mount: Path, limits: JobLimits, user: Path | None) -> None:
        super().__init__()
        self.path = path
        self.limits = limits
        self._user = user
        self._relative = "/" + str(path.relative_to(mount))
        self._procs_fd = -1
        self._dir_fd = -1

    def _configure(self, controllers: list[str]) -> None:
        limits = self.limits
        write_limits(self.path, limits, controllers)
        if "memory" in controllers:
            fs.write_checked(self.path / "memory.swap.max", "0")
            fs.write_checked(self.path / "memory.oom.group", "1")
        wanted = {
            "memory": limits.memory,
            "cpu": limits.cpu or limits.cpu_weight,
            "io": limits.io_weight,
            "pids": limits.pids,
        }
        for controller, asked in wanted.items():
            if asked is not None and controller not in controllers:
                raise OSError(errno.ENOTSUP, f"the {controller} controller is not available")

    def placement(self) -> list[int]:
        if self._procs_fd < 0:
            self._procs_fd = os.open(self.path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        return [self._procs_fd]

    def birthplace(self) -> int:
        # Born inside its group, a job start does not wait out every fork on the host, as a
        # write to cgroup.procs does (the kernel's threadgroup rwsem): see spawn_child.h.
        if self._dir_fd < 0:
            self._dir_fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return self._dir_fd

    def attach(self, pid: int) -> None:
        super().attach(pid)
        self._close_fds()

    def _close_fds(self) -> None:
        for fd in (self._procs_fd, self._dir_fd):
            if fd >= 0:
                os.close(fd)
        self._procs_fd = self._dir_fd = -1

    def _members(self) -> list[int]:
        return [pid for pid in fs.procs(self.path) if alive(pid)]

    def _is_member(self, pid: int) -> bool:
        try:
            lines = fs.read(Path(f"/proc/{pid}/cgroup")).splitlines()
        except (FileNotFoundError, ProcessLookupError):
            return False
        return any(
            line.startswith("0::") and (line[3:] + "/").startswith(self._relative + "/")
            for line in lines
        )

    async def kill(self) -> None:
        try:
            fs.write(self.path / "cgroup.kill", "1")
        except FileNotFoundError:
            # Before Linux 5.14: freeze, so that nothing forks away, kill, thaw.
            fs.write(self.path / "cgroup.freeze", "1")
            self.signal(signal.SIGKILL)
            fs.write(self.path / "cgroup.freeze", "0")
        await trio.lowlevel.checkpoint()

    async def _wait_empty(self) -> None:
        # cgroup.events changes when "populated" does: wait for that, not for each process.
        try:
            watch = fs.Watch(self.path / "cgroup.events")
        except FileNotFoundError:
            return  # (an adopted job's group that is gone: empty indeed)
        except OSError as exc:
            # Out of inotify instances (fs.inotify.max_user_instances, 128 by default, is
            # less than the jobs a server may run): watch its processes instead.
            log.debug("cannot watch %s (%s): watching its processes", self.path, exc)
            await super()._wait_empty()
            return
        with watch:
            while fs.keyed(self.path / "cgroup.events").get("populated", 0):
                await watch.changed()

    def usage(self) -> Usage:
        cpu = memory_peak = None
        oom = False
        try:
            cpu = fs.keyed(self.path / "cpu.stat").get("usage_usec", 0) / 1e6
            if (self.path / "memory.peak").exists():
                memory_peak = int(fs.read(self.path / "memory.peak"))
            if (self.path / "memory.events").exists():
                oom = fs.keyed(self.path / "memory.events").get("oom_kill", 0) > 0
        except OSError as exc:
            log.warning("cannot read the accounting of %s: %s", self.path, exc)
        return Usage(cpu_seconds=cpu, memory_peak=memory_peak, oom_killed=oom)

    async def _remove(self) -> None:
        self._close_fds()
        await fs.remove_tree(self.path)
        if self._user is not None:
            remove_if_unused(self._user)

    def discard(self) -> None:
        self._close_fds()
        try:
            self.path.rmdir()
        except OSError as exc:
            log.warning("cannot remove %s: %s", self.path, exc.strerror)
        if self._user is not None:
            remove_if_unused(self._user)


def write_limits(path: Path, limits: JobLimits, controllers: list[str]) -> None:
    """Write the limits that are set into the group at ``path`` (a job's, an owner's or the
    root), where the controller is there; read each back."""
    if "memory" in controllers and limits.memory is not None:
        fs.write_checked(path / "memory.max", str(limits.memory), in_pages(limits.memory))
    if "cpu" in controllers:
        if limits.cpu is not None:
            fs.write_checked(
                path / "cpu.max", f"{round(limits.cpu * CPU_PERIOD_US)} {CPU_PERIOD_US}"
            )
        if limits.cpu_weight is not None:
            fs.write_checked(path / "cpu.weight", str(limits.cpu_weight))
    if "io" in controllers and limits.io_weight is not None:
        weight = f"default {limits.io_weight}"
        fs.write_checked(path / "io.weight", weight, weight)
    if "pids" in controllers and limits.pids is not None:
        fs.write_checked(path / "pids.max", str(limits.pids))

"""What a job may see: the namespaces it runs in (pid, mount, net, ipc, uts), and whether
its root file system is read-only.

The namespaces are made by the job's supervisor (sandbox.h), in a small init that becomes
process 1 of the job's PID namespace; see docs/rfd-3-sandbox.md for what each kind means.
This module says what may be asked for, and whether this host can give it: a job that asks
for isolation this host cannot give is refused (IsolationUnavailable), never run without.
"""

import enum
import os
from dataclasses import dataclass

from .errors import InvalidRequest, IsolationUnavailable


class Namespace(enum.Enum):
    """One kind of isolation, named as ``--isolate`` spells it."""

    PID = "pid"
    """Its own PID namespace and /proc: it sees and signals its own processes only."""
    MOUNT = "mount"
    """Its own mount namespace, with a private /tmp, /var/tmp and /dev/shm."""
    NET = "net"
    """A network namespace holding only ``lo``: no network (``--network none``)."""
    IPC = "ipc"
    """Its own System V IPC objects and POSIX message queues."""
    UTS = "uts"
    """Its own hostname: ``jog-`` and the first 8 characters of the job id."""


_ORDER = tuple(Namespace)
ALL = frozenset(Namespace)
_KERNEL_NAMES = {
    Namespace.PID: "pid",
    Namespace.MOUNT: "mnt",
    Namespace.NET: "net",
    Namespace.IPC: "ipc",
    Namespace.UTS: "uts",
}
_READ_ONLY_ROOT = "read-only-root"
_CAP_SYS_ADMIN = 21


@dataclass(frozen=True, slots=True)
class Isolation:
    """The isolation of one job; the default is none at all."""

    namespaces: frozenset[Namespace] = frozenset()
    read_only_root: bool = False
    """Every mount read-only but /dev, /proc, the job's working directory and its private
    temporary directories. Needs (and so implies) MOUNT."""

    def __post_init__(self) -> None:
        if self.read_only_root and Namespace.MOUNT not in self.namespaces:
            object.__setattr__(self, "namespaces", self.namespaces | {Namespace.MOUNT})

    def __bool__(self) -> bool:
        return bool(self.namespaces)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The namespaces' names in a fixed order (pid, mount, net, ipc, uts)."""
        return tuple(kind.value for kind in _ORDER if kind in self.namespaces)

    def text(self) -> str:
        """``pid,mount,...`` and ``read-only-root``, comma-separated; "" for none. What the
        store keeps, and ``parse`` reads back."""
        return ",".join(self.kinds + ((_READ_ONLY_ROOT,) if self.read_only_root else ()))

    @classmethod
    def parse(cls, text: str) -> "Isolation":
        """The isolation ``text`` names: comma-separated kinds, ``all`` for every namespace,
        ``none`` (or "") for none, and ``read-only-root``. InvalidRequest for anything else."""
        kinds: set[Namespace] = set()
        read_only = False
        words = [word.strip() for word in text.split(",")] if text.strip() else []
        for word in words:
            if word == "all":
                kinds |= ALL
            elif word == _READ_ONLY_ROOT:
                read_only = True
            elif word == "none" and len(words) == 1:
                pass
            else:
                try:
                    kinds.add(Namespace(word))
                except ValueError:
                    raise InvalidRequest(
                        f"unknown isolation {word[:40]!r}: pick from all, none, "
                        + ", ".join(kind.value for kind in _ORDER)
                        + f" or {_READ_ONLY_ROOT}"
                    ) from None
        return cls(frozenset(kinds), read_only)


NONE = Isolation()


def hostname(job_id: str) -> str:
    """The hostname of a job with its own UTS namespace."""
    return "jog-" + job_id[:8]


def check_available(isolation: Isolation) -> None:
    """Raise IsolationUnavailable unless this process can make ``isolation``'s namespaces:
    it needs CAP_SYS_ADMIN (root, in practice) and a kernel with each kind."""
    if not isolation:
        return
    if not _has_sys_admin():
        raise IsolationUnavailable(
            f"this server cannot isolate jobs: making namespaces needs root (CAP_SYS_ADMIN), "
            f"and it runs as uid {os.geteuid()} without it"
        )
    missing = [
        kind.value
        for kind in _ORDER
        if kind in isolation.namespaces
        and not os.path.exists(f"/proc/self/ns/{_KERNEL_NAMES[kind]}")
    ]
    if missing:
        raise IsolationUnavailable(
            "this server cannot isolate jobs: the kernel has no "
            + ", ".join(missing)
            + " namespaces"
        )


def _has_sys_admin() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_ADMIN & 1)
    except OSError:
        pass
    return os.geteuid() == 0

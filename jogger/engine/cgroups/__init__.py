"""Job containment backends: cgroup v2, cgroup v1, or none. Chosen once, at start-up.

``open_backend("auto", name)`` prefers cgroup v2 when /sys/fs/cgroup is a cgroup2 mount
with controllers, then cgroup v1 hierarchies, then none (not root, no cgroup fs). Each
cgroup backend keeps its groups under the server's own cgroup (from /proc/self/cgroup),
never elsewhere.
"""

import logging
import os
from pathlib import Path
from typing import Literal

from ..errors import InvalidRequest
from ..limits import JobLimits
from .base import KILL_TIMEOUT, REMOVE_TIMEOUT, Backend, JobGroup, Usage
from .none import NoCgroupBackend
from .tree import CgroupBackend
from .v1 import HIERARCHIES, V1Backend
from .v2 import V2Backend

__all__ = [
    "KILL_TIMEOUT",
    "REMOVE_TIMEOUT",
    "Backend",
    "CgroupMode",
    "JobGroup",
    "Usage",
    "open_backend",
]

log = logging.getLogger("jogger.engine")

CgroupMode = Literal["auto", "cgroup2", "cgroup1", "none"]
"""How jobs are to be contained: the best backend that works here, or the one named."""
CGROUP_FS = Path("/sys/fs/cgroup")


def open_backend(
    mode: CgroupMode,
    name: str,
    *,
    user_limits: JobLimits | None = None,
    total_limits: JobLimits | None = None,
) -> Backend:
    """Set up the backend ``mode`` asks for; with "auto", the best that works here.

    ``user_limits``: each owner's budget, for all their jobs together; ``total_limits``:
    what all jobs together may use (see tree.py). Raises InvalidRequest when a backend
    asked for by name cannot be used, saying why.
    """
    budgets = (user_limits or JobLimits(), total_limits or JobLimits())
    if mode not in ("auto", "cgroup2", "cgroup1", "none"):
        raise InvalidRequest(f"unknown cgroup mode {mode!r}: use auto, cgroup2, cgroup1 or none")
    if mode == "none":
        return NoCgroupBackend()
    errors = []
    for kind in ("cgroup2", "cgroup1") if mode == "auto" else (mode,):
        try:
            backend: CgroupBackend = (
                _v2(name, *budgets) if kind == "cgroup2" else _v1(name, *budgets)
            )
            backend.setup()
            return backend
        except OSError as exc:
            errors.append(f"{kind}: {exc.strerror or exc}")
    if mode != "auto":
        raise InvalidRequest(f"cannot use {mode}: {'; '.join(errors)}")
    log.warning(
        "no cgroup backend (%s): jobs run without resource limits, contained only by their "
        "process group",
        "; ".join(errors),
    )
    return NoCgroupBackend()


def _own_cgroups() -> dict[str, str]:
    """hierarchy (or "" for v2) -> the server's cgroup path in it."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            own[controller] = path
    return own


def _mounts() -> list[tuple[Path, str, list[str]]]:
    """(mount point, fs type, super options) of every cgroup mount."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            found.append((Path(fields[4]), tail[0], tail[2].split(",")))
    return found


def _v2(name: str, user_limits: JobLimits, total_limits: JobLimits) -> V2Backend:
    mount = next((m for m, kind, _ in _mounts() if kind == "cgroup2" and m == CGROUP_FS), None)
    if mount is None:
        raise OSError(0, f"{CGROUP_FS} is not a cgroup2 mount (hybrid or v1 host)")
    own = _own_cgroups().get("", "/")
    if not os.access(mount / own.lstrip("/"), os.W_OK):
        raise OSError(0, f"no write access to {mount / own.lstrip('/')} (not root?)")
    return V2Backend(mount, own, name, user_limits, total_limits)


def _v1(name: str, user_limits: JobLimits, total_limits: JobLimits) -> V1Backend:
    own = _own_cgroups()
    bases: dict[str, tuple[Path, str]] = {}
    for mount, kind, options in _mounts():
        if kind != "cgroup":
            continue
        for hierarchy in HIERARCHIES:
            if hierarchy in options and hierarchy in own:
                bases[hierarchy] = (mount, own[hierarchy])
    if not bases:
        raise OSError(0, "no cgroup v1 hierarchies are mounted")
    for mount, path in bases.values():
        if not os.access(mount / path.lstrip("/"), os.W_OK):
            raise OSError(0, f"no write access to {mount / path.lstrip('/')} (not root?)")
    return V1Backend(bases, name, user_limits, total_limits)

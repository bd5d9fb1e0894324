"""What /proc/PID/stat says of a process: the one parser the engine uses."""

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ProcStat:
    state: bytes
    """b"R", b"S", ...; b"Z" and b"X" have exited."""
    ppid: int
    pgid: int
    sid: int
    start_ticks: int
    """When the process started, in clock ticks since boot (field 22)."""

    @property
    def exited(self) -> bool:
        return self.state in (b"Z", b"X")


def proc_stat(pid: int) -> ProcStat | None:
    """The process's stat; None if it is gone. Raises OSError if /proc itself fails."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        data = os.read(fd, 4096)
    except ProcessLookupError:
        return None
    finally:
        os.close(fd)
    if b")" not in data:
        return None
    # The fields after the command name, which is in parentheses and may contain anything:
    # state (field 3), ppid, pgrp, session (6), ..., starttime (22).
    fields = data[data.rindex(b")") + 2 :].split()
    if len(fields) < 20:
        return None
    return ProcStat(fields[0], int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]))


def live_processes(match: Callable[[ProcStat], bool]) -> list[int]:
    """The pids of processes that have not exited and ``match``. Raises OSError if /proc
    cannot be listed."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            found = proc_stat(int(name))
            if found is not None and not found.exited and match(found):
                pids.append(int(name))
    return pids


def boot_id() -> str:
    return _BOOT_ID


def _read_boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


_BOOT_ID = _read_boot_id()  # read once: it changes only with a reboot

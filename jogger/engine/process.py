"""A job's main process: started as a session leader with one output pipe, watched by pidfd.

The leader is never reaped before its process group has been sent SIGKILL. While it is a
zombie its pid, and so its process group id, cannot be reused, which makes killpg(2) safe:
we can never signal an unrelated group that happens to get the same number later (the bug
behind hashicorp/nomad#23969).
"""

import contextlib
import errno
import fcntl
import logging
import math
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import trio

from .errors import SpawnError
from .output import MOVE_SIZE

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Exit:
    """How the main process ended: exactly one field is set."""

    exit_code: int | None
    signal: int | None


class JobProcess:
    def __init__(self, popen: "subprocess.Popen[bytes]", pidfd: int, output: int) -> None:
        self._popen = popen
        self._pidfd = pidfd
        self.pid = popen.pid
        self.output = output
        """The read end of the job's stdout+stderr pipe, non-blocking; the caller closes it."""
        self._reaped = False

    @classmethod
    def spawn(cls, argv: Sequence[str], *, cwd: str | None, env: Mapping[str, str]) -> "JobProcess":
        """Start ``argv`` (argv[0] looked up on ``env``'s PATH, like execvp).

        Returns once the command has been exec'd; raises SpawnError if it could not be.
        This is synchronous: subprocess uses vfork, so it costs a fraction of a millisecond
        and cannot be left half done by a cancellation.
        """
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            try:
                popen = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=write_end,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise SpawnError(_describe(exc, argv[0], cwd)) from None
            try:
                pidfd = os.pidfd_open(popen.pid)
            except BaseException:
                # The leader is not reaped yet, so its group id is still ours to signal.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()
                raise
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        os.set_blocking(read_end, False)
        _grow_pipe(read_end)
        return cls(popen, pidfd, read_end)

    async def wait_exited(self) -> None:
        """Return once the main process has exited. It stays unreaped until ``reap()``."""
        await trio.lowlevel.wait_readable(self._pidfd)

    def poll(self) -> Exit | None:
        """How the main process ended, without reaping it; None while it runs."""
        if self._reaped:
            return _exit_from_returncode(self._popen.returncode)
        info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        if info is None or info.si_pid == 0:
            return None
        if info.si_code == os.CLD_EXITED:
            return Exit(exit_code=info.si_status, signal=None)
        return Exit(exit_code=None, signal=info.si_status)

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to every process in the job's process group."""
        if self._reaped:
            raise RuntimeError("the process group may have been reused once the leader is reaped")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    async def wait_group_gone(self, *, give_up_after: float = math.inf) -> list[int]:
        """Return once no process but the leader is left in the group.

        There is no event for the death of processes that are not our children, so each
        member found in /proc is watched through a pidfd of its own; then /proc is scanned
        again, for members that forked meanwhile. After ``give_up_after`` seconds, returns
        the pids still there instead. If /proc or pidfds cannot be opened (out of fds), it
        retries with a backoff: this must not fail, or the job could never end.
        """
        delay = 0.01
        with trio.move_on_after(give_up_after):
            while True:
                try:
                    # Scanning /proc costs about 10 us a process: keep it off the event loop.
                    members = await trio.to_thread.run_sync(_group_members, self.pid)
                    if not members:
                        return []
                    await _wait_dead(self.pid, members)
                except OSError as exc:
                    logger.warning("waiting for process group %d: %s; retrying", self.pid, exc)
                    await trio.sleep(delay)
                    delay = min(delay * 2, 1.0)
        try:
            return _group_members(self.pid)
        except OSError:
            return []

    def reap(self) -> Exit:
        """Collect the exited main process and release its pidfd.

        Should the main process still run (only if killing it failed), it is killed first,
        so that this never blocks for long.
        """
        if not self._reaped:
            if self.poll() is None:
                self.signal_group(signal.SIGKILL)
            self._popen.wait()
            self._reaped = True
            os.close(self._pidfd)
        return _exit_from_returncode(self._popen.returncode)


def _exit_from_returncode(returncode: int) -> Exit:
    if returncode < 0:
        return Exit(exit_code=None, signal=-returncode)
    return Exit(exit_code=returncode, signal=None)


def _describe(exc: OSError, command: str, cwd: str | None) -> str:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    if cwd is not None and exc.filename == cwd:
        return f"cannot use working directory {cwd!r}: {reason}"
    if exc.errno == errno.ENOENT and "/" not in command:
        return f"{command!r}: command not found"
    return f"cannot execute {command!r}: {reason}"


def _grow_pipe(fd: int) -> None:
    # A bigger pipe lets a fast writer hand over more per wake-up of the pump. Best effort:
    # an unprivileged server may be capped by /proc/sys/fs/pipe-max-size.
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, MOVE_SIZE)


async def _wait_dead(pgid: int, pids: list[int]) -> None:
    pidfds = []
    try:
        for pid in pids:
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            pidfds.append(pidfd)
            # The pid may have died and been reused between the scan and the open.
            if _pgid_or_none(pid) != pgid:
                os.close(pidfds.pop())
        for pidfd in pidfds:
            await trio.lowlevel.wait_readable(pidfd)
    finally:
        for pidfd in pidfds:
            os.close(pidfd)


def _group_members(pgid: int) -> list[int]:
    """The pids in process group ``pgid``, other than ``pgid`` itself. Raises OSError."""
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != pgid and _pgid_or_none(int(name)) == pgid:
            members.append(int(name))
    return members


def _pgid_or_none(pid: int) -> int | None:
    """The process group of ``pid``; None if it is gone or a zombie. OSError if /proc fails."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        stat = os.read(fd, 4096)
    except ProcessLookupError:
        return None
    finally:
        os.close(fd)
    # Fields after the command name, which is in parentheses and may contain anything:
    # state, ppid, pgrp. A zombie is dead already (it waits for its parent, perhaps an init
    # that reaps slowly): it counts as gone.
    fields = stat[stat.rindex(b")") + 2 :].split(maxsplit=3) if b")" in stat else []
    if len(fields) < 3 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[2])

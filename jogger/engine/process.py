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
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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
    def spawn(
        cls,
        argv: Sequence[str],
        *,
        cwd: str | None,
        env: Mapping[str, str],
        placement: Sequence[int] = (),
    ) -> "JobProcess":
        """Start ``argv`` (argv[0] looked up on ``env``'s PATH, like execvp).

        ``placement``: fds of cgroup.procs files. The new process writes "0" to each (which
        moves the writer itself) and resets its oom_score_adj to 0, between fork and exec:
        the job's own code never runs outside its cgroups, and no process of ours is left
        in them. Returns once the command has been exec'd; raises SpawnError if it could
        not be. This is synchronous: it costs about a millisecond and cannot be left half
        done by a cancellation.
        """
        # Jobs must not inherit a server's protection from the OOM killer (about 10 us).
        reset_oom = Path("/proc/self/oom_score_adj").read_text().strip() != "0"
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
                    preexec_fn=_enter(placement, reset_oom) if placement or reset_oom else None,  # noqa: PLW1509 - see _enter
                )
            except OSError as exc:
                raise SpawnError(_describe(exc, argv[0], cwd)) from None
            except subprocess.SubprocessError:
                raise SpawnError("cannot place the job in its cgroup") from None
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

    def reap(self) -> Exit:
        """Collect the exited main process and release its pidfd.

        Should the main process still run (only if killing it failed), it is killed first,
        so that this never blocks for long.
        """
        if not self._reaped:
            if self.poll() is None:
                # Not reaped, so the pid is still this process's.
                os.kill(self.pid, signal.SIGKILL)
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


def _enter(placement: Sequence[int], reset_oom: bool) -> Callable[[], None]:
    """What the child runs between fork and exec: system calls only.

    subprocess forks (not vforks) when given a preexec_fn, and Python warns that it is not
    safe with threads. This one takes no lock, imports nothing and allocates nothing
    beyond the bytes literals: it cannot deadlock on a lock another thread held at fork.
    """
    fds = tuple(placement)

    def enter() -> None:
        for fd in fds:
            os.write(fd, b"0")  # "0" is the writing process itself
        if reset_oom:
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            try:
                os.write(fd, b"0")
            except PermissionError:
                pass  # lowering a positive score needs CAP_SYS_RESOURCE: keep the server's
            finally:
                os.close(fd)

    return enter


def _grow_pipe(fd: int) -> None:
    # A bigger pipe lets a fast writer hand over more per wake-up of the pump. Best effort:
    # an unprivileged server may be capped by /proc/sys/fs/pipe-max-size.
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, MOVE_SIZE)

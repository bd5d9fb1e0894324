"""A job's main process: started as a session leader with one output pipe, watched by pidfd.

The leader is never reaped before the rest of its job (its cgroup, or without one its
process group) has been sent SIGKILL. While it is a zombie its pid, and so its process group
id, cannot be reused, which makes killpg(2) safe: we can never signal an unrelated group
that happens to get the same number later (the bug behind hashicorp/nomad#23969).
"""

import contextlib
import errno
import fcntl
import functools
import logging
import os
import signal
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import trio

from .._exceptiongroups import single_errors
from . import _spawn
from .account import Account
from .errors import SpawnError, shown
from .output import MOVE_SIZE

logger = logging.getLogger(__name__)

SPAWN_TIMEOUT = 30.0
"""Seconds a new process has to reach its exec. Past that it is killed, and the start
fails: once it has switched users, any process of its new uid can stop it (SIGSTOP), and
its chdir or exec can hang on a mount."""

_PID = struct.Struct("=i")


@dataclass(frozen=True, slots=True)
class Exit:
    """How the main process ended: one field is set, neither if that is unknown (see reap)."""

    exit_code: int | None
    signal: int | None


class JobProcess:
    def __init__(self, pid: int, pidfd: int, output: int) -> None:
        self.pid = pid
        self._pidfd = pidfd
        self.output = output
        """The read end of the job's stdout+stderr pipe, non-blocking; the caller closes it."""
        self._exit: Exit | None = None
        """Set once reaped."""

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        cwd: str | None,
        env: Mapping[str, str],
        placement: Sequence[int] = (),
        cgroup_fd: int = -1,
        account: Account | None = None,
    ) -> "JobProcess":
        """Start ``argv`` (argv[0] on ``env``'s PATH, like execvp but with no /bin/sh fallback).

        The process leads its own session; stdin is /dev/null; stdout and stderr share one
        pipe. ``placement``: open fds of cgroup.procs files; the new process moves itself
        into each of them before it execs, so the job's own code never runs outside its
        cgroups, and no process of ours is ever inside them. ``cgroup_fd``: a cgroup v2
        directory to create the process in (clone3's CLONE_INTO_CGROUP, where the kernel and
        the CPU allow it; the writes to ``placement`` are then skipped, so it should hold
        the same group's cgroup.procs as the fallback). It also starts with
        oom_score_adj 0, whatever the server's is. ``account``: the user it runs as (its
        groups, group and user are set after the placement, before the chdir and the exec;
        nothing is switched if we run as that account already); with no ``cwd`` it starts in
        the account's home, or in / if it cannot enter it. None: as this process's user.

        Our own C spawner (``_spawn.c``) does this between clone and exec, where Python code
        would not be safe (subprocess's preexec_fn forks a process that may have threads;
        grpcio's fork handlers crashed such a child in CI). Returns once the command has
        been exec'd; raises SpawnError if it could not be, or if it did not get there within
        SPAWN_TIMEOUT seconds (the process is then killed).

        Cancellation: deferred until the process has exec'd or been killed and collected
        (at most SPAWN_TIMEOUT): a spawn is never left half done. A cancelled caller then
        gets the JobProcess, and sees the cancellation at its next checkpoint.
        """
        executables = _candidates(argv[0], env)
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            # (Should these land on fds 0-2, the spawner's child moves them out of the way.)
            stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            credentials = None
            if account is not None and not account.is_current():
                credentials = (account.uid, account.gid, account.groups)
            home = os.fsencode(account.home) if account is not None and cwd is None else None
            try:
                pid = await _spawn_watched(
                    functools.partial(
                        _spawn.spawn,
                        tuple(os.fsencode(path) for path in executables),
                        tuple(os.fsencode(arg) for arg in argv),
                        tuple(os.fsencode(f"{name}={value}") for name, value in env.items()),
                        None if cwd is None else os.fsencode(cwd),
                        stdin,
                        write_end,
                        tuple(placement),
                        cgroup_fd,
                        credentials,
                        home,
                    )
                )
            except OSError as exc:
                raise SpawnError(_describe(exc, argv[0], cwd, account)) from None
            finally:
                os.close(stdin)
            try:
                pidfd = os.pidfd_open(pid)
            except BaseException:
                _kill_and_reap(pid)
                raise
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        os.set_blocking(read_end, False)
        _grow_pipe(read_end)
        return cls(pid, pidfd, read_end)

    async def wait_exited(self) -> None:
        """Return once the main process has exited. It stays unreaped until ``reap()``."""
        await trio.lowlevel.wait_readable(self._pidfd)

    def poll(self) -> Exit | None:
        """How the main process ended, without reaping it; None while it runs."""
        if self._exit is not None:
            return self._exit
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        except ChildProcessError:  # something else in this process reaped it
            return Exit(exit_code=None, signal=None)
        if info is None or info.si_pid == 0:
            return None
        if info.si_code == os.CLD_EXITED:
            return Exit(exit_code=info.si_status, signal=None)
        return Exit(exit_code=None, signal=info.si_status)

    def reap(self) -> Exit:
        """Collect the exited main process and release its pidfd.

        Never blocks and never raises. Should the main process still run (only if killing
        it failed), it is sent SIGKILL; if it survives even that (uninterruptible sleep), or
        something else in this process reaped it, its exit is unknown (both fields None)
        and it is left to become a zombie of ours, logged.
        """
        if self._exit is None:
            try:
                if self.poll() is None:
                    # Not reaped, so the pid is still this process's.
                    os.kill(self.pid, signal.SIGKILL)
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except OSError as exc:  # ChildProcessError: reaped behind our back
                logger.error("cannot collect the exit of pid %d: %s", self.pid, exc)
                pid = status = 0
            if pid == self.pid:
                self._exit = _exit_from_status(status)
            else:
                logger.error("pid %d has not exited after SIGKILL; its exit is unknown", self.pid)
                self._exit = Exit(exit_code=None, signal=None)
            os.close(self._pidfd)
        return self._exit


async def _spawn_watched(spawn: Callable[[int], int]) -> int:
    """``spawn(pid_fd)`` (``_spawn.spawn``) in a worker thread, watched from here; the new
    pid once exec'd.

    The spawning thread is suspended (CLONE_VFORK) until the child execs or dies, which the
    child may put off indefinitely (see SPAWN_TIMEOUT): the event loop must never be that
    thread. If the thread has not returned SPAWN_TIMEOUT seconds later, the child gets
    SIGKILL; it wrote its pid to a pipe first thing. It is our child and not reaped, so the
    pid is still its own: a child that fails before exec is left for us to reap here, not
    reaped by the spawner, for that reason. Raises OSError as ``_spawn.spawn`` does, or
    SpawnError for the timeout; either way no process is left.

    Every spawn takes this path, with or without a switch of users: a cwd on a hung mount
    would block the event loop too. It costs some 0.3 ms per start (a thread hand-off).
    """
    pid_read, pid_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    watch = _Watch(pid_read)
    try:
        # Shielded: the thread cannot be abandoned (the child would be left unwatched and
        # unreaped), and its result must be handled. The wait is bounded: SPAWN_TIMEOUT
        # from now the child is killed, and the thread returns.
        with trio.CancelScope(shield=True):
            try:
                with single_errors():
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(watch.run)
                        try:
                            pid = await trio.to_thread.run_sync(
                                spawn,
                                pid_write,
                                # A limiter of its own, not trio's default one: a stalled
                                # spawn must not hold a thread that others wait for (NSS
                                # lookups, retention). The manager's job limits bound how
                                # many spawns run at once.
                                limiter=trio.CapacityLimiter(1),
                            )
                        finally:
                            # The thread has returned: the child has exec'd or died, and
                            # there is nothing left to watch.
                            nursery.cancel_scope.cancel()
            except BaseException:
                watch.collect()
                raise
        if watch.killed:
            watch.collect()
            raise SpawnError(
                f"the job's process did not reach exec within {SPAWN_TIMEOUT:g} s (stopped by "
                "a signal, or blocked in chdir or exec), and was killed"
            )
        return pid
    finally:
        os.close(pid_read)
        os.close(pid_write)


class _Watch:
    """The watchdog of one spawn: the child's pid, and whether it was killed."""

    def __init__(self, pid_read: int) -> None:
        self._pid_read = pid_read
        self._pid: int | None = None
        self.killed = False

    async def run(self) -> None:
        """Kill the child if it has not exec'd in time.

        Cancellation: how the spawn says it is over.
        """
        await trio.sleep(SPAWN_TIMEOUT)
        while (pid := self.pid()) is None:  # (only if the thread has not even cloned yet)
            await trio.lowlevel.wait_readable(self._pid_read)
        logger.warning("pid %d did not reach exec within %g s: killing it", pid, SPAWN_TIMEOUT)
        os.kill(pid, signal.SIGKILL)
        self.killed = True

    def pid(self) -> int | None:
        """The child's pid, once it has written it; None if there is no child (yet)."""
        if self._pid is None:
            try:
                data = os.read(self._pid_read, _PID.size)
            except BlockingIOError:
                return None
            if len(data) == _PID.size:  # (a pipe write this small is atomic)
                (self._pid,) = _PID.unpack(data)
        return self._pid

    def collect(self) -> None:
        """Kill (if need be) and reap the child, which will not be returned, if there is one."""
        pid = self.pid()
        if pid is not None:  # (else there was no clone)
            _kill_and_reap(pid)


def _kill_and_reap(pid: int) -> None:
    """SIGKILL our child ``pid`` and its process group, then reap it.

    Not reaped yet, so its pid and group id are still ours to signal. Blocks until it has
    exited: it has exec'd or died already, so this is prompt.
    """
    with contextlib.suppress(ProcessLookupError):  # no group: killed before its setsid
        os.killpg(pid, signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


_STEPS = {
    "cgroup": "cannot place the job in its cgroup",
    "setup": "cannot set up the job's process",
    "keyring": "cannot give the job a session keyring of its own",
}


def _describe(exc: OSError, command: str, cwd: str | None, account: Account | None) -> str:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    step = exc.filename2
    if step == "user" and account is not None:
        return (
            f"cannot run the job as {account.name} (uid {account.uid}, gid {account.gid}, "
            f"{len(account.groups)} groups): {reason}"
        )
    if step == "cwd":
        where = (
            shown(cwd or "")
            if cwd is not None or account is None
            else f"{shown(account.home)} or '/'"
        )
        return f"cannot use working directory {where}: {reason}"
    if step == "cgroup" and exc.errno == errno.EAGAIN:  # clone3 into a group at its pids.max
        return f"{_STEPS[step]}: no pids left in its limit or its user's ({reason})"
    if step in _STEPS:
        return f"{_STEPS[step]}: {reason}"
    if exc.errno == errno.ENOENT and "/" not in command:
        return f"{shown(command)}: command not found"
    return f"cannot execute {shown(command)}: {reason}"


def _candidates(command: str, env: Mapping[str, str]) -> list[str]:
    """The paths execvp would try, in order (PATH from the job's environment)."""
    if "/" in command:
        return [command]
    return [os.path.join(directory, command) for directory in os.get_exec_path(env)]


def _exit_from_status(status: int) -> Exit:
    if os.WIFSIGNALED(status):
        return Exit(exit_code=None, signal=os.WTERMSIG(status))
    return Exit(exit_code=os.waitstatus_to_exitcode(status), signal=None)


def _grow_pipe(fd: int) -> None:
    # A bigger pipe lets a fast writer hand over more per wake-up of the pump. Best effort:
    # an unprivileged server may be capped by /proc/sys/fs/pipe-max-size.
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, MOVE_SIZE)

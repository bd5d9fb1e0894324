"""A job's main process: started as a session leader with one output pipe, watched by pidfd.

The leader is never reaped before its process group has been sent SIGKILL. While it is a
zombie its pid, and so its process group id, cannot be reused, which makes killpg(2) safe:
we can never signal an unrelated group that happens to get the same number later (the bug
behind hashicorp/nomad#23969).
"""

import contextlib
import errno
import fcntl
import functools
import logging
import os
import shutil
import signal
import stat
import subprocess
from collections.abc import Mapping, Sequence
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

        ``placement``: open fds of cgroup.procs files. The new process is written into each
        of them before it runs any code of the job: the job's own code never runs outside
        its cgroups. It also gets oom_score_adj 0, whatever the server's is. Returns once
        the process runs; raises SpawnError if the command cannot be started. This is
        synchronous: it costs a millisecond or two and cannot be left half done by a
        cancellation.

        Nothing but exec runs in the child between fork and exec (subprocess uses vfork):
        Python code there is not safe in a process with threads, such as a server whose
        embedding program or client library runs some (grpcio's fork handlers crashed
        such a child). Where the process must be placed first, it starts as a gate, a
        /bin/sh that waits on its stdin until the server has placed it and then execs the
        command through env(1) with exactly the given argv and environment.
        """
        oom = _oom_score_adj()
        if placement or oom != 0:
            return cls._spawn_gated(argv, cwd=cwd, env=env, placement=placement)
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
            return cls._watch(popen, read_end)
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)

    @classmethod
    def _spawn_gated(
        cls,
        argv: Sequence[str],
        *,
        cwd: str | None,
        env: Mapping[str, str],
        placement: Sequence[int],
    ) -> "JobProcess":
        # The gate cannot report a failed exec back to us, so check first what exec would
        # say. Should the file change in between, env(1) reports it in the job's output.
        command = argv[0]
        _check_executable(command, env.get("PATH", DEFAULT_EXEC_PATH), cwd)
        if "=" in command:
            raise SpawnError(f"cannot start {command!r} in a cgroup: its name contains '='")
        gate = [
            SHELL, "-c", GATE_SCRIPT, "jogger-gate", _env_tool(), "-i", "--",
            *(f"{name}={value}" for name, value in env.items()), *argv,
        ]  # fmt: skip
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        gate_read, gate_write = os.pipe2(os.O_CLOEXEC)
        try:
            try:
                popen = subprocess.Popen(
                    gate,
                    stdin=gate_read,
                    stdout=write_end,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                    env={},
                    start_new_session=True,
                )
            except OSError as exc:
                if exc.filename == cwd or exc.filename is None:
                    raise SpawnError(_describe(exc, command, cwd)) from None
                raise SpawnError(f"cannot start the gate {SHELL}: {exc.strerror}") from None
            finally:
                os.close(gate_read)
            try:
                pid = str(popen.pid).encode()
                for fd in placement:
                    os.write(fd, pid)
                _reset_oom_score_adj(popen.pid)
                os.write(gate_write, b"go\n")
            except OSError as exc:
                _kill_unstarted(popen)
                raise SpawnError(f"cannot place the job in its cgroup: {exc.strerror}") from None
            except BaseException:
                _kill_unstarted(popen)
                raise
            return cls._watch(popen, read_end)
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
            os.close(gate_write)

    @classmethod
    def _watch(cls, popen: "subprocess.Popen[bytes]", read_end: int) -> "JobProcess":
        try:
            pidfd = os.pidfd_open(popen.pid)
        except BaseException:
            _kill_unstarted(popen)
            raise
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


GATE_SCRIPT = 'IFS= read -r go && [ "$go" = go ] || exit 125; exec </dev/null; exec "$@"'
"""Waits for the server's "go" (EOF, as when the server died, means no), then execs."""
SHELL = "/bin/sh"
DEFAULT_EXEC_PATH = "/bin:/usr/bin"
"""What execvp searches when PATH is unset (glibc's default)."""


@functools.cache
def _env_tool() -> str:
    return shutil.which("env", path="/usr/bin:/bin") or "/usr/bin/env"


def _kill_unstarted(popen: "subprocess.Popen[bytes]") -> None:
    # Not reaped yet, so its group id is still ours to signal.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGKILL)
    popen.wait()


def _oom_score_adj() -> int:
    try:
        return int(Path("/proc/self/oom_score_adj").read_text())
    except (OSError, ValueError):
        return 0


def _reset_oom_score_adj(pid: int) -> None:
    """Jobs must not inherit a server's protection from (or exposure to) the OOM killer."""
    # Lowering a positive score needs CAP_SYS_RESOURCE: without it, keep the server's.
    with contextlib.suppress(PermissionError):
        Path(f"/proc/{pid}/oom_score_adj").write_text("0")


def _check_executable(command: str, search_path: str, cwd: str | None) -> None:
    """Raise SpawnError with what execvp would fail with, if it would."""
    if cwd is not None and not os.path.isdir(cwd):
        error = OSError(errno.ENOTDIR if os.path.exists(cwd) else errno.ENOENT, "", cwd)
        raise SpawnError(_describe(error, command, cwd))
    if "/" in command:
        candidates = [command]
    else:
        candidates = [os.path.join(d or ".", command) for d in search_path.split(":")]
    first_error: OSError | None = None
    last_error = OSError(errno.ENOENT, os.strerror(errno.ENOENT), command)
    for candidate in candidates:
        path = os.path.join(cwd or ".", candidate)
        try:
            _check_file(path)
            return
        except OSError as exc:
            exc.filename = candidate
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR) and first_error is None:
                first_error = exc
            last_error = exc
    raise SpawnError(_describe(first_error or last_error, command, cwd))


def _check_file(path: str) -> None:
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode) or not os.access(path, os.X_OK):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))
    try:
        with open(path, "rb") as file:
            magic = file.read(4)
    except OSError:
        return  # execute-only: exec will tell
    if magic[:2] != b"#!" and magic != b"\x7fELF" and not _binfmt_misc():
        # execvp(3) would run it with /bin/sh; Python's subprocess, like us, refuses.
        raise OSError(errno.ENOEXEC, os.strerror(errno.ENOEXEC))


@functools.cache
def _binfmt_misc() -> bool:
    """Whether the kernel may know more executable formats than ELF and #!."""
    try:
        entries = os.listdir("/proc/sys/fs/binfmt_misc")
    except OSError:
        return False
    return any(name not in ("register", "status") for name in entries)


def _grow_pipe(fd: int) -> None:
    # A bigger pipe lets a fast writer hand over more per wake-up of the pump. Best effort:
    # an unprivileged server may be capped by /proc/sys/fs/pipe-max-size.
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, MOVE_SIZE)

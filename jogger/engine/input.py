"""A job's input: the fd its supervisor hands over, and the sink one writer writes through.

The supervisor (supervise.c) listens on ``run/<job id>.input`` and answers each connection
of our uid with one message: a magic, a kind, and the fd by SCM_RIGHTS. A pipe's write end
is given once, and its holder's close is the job's EOF; a terminal's master is given to
each server that asks, for as long as the job runs. We write to that fd directly: the
supervisor never copies a byte of input, and a job that does not read makes our write
wait, which makes our caller wait (no buffer grows anywhere in between).
"""

import array
import contextlib
import errno
import fcntl
import os
import socket
import struct
import termios
from pathlib import Path

import trio

from .errors import InputUnavailable, InvalidRequest, SupervisorUnreachable
from .status import Input, WindowSize

_ANSWER = struct.Struct("=II")
_MAGIC = 0x4A474931  # "JGI1"
_KINDS = {ord("p"): Input.PIPE, ord("t"): Input.TERMINAL}
ASK_TIMEOUT = 10.0
"""Seconds a supervisor gets to answer; one that does not is stuck, or not ours."""
MAX_WINDOW = 65535
"""The most rows or columns a window may have (a terminal's winsize fields are 16-bit)."""
WITHOUT_INPUT = "the job was started without input"


def socket_path(run_dir: Path, job_id: str) -> Path:
    return run_dir / f"{job_id}.input"


async def take_input(run_dir: Path, job_id: str, expected: Input) -> int:
    """The fd of the job's input, from its supervisor; ours to close.

    Raises InputUnavailable if there is none to give (a pipe given before, the job ended),
    SupervisorUnreachable if the supervisor cannot be asked. Cancellation: nothing is left
    open.
    """
    message, fds = await _ask(run_dir, job_id)
    try:
        if len(message) != _ANSWER.size:
            raise SupervisorUnreachable("its supervisor's answer is malformed")
        magic, kind = _ANSWER.unpack(message)
        if magic != _MAGIC:
            raise SupervisorUnreachable("its supervisor's answer is malformed")
        if kind == ord("x") or not fds:
            if expected is Input.PIPE:
                raise InputUnavailable("the job's input has ended (a pipe is written once)")
            raise InputUnavailable("the job has ended")
        if _KINDS.get(kind) is not expected or len(fds) != 1:
            raise SupervisorUnreachable("its supervisor's answer is malformed")
        return fds.pop()
    finally:
        for fd in fds:
            os.close(fd)


async def _ask(run_dir: Path, job_id: str) -> tuple[bytes, list[int]]:
    """The supervisor's answer: its message and the fds that came with it (ours)."""
    # Through an fd of the run dir: its path may be longer than a socket address holds.
    try:
        directory = os.open(run_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise SupervisorUnreachable(f"cannot reach its supervisor: {exc}") from None
    try:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    except OSError as exc:  # (out of fds, say)
        os.close(directory)
        raise SupervisorUnreachable(f"cannot reach its supervisor: {exc}") from None
    try:
        with trio.move_on_after(ASK_TIMEOUT):
            try:
                await sock.connect(f"/proc/self/fd/{directory}/{job_id}.input")
                return await _recv_fds(sock)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
                    # No socket: the supervisor has ended, so has the job.
                    raise InputUnavailable("the job has ended") from None
                raise SupervisorUnreachable(f"cannot reach its supervisor: {exc}") from None
    finally:
        sock.close()
        os.close(directory)
    raise SupervisorUnreachable("its supervisor did not answer")


async def _recv_fds(sock: trio.socket.SocketType) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    message, ancillary, _, _ = await sock.recvmsg(
        64, socket.CMSG_SPACE(fds.itemsize), socket.MSG_CMSG_CLOEXEC
    )
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % fds.itemsize
            fds.frombytes(data[:usable])
    return message, list(fds)


class InputSink:
    """Where one writer's bytes go: the job's stdin pipe, or its terminal.

    ``write`` waits while the job does not read. Only the job's manager makes these, for the
    owner of the job, one at a time (``JobManager.input``).
    """

    def __init__(self, kind: Input) -> None:
        self._fd = -1
        self._kind = kind
        # Cancelled by job_ended(): a write waiting for a job that is gone must end (a
        # process outside the job may still hold a pipe's read end, and never read).
        self._waiting: trio.CancelScope | None = None
        self.written = 0
        """Bytes the job has taken."""
        self.closed = False
        """The job closed its input, or ended: nothing more is taken."""

    def attach(self, fd: int) -> None:
        """Write to ``fd`` (the input's, from take_input), which the sink now owns."""
        os.set_blocking(fd, False)
        self._fd = fd

    async def write(self, data: bytes) -> bool:
        """Write all of ``data``; False (and nothing more) once the job has closed its input
        or ended. Cancellation: some of ``data`` may have been taken (``written`` counts
        it)."""
        if self.closed:
            return False
        view = memoryview(data)
        while view:
            with trio.CancelScope() as self._waiting:
                if not self.closed:
                    await trio.lowlevel.wait_writable(self._fd)
            self._waiting = None
            if self.closed:
                return False
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.EIO):
                    raise
                # EPIPE: no reader left; EIO: a terminal whose job side is gone.
                self.closed = True
                return False
            self.written += n
            view = view[n:]
        return True

    def job_ended(self) -> None:
        """The job has ended: nothing more is taken, and a write waiting now returns."""
        self.closed = True
        if self._waiting is not None:
            self._waiting.cancel()  # (see __init__)

    def resize(self, size: WindowSize) -> None:
        """Set the terminal's window size: the job's foreground process group gets
        SIGWINCH. InvalidRequest on a job without a terminal, or for a size out of range."""
        if self._kind is not Input.TERMINAL:
            raise InvalidRequest("the job has no terminal to resize")
        check_window(size)
        packed = struct.pack("HHHH", size.rows, size.cols, 0, 0)
        with contextlib.suppress(OSError):  # (EIO: the job has ended; nothing to resize)
            fcntl.ioctl(self._fd, termios.TIOCSWINSZ, packed)

    def close(self) -> None:
        """Let go: a pipe's input ends here (the job reads EOF); a terminal stays."""
        if self._fd >= 0:
            trio.lowlevel.notify_closing(self._fd)
            os.close(self._fd)
            self._fd = -1


def check_window(size: WindowSize) -> None:
    if not (0 < size.rows <= MAX_WINDOW and 0 < size.cols <= MAX_WINDOW):
        raise InvalidRequest(
            f"a window size is 1 to {MAX_WINDOW} rows and columns, not {size.rows}x{size.cols}"
        )

"""A job's supervisor, as the server sees it: started, adopted, signalled, and its end read.

Each job has its own supervisor process, ``jogger-supervise`` (supervise.c): the job's parent
and subreaper, the writer of its output log, and the writer of its end record, which outlives
the server. The server

- starts it (``launch``): the job's spec goes in on an fd (never on its command line, which
  every user can read), and the start is reported back on another;
- watches it through a pidfd (``wait_exited``), which a reused pid cannot fool;
- stops the job through it (``signal``: SIGTERM begins a stop, SIGUSR1 kills the job);
  a job with a timeout it stops by itself once its time is up (the same stop, with the
  server's grace), server or no server, and says so in its end record;
- reads the job's end from ``run/<id>.end`` once it has exited (``read_end``);
- after a restart, adopts the supervisors still running (``adopt``), by pid, start time and
  boot id, never by pid alone (hashicorp/nomad#23969 signalled a stranger).

A supervisor that started from this server process is its child and is reaped here; an
adopted one is not (its parent is init, or a subreaper above us).
"""

import contextlib
import ctypes
import errno
import fcntl
import logging
import math
import os
import select
import signal
import socket
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import trio

from .account import Account
from .cgroups import KILL_TIMEOUT
from .errors import IsolationUnavailable, SpawnError, shown
from .isolation import NONE, Isolation, Namespace, hostname
from .procfs import boot_id, proc_stat
from .rows import ProcessIdentity
from .sessions import kill_session
from .status import Input, JobState, WindowSize

logger = logging.getLogger(__name__)

PROGRAM = Path(__file__).with_name("jogger-supervise")
"""The supervisor built on install, next to this module (JobManager's ``supervisor``
overrides it)."""
SPAWN_TIMEOUT = 30.0
"""Seconds a new process has to reach its exec. Past that the supervisor kills it, and the
start fails: once it has switched users, any process of its new uid can stop it (SIGSTOP),
and its chdir or exec can hang on a mount."""
EOF_GRACE = 2.0
"""Once the job's processes are all dead its pipe is at EOF at once; if not, something that
left the job still holds it, and the log is closed after this long."""
_REPORT = struct.Struct("=Iiii")
_REPORT_MAGIC = 0x4A475231
_STEPS = {
    1: "exec",
    2: "cwd",
    3: "cgroup",
    4: "setup",
    5: "user",
    6: "keyring",
    7: "timeout",
    8: "supervisor",
    9: "isolate",
}
# Where the supervisor finds what the server hands it (see supervise.c).
_SPEC_FD, _REPORT_FD, _LOG_FD, _FIRST_CGROUP_FD = 3, 4, 5, 6


@dataclass(frozen=True, slots=True)
class End:
    """A job's end, as its supervisor wrote it to ``run/<id>.end`` (or as Slurm tells it)."""

    exit_code: int | None
    signal: int | None
    ended_at: datetime
    cpu_seconds: float | None
    memory_peak: int | None
    output_bytes: int
    output_truncated: bool
    disk_full: bool
    output_error: str
    sent_term: bool
    sent_kill: bool
    note: str
    cause: str = ""
    """What ended it, as a JobStatus.reason, where the executor knows (Slurm: oom, timeout,
    node-fail, preempted...; a supervisor: timeout)."""
    kill_told: bool = False
    """Whether ``sent_kill`` says, better than the job's stopper can, if a KILL ended the
    job: Slurm's word of an end comes a poll or more late, so a stopper's grace can run out
    (and its KILL be asked for) after the TERM had ended the job; the Slurm execution then
    counts the KILL only if SIGKILL ended the job. A supervisor's record does not: the
    stopper's KILL may have been what ended the job's other processes."""

    def state(self) -> JobState:
        if self.cause == "timeout":
            # It did not finish in its time: a failure (as Slurm's TIMEOUT, systemd's
            # RuntimeMaxSec=), however it took the stop; not a stop someone asked for.
            return JobState.FAILED
        if self.sent_kill:
            return JobState.KILLED
        if self.sent_term:
            return JobState.STOPPED
        return JobState.COMPLETED if self.exit_code == 0 else JobState.FAILED

    def killed(self, stopper_sent_kill: bool) -> bool:
        """Whether our KILL ended the job, given whether its stopper asked for one."""
        return self.sent_kill if self.kill_told else stopper_sent_kill or self.sent_kill

    def reason(self, *, oom: bool) -> str:
        if oom:
            return "oom"
        if self.cause:
            return self.cause
        if self.output_error:
            return "disk-full" if self.disk_full else "output-error"
        return ""


class Supervisor:
    """One job's supervisor process, held by a pidfd: the local executor's Execution (see
    executor.py)."""

    external_id = ""

    def __init__(
        self,
        pid: int,
        pidfd: int,
        job_pid: int,
        *,
        ours: bool,
        run_dir: Path,
        job_id: str,
        link: socket.socket | None = None,
    ) -> None:
        self.pid = pid
        self.job_pid = job_pid
        self._run_dir = run_dir
        self._job_id = job_id
        self._pidfd = pidfd
        self._ours = ours
        self._link = link
        """The start report's socket, until the start is on record (``committed``)."""
        self.identity = identify(pid)
        self.job_identity = identify(job_pid)

    async def wait_exited(self) -> None:
        """Return once the supervisor has exited (and with it, the job)."""
        await trio.lowlevel.wait_readable(self._pidfd)

    @property
    def exited(self) -> bool:
        """Whether it has exited (adopted or not: a pidfd is readable once it has)."""
        poller = select.poll()
        poller.register(self._pidfd, select.POLLIN)
        return bool(poller.poll(0))

    @property
    def alive(self) -> bool:
        """Whether it is still there, and still held by us (a closed one is not asked)."""
        return self._pidfd >= 0 and not self.exited

    def waiting(self) -> str | None:
        """A local job never waits for a place: it runs once started."""
        return None

    def end(self) -> "End | None":
        """The end the supervisor wrote, once it has exited; None if it wrote none."""
        return read_end(self._run_dir, self._job_id)

    def kill_now(self) -> None:
        """SIGKILL to every process of the job (SIGUSR1 to the supervisor)."""
        self.signal(signal.SIGUSR1)

    async def kill_lost(self) -> None:
        """The supervisor wrote no end (killed, or hung): SIGKILL it, wait for it a while,
        and kill what is left of the job's session (the job's cgroup is the job's)."""
        self.kill()
        with trio.move_on_after(KILL_TIMEOUT):
            await self.wait_exited()  # so that close() reaps it
        await kill_session(self.job_identity)

    def committed(self) -> None:
        """The start is on record: from now on the job runs whatever becomes of us. Until
        this, our death (the socket closing) makes the supervisor kill the job."""
        if self._link is not None:
            with contextlib.suppress(OSError):  # it has gone already: nothing to tell
                self._link.send(b"1")
            self._link.close()
            self._link = None

    def abandon(self) -> None:
        """The start will not be on record: the supervisor kills the job, and ends without
        recording it. (Nothing, once committed.)"""
        if self._link is not None:
            self._link.close()
            self._link = None

    def signal(self, sig: int) -> None:
        """SIGUSR1: kill the job now. Nothing if the supervisor has exited."""
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self._pidfd, sig)

    def stop(self, grace: float) -> None:
        """Begin a stop: SIGTERM to the job, and SIGKILL after ``grace`` seconds unless we
        say so sooner (SIGUSR1). The supervisor keeps that deadline itself, for the case
        that we die mid-stop. Nothing if it has exited."""
        info = _SigInfo(
            signo=signal.SIGTERM,
            code=_SI_QUEUE,
            pid=os.getpid(),
            uid=os.getuid(),
            value=_milliseconds(grace),
        )
        # Python's pidfd_send_signal takes no siginfo; the grace rides in its si_value.
        sent = _libc.syscall(
            _SYS_PIDFD_SEND_SIGNAL, self._pidfd, signal.SIGTERM, ctypes.byref(info), 0
        )
        if sent:
            err = ctypes.get_errno()
            if err != errno.ESRCH:
                raise OSError(err, os.strerror(err))

    def kill(self) -> None:
        """SIGKILL the supervisor itself (a start that failed half way)."""
        self.signal(signal.SIGKILL)

    def close(self) -> None:
        """Reap the supervisor if it is our child and has exited; release the pidfd (and
        the start report's socket of a start never committed: its job is killed)."""
        self.abandon()
        if self._pidfd < 0:
            return
        if self._ours:
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)
        os.close(self._pidfd)
        self._pidfd = -1


async def launch(
    program: Path,
    job_id: str,
    argv: Sequence[str],
    *,
    cwd: str | None,
    env: Mapping[str, str],
    log_fd: int,
    limit: int,
    run_dir: Path,
    stop_timeout: float,
    times_path: Path | None = None,
    placement: Sequence[int] = (),
    cgroup_fd: int = -1,
    account: Account | None = None,
    input: Input = Input.NONE,
    window: WindowSize | None = None,
    isolation: Isolation = NONE,
    timeout: float | None = None,  # noqa: ASYNC109 - the job's run time, not this call's
    spawners: trio.CapacityLimiter | None = None,
) -> Supervisor:
    """Start a supervisor that starts ``argv``; return once the command has been exec'd.

    ``argv[0]`` is looked up on ``env``'s PATH, like execvp but with no /bin/sh fallback.
    The job leads its own session; stdout and stderr share one pipe, which the supervisor
    moves into the log open at ``log_fd`` (at most ``limit`` bytes), keeping its time index
    (times.py) at ``times_path``, if given, which it makes (it must not exist) at the first
    record: a job that writes nothing has none. ``input``: stdin is
    /dev/null, a pipe, or a terminal of ``window``'s size (24x80 without) that is also the
    job's controlling terminal, stdout and stderr; either is had with input.take_input.
    ``placement``: open fds of cgroup.procs files the job moves itself into before its exec;
    ``cgroup_fd``: a cgroup v2 directory it is born in instead, where the kernel can (see
    spawn_child.h). ``account``: the user it runs as (its groups, group and user are set
    after the placement, before the chdir and the exec; nothing is switched if we run as
    that account already); with no ``cwd`` it starts in the account's home, or in / if it
    cannot enter it. ``stop_timeout``: how long a stop's SIGTERM may take should the server
    not follow it up (it died mid-stop). ``timeout``: seconds from the exec after which the
    supervisor stops the job itself (SIGTERM, ``stop_timeout``, SIGKILL) and records it
    timed out; None: never.

    Raises SpawnError if the command could not be exec'd, or did not get there within
    SPAWN_TIMEOUT (it is then killed); no process is left. ``spawners`` bounds the worker
    threads that spawn (trio's default limiter without). Cancellation: deferred until the
    start has been reported (bounded by SPAWN_TIMEOUT): a start is never left half done.
    """
    items = _spec_items(
        argv,
        cwd=cwd,
        env=env,
        limit=limit,
        run_dir=run_dir,
        stop_timeout=stop_timeout,
        placement=placement,
        cgroup_fd=cgroup_fd,
        times_path=times_path,
        account=account,
        input=input,
        window=window,
        isolation=isolation,
        hostname=hostname(job_id),
        timeout=timeout,
    )
    await trio.lowlevel.checkpoint_if_cancelled()
    # Shielded from the spawn on: a supervisor whose start report we did not read would be
    # left running a job nobody knows of. Bounded: the spawn returns at the supervisor's
    # exec; the supervisor gives up on the job's exec after SPAWN_TIMEOUT, and we on the
    # supervisor a little later.
    with trio.CancelScope(shield=True):
        # In a worker thread: posix_spawn holds its thread until the supervisor's exec (a
        # vfork), which on a busy machine is milliseconds the event loop would stand still.
        link, pid, pidfd = await trio.to_thread.run_sync(
            partial(
                _begin,
                program,
                job_id,
                items,
                log_fd=log_fd,
                placement=[*placement],
                cgroup_fd=cgroup_fd,
            ),
            limiter=spawners,
        )
        try:
            report = await _read_report(link)
        except BaseException:
            link.close()
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            _collect(pid, pidfd)
            raise
    _, step, err, job_pid = report
    if step != 0:
        link.close()
        _collect(pid, pidfd)  # it exits right after its report
        if _STEPS.get(step) == "isolate":
            raise IsolationUnavailable(f"cannot isolate the job: {os.strerror(err)}")
        raise SpawnError(_describe(_STEPS.get(step, "?"), err, argv[0], cwd, account))
    return Supervisor(pid, pidfd, job_pid, ours=True, run_dir=run_dir, job_id=job_id, link=link)


def adopt(
    supervisor: ProcessIdentity, job: ProcessIdentity, job_id: str, run_dir: Path
) -> Supervisor | None:
    """The supervisor a server before us started for ``job_id``, if it still runs; else None.

    Trusted only if it is the same process: the same boot, a live process with the recorded
    pid and start time, running our program for that job. Checked again once the pidfd is
    open, so that a pid reused in between is never signalled.
    """
    if supervisor.pid <= 1 or not supervisor.boot_id or supervisor.boot_id != boot_id():
        return None
    try:
        pidfd = os.pidfd_open(supervisor.pid)
    except OSError:
        return None
    found = proc_stat(supervisor.pid)
    if (
        found is None
        or found.exited
        or found.start_ticks != supervisor.start_ticks
        or _cmdline(supervisor.pid)[1:] != [job_id]
    ):
        os.close(pidfd)
        return None
    # Ours to reap if a manager before us in this very process started it (an embedding
    # program that enters a manager again); else its parent is init, or a subreaper.
    adopted = Supervisor(
        supervisor.pid,
        pidfd,
        job.pid,
        ours=found.ppid == os.getpid(),
        run_dir=run_dir,
        job_id=job_id,
    )
    # The job's own identity is the recorded one (the process may have exited since).
    adopted.job_identity = job
    return adopted


async def reap_ours(supervisor: ProcessIdentity, *, ended: bool) -> None:
    """Reap the supervisor of a record that is not adopted, if it is a child of ours (a
    manager before us in this very process started it): else, once it has exited, it
    would stay a zombie for as long as this process runs. Its start time proves that the
    pid is still that supervisor's: the pid of an unreaped child is not reused.

    ``ended``: it has written its job's end record, after which it exits at once; wait
    for that (KILL_TIMEOUT at most), since one still alive now would never be reaped.
    Otherwise only one that has exited already is reaped.
    """
    found = proc_stat(supervisor.pid) if supervisor.pid > 1 else None
    if (
        found is None
        or (not found.exited and not ended)
        or found.ppid != os.getpid()
        or found.start_ticks != supervisor.start_ticks
        or supervisor.boot_id != boot_id()
    ):
        await trio.lowlevel.checkpoint()
        return
    try:
        pidfd = os.pidfd_open(supervisor.pid)
    except OSError as exc:  # out of fds, say: it stays a zombie, which is no worse
        logger.warning("cannot reap supervisor %d: %s", supervisor.pid, exc)
        await trio.lowlevel.checkpoint()
        return
    try:
        with trio.move_on_after(KILL_TIMEOUT) as waited:
            await trio.lowlevel.wait_readable(pidfd)
        if waited.cancelled_caught:
            logger.warning(
                "supervisor %d wrote its job's end but has not exited after %.0f s",
                supervisor.pid,
                KILL_TIMEOUT,
            )
            return
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)  # noqa: ASYNC222 - WNOHANG, once exited
    finally:
        os.close(pidfd)


def _begin(
    program: Path,
    job_id: str,
    items: list[tuple[str, bytes]],
    *,
    log_fd: int,
    placement: list[int],
    cgroup_fd: int,
) -> tuple[socket.socket, int, int]:
    """Spawn the supervisor with its spec; the start report's socket, its pid and pidfd.
    Nothing is left behind on error."""
    spec = _spec_fd(items)
    try:
        link, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    except BaseException:
        os.close(spec)
        raise
    try:
        link.setblocking(False)  # read on the event loop (_read_report)
        pid = _spawn(
            program,
            job_id,
            spec=spec,
            report=theirs.fileno(),
            log_fd=log_fd,
            placement=placement,
            cgroup_fd=cgroup_fd,
        )
    except BaseException:
        link.close()
        raise
    finally:
        os.close(spec)
        theirs.close()
    try:
        pidfd = os.pidfd_open(pid)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        _collect(pid)
        link.close()
        raise
    return link, pid, pidfd


def _spawn(
    program: Path,
    job_id: str,
    *,
    spec: int,
    report: int,
    log_fd: int,
    placement: list[int],
    cgroup_fd: int,
) -> int:
    """posix_spawn the supervisor with its fds in place (see supervise.c); its pid.

    Blocks this thread until the supervisor's exec (a vfork): a fraction of a millisecond
    for a small program of ours, which needs no user switch, no cwd and no lookup, and so
    cannot hang the way a job's exec can.
    """
    handed = [spec, report, log_fd, *placement] + ([cgroup_fd] if cgroup_fd >= 0 else [])
    # Lifted above every fd number the child is given, so that no dup2 is onto itself
    # (which would leave it close-on-exec).
    lifted: list[int] = []
    try:
        lifted = [_lift(fd) for fd in handed]
        targets = [_SPEC_FD, _REPORT_FD, _LOG_FD]
        targets += [_FIRST_CGROUP_FD + n for n in range(len(lifted) - 3)]
        actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = [
            (os.POSIX_SPAWN_DUP2, fd, target) for fd, target in zip(lifted, targets, strict=True)
        ]
        actions += [(os.POSIX_SPAWN_OPEN, n, os.devnull, os.O_RDWR, 0) for n in (0, 1, 2)]
        try:
            return os.posix_spawn(
                str(program),
                [str(program), job_id],
                {},
                file_actions=actions,
                setsid=True,
                setsigmask=(),
                setsigdef=_CATCHABLE,
            )
        except OSError as exc:
            raise SpawnError(
                f"cannot start the job's supervisor {program}: {os.strerror(exc.errno or 0)}"
            ) from None
    finally:
        for fd in lifted:
            os.close(fd)


def _collect(pid: int, pidfd: int = -1) -> None:
    """Reap our supervisor child, which has exited or been sent SIGKILL (so this is prompt)."""
    os.waitpid(pid, 0)
    if pidfd >= 0:
        os.close(pidfd)


def read_end(run_dir: Path, job_id: str) -> End | None:
    """The end the job's supervisor recorded; None if it wrote none (or it is unreadable)."""
    try:
        text = (run_dir / f"{job_id}.end").read_text(errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.error("job %s: cannot read its end record: %s", job_id, exc)
        return None
    fields: dict[str, str] = {}
    lines = text.split("\n")
    if not lines or lines[0] != "jogger-end 1":
        logger.error("job %s: its end record is not one we can read", job_id)
        return None
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        fields[key] = value
    try:
        seconds = float(fields["ended_at"])
        return End(
            exit_code=int(fields["exit_code"]) if "exit_code" in fields else None,
            signal=int(fields["signal"]) if "signal" in fields else None,
            ended_at=datetime.fromtimestamp(seconds, UTC),
            cpu_seconds=float(fields["cpu_seconds"]),
            memory_peak=int(fields["memory_peak"]),
            output_bytes=int(fields["output_bytes"]),
            output_truncated=fields["output_truncated"] == "1",
            disk_full=fields["disk_full"] == "1",
            output_error=fields.get("output_error", ""),
            sent_term=fields["sent_term"] == "1",
            sent_kill=fields["sent_kill"] == "1",
            note=fields.get("note", ""),
            cause="timeout" if fields.get("timed_out") == "1" else "",
        )
    except (KeyError, ValueError, OverflowError) as exc:
        logger.error("job %s: its end record is damaged (%s)", job_id, exc)
        return None


def forget_end(run_dir: Path, job_id: str) -> None:
    """Delete the end record (and the file reserved for it) once the store has the end, and
    the input socket a supervisor that was killed left behind."""
    for name in (f"{job_id}.end", f"{job_id}.end.new", f"{job_id}.input"):
        with contextlib.suppress(FileNotFoundError):
            (run_dir / name).unlink()


def identify(pid: int) -> ProcessIdentity:
    """The identity of process ``pid``, which the caller holds (a child, or by pidfd)."""
    found = proc_stat(pid)
    return ProcessIdentity(pid, found.start_ticks if found is not None else 0, boot_id())


async def _read_report(link: socket.socket) -> tuple[int, int, int, int]:
    data = b""
    with trio.move_on_after(SPAWN_TIMEOUT + 10):
        while True:
            await trio.lowlevel.wait_readable(link)
            try:
                data = link.recv(_REPORT.size + 1)
            except BlockingIOError:
                continue
            break
    if len(data) != _REPORT.size:
        raise SpawnError("the job's supervisor ended (or hung) before reporting the start")
    magic, step, err, pid = _REPORT.unpack(data)
    if magic != _REPORT_MAGIC:
        raise SpawnError("the job's supervisor is not the version this server expects")
    return magic, step, err, pid


def _isolation_items(isolation: Isolation, hostname: str) -> list[tuple[str, bytes]]:
    if not isolation:
        return []
    items = [("isolate", ",".join(isolation.kinds).encode())]
    if isolation.read_only_root:
        items.append(("read_only_root", b"1"))
    if Namespace.UTS in isolation.namespaces:
        items.append(("hostname", hostname.encode()))
    return items


def _spec_items(
    argv: Sequence[str],
    *,
    cwd: str | None,
    env: Mapping[str, str],
    limit: int,
    run_dir: Path,
    stop_timeout: float,
    placement: Sequence[int],
    cgroup_fd: int,
    times_path: Path | None,
    account: Account | None,
    input: Input,
    window: WindowSize | None,
    isolation: Isolation,
    hostname: str,
    timeout: float | None = None,
) -> list[tuple[str, bytes]]:
    """The spec's items (see supervise.c); SpawnError if one holds a NUL."""
    items: list[tuple[str, bytes]] = []
    if "/" in argv[0]:
        items.append(("exe", os.fsencode(argv[0])))
    else:  # the supervisor searches it, as execvp does
        items.append(("search", os.fsencode(env.get("PATH", os.defpath))))
    items += [("arg", os.fsencode(arg)) for arg in argv]
    items += [("env", os.fsencode(f"{name}={value}")) for name, value in env.items()]
    if cwd is not None:
        items.append(("cwd", os.fsencode(cwd)))
    elif account is not None:
        items.append(("home", os.fsencode(account.home)))
    if account is not None and not account.is_current():
        items += [("uid", b"%d" % account.uid), ("gid", b"%d" % account.gid)]
        items += [("group", b"%d" % g) for g in account.groups]
    items += _fd_items(len(placement), cgroup_fd >= 0)
    if times_path is not None:
        items.append(("times_path", os.fsencode(times_path)))
    if input is not Input.NONE:
        items.append(("input", input.value.encode()))
    if window is not None:
        items += [("rows", b"%d" % window.rows), ("cols", b"%d" % window.cols)]
    items += _isolation_items(isolation, hostname)
    if timeout is not None:
        items.append(("timeout_ms", b"%d" % max(1, math.ceil(timeout * 1000))))
    items += [
        ("limit", b"%d" % limit),
        ("run_dir", os.fsencode(run_dir)),
        ("spawn_timeout_ms", b"%d" % int(SPAWN_TIMEOUT * 1000)),
        ("stop_timeout_ms", b"%d" % _milliseconds(stop_timeout)),
        ("eof_grace_ms", b"%d" % int(EOF_GRACE * 1000)),
    ]
    for key, value in items:
        if b"\0" in value:
            raise SpawnError(f"{key} must not contain NUL")
    return items


def _spec_fd(items: list[tuple[str, bytes]]) -> int:
    """The spec in a memfd, for the supervisor's fd 3."""
    data = b"jogger-spec-1\0" + b"".join(k.encode() + b"\0" + v + b"\0" for k, v in items)
    fd = os.memfd_create("jogger-spec", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _fd_items(placement: int, cgroup: bool) -> list[tuple[str, bytes]]:
    """The spec's items for the fds handed from _FIRST_CGROUP_FD on, in _spawn's order."""
    items = [("procs_fd", b"%d" % (_FIRST_CGROUP_FD + n)) for n in range(placement)]
    if cgroup:
        items.append(("cgroup_fd", b"%d" % (_FIRST_CGROUP_FD + placement)))
    return items


def _milliseconds(seconds: float) -> int:
    """A grace period for the supervisor: an int32 of milliseconds (math.inf, "no SIGKILL",
    is the longest there is, 24 days)."""
    return int(min(seconds * 1000, 2**31 - 1))


def _lift(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)


class _SigInfo(ctypes.Structure):
    """The kernel's siginfo_t (128 bytes), as sigqueue(3) fills it, for 64-bit Linux."""

    _fields_ = (
        ("signo", ctypes.c_int),
        ("errno", ctypes.c_int),
        ("code", ctypes.c_int),
        ("_pad", ctypes.c_int),
        ("pid", ctypes.c_int),
        ("uid", ctypes.c_uint),
        ("value", ctypes.c_long),
        ("_rest", ctypes.c_char * 96),
    )


_SI_QUEUE = -1
_SYS_PIDFD_SEND_SIGNAL = 424  # the same number on every architecture
_libc = ctypes.CDLL(None, use_errno=True)
_CATCHABLE = sorted(set(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP})


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [os.fsdecode(part) for part in raw.split(b"\0")[:-1]]


_STEP_TEXT = {
    "cgroup": "cannot place the job in its cgroup",
    "setup": "cannot set up the job's process",
    "keyring": "cannot give the job a session keyring of its own",
    "supervisor": "the job's supervisor could not start",
}


def _describe(step: str, err: int, command: str, cwd: str | None, account: Account | None) -> str:
    reason = os.strerror(err) if err else "unknown error"
    if step == "timeout":
        return (
            f"the job's process did not reach exec within {SPAWN_TIMEOUT:g} s (stopped by a "
            "signal, or blocked in chdir or exec), and was killed"
        )
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
    if step == "cgroup" and err == errno.EAGAIN:  # clone3 into a group at its pids.max
        reason = f"no pids left in its limit or its user's ({reason})"
    if step in _STEP_TEXT:
        return f"{_STEP_TEXT[step]}: {reason}"
    if err == errno.ENOENT and "/" not in command:
        return f"{shown(command)}: command not found"
    return f"cannot execute {shown(command)}: {reason}"

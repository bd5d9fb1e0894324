"""The Slurm executor: each job a Slurm batch job, submitted as the job's account.

- **start:** ``sbatch`` of a two-line script that runs the job's argv with exactly its
  environment (``env -i``), in its working directory, with ``--output`` the job's log in the
  state dir (on a file system the nodes share, in a real cluster), created beforehand for the
  job's account. Limits map to ``--cpus-per-task`` and ``--mem``, a timeout to ``--time``
  (whole minutes, rounded up: Slurm's TIMEOUT is then reason ``timeout``); the server's
  partition and QOS are added. The start returns once Slurm has the job: it may wait in the queue.
- **watch:** one task polls ``squeue`` for every live job (``poll_interval``), and each
  running job's log for growth, which wakes its followers and is recorded in the log's
  time index (times.py) with the time the watch saw it: Slurm writes the log, so a byte's
  time is when the server saw it, up to a poll after it was written (a byte written while
  no server watched carries the time of the index's record before it); a job in a final
  state gets its exit code, signal and reason from ``scontrol show job``.
- **stop:** ``scancel --signal=TERM``, the grace, then ``scancel --signal=KILL`` (``--full``:
  the batch script's processes too).
- **adopt:** a record's Slurm job id is all a new server needs: the watch finds the job
  running, queued, ended (and how), or gone (lost: Slurm forgot it, MinJobAge).

Slurm has no pids or I/O cgroup, and no CPU weight: asking for those limits is refused
(InvalidRequest), never dropped. Input and isolation are for local jobs only.
"""

import logging
import math
import os
import shlex
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import trio

from ..cgroups import JobGroup, Usage
from ..errors import InvalidRequest
from ..executor import Execution, Spec
from ..limits import JobLimits
from ..rows import ProcessIdentity
from ..status import Input, JobStatus
from ..supervisor import End
from ..times import append, create, times_path
from . import commands
from .commands import FINAL_STATES, WAITING_STATES, Final, SlurmError

log = logging.getLogger("jogger.engine")

NOBODY = ProcessIdentity(0, 0, "")
"""What a Slurm job's record holds for the local supervisor and process: none."""
_CAUSES = {
    "OUT_OF_MEMORY": "oom",
    "TIMEOUT": "timeout",
    "NODE_FAIL": "node-fail",
    "PREEMPTED": "preempted",
    "BOOT_FAIL": "boot-fail",
    "DEADLINE": "deadline",
}
"""Slurm's final states that say why a job ended, as JobStatus.reason."""


@dataclass(frozen=True)
class SlurmOptions:
    """How jobs are submitted: the partition and QOS (Slurm's defaults when None), and how
    often Slurm is asked about them."""

    partition: str | None = None
    qos: str | None = None
    poll_interval: float = 0.5


class SlurmGroup(JobGroup):
    """A Slurm job's containment is Slurm's cgroups, on its node: nothing of ours here."""

    containment = "slurm"

    def __init__(self, limits: JobLimits) -> None:
        super().__init__()
        self.limits = limits

    def signal(self, sig: int) -> None:
        pass  # Slurm's, through the execution

    async def kill(self) -> None:
        await trio.lowlevel.checkpoint()

    def usage(self) -> Usage:
        return Usage(None, None, False)

    def _members(self) -> list[int]:
        return []

    def _is_member(self, pid: int) -> bool:
        return False


class SlurmExecution:
    """One Slurm job, as the executor's watch sees it."""

    job_pid = 0
    identity = NOBODY
    job_identity = NOBODY

    def __init__(self, executor: "SlurmExecutor", external_id: str, job_id: str, log: Path):
        self._executor = executor
        self.external_id = external_id
        self.job_id = job_id
        self.log_path = log
        self.seen: commands.Seen | None = None
        self._indexed = _size(log)
        """The log's size at the watch's last look: what the time index covers."""
        self._end: End | None = None
        self._done = trio.Event()
        self._sent_term = False
        self._sent_kill = False

    @property
    def exited(self) -> bool:
        return self._done.is_set()

    async def wait_exited(self) -> None:
        await self._done.wait()

    def waiting(self) -> str | None:
        if self.seen is None or self.seen.state not in WAITING_STATES:
            return None
        return self.seen.reason or self.seen.state.lower()

    def committed(self) -> None:
        pass  # Slurm runs it whatever becomes of us already

    def abandon(self) -> None:
        self._executor.request(self, "KILL")

    def stop(self, grace: float) -> None:
        self._sent_term = True
        self._executor.request(self, "TERM")

    def kill_now(self) -> None:
        self._sent_kill = True
        self._executor.request(self, "KILL")

    def end(self) -> End | None:
        return self._end

    async def kill_lost(self) -> None:
        try:
            await commands.cancel(self.external_id)
        except SlurmError as exc:
            log.error("job %s: %s", self.job_id, exc)

    def close(self) -> None:
        self._executor.forget(self)

    def index_growth(self) -> None:
        """Record in the time index that the bytes since the last look were written now."""
        size = _size(self.log_path)
        if size <= self._indexed:
            return
        try:
            append(times_path(self.log_path), self._indexed)
        except OSError as exc:
            log.warning("job %s: cannot write its output's time index: %s", self.job_id, exc)
        self._indexed = size

    def ended(self, final: Final | None) -> None:
        """The watch saw the job end (``final``), or found that Slurm no longer knows it."""
        if self._done.is_set():
            return
        if final is not None:
            self._end = self._take(final)
        self._done.set()

    def _take(self, final: Final) -> End:
        exit_code: int | None = final.exit_code
        sig: int | None = final.signal or None
        if final.state == "OUT_OF_MEMORY":
            exit_code, sig = None, signal.SIGKILL  # Slurm says 0:125
        elif sig is not None:
            exit_code = None
        cause = _CAUSES.get(final.state, "")
        if final.state == "CANCELLED" and not (self._sent_term or self._sent_kill):
            cause = "cancelled"  # by someone else: an admin's scancel
        try:
            size = os.stat(self.log_path).st_size
        except OSError:
            size = 0
        return End(
            exit_code=exit_code,
            signal=sig,
            ended_at=final.ended_at or datetime.now(UTC),
            cpu_seconds=None,
            memory_peak=None,
            output_bytes=size,
            output_truncated=False,
            disk_full=False,
            output_error="",
            sent_term=self._sent_term,
            # A KILL asked for once the stop's grace ran out can reach a job that the TERM
            # had already ended: Slurm's word of an end comes a poll or more after it (once
            # more than 10 s after, in CI). Only a job that SIGKILL ended was killed.
            sent_kill=self._sent_kill and sig == signal.SIGKILL,
            note="",
            cause=cause,
            kill_told=True,
        )


class SlurmExecutor:
    name = "slurm"
    containment = "slurm"

    def __init__(self, options: SlurmOptions, *, run_dir: Path, grew: Callable[[str], None]):
        self._options = options
        self._run_dir = run_dir
        self._grew = grew
        self._live: dict[str, SlurmExecution] = {}
        self._requests: dict[str, tuple[SlurmExecution, str]] = {}
        self._wake = trio.Event()
        self._complained = -math.inf

    def check(self, spec: Spec) -> None:
        if spec.input is not Input.NONE:
            raise InvalidRequest(
                "this server runs jobs under Slurm, which gives them no input: start the job "
                "without (jog run -n, or jog start without -i and -t)"
            )
        if spec.isolation:
            raise InvalidRequest("--isolate is for local servers; under Slurm, ask the cluster")
        if "=" in spec.argv[0]:
            raise InvalidRequest("under Slurm, the command's name must not contain '='")

    def limits(self, requested: JobLimits, defaults: JobLimits) -> JobLimits:
        for name, value in (
            ("pids", requested.pids),
            ("io-weight", requested.io_weight),
            ("cpu-weight", requested.cpu_weight),
        ):
            if value is not None:
                raise InvalidRequest(
                    f"Slurm cannot enforce a {name} limit (it has no such cgroup control); "
                    "ask for cpu and memory only"
                )
        return requested.over(JobLimits(cpu=defaults.cpu, memory=defaults.memory))

    def group(self, spec: Spec) -> JobGroup:
        return SlurmGroup(spec.limits)

    def group_of(self, record: JobStatus) -> JobGroup:
        return SlurmGroup(record.limits)

    async def start(self, spec: Spec, group: JobGroup, log_path: Path, log_fd: int) -> Execution:
        if spec.account is not None and not spec.account.is_current():
            # Slurm opens the log as the job's account (the directory lets it through).
            os.fchown(log_fd, spec.account.uid, spec.account.gid)
        os.close(create(times_path(log_path)))  # (deleted with the log should the start fail)
        script = self._run_dir / f"{spec.job_id}.sbatch"
        fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(_script(spec))
            # Shielded: a submission cut short could leave a Slurm job nobody knows of.
            # Bounded by commands.TIMEOUT.
            with trio.CancelScope(shield=True):
                external_id = await commands.submit(
                    self._options_for(spec, log_path), str(script), spec.argv
                )
        except SlurmError as exc:
            raise InvalidRequest(str(exc)) from None
        finally:
            script.unlink(missing_ok=True)
        execution = SlurmExecution(self, external_id, spec.job_id, log_path)
        # Queued until the watch says otherwise: Slurm starts nothing at submission.
        execution.seen = commands.Seen("PENDING", "")
        self._live[external_id] = execution
        self._wake.set()
        return execution

    def adopt(self, record: JobStatus, log_path: Path) -> SlurmExecution:
        """The Slurm job of ``record``: the watch says what became of it."""
        execution = SlurmExecution(self, record.external_id, record.id, log_path)
        self._live[record.external_id] = execution
        self._wake.set()
        return execution

    def request(self, execution: SlurmExecution, sig: str) -> None:
        """scancel soon (KILL wins over TERM)."""
        _, pending = self._requests.get(execution.external_id, (execution, ""))
        if pending != "KILL":
            self._requests[execution.external_id] = (execution, sig)
        self._wake.set()

    def forget(self, execution: SlurmExecution) -> None:
        self._live.pop(execution.external_id, None)

    async def run(self) -> None:
        """The watch: until cancelled (the manager's end, once every job has ended)."""
        while True:
            await self._cancel_requested()
            live = [e for e in self._live.values() if not e.exited]
            if live:
                try:
                    await self._look(live)
                except SlurmError as exc:
                    self._complain(exc)
            self._wake = trio.Event()
            with trio.move_on_after(self._options.poll_interval if live else math.inf):
                await self._wake.wait()

    async def _cancel_requested(self) -> None:
        requests, self._requests = self._requests, {}
        for external_id, (execution, sig) in requests.items():
            try:
                # A queued job has no process to signal: it leaves the queue.
                await commands.cancel(external_id, None if execution.waiting() else sig)
            except SlurmError as exc:
                log.error("job %s: %s", execution.job_id, exc)

    async def _look(self, live: list[SlurmExecution]) -> None:
        seen = await commands.seen([e.external_id for e in live])
        for execution in live:
            now = seen.get(execution.external_id)
            if now is not None:
                execution.seen = now
                if now.state not in WAITING_STATES:
                    execution.index_growth()
                    self._grew(execution.job_id)
            if now is None or now.state in FINAL_STATES:
                final = await commands.final(execution.external_id)
                execution.index_growth()
                self._grew(execution.job_id)
                if final is None:
                    log.error(
                        "job %s: Slurm no longer knows its job %s; its end is unknown",
                        execution.job_id,
                        execution.external_id,
                    )
                execution.ended(final)

    def _complain(self, exc: SlurmError) -> None:
        """Log Slurm being unreachable once a minute, not at every poll."""
        now = trio.current_time()
        if now - self._complained >= 60:
            self._complained = now
            log.error("cannot ask Slurm about its jobs (trying again): %s", exc)

    def _options_for(self, spec: Spec, log_path: Path) -> list[str]:
        options = [
            f"--job-name=jog-{spec.job_id[:8]}",
            f"--comment=jogger {spec.job_id} owner {spec.owner}",
            f"--output={log_path}",
            "--open-mode=append",
            "--export=NONE",
            "--no-requeue",
            f"--chdir={_workdir(spec)}",
        ]
        if spec.account is not None and not spec.account.is_current():
            options += [f"--uid={spec.account.uid}", f"--gid={spec.account.gid}"]
        if spec.limits.cpu is not None:
            options.append(f"--cpus-per-task={max(1, math.ceil(spec.limits.cpu))}")
        if spec.limits.memory is not None:
            options.append(f"--mem={max(1, math.ceil(spec.limits.memory / (1 << 20)))}M")
        if spec.timeout is not None:
            # Slurm's resolution is the minute; a job never gets less than it asked for.
            options.append(f"--time={max(1, math.ceil(spec.timeout / 60))}")
        if self._options.partition:
            options.append(f"--partition={self._options.partition}")
        if self._options.qos:
            options.append(f"--qos={self._options.qos}")
        return options


def _workdir(spec: Spec) -> str:
    """The cwd, or the account's home if there is one here (as the local executor: else /)."""
    if spec.cwd is not None:
        return spec.cwd
    if spec.account is not None and os.path.isdir(spec.account.home):
        return spec.account.home
    return "/"


def _script(spec: Spec) -> str:
    """The batch script: the job's argv (its arguments), with exactly the job's environment,
    and Slurm's job id."""
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in spec.env.items())
    return (
        "#!/bin/sh\n"
        f"# jogger job {spec.job_id}\n"
        f'exec env -i SLURM_JOB_ID="$SLURM_JOB_ID" {assignments} "$@"\n'
    )


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0

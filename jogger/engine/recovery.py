"""At start-up: adopt the jobs a server before us left running, and resolve the rest.

Each record still marked running (``recover``) is one of:

- **ended while no server ran:** its supervisor wrote ``run/<id>.end``. Recorded from it:
  the real exit code or signal, end time and usage (the cgroup's, read before it is
  removed, where there is one).
- **still running:** its supervisor is alive, the same process (boot id, pid, start time
  and command line, see supervisor.adopt). Handed back to the manager to adopt.
- **lost:** nothing can record its end. Whatever is left of it is killed, and it is
  recorded as killed: ``host-reboot`` if the record is from another boot,
  ``supervisor-lost`` if its supervisor died (an admin's SIGKILL, the OOM killer) while no
  server ran, ``server-crash`` for records of servers before supervisors.

Job cgroups left under our name are killed and removed, but those of adopted jobs (see the
backends' ``cleanup_leftovers``). After a crash, output logs without a record are deleted.

What is left of a lost job without a cgroup is found by its session (sessions.py).
"""

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .cgroups import Backend
from .errors import StoreError
from .executor import Execution
from .observer import NOBODY, EngineObserver
from .procfs import boot_id
from .retention import Retainer
from .sessions import kill_session
from .status import JobState, JobStatus
from .store import JobStore, Unfinished
from .supervisor import End, adopt, forget_end, read_end, reap_ours

log = logging.getLogger("jogger.engine")


@dataclass(frozen=True, slots=True)
class Adoptable:
    """A job that still runs: its record, and its execution (its supervisor, held by a
    pidfd; or its Slurm job)."""

    record: JobStatus
    execution: Execution


async def recover(
    store: JobStore,
    backend: Backend,
    retainer: Retainer,
    logs_dir: Path,
    run_dir: Path,
    *,
    crashed: bool,
    adopt_external: Callable[[JobStatus], Execution | None] = lambda record: None,
    observer: EngineObserver = NOBODY,
) -> list[Adoptable]:
    """Sort out what the manager that used the state dir last left; ``crashed``: whether it
    ended without saying that it ended cleanly. Returns the jobs to adopt. A job an
    executor elsewhere runs (its record has an external id: Slurm's) is
    ``adopt_external``'s: its execution, or None if this manager cannot reach it (lost).
    ``observer`` hears of each end recorded here."""
    adoptable: list[Adoptable] = []
    lost: list[Unfinished] = []
    unfinished = await store.unfinished()
    _forget_unknown_ends(run_dir, {record.job_id for record in unfinished})
    for record in unfinished:
        status = await store.get(record.job_id)
        if status is None:
            lost.append(record)  # unreadable: logged by the store
            continue
        if status.external_id:
            execution = adopt_external(status)
            if execution is not None:
                adoptable.append(Adoptable(status, execution))
            else:
                lost.append(record)
            continue
        end = read_end(run_dir, record.job_id)
        if end is not None:
            await reap_ours(record.supervisor, ended=True)
            await _record_away(store, backend, status, end, run_dir, observer=observer)
            continue
        supervisor = adopt(record.supervisor, record.process, record.job_id, run_dir)
        if supervisor is not None:
            adoptable.append(Adoptable(status, supervisor))
            continue
        # It may have ended since we looked: a supervisor writes the end before it exits.
        end = read_end(run_dir, record.job_id)
        await reap_ours(record.supervisor, ended=end is not None)
        if end is not None:
            await _record_away(store, backend, status, end, run_dir, observer=observer)
        else:
            lost.append(record)
    keep = frozenset(backend.group_name(a.record.owner, a.record.id) for a in adoptable)
    await backend.cleanup_leftovers(keep)
    await _resolve_lost(store, lost, logs_dir, run_dir, observer)
    if crashed:  # orphaned logs come only from a crash
        try:
            await retainer.sweep_orphans()
        except (StoreError, OSError) as exc:
            log.error("looking for output logs without a record failed: %s", exc)
    return adoptable


def _forget_unknown_ends(run_dir: Path, running: set[str]) -> None:
    """Delete the end records, and the files reserved for them, of jobs not on record as
    running: a start that was never recorded (its supervisor killed it when the server
    died, or was killed itself), or an end already recorded (the server died before it
    could delete the file); and the input sockets killed supervisors left."""
    for suffix in (".end", ".end.new", ".input"):
        for end in run_dir.glob(f"*{suffix}"):
            if end.name.removesuffix(suffix) not in running:
                end.unlink(missing_ok=True)


async def _record_away(
    store: JobStore,
    backend: Backend,
    status: JobStatus,
    end: End,
    run_dir: Path,
    *,
    observer: EngineObserver,
) -> None:
    """Record a job that ended while no server ran, from its supervisor's end record."""
    usage = backend.adopt(status.owner, status.id, status.limits).usage()
    reason = end.reason(oom=usage.oom_killed)
    final = dataclasses.replace(
        status,
        state=end.state(),
        exit_code=end.exit_code,
        signal=end.signal,
        reason=reason,
        ended_at=end.ended_at,
        output_bytes=end.output_bytes,
        output_truncated=end.output_truncated,
        output_error=end.output_error,
        cpu_seconds=usage.cpu_seconds if usage.cpu_seconds is not None else end.cpu_seconds,
        memory_peak=usage.memory_peak if usage.memory_peak is not None else end.memory_peak,
    )
    await store.record_end(final)
    observer.job_ended(final.state.value, reason)
    forget_end(run_dir, status.id)
    log.warning(
        "job %s ended while no server ran: recorded as %s (exit_code=%s signal=%s)",
        status.id,
        final.state.value,
        final.exit_code,
        final.signal,
    )


async def _resolve_lost(
    store: JobStore, lost: list[Unfinished], logs_dir: Path, run_dir: Path, observer: EngineObserver
) -> None:
    """Kill what is left of jobs nothing can record, and record them killed."""
    if not lost:
        return
    resolved = []
    for record in lost:
        # Also for jobs that had a cgroup: if this manager uses another backend (or none),
        # its cleanup_leftovers did not see their groups. The checks make it safe either way.
        try:
            killed = await kill_session(record.process)
        except OSError as exc:
            log.error("job %s: cannot look for its leftover processes: %s", record.job_id, exc)
            killed = 0
        try:
            size = (logs_dir / f"{record.job_id}.log").stat().st_size
        except OSError:
            size = 0
        if record.process.boot_id and record.process.boot_id != boot_id():
            reason = "host-reboot"
        elif record.supervisor.pid > 0:
            reason = "supervisor-lost"
        else:
            reason = "server-crash"
        resolved.append((record.seq, size, reason))
        forget_end(run_dir, record.job_id)
        log.warning(
            "job %s could not be adopted: recorded as killed (%s); %d leftover processes killed",
            record.job_id,
            reason,
            killed,
        )
    await store.resolve_unfinished(resolved, datetime.now(UTC))
    for *_, reason in resolved:
        observer.job_ended(JobState.KILLED.value, reason)

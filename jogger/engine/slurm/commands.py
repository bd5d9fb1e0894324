"""Slurm's command-line tools, run as processes: sbatch, scancel, squeue, scontrol.

The CLI rather than slurmrestd: it needs nothing but a working client configuration
(SLURM_CONF, munge) on the server's host, it submits as any user when run as root (`sbatch
--uid`), and slurmrestd without slurmdbd and the JWT plugin serves only the Unix user it
runs as (see docs/rfd-4-slurm.md). Each call is bounded in time; a tool that fails says
why in one line (SlurmError).
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import trio

from ..errors import JobError

TIMEOUT = 30.0
"""Seconds any one call may take; slurmctld answers in milliseconds when it is up."""

FINAL_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
    }
)
"""States after which nothing of the job runs (COMPLETING is not one: processes remain)."""
WAITING_STATES = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "RESV_DEL_HOLD"})


class SlurmError(JobError):
    """A Slurm tool failed: slurmctld unreachable, a submission refused, a tool missing."""


@dataclass(frozen=True, slots=True)
class Seen:
    """A job as squeue shows it."""

    state: str
    reason: str


@dataclass(frozen=True, slots=True)
class Final:
    """A finished job as scontrol shows it."""

    state: str
    reason: str
    exit_code: int
    signal: int
    ended_at: datetime | None


async def _run(argv: Sequence[str]) -> tuple[int, str, str]:
    try:
        with trio.fail_after(TIMEOUT):
            done = await trio.run_process(
                list(argv), capture_stdout=True, capture_stderr=True, check=False
            )
    except trio.TooSlowError:
        raise SlurmError(f"{argv[0]} did not answer within {TIMEOUT:g} s") from None
    except OSError as exc:
        raise SlurmError(f"cannot run {argv[0]}: {exc.strerror}") from None
    out = done.stdout.decode(errors="replace")
    err = done.stderr.decode(errors="replace")
    return done.returncode, out, err


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no message"


async def submit(options: Sequence[str], script: str, argv: Sequence[str]) -> str:
    """``sbatch --parsable OPTIONS SCRIPT ARGV...``: the new job's id."""
    code, out, err = await _run(["sbatch", "--parsable", *options, script, *argv])
    job_id = out.strip().split(";")[0]
    if code != 0 or not job_id.isdigit():
        raise SlurmError(f"sbatch refused the job: {_first_line(err or out)}")
    return job_id


async def cancel(job_id: str, signal: str | None = None) -> None:
    """``scancel``: with ``signal``, that signal to every process of the job (the batch
    script's included); without, Slurm's own cancellation (SIGTERM, then SIGKILL after its
    KillWait; a queued job leaves the queue). A job with no processes to signal (queued, or
    starting) is cancelled instead. A job that has ended already is no error."""
    argv = ["scancel", "--full", f"--signal={signal}", job_id] if signal else ["scancel", job_id]
    code, out, err = await _run(argv)
    said = err + out
    if code == 0 or "already completing or completed" in said or "Invalid job id" in said:
        return
    if signal:
        await cancel(job_id)
        return
    raise SlurmError(f"scancel {job_id}: {_first_line(said)}")


async def seen(job_ids: Sequence[str]) -> dict[str, Seen]:
    """What squeue shows of these jobs, in every state it still knows; a job it does not
    know (never was, or purged since it ended) is left out. SlurmError if squeue fails
    (slurmctld down: nothing can be told, not even that a job is gone)."""
    if not job_ids:
        return {}
    code, out, err = await _run(
        ["squeue", "--noheader", "--states=all", "--format=%i|%T|%r", f"--jobs={','.join(job_ids)}"]
    )
    if code != 0:
        if "Invalid job id" in err:
            return {}  # none of them is known
        raise SlurmError(f"squeue: {_first_line(err or out)}")
    found: dict[str, Seen] = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0] in job_ids:
            found[parts[0]] = Seen(parts[1], "" if parts[2] in ("None", "(null)") else parts[2])
    return found


_FIELD = re.compile(r"(\w+)=(\S*)")


async def final(job_id: str) -> Final | None:
    """How the job ended, from ``scontrol show job``; None if Slurm no longer knows it."""
    code, out, err = await _run(["scontrol", "--oneliner", "show", "job", job_id])
    if code != 0:
        if "Invalid job id" in err + out:
            return None
        raise SlurmError(f"scontrol show job {job_id}: {_first_line(err or out)}")
    fields = dict(_FIELD.findall(out))
    exit_code, _, signal = fields.get("ExitCode", "0:0").partition(":")
    try:
        ended: datetime | None = datetime.fromisoformat(fields.get("EndTime", "")).astimezone(UTC)
    except ValueError:
        ended = None
    try:
        return Final(
            state=fields.get("JobState", "UNKNOWN"),
            reason="" if fields.get("Reason") in (None, "None") else fields["Reason"],
            exit_code=int(exit_code or 0),
            signal=int(signal or 0),
            ended_at=ended,
        )
    except ValueError:
        raise SlurmError(f"scontrol show job {job_id}: cannot read ExitCode") from None

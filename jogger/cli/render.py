"""How jog shows jobs: one line, a block, or JSON."""

import math
from collections.abc import Mapping
from datetime import UTC, datetime

from .._text import escape, shell_join
from .._units import format_duration, format_size
from ..v1 import jobs_pb2
from . import isolate

_STATE_NAMES = {
    jobs_pb2.JOB_STATE_QUEUED: "queued",
    jobs_pb2.JOB_STATE_RUNNING: "running",
    jobs_pb2.JOB_STATE_COMPLETED: "completed",
    jobs_pb2.JOB_STATE_FAILED: "failed",
    jobs_pb2.JOB_STATE_STOPPED: "stopped",
    jobs_pb2.JOB_STATE_KILLED: "killed",
}

NAMESPACE_NAMES = {
    jobs_pb2.NAMESPACE_PID: "pid",
    jobs_pb2.NAMESPACE_MOUNT: "mount",
    jobs_pb2.NAMESPACE_NET: "net",
    jobs_pb2.NAMESPACE_IPC: "ipc",
    jobs_pb2.NAMESPACE_UTS: "uts",
}
"""As --isolate names them."""
NAME_WIDTH = 32
"""The widest a name is shown in a table; longer ones are cut, with "..." (status shows
them whole)."""


STATE_VALUES = {name: value for value, name in _STATE_NAMES.items()}
"""jobs_pb2.JobState by the name jog shows (and --state takes)."""


def state(status: jobs_pb2.JobStatus) -> str:
    return _STATE_NAMES.get(status.state, "unknown")


def ending(status: jobs_pb2.JobStatus) -> str:
    """``exit code 3`` or ``signal SIGKILL``, or empty while running."""
    which = status.WhichOneof("end")
    if which == "exit_code":
        return f"exit code {status.exit_code}"
    if which == "signal":
        try:
            import signal  # noqa: PLC0415 - its names' enum costs every jog start a millisecond

            return f"signal {signal.Signals(status.signal).name}"
        except ValueError:
            return f"signal {status.signal}"
    return ""


def summary(status: jobs_pb2.JobStatus) -> str:
    """``completed (exit code 0)``, ``running``, ``killed (signal SIGKILL, reason: shutdown)``,
    ``queued (position 2, reason: capacity)``."""
    reason = status.reason and f"reason: {escape(status.reason)}"
    position = status.queue_position and f"position {status.queue_position}"
    details = [d for d in (ending(status), position, reason) if d]
    return state(status) + (f" ({', '.join(details)})" if details else "")


def in_queue(status: jobs_pb2.JobStatus) -> bool:
    """Whether the job has yet to leave the server's queue (its position is 0 while it is
    being started); its ``started_at`` is then when it was queued. (A Slurm job waiting
    for the cluster is queued too, for another reason: it has started on our side.)"""
    return status.state == jobs_pb2.JOB_STATE_QUEUED and status.reason == "capacity"


def _time(status: jobs_pb2.JobStatus, field: str) -> str | None:
    if not status.HasField(field):
        return None
    stamp = getattr(status, field).ToDatetime(tzinfo=UTC)
    return str(stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"))


def as_dict(status: jobs_pb2.JobStatus) -> dict[str, object]:
    which = status.WhichOneof("end")
    return {
        "job_id": status.job_id,
        "owner": status.owner,
        "argv": list(status.argv),
        "state": state(status),
        "reason": status.reason,
        "exit_code": status.exit_code if which == "exit_code" else None,
        "signal": status.signal if which == "signal" else None,
        "started_at": _time(status, "started_at"),
        "ended_at": _time(status, "ended_at"),
        "pid": status.pid,
        "output_bytes": status.output_bytes,
        "output_truncated": status.output_truncated,
        "output_error": status.output_error,
        "cgroup": status.cgroup,
        "limits": {
            "cpu": status.limits.cpu or None,
            "cpu_weight": status.limits.cpu_weight or None,
            "memory": status.limits.memory or None,
            "io_weight": status.limits.io_weight or None,
            "pids": status.limits.pids or None,
        },
        "cpu_seconds": status.cpu_time.ToTimedelta().total_seconds()
        if status.HasField("cpu_time")
        else None,
        "memory_peak": status.memory_peak or None,
        "run_as": {"name": status.run_as.name, "uid": status.run_as.uid}
        if status.HasField("run_as")
        else None,
        "isolation": {
            "namespaces": namespaces(status.isolation),
            "read_only_root": status.isolation.read_only_root,
            "hostname": status.isolation.hostname or None,
        },
        "external_id": status.external_id or None,
        "timeout_seconds": status.timeout.ToTimedelta().total_seconds()
        if status.HasField("timeout")
        else None,
        "deadline": _time(status, "deadline"),
        "name": status.name or None,
        "labels": dict(sorted(status.labels.items())),
        "queue_position": status.queue_position or None,
    }


def as_json(value: object) -> str:
    import json  # noqa: PLC0415 - for --json only: not every jog start's

    return json.dumps(value, indent=2)


def block(status: jobs_pb2.JobStatus) -> str:
    lines = [("job", status.job_id)]
    if status.name:
        lines.append(("name", status.name))
    lines.append(("owner", status.owner))
    if status.HasField("run_as"):
        # Only when the server says: without it the job ran as the server's own user, or was
        # recorded before servers kept the account, and jog cannot tell which.
        lines.append(("run as", f"{status.run_as.name} (uid {status.run_as.uid})"))
    lines.append(("command", shell_join(list(status.argv))))
    if status.labels:
        lines.append(("labels", labels_text(status.labels)))
    lines += [
        ("state", summary(status)),
        ("queued" if in_queue(status) else "started", _time(status, "started_at") or "-"),
        ("ended", _time(status, "ended_at") or "-"),
        (
            "output",
            f"{status.output_bytes} bytes"
            + (" (truncated)" if status.output_truncated else "")
            + (f" ({status.output_error})" if status.output_error else ""),
        ),
        ("cgroup", status.cgroup or "none"),
        *([("slurm", f"job {status.external_id}")] if status.external_id else []),
        ("limits", limits_text(status.limits)),
        ("timeout", timeout_text(status)),
        ("isolate", isolation_text(status.isolation)),
        ("usage", usage_text(status)),
    ]
    return "\n".join(f"{name + ':':9}{escape(value)}" for name, value in lines)


def labels_text(labels: Mapping[str, str]) -> str:
    """``env=prod team='data eng'``: in key order, each as a shell reads back a --label
    (non-printable characters as escapes; a label's text cannot forge another)."""
    return shell_join([f"{key}={value}" for key, value in sorted(labels.items())])


def name_cell(name: str) -> str:
    """A name in a table: "-" for none, and cut to NAME_WIDTH characters."""
    if not name:
        return "-"
    return name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 3] + "..."


def limits_text(limits: jobs_pb2.Limits) -> str:
    parts = []
    if limits.cpu:
        parts.append(f"cpu {limits.cpu:g} cores")
    if limits.cpu_weight:
        parts.append(f"cpu weight {limits.cpu_weight}")
    if limits.memory:
        parts.append(f"memory {format_size(limits.memory)}")
    if limits.io_weight:
        parts.append(f"io weight {limits.io_weight}")
    if limits.pids:
        parts.append(f"pids {limits.pids}")
    return ", ".join(parts) or "none"


def timeout_text(status: jobs_pb2.JobStatus, now: datetime | None = None) -> str:
    """``15m, deadline 2026-12-07T03:15:00.000Z (14m59s left)``; ``none``. The time left is
    by our clock, and only while the job has not ended."""
    if not status.HasField("timeout"):
        return "none"
    text = format_duration(status.timeout.ToTimedelta().total_seconds())
    if not status.HasField("deadline"):
        return text
    text += f", deadline {_time(status, 'deadline')}"
    if status.state in (jobs_pb2.JOB_STATE_RUNNING, jobs_pb2.JOB_STATE_QUEUED):
        deadline = status.deadline.ToDatetime(tzinfo=UTC)
        left = (deadline - (now or datetime.now(UTC))).total_seconds()
        text += f" ({format_duration(math.ceil(left))} left)" if left > 0 else " (passed)"
    return text


def namespaces(isolation: jobs_pb2.Isolation) -> list[str]:
    """The names of the namespaces, in the server's order (a newer server's unknown to us
    as ``namespace-N``)."""
    return [NAMESPACE_NAMES.get(kind, f"namespace-{kind}") for kind in isolation.namespaces]


def isolation_text(isolation: jobs_pb2.Isolation) -> str:
    """``pid,mount,net,ipc,uts; hostname jog-1234abcd; read-only root``, or ``none``."""
    if not isolation.namespaces:
        return "none"
    parts = [",".join(namespaces(isolation))]
    if isolation.hostname:
        parts.append(f"hostname {isolation.hostname}")
    if isolation.read_only_root:
        parts.append("read-only root")
    return "; ".join(parts)


def usage_text(status: jobs_pb2.JobStatus) -> str:
    parts = []
    if status.HasField("cpu_time"):
        parts.append(f"cpu {status.cpu_time.ToTimedelta().total_seconds():.2f} s")
    if status.memory_peak:
        parts.append(f"memory peak {format_size(status.memory_peak)}")
    return ", ".join(parts) or "-"


def table(
    statuses: list[jobs_pb2.JobStatus], *, owners: bool, hosts: list[str] | None = None
) -> str:
    """One row per job; ``hosts``: the host of each (``jog list --hosts``), in a first
    column."""
    # A NAME column only when a job has a name: lists without names look as they did.
    names = any(s.name for s in statuses)
    header = ["HOST"] if hosts is not None else []
    header += ["JOB ID"] + (["NAME"] if names else []) + ["STATE", "ENDING", "STARTED"]
    header += (["OWNER"] if owners else []) + ["ISOLATE", "COMMAND"]
    rows = [header]
    for at, s in enumerate(statuses):
        row = [hosts[at]] if hosts is not None else []
        shown = state(s) + (f" #{s.queue_position}" if s.queue_position else "")
        row += [s.job_id] + ([name_cell(s.name)] if names else [])
        row += [shown, ending(s) or "-", _time(s, "started_at") or "-"]
        row += [s.owner] if owners else []
        row += [isolate.text(namespaces(s.isolation), s.isolation.read_only_root) or "-"]
        rows.append([escape(cell) for cell in row] + [shell_join(list(s.argv))])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    )

"""The audit log (``--audit-log FILE``): one JSON object per line per security-relevant event.

Events: ``start``, ``restart`` and ``stop`` (every Start, Restart and Stop call, whatever
its result; a restart's ``restart_of`` names the old job, its ``job_id`` the new one),
``admin-read`` (an administrator reading another user's job: its status, its output, or
every user's list), ``refused`` (any other call refused by policy: PERMISSION_DENIED or
RESOURCE_EXHAUSTED), ``authentication-failure`` (a client certificate refused or missing;
at most LOG_BURST at once and LOG_PER_SECOND after that, the next line saying how many were
left out), ``certificate-reload``, and ``audit-gap`` (lines that could not be written).

Nothing a client sends can forge a line: every line is one ``json.dumps`` of a dict, with
``ensure_ascii`` (no control character, no U+2028, nothing but printable ASCII reaches the
file), and every string a client chose (a job id, an argv, an error message quoting them)
is cut to a bounded length first, with the field named in ``truncated``.

The audit log fails open: a line that cannot be written (disk full) is logged, whole, to
the server's log instead (throttled), the call answers as it would have, and the next line
that can be written is preceded by an ``audit-gap`` line saying how many were lost. A full
disk under /var/log must not stop anyone from stopping a runaway job.
"""

import datetime
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import trio
from google.protobuf.message import Message

from ..rpc.auth import AuthenticationFailure
from ..rpc.errors import RpcError
from ..rpc.method import Call
from ..rpc.throttle import LOG_BURST, LOG_PER_SECOND, Allowance, LogThrottle
from ..v1 import jobs_pb2
from .auditfile import AuditFile
from .hangup import Reload

log = logging.getLogger("jogger.server")
throttled = LogThrottle(log)

MAX_TEXT = 256
"""Characters kept of a name, an address, a job id."""
MAX_REASON = 1024
"""Characters kept of a reason (an error message may quote what the client sent)."""
MAX_ARGV = 4096
"""Characters kept of a Start's argv, all words together: enough to tell what ran, while a
128 KiB argv does not make a 128 KiB line. The job's record has all of it."""

_Request = TypeVar("_Request", bound=Message)
JobCall = Callable[[Call, _Request], Awaitable[jobs_pb2.JobStatus]]


class AuditLog:
    """The audit log at ``path``, or none (every method then does nothing).

    Opened by ``with``, closed when it ends; ``reloads()`` is its SIGHUP action (reopen the
    file at the path, for logrotate). Every method is synchronous and never raises, so that
    it may be called anywhere, cancelled or not.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: AuditFile | None = None
        self._failures = Allowance(LOG_BURST, LOG_PER_SECOND)
        self._suppressed = 0
        self._lost = 0
        self._lost_why = ""

    def __enter__(self) -> Self:
        if self.path is not None:
            self._file = AuditFile(self.path)  # AuditFileError: the server does not start
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._suppressed:
            self.record(
                "authentication-failures-suppressed",
                result="UNAUTHENTICATED",
                reason="authentication failures after the last one written (rate limit)",
                suppressed=self._suppressed,
            )
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def reloads(self) -> list[Reload]:
        return [("audit log", self._reopen)] if self.path is not None else []

    def _reopen(self) -> None:
        if self._file is not None:
            self._file.reopen()

    def recorded(self, event: str, handler: JobCall[_Request]) -> JobCall[_Request]:
        """``handler`` (Start's, Restart's or Stop's), writing an ``event`` line for each
        call when it ends: ``ok`` and the job's id, or the status code and message it ended with."""
        if self.path is None:
            return handler

        async def audited(call: Call, request: _Request) -> jobs_pb2.JobStatus:
            asked = getattr(request, "job_id", None)
            argv = list(request.argv) if isinstance(request, jobs_pb2.StartRequest) else None
            extra: dict[str, Any] = {} if argv is None else {"argv": argv}
            if isinstance(request, jobs_pb2.RestartRequest):
                extra["restart_of"] = request.job_id  # job_id is the new job's once it runs

            def ended(result: str, reason: str | None, job_id: str | None = asked) -> None:
                self.record(event, call=call, job_id=job_id, result=result, reason=reason, **extra)

            try:
                response = await handler(call, request)
            except RpcError as exc:
                ended(exc.code.name, exc.message)
                raise
            except trio.Cancelled:
                ended("CANCELLED", "the client went away, or the deadline passed")
                raise
            except Exception:
                ended("INTERNAL", "internal error")
                raise
            ended("ok", None, response.job_id)
            return response

        return audited

    def admin_read(self, call: Call, job_id: str | None, owner: str | None) -> None:
        """``call``'s caller, an administrator, reads job ``job_id`` of ``owner``, or (both
        None) every user's jobs. Nothing is written for their own job."""
        if owner != call.identity.user:
            self.record("admin-read", call=call, job_id=job_id, owner=owner)

    def refused(self, call: Call, job_id: str | None, error: RpcError) -> RpcError:
        """Write that ``call`` is refused by policy with ``error``; returns ``error``, for
        the caller to raise."""
        self.record(
            "refused", call=call, job_id=job_id, result=error.code.name, reason=error.message
        )
        return error

    def authentication_failure(self, failure: AuthenticationFailure) -> None:
        """A client certificate refused or missing; held to the log throttle's rates."""
        if self._file is None:
            return
        if not self._failures.take():
            self._suppressed += 1
            return
        shown = failure.certificate
        suppressed, self._suppressed = self._suppressed, 0
        extra: dict[str, Any] = {"suppressed": suppressed} if suppressed else {}
        self.record(
            "authentication-failure",
            result="UNAUTHENTICATED",
            reason=failure.reason,
            user=shown.common_name if shown else None,
            serial=shown.serial if shown else None,
            fingerprint=shown.fingerprint if shown else None,
            peer=failure.peer,
            **extra,
        )

    def certificate_reload(self, ok: bool, reason: str) -> None:
        """The server's TLS files (CA bundle, certificate and key, CRL) were reloaded, or not."""
        self.record("certificate-reload", result="ok" if ok else "failed", reason=reason)

    def record(
        self,
        event: str,
        *,
        call: Call | None = None,
        job_id: str | None = None,
        result: str = "ok",
        reason: str | None = None,
        **fields: Any,
    ) -> None:
        """Write one line: ``event``, and who (``call``'s caller and certificate, its peer and
        method), which job, the result (``ok``, a gRPC status code's name, ``failed``) and
        why. ``fields`` add to the line or replace its fields (``user=``, ``peer=``...)."""
        if self._file is not None:
            self._write(_line(event, call, job_id, result, reason, **fields))

    def _write(self, line: dict[str, Any]) -> None:
        assert self._file is not None
        text = _dumps(line)
        if self._lost:
            why = f"lines that could not be written before this one: {self._lost_why}"
            gap = _line("audit-gap", None, None, "failed", why, lost=self._lost)
            text = _dumps(gap) + text
        try:
            self._file.append(text)
        except OSError as exc:
            self._lost += 1
            self._lost_why = exc.strerror or str(exc)
            throttled.log(
                "audit-write",
                logging.WARNING,
                "audit log %s: cannot write (%s); the line: %s",
                self._file.path,
                self._lost_why,
                _dumps(line).rstrip("\n"),
            )
            return
        self._lost = 0


def _line(
    event: str,
    call: Call | None,
    job_id: str | None,
    result: str,
    reason: str | None,
    **fields: Any,
) -> dict[str, Any]:
    """The line of an event: the common fields in a fixed order, then ``fields``, which
    may also replace common ones (an authentication failure's ``user``, ``peer``...)."""
    identity = call.identity if call is not None else None
    line: dict[str, Any] = {
        "time": _now(),
        "event": event,
        "result": result,
        "user": identity.user if identity else None,
        "serial": identity.serial or None if identity else None,
        "fingerprint": identity.fingerprint or None if identity else None,
        "peer": call.peer if call else None,
        "method": call.method if call else None,
        "job_id": job_id or None,
        "reason": reason or None,
        **fields,
    }
    return _bounded(line)


def _now() -> str:
    """RFC 3339, UTC, microseconds: 2026-12-07T01:58:12.123456Z."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _dumps(line: dict[str, Any]) -> str:
    return json.dumps(line, ensure_ascii=True, separators=(",", ":")) + "\n"


def _bounded(line: dict[str, Any]) -> dict[str, Any]:
    """``line`` with every string cut to its bound; ``truncated`` names what was cut."""
    cut = []
    for name, value in line.items():
        if name == "argv" and isinstance(value, list):
            words, whole = _bounded_argv(value)
            line[name] = words
        elif isinstance(value, str):
            limit = MAX_REASON if name == "reason" else MAX_TEXT
            line[name], whole = value[:limit], len(value) <= limit
        else:
            continue
        if not whole:
            cut.append(name)
    if cut:
        line["truncated"] = cut
    return line


def _bounded_argv(argv: list[str]) -> tuple[list[str], bool]:
    """The words of ``argv`` that fit in MAX_ARGV characters (a word costs its length and 3,
    for its quotes and comma, so that many empty words cost too), the last one cut to fit;
    and whether that is all of it."""
    kept: list[str] = []
    room = MAX_ARGV
    for word in argv:
        cost = len(word) + 3
        if cost > room:
            if room > 3:
                kept.append(word[: room - 3])
            return kept, False
        kept.append(word)
        room -= cost
    return kept, True

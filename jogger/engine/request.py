"""A job's start request, as the store keeps it: what a restart repeats, and what a queued
job starts from once there is room.

It holds what the caller asked for and what their policy resolved it to, nothing the
server adds on its own: the environment overrides (never the base environment), the limits
as requested (the defaults in force at the start fill in the rest), the isolation and
timeout in force, and the account the job was to run as. It is kept as one JSON object in
the row's ``request`` column (schema 9), so that fields can be added without a migration:
a reader ignores keys it does not know, and fills in the defaults of keys that are
missing. The environment may hold secrets: the database lives in the state dir, which only
the server's user can enter (statedir.py).
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .account import Account
from .errors import InvalidRequest, NotRestartable
from .isolation import NONE, Isolation
from .limits import JobLimits
from .status import Input, WindowSize

_LIMITS = tuple(f.name for f in fields(JobLimits))


@dataclass(frozen=True, slots=True)
class StartRequest:
    """What a job was started with, argv apart (its own column)."""

    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    """The caller's overrides only (a terminal's TERM included)."""
    limits: JobLimits | None = field(default_factory=JobLimits)
    """As requested: what is not set came from the server's defaults (None: nothing
    asked, only before it is checked)."""
    input: Input = Input.NONE
    window: WindowSize | None = None
    isolation: Isolation = NONE
    """In force: the server's isolation policy applied."""
    timeout: float | None = None
    """In force: the server's timeout policy applied."""
    account: Account | None = None
    """The account the job was to run as (None: the server's own user)."""
    name: str = ""
    """What its owner calls it (labels.py); "" for none."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Its labels (labels.py), in key order."""


def encode(request: StartRequest) -> str:
    """The JSON of ``request``, for the store."""
    record: dict[str, Any] = {
        "cwd": request.cwd,
        "env": dict(request.env),
        "limits": {
            name: getattr(request.limits, name)
            for name in _LIMITS
            if getattr(request.limits, name, None) is not None
        },
        "input": request.input.value,
        "isolation": request.isolation.text(),
        "timeout": request.timeout,
    }
    if request.name:
        record["name"] = request.name
    if request.labels:
        record["labels"] = dict(request.labels)
    if request.window is not None:
        record["window"] = [request.window.rows, request.window.cols]
    if request.account is not None:
        account = request.account
        record["account"] = {
            "name": account.name,
            "uid": account.uid,
            "gid": account.gid,
            "groups": list(account.groups),
            "home": account.home,
        }
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


def decode(text: str) -> StartRequest:
    """The request ``text`` holds; ValueError (or TypeError, KeyError) if it is damaged."""
    record = json.loads(text)
    if not isinstance(record, dict):
        raise ValueError("a start request is not a JSON object")
    env = record.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ValueError("env is not an object of strings")
    limits = record.get("limits") or {}
    if not isinstance(limits, dict) or not all(
        k in _LIMITS and isinstance(v, int | float) and not isinstance(v, bool)
        for k, v in limits.items()
    ):
        raise ValueError("limits is not an object of numbers")
    cwd = record.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise ValueError("cwd is not text")
    timeout = record.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)):
        raise ValueError("timeout is not a number")
    window = record.get("window")
    account = record.get("account")
    name = record.get("name", "")
    if not isinstance(name, str):
        raise ValueError("name is not text")
    labels = record.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ValueError("labels is not an object of strings")
    try:
        return StartRequest(
            cwd=cwd,
            env=env,
            limits=JobLimits(**limits),
            input=Input(record.get("input", "none")),
            window=WindowSize(int(window[0]), int(window[1])) if window is not None else None,
            isolation=Isolation.parse(str(record.get("isolation", ""))),
            timeout=None if timeout is None else float(timeout),
            account=None if account is None else _account(account),
            name=name,
            labels=labels,
        )
    except InvalidRequest as exc:
        raise ValueError(str(exc)) from None


def _account(given: object) -> Account:
    if not isinstance(given, dict):
        raise ValueError("account is not an object")
    return Account(
        name=given["name"],
        uid=given["uid"],
        gid=given["gid"],
        groups=tuple(given["groups"]),
        home=given["home"],
    )


def restartable(job_id: str, text: str | None) -> StartRequest:
    """The request of job ``job_id`` on record, ``text``; NotRestartable if there is none
    (recorded before servers kept them) or it cannot be read."""
    if text is None:
        raise NotRestartable(
            f"job {job_id} was recorded before servers kept start requests: it cannot be restarted"
        )
    try:
        return decode(text)
    except (ValueError, TypeError, KeyError) as exc:
        raise NotRestartable(f"job {job_id}: its start request cannot be read: {exc}") from None

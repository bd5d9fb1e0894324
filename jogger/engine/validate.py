"""What the manager checks of its callers' requests, before it changes anything.

Each check raises InvalidRequest, saying what is wrong (with the caller's value cut short:
messages travel in headers and log lines).
"""

import math
import os
import re
import uuid
from collections.abc import Mapping, Sequence

from .account import Account
from .errors import InvalidRequest, shown
from .limits import JobLimits, ManagerLimits, check_limits
from .output import ChunkSize

MAX_PAGE = 1000
MAX_TIMEOUT = 366 * 86400.0
"""The longest timeout a job may have, a year: longer is as good as none, and its deadline
stays a time every clock and the wire can hold."""
_MAY_BE_0 = ("max_output_bytes", "max_queued", "max_queued_per_owner")
_CGROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_manager_limits(limits: ManagerLimits) -> None:
    for name in (
        "max_jobs",
        "max_jobs_per_owner",
        "max_argv_bytes",
        "max_output_bytes",
        "max_queued",
        "max_queued_per_owner",
    ):
        value = getattr(limits, name)
        if not isinstance(value, int) or value < (0 if name in _MAY_BE_0 else 1):
            kind = "a non-negative" if name in _MAY_BE_0 else "a positive"
            raise InvalidRequest(f"ManagerLimits.{name} must be {kind} integer, not {value!r}")


def check_limit_sets(
    defaults: JobLimits, maxima: JobLimits, user: JobLimits, total: JobLimits
) -> None:
    """A manager's job limits: each sane, the defaults within the maxima."""
    check_limits(maxima, JobLimits(), what="maximum ")
    check_limits(defaults, maxima, what="default ")
    check_limits(user, JobLimits(), what="user ")
    check_limits(total, JobLimits(), what="total ")


def check_cgroup_name(name: str) -> None:
    if not _CGROUP_NAME.fullmatch(name):
        raise InvalidRequest(f"bad cgroup name {name!r}")


def check_grace(seconds: float) -> None:
    if not isinstance(seconds, int | float) or math.isnan(seconds) or seconds < 0:
        raise InvalidRequest("a grace period must be a non-negative number of seconds")


def check_timeout(seconds: float | None) -> None:
    """None (no timeout), or a number of seconds above 0 and at most MAX_TIMEOUT."""
    if seconds is None:
        return
    if not isinstance(seconds, int | float) or not 0 < seconds <= MAX_TIMEOUT:
        raise InvalidRequest(
            f"a timeout must be more than 0 and at most {MAX_TIMEOUT / 86400:g} days, "
            f"not {seconds!r} seconds"
        )


def check_owner(owner: str) -> None:
    if not isinstance(owner, str) or not owner or not owner.isprintable():
        raise InvalidRequest("owner must be a non-empty printable string")


def check_job_id(job_id: str) -> None:
    if not isinstance(job_id, str):
        raise InvalidRequest("job id must be a string")
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise InvalidRequest(f"job id {shown(job_id, 40)} is not a UUID") from None


def check_start(
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    cwd: str | None,
    account: Account | None,
    *,
    max_bytes: int,
) -> tuple[tuple[str, ...], dict[str, str]]:
    """The argv and env overrides of a start, checked; argv, env and cwd take at most
    ``max_bytes`` together."""
    args = check_argv(argv)
    overrides = check_env(env or {})
    if cwd is not None and (not isinstance(cwd, str) or not os.path.isabs(cwd) or "\0" in cwd):
        raise InvalidRequest("cwd must be an absolute path (and contain no NUL)")
    if account is not None and not isinstance(account, Account):
        raise InvalidRequest("account must be an Account")
    # Each string and its NUL, as execve counts them (and each variable's "=").
    size = _encoded_size(args) + _encoded_size([*overrides, *overrides.values()])
    size += len(cwd.encode()) + 1 if cwd is not None else 0
    if size > max_bytes:
        raise InvalidRequest(f"argv, env and cwd take {size} bytes; the limit is {max_bytes}")
    return args, overrides


def check_argv(argv: Sequence[str]) -> tuple[str, ...]:
    if isinstance(argv, str | bytes) or not isinstance(argv, Sequence):
        raise InvalidRequest("argv must be a list of strings")
    args = tuple(argv)
    if not args:
        raise InvalidRequest("argv must not be empty")
    # One pass in C over the whole argv, not a few Python steps per string: a request may
    # carry 100,000 of them, and this runs on the server's event loop.
    joined = _joined(args, "argv must be a list of strings")
    if joined.count("\0") != len(args) - 1:
        raise InvalidRequest("argv strings must not contain NUL")
    _check_encodable(joined, "argv")
    if not args[0]:
        raise InvalidRequest("argv[0] must not be empty")
    return args


def check_env(env: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(env, Mapping):
        raise InvalidRequest("env must be a mapping of strings to strings")
    checked = dict(env)
    # As for argv: whole-request passes in C, and a loop in Python only to name the culprit.
    keys = _joined(list(checked), "env must be a mapping of strings to strings")
    values = _joined(list(checked.values()), "env must be a mapping of strings to strings")
    separators = max(0, len(checked) - 1)
    if "" in checked or "=" in keys or keys.count("\0") + values.count("\0") != 2 * separators:
        culprit = next(k for k, v in checked.items() if not k or "=" in k or "\0" in k or "\0" in v)
        raise InvalidRequest(f"invalid environment variable name or value: {shown(culprit)}")
    _check_encodable(keys, "env")
    _check_encodable(values, "env")
    return checked


def check_read(offset: int, chunk_size: ChunkSize) -> None:
    if not isinstance(offset, int) or offset < 0:
        raise InvalidRequest("offset must be a non-negative integer")
    if not callable(chunk_size) and (not isinstance(chunk_size, int) or chunk_size <= 0):
        raise InvalidRequest("chunk_size must be a positive integer, or a function")


def check_page(page_size: int, page_token: str) -> None:
    if not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE:
        raise InvalidRequest(f"page size must be 1 to {MAX_PAGE}")
    if not isinstance(page_token, str):
        raise InvalidRequest("page token must be a string")


def _joined(strings: Sequence[str], error: str) -> str:
    """The strings joined by NULs, or InvalidRequest(``error``) if one is not a str."""
    try:
        return "\0".join(strings)
    except TypeError:
        raise InvalidRequest(error) from None


def _encoded_size(strings: Sequence[str]) -> int:
    """The UTF-8 bytes of ``strings``, each with its NUL terminator (0 for none)."""
    return len("\0".join(strings).encode()) + 1 if strings else 0


def _check_encodable(text: str, what: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError:
        raise InvalidRequest(f"{what} strings must be valid UTF-8") from None

"""Which local account runs a caller's job: jogger-server's ``--run-as`` policy.

- ``user``: the account named like the certificate's Common Name (a pwd lookup at each
  start), or the job user when there is none;
- ``fixed``: always the job user (``--job-user``, by default nobody);
- ``server``: the server's own user, as the engine does when given no account.

A job that would run as a privileged account under ``user`` or ``fixed`` is for
administrators only: uid 0, or group 0 (root's group, which owns most system files and
whatever root creates) as its group or one of its supplementary groups. ``server`` is the
operator's explicit choice to give every certificate holder the server's own account,
whatever it is. Switching to another account needs root, so a server that is
not root can use ``server`` only, or ``fixed`` with its own account as the job user.
"""

import os
import pwd
from dataclasses import dataclass
from typing import Literal

import trio

from ..engine import Account
from ..rpc.auth import Identity

RunAsMode = Literal["user", "fixed", "server"]
"""A --run-as mode: which account runs a caller's jobs (see above)."""
MODES: tuple[RunAsMode, ...] = ("user", "fixed", "server")
DEFAULT_JOB_USER = "nobody"


class AccountRefused(Exception):
    """The caller may not run jobs as the account their identity maps to."""


class BadPolicy(ValueError):
    """The policy cannot work on this host (unknown job user, or a switch without root)."""


def default_mode() -> RunAsMode:
    """``fixed`` as root: nobody's account is given to anyone unless the operator says so
    (``user`` makes the CA an authority over every local account, service accounts
    included). ``server`` otherwise, the only mode that needs no privileges."""
    return "fixed" if os.geteuid() == 0 else "server"


def lookup(name: str) -> Account | None:
    """The local account called ``name`` (passwd and groups from NSS), or None. Blocking."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    return Account(
        name=entry.pw_name,
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        groups=tuple(dict.fromkeys(groups)),
        home=entry.pw_dir if os.path.isabs(entry.pw_dir) else "/",
    )


@dataclass(frozen=True)
class RunAs:
    """A checked policy: make one with ``RunAs.create``."""

    mode: RunAsMode = "server"
    job_account: Account | None = None
    """The job user's account, looked up once at start-up (None in ``server`` mode)."""

    @classmethod
    def create(cls, mode: RunAsMode, job_user: str = DEFAULT_JOB_USER) -> "RunAs":
        """Check the policy against this host; raise BadPolicy saying what to change."""
        if mode not in MODES:
            raise BadPolicy(f"--run-as must be one of {', '.join(MODES)}, not {mode!r}")
        if mode == "server":
            return cls("server", None)
        account = lookup(job_user)
        if account is None:
            raise BadPolicy(f"--job-user {job_user}: no such local account")
        if os.geteuid() != 0:
            me = os.geteuid()
            if mode == "user":
                raise BadPolicy(
                    f"--run-as user needs root to switch users (this server runs as uid {me}); "
                    "run it as root, or pass --run-as server"
                )
            if account.uid != me:
                raise BadPolicy(
                    f"--run-as fixed --job-user {job_user} needs root to switch to uid "
                    f"{account.uid} (this server runs as uid {me}); run it as root, or pass "
                    "--run-as server"
                )
        return cls(mode, account)

    def describe(self) -> str:
        if self.job_account is None:
            return f"server (as uid {os.geteuid()})"
        who = f"{self.job_account.name} (uid {self.job_account.uid})"
        if self.mode == "user":
            return f"user (the account named by the certificate, else {who})"
        return f"fixed ({who})"

    async def account_for(self, identity: Identity) -> Account | None:
        """The account the caller's jobs run as; None for the server's own.

        Raises AccountRefused for a non-admin whose jobs would run as a privileged account
        (uid 0, or group 0).
        """
        if self.job_account is None:
            await trio.lowlevel.checkpoint()
            return None
        account = self.job_account
        if self.mode == "user":
            # NSS may ask a directory service: not on the event loop.
            named: Account | None = await trio.to_thread.run_sync(lookup, identity.user)
            account = named or account
        else:
            await trio.lowlevel.checkpoint()
        privilege = _privilege(account)
        if privilege is not None and not identity.admin:
            raise AccountRefused(
                f"your jobs would run as {account.name} ({privilege}) on this server, "
                "which only admins may do"
            )
        return account


def _privilege(account: Account) -> str | None:
    """What makes ``account`` an administrator's, in words; None for an ordinary one."""
    if account.is_root:
        return "uid 0"
    if account.gid == 0 or 0 in account.groups:
        return f"uid {account.uid} in group 0, root's group"
    return None

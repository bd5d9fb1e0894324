"""The local account a job runs as: plain data, given by whoever starts the job.

The engine knows nothing of certificates or of who may use which account; the caller
decides that (jogger-server: ``--run-as``, see jogger/server/accounts.py) and hands over the
result. The engine switches to it in the job's process just before exec (see spawn_child.h).
"""

import os
from dataclasses import dataclass

from .errors import InvalidRequest

_ID_LIMIT = (1 << 32) - 1
"""uid_t and gid_t are 32 bits, and -1 (all ones) means "unchanged" to the kernel."""


@dataclass(frozen=True, slots=True)
class Account:
    """Who a job runs as: its user and group ids, supplementary groups, name and home.

    ``name`` and ``home`` become the job's USER, LOGNAME and HOME (unless its request sets
    them); a job with no cwd of its own starts in ``home``, or in / if it cannot enter it.
    """

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or not self.name.isprintable():
            raise InvalidRequest("an account name must be a non-empty printable string")
        for what, value in (
            ("uid", self.uid),
            ("gid", self.gid),
            *(("group", g) for g in self.groups),
        ):
            if not isinstance(value, int) or not 0 <= value < _ID_LIMIT:
                raise InvalidRequest(f"account {self.name}: bad {what} {value!r}")
        if not isinstance(self.home, str) or "\0" in self.home or not os.path.isabs(self.home):
            raise InvalidRequest(f"account {self.name}: home must be an absolute path")

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def environment(self) -> dict[str, str]:
        """What a login of this account would set, and the job gets unless it says otherwise."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}

    def is_current(self) -> bool:
        """Whether this process already runs with exactly these ids and groups."""
        return (
            os.geteuid() == os.getuid() == self.uid
            and os.getegid() == os.getgid() == self.gid
            and set(os.getgroups()) == set(self.groups)
        )

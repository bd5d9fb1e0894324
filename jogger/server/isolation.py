"""Which isolation a caller's job runs with: jogger-server's ``--isolate-default`` and
``--require-isolation`` policy.

- A request that asks for an isolation (even none) gets that; one that does not, the
  server's default. Its read-only root comes along with it.
- Its network then applies: ``none`` adds the network namespace, ``host`` takes it away;
  and its read-only root (``--read-only-root`` alone keeps the default's namespaces).
- What the server requires is added last, whatever was asked: asking for less is not an
  error, and the status says what is in force. The one request that cannot be met that
  way, the host's network on a server that requires a network namespace, is refused.

Whether this host can make the namespaces is the engine's to say (check_available); the
server checks the policy's own at start-up, and the engine each job's at its start.
"""

import enum
from dataclasses import dataclass

from ..engine import Isolation, Namespace
from ..engine.isolation import NONE


class Network(enum.Enum):
    """The network a job asks for, over its isolation; named as ``--network`` spells it."""

    NONE = "none"
    """No network: the job gets a network namespace of its own."""
    HOST = "host"
    """The host's network: no network namespace."""


class IsolationRefused(Exception):
    """The caller asked for isolation that the server's policy forbids."""


@dataclass(frozen=True)
class IsolationPolicy:
    default: Isolation = NONE
    """For requests that do not say."""
    required: Isolation = NONE
    """Added to every job's."""

    def resolve(
        self,
        asked: Isolation | None,
        network: Network | None = None,
        read_only_root: bool = False,
    ) -> Isolation:
        """The isolation in force for a request that asks for ``asked`` (None: it did not
        say), ``network`` (None: as the isolation says) and a ``read_only_root`` over either.
        Raises IsolationRefused for the host's network on a server that requires a network
        namespace."""
        base = self.default if asked is None else asked
        namespaces = base.namespaces
        if network is Network.NONE:
            namespaces |= {Namespace.NET}
        elif network is Network.HOST:
            if Namespace.NET in self.required.namespaces:
                raise IsolationRefused(
                    "this server gives every job a network namespace of its own "
                    "(--require-isolation net): the host's network is not to be had"
                )
            namespaces -= {Namespace.NET}
        return Isolation(
            namespaces | self.required.namespaces,
            base.read_only_root or read_only_root or self.required.read_only_root,
        )

    def describe(self) -> str:
        """The policy, for the server's first log line."""
        return (
            f"isolate_default={self.default.text() or 'none'} "
            f"require_isolation={self.required.text() or 'none'}"
        )

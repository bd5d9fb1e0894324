"""What the server grants a peer, and takes back: connections, TLS handshakes, calls.

``Admission`` counts what is held against ``TransportLimits``. Each grant is a context
manager: granted (and counted) at once, so that the next request already sees it, and given
back when the ``with`` block around its use ends, however it ends. A peer over a per-user
limit is told which by the status of its calls; one refused at accept is closed, and the
server logs why.

Handshakes are the one grant a stranger can take: a connection in its handshake has not
shown a certificate yet, anyone can open one, and a silent one costs its sender nothing.
The table of pending handshakes is bounded, and a stranger must not be able to fill it and
so lock out the users who have certificates (as HAProxy, nginx and Envoy's overload manager
defend against the same flood):

- **Per address and per network.** One IP address holds at most ``per_host`` slots, one
  network (/24 for IPv4, /64 for IPv6) at most ``per_network``; past either, a new
  connection is closed at once. An attacker needs many networks, not one host.
- **The oldest are evicted.** When the table is full, a new connection is not refused:
  it takes the slot of the oldest pending handshake of the network that holds the most
  slots. A real handshake takes milliseconds, so an attacker would have to replace the
  whole table faster than that to keep a newcomer out.
- **The deadline adapts.** Past half full, a new handshake gets less time, down to a tenth
  of the usual timeout when the table is full, so that silent connections turn over
  faster. (A real client on a slow link still has ``timeout / 10``: 1 s by default.)
"""

import ipaddress
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import trio
from purerpc.grpclib.status import Status, StatusCode

from .auth import Identity
from .observer import NOBODY, RpcObserver
from .throttle import LogThrottle

log = logging.getLogger("jogger.rpc")
throttled = LogThrottle(log)


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """What the server grants one peer, and all peers together."""

    handshake_timeout: float = 10.0
    """Seconds a new connection gets to complete TLS and send its HTTP/2 preface. A
    connection whose certificate was refused, or whose user is over a limit, lives this long
    too: long enough to be told why."""
    request_timeout: float = 10.0
    """Seconds a call gets to deliver its request message once its stream is open."""
    max_connections: int = 4096
    """Connections open at once; more are closed on accept."""
    max_handshakes: int = 1024
    """Connections still in their TLS handshake. When they are all taken, a new connection
    takes the slot of the oldest handshake of the network with the most (see above): a
    flood of silent connections cannot keep authenticated users out."""
    max_handshakes_per_host: int = 256
    """Handshakes from one IP address; more are closed on accept."""
    max_handshakes_per_network: int = 512
    """Handshakes from one /24 (IPv4) or /64 (IPv6); more are closed on accept."""
    max_refused_per_host: int = 8
    """Connections from one IP address kept open only to be told why their calls are
    refused (a rejected certificate, a user over the connection limit); more are closed at
    once."""
    refused_life: float = 2.0
    """Seconds such a connection is kept (at most the handshake timeout)."""
    max_connections_per_user: int = 256
    max_calls_per_user: int = 1024
    """Calls in flight for one user (an Output stream is one call), over all connections."""

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if not value > 0 or value == float("inf"):
                raise ValueError(
                    f"--{name.replace('_', '-')} must be a positive number, not {value!r}"
                )


@dataclass(eq=False)
class Pending:
    """One connection in its handshake. Run the handshake inside ``scope``: eviction and
    the deadline both cancel it (``evicted`` tells them apart)."""

    host: str
    network: str
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    evicted: bool = False


def network_of(host: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) an address belongs to."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    bits = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


class HandshakeTable:
    def __init__(
        self,
        limit: int,
        *,
        per_host: int,
        per_network: int,
        timeout: float,
        observer: RpcObserver = NOBODY,
    ) -> None:
        self.limit = limit
        self.per_host = per_host
        self.per_network = per_network
        self.timeout = timeout
        self._by_network: dict[str, dict[Pending, None]] = {}
        """Pending handshakes per network, oldest first (dicts keep insertion order)."""
        self._by_host: Counter[str] = Counter()
        self._count = 0
        self.evictions = 0
        self._observer = observer

    def __len__(self) -> int:
        return self._count

    def admit(self, host: str) -> Pending | str:
        """A slot for a new connection from ``host``, or why it is closed at once."""
        if self._by_host[host] >= self.per_host:
            self._observer.admission_refused("max_handshakes_per_host")
            return f"{self._by_host[host]} TLS handshakes in progress from {host}, the limit"
        network = network_of(host)
        mine = self._by_network.setdefault(network, {})
        if len(mine) >= self.per_network:
            self._observer.admission_refused("max_handshakes_per_network")
            return f"{len(mine)} TLS handshakes in progress from {network}, the limit"
        if self._count >= self.limit:
            self._evict_one()
        pending = Pending(host, network)
        pending.scope.deadline = trio.current_time() + self._deadline()
        mine[pending] = None
        self._by_host[host] += 1
        self._count += 1
        return pending

    def done(self, pending: Pending) -> None:
        """The handshake is over (done, failed, timed out or evicted): free its slot."""
        mine = self._by_network.get(pending.network, {})
        if pending not in mine:
            return
        del mine[pending]
        if not mine:
            del self._by_network[pending.network]
        self._by_host[pending.host] -= 1
        if self._by_host[pending.host] <= 0:
            del self._by_host[pending.host]
        self._count -= 1

    def _evict_one(self) -> None:
        # The network holding the most slots gives up its oldest handshake.
        network = max(self._by_network, key=lambda n: len(self._by_network[n]))
        oldest = next(iter(self._by_network[network]))
        oldest.evicted = True
        # Cancelling its handshake is the eviction: the connection is closed by its task.
        oldest.scope.cancel()
        self.done(oldest)
        self.evictions += 1
        self._observer.admission_refused("max_handshakes")

    def _deadline(self) -> float:
        fill = self._count / self.limit
        if fill <= 0.5:
            return self.timeout
        return self.timeout * max(0.1, 2 * (1 - fill))


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is at the other end of a connection, as its TLS handshake established."""

    address: str
    identity: Identity | None
    refusal: Status | None = None
    """Every call on this connection ends with this: a refused certificate, or a user over
    their connection limit."""


class Grant:
    """Something admitted and counted. Leaving the ``with`` block gives it back, once;
    the task that uses it holds the block."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


class ConnectionGrant(Grant):
    """An accepted connection, and its slot in the handshake table until ``handshake()``
    ends."""

    def __init__(
        self, pending: Pending, table: HandshakeTable, release: Callable[[], None]
    ) -> None:
        def release_all() -> None:
            table.done(pending)  # if the handshake never began
            release()

        super().__init__(release_all)
        self._pending = pending
        self._table = table
        self.deadline = pending.scope.deadline
        """When the TLS handshake and the HTTP/2 preface must both have been done (the
        table's deadline, shorter when it is filling up)."""

    @property
    def evicted(self) -> bool:
        """The handshake was cancelled to make room for a newer one."""
        return self._pending.evicted

    @contextmanager
    def handshake(self) -> Iterator[trio.CancelScope]:
        """Run the TLS handshake in this block. The deadline, or an eviction, cancels it
        (``cancelled_caught`` on the scope; ``evicted`` tells the two apart); its slot in
        the table is free once the block is left."""
        try:
            with self._pending.scope as scope:
                yield scope
        finally:
            self._table.done(self._pending)


class Admission:
    """What every peer holds, against ``limits``; see the module's docstring."""

    def __init__(self, limits: TransportLimits, observer: RpcObserver = NOBODY) -> None:
        self.limits = limits
        self._observer = observer
        self.handshakes = HandshakeTable(
            limits.max_handshakes,
            per_host=limits.max_handshakes_per_host,
            per_network=limits.max_handshakes_per_network,
            timeout=limits.handshake_timeout,
            observer=observer,
        )
        self.connections = 0
        self.calls = 0
        self._host_refused: dict[str, int] = {}
        self._user_connections: dict[str, int] = {}
        self._user_calls: dict[str, int] = {}
        self._idle = trio.Event()
        self._idle.set()
        self._draining = False

    def connection(self, host: str) -> ConnectionGrant | str:
        """A new connection from ``host`` and a handshake slot for it, or why it is closed
        at once."""
        if self.connections >= self.limits.max_connections:
            self._observer.admission_refused("max_connections")
            return f"{self.connections} connections open, the limit"
        pending = self.handshakes.admit(host)
        if not isinstance(pending, Pending):
            return pending
        self.connections += 1
        return ConnectionGrant(pending, self.handshakes, self._connection_closed)

    def _connection_closed(self) -> None:
        self.connections -= 1

    @contextmanager
    def peer(self, host: str, address: str, verified: Identity | Status) -> Iterator[Peer | None]:
        """The peer at ``address`` (from ``host``) for as long as the block.

        ``verified`` is who its certificate names, or the status its calls get when the
        certificate was rejected. A user is counted against their connection limit; past it,
        and with a rejected certificate, every call gets a status saying why, and the
        connection is counted against its host's refused ones. None when that host has been
        told often enough already: close the connection at once.
        """
        identity = verified if isinstance(verified, Identity) else None
        refusal = (
            verified
            if isinstance(verified, Status)
            else self._over_user_connections(address, verified)
        )
        if refusal is None and identity is not None:
            counts, key = self._user_connections, identity.user
        elif self._host_refused.get(host, 0) >= self.limits.max_refused_per_host:
            self._observer.admission_refused("max_refused_per_host")
            yield None
            return
        else:
            counts, key = self._host_refused, host
        counts[key] = counts.get(key, 0) + 1
        try:
            yield Peer(address, identity, refusal)
        finally:
            _decrement(counts, key)

    def _over_user_connections(self, address: str, identity: Identity) -> Status | None:
        open_now = self._user_connections.get(identity.user, 0)
        limit = self.limits.max_connections_per_user
        if open_now < limit:
            return None
        self._observer.admission_refused("max_connections_per_user")
        throttled.log(
            "user-connections",
            logging.WARNING,
            "connection peer=%s user=%s refused: %d connections open, the limit",
            address,
            identity.user,
            open_now,
        )
        message = f"user {identity.user} has {open_now} connections open; the limit is {limit}"
        return Status(StatusCode.RESOURCE_EXHAUSTED, message)

    def call(self, peer: Peer) -> Grant | Status:
        """A new call on ``peer``'s connection, or the status it is refused with: the
        server is draining, or the user has too many calls in flight."""
        if self._draining:
            self._observer.admission_refused("draining")
            return Status(StatusCode.UNAVAILABLE, "the server is shutting down")
        user = peer.identity.user if peer.identity is not None else None
        if user is not None and peer.refusal is None:
            in_flight = self._user_calls.get(user, 0)
            if in_flight >= self.limits.max_calls_per_user:
                self._observer.admission_refused("max_calls_per_user")
                throttled.log(
                    "user-calls",
                    logging.WARNING,
                    "call refused: user=%s has %d calls in flight, the limit",
                    user,
                    in_flight,
                )
                return Status(
                    StatusCode.RESOURCE_EXHAUSTED,
                    f"user {user} has {in_flight} calls in flight; "
                    f"the limit is {self.limits.max_calls_per_user}",
                )
        self.calls += 1
        if self.calls == 1:
            self._idle = trio.Event()
        if user is not None:
            self._user_calls[user] = self._user_calls.get(user, 0) + 1

        def ended() -> None:
            self.calls -= 1
            if self.calls == 0:
                self._idle.set()
            if user is not None:
                _decrement(self._user_calls, user)

        return Grant(ended)

    async def drain(self) -> None:
        """Refuse new calls (UNAVAILABLE) from now on; return once no call is in flight."""
        self._draining = True
        await self._idle.wait()


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)  # the dict holds only keys with something open

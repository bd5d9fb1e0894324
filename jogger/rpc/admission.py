"""Who may hold a slot for a TLS handshake, and who gives theirs up under pressure.

A connection in its handshake has not shown a certificate yet: anyone can open one, and a
silent one costs its sender nothing. The table of pending handshakes is bounded, and a
stranger must not be able to fill it and so lock out the users who have certificates (as
HAProxy, nginx and Envoy's overload manager defend against the same flood):

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
from collections import Counter
from dataclasses import dataclass, field

import trio


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
    def __init__(self, limit: int, *, per_host: int, per_network: int, timeout: float) -> None:
        self.limit = limit
        self.per_host = per_host
        self.per_network = per_network
        self.timeout = timeout
        self._by_network: dict[str, dict[Pending, None]] = {}
        """Pending handshakes per network, oldest first (dicts keep insertion order)."""
        self._by_host: Counter[str] = Counter()
        self._count = 0
        self.evictions = 0

    def __len__(self) -> int:
        return self._count

    def admit(self, host: str) -> Pending | str:
        """A slot for a new connection from ``host``, or why it is closed at once."""
        if self._by_host[host] >= self.per_host:
            return f"{self._by_host[host]} TLS handshakes in progress from {host}, the limit"
        network = network_of(host)
        mine = self._by_network.setdefault(network, {})
        if len(mine) >= self.per_network:
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

    def _deadline(self) -> float:
        fill = self._count / self.limit
        if fill <= 0.5:
            return self.timeout
        return self.timeout * max(0.1, 2 * (1 - fill))

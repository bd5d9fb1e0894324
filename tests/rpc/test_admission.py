"""The handshake table on its own: caps, eviction, deadlines (no sockets needed)."""

import trio

from jogger.rpc.admission import HandshakeTable, Pending, network_of


def admitted(table: HandshakeTable, host: str) -> Pending:
    pending = table.admit(host)
    assert isinstance(pending, Pending), pending
    return pending


async def test_networks_are_slash_24_and_slash_64() -> None:
    assert network_of("10.1.2.3") == "10.1.2.0/24"
    assert network_of("::ffff:10.1.2.3") == "10.1.2.0/24"
    assert network_of("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"


async def test_one_address_and_one_network_are_capped() -> None:
    table = HandshakeTable(100, per_host=2, per_network=3, timeout=10)
    admitted(table, "10.0.0.1")
    admitted(table, "10.0.0.1")
    assert table.admit("10.0.0.1") == "2 TLS handshakes in progress from 10.0.0.1, the limit"
    admitted(table, "10.0.0.2")
    assert table.admit("10.0.0.3") == ("3 TLS handshakes in progress from 10.0.0.0/24, the limit")
    admitted(table, "10.0.1.1")  # another network
    assert len(table) == 4


async def test_a_full_table_evicts_the_oldest_of_the_biggest_network() -> None:
    table = HandshakeTable(4, per_host=4, per_network=4, timeout=10)
    big = [admitted(table, "10.0.0.1") for _ in range(3)]
    small = admitted(table, "10.0.1.1")
    newcomer = admitted(table, "10.0.2.1")
    assert big[0].evicted
    assert big[0].scope.cancel_called
    assert not any(p.evicted for p in [*big[1:], small, newcomer])
    assert len(table) == 4
    assert table.evictions == 1
    table.done(big[0])  # its task frees the slot again: nothing happens twice
    assert len(table) == 4


async def test_the_deadline_shrinks_as_the_table_fills() -> None:
    table = HandshakeTable(10, per_host=10, per_network=10, timeout=10)
    now = trio.current_time()
    deadlines = [admitted(table, "10.0.0.1").scope.deadline - now for _ in range(10)]
    assert all(abs(d - 10) < 0.01 for d in deadlines[:6])
    assert deadlines[-1] < deadlines[6] < 10
    assert deadlines[-1] >= 1.0 - 0.01

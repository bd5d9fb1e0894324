"""Admission on its own, no sockets needed: the handshake table's caps, eviction and
deadlines; what each grant counts, and when it gives it back; draining."""

from dataclasses import replace
from typing import Any

import pytest
import trio
from purerpc.grpclib.status import Status, StatusCode
from trio.testing import wait_all_tasks_blocked

from jogger.rpc.admission import (
    Admission,
    ConnectionGrant,
    Grant,
    HandshakeTable,
    Peer,
    Pending,
    TransportLimits,
    network_of,
)
from jogger.rpc.auth import Identity


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


async def test_the_deadline_shrinks_as_the_table_fills(mock_clock: trio.abc.Clock) -> None:
    # A clock that stands still: on a loaded machine, real time passes between admissions.
    table = HandshakeTable(10, per_host=10, per_network=10, timeout=10)
    now = trio.current_time()
    deadlines = [admitted(table, "10.0.0.1").scope.deadline - now for _ in range(10)]
    assert all(abs(d - 10) < 0.01 for d in deadlines[:6])
    assert deadlines[-1] < deadlines[6] < 10
    assert deadlines[-1] >= 1.0 - 0.01


ALICE = Identity("alice", admin=False)


def limits(**overrides: Any) -> TransportLimits:
    return replace(TransportLimits(), **overrides)


def granted(admission: Admission, host: str = "10.0.0.1") -> ConnectionGrant:
    grant = admission.connection(host)
    assert isinstance(grant, ConnectionGrant), grant
    return grant


async def test_a_connection_is_counted_from_its_grant_until_its_block_ends() -> None:
    admission = Admission(limits(max_connections=2))
    first, second = granted(admission), granted(admission, "10.0.1.1")
    assert admission.connections == 2
    assert admission.connection("10.0.2.1") == "2 connections open, the limit"
    with first:
        pass
    assert admission.connections == 1
    first.__exit__(None, None, None)  # given back once, however often it is left
    assert admission.connections == 1
    with second:
        pass
    assert admission.connections == 0
    assert len(admission.handshakes) == 0


async def test_a_handshake_holds_its_slot_only_inside_its_block(
    autojump_clock: trio.abc.Clock,
) -> None:
    admission = Admission(limits(handshake_timeout=5))
    grant = granted(admission)
    assert grant.deadline == trio.current_time() + 5
    assert len(admission.handshakes) == 1
    with grant, grant.handshake() as scope:
        assert not scope.cancel_called
    assert len(admission.handshakes) == 0
    assert not grant.evicted


async def test_a_handshake_past_its_deadline_is_cancelled(autojump_clock: trio.abc.Clock) -> None:
    admission = Admission(limits(handshake_timeout=5))
    grant = granted(admission)
    with grant, grant.handshake() as scope:
        await trio.sleep(60)
    assert scope.cancelled_caught
    assert trio.current_time() == grant.deadline
    assert not grant.evicted


async def test_an_evicted_handshake_says_so() -> None:
    admission = Admission(
        limits(max_handshakes=1, max_handshakes_per_host=2, max_handshakes_per_network=2)
    )
    old, new = granted(admission), granted(admission, "10.0.1.1")
    with old, old.handshake() as scope:
        await trio.sleep(60)
    assert scope.cancelled_caught
    assert old.evicted
    assert not new.evicted


async def test_a_user_is_counted_against_their_connection_limit() -> None:
    admission = Admission(limits(max_connections_per_user=1, max_refused_per_host=1))
    with admission.peer("10.0.0.1", "10.0.0.1:5000", ALICE) as first:
        assert first == Peer("10.0.0.1:5000", ALICE)
        with admission.peer("10.0.0.2", "10.0.0.2:5000", ALICE) as second:
            assert second is not None
            assert second.identity == ALICE
            assert second.refusal is not None
            assert second.refusal.int_value == StatusCode.RESOURCE_EXHAUSTED.value
            assert second.refusal.status_message == (
                "user alice has 1 connections open; the limit is 1"
            )
            # Its host has been told once: the next refused peer from there is closed at once.
            with admission.peer("10.0.0.2", "10.0.0.2:5001", ALICE) as third:
                assert third is None
    with admission.peer("10.0.0.2", "10.0.0.2:5002", ALICE) as again:
        assert again == Peer("10.0.0.2:5002", ALICE)


async def test_a_rejected_certificate_is_counted_against_its_host() -> None:
    admission = Admission(limits(max_refused_per_host=2))
    rejected = Status(StatusCode.UNAUTHENTICATED, "client certificate rejected: no")
    with (
        admission.peer("10.0.0.1", "10.0.0.1:1", rejected) as first,
        admission.peer("10.0.0.1", "10.0.0.1:2", rejected) as second,
        admission.peer("10.0.0.1", "10.0.0.1:3", rejected) as third,
    ):
        assert first == Peer("10.0.0.1:1", None, rejected)
        assert second is not None
        assert third is None
        with admission.peer("10.0.0.2", "10.0.0.2:1", rejected) as elsewhere:
            assert elsewhere is not None


async def test_a_user_is_counted_against_their_call_limit() -> None:
    admission = Admission(limits(max_calls_per_user=2))
    peer = Peer("10.0.0.1:1", ALICE)
    first, second = admission.call(peer), admission.call(peer)
    assert isinstance(first, Grant)
    assert isinstance(second, Grant)
    refused = admission.call(peer)
    assert isinstance(refused, Status)
    assert refused.int_value == StatusCode.RESOURCE_EXHAUSTED.value
    assert refused.status_message == "user alice has 2 calls in flight; the limit is 2"
    assert admission.calls == 2
    with first:
        pass
    assert isinstance(admission.call(peer), Grant)


async def test_a_refused_peer_gets_its_calls_to_refuse_them() -> None:
    # Its calls end with the peer's refusal (see the server's _serve): they are not refused
    # again for the user's call limit, and they are counted until they end.
    admission = Admission(limits(max_calls_per_user=1))
    status = Status(StatusCode.RESOURCE_EXHAUSTED, "too many connections")
    refused = Peer("10.0.0.1:1", ALICE, status)
    grants = [admission.call(refused) for _ in range(3)]
    assert all(isinstance(grant, Grant) for grant in grants)
    assert admission.calls == 3


async def test_drain_refuses_new_calls_and_waits_for_those_in_flight() -> None:
    admission = Admission(limits())
    call = admission.call(Peer("10.0.0.1:1", ALICE))
    assert isinstance(call, Grant)
    drained = trio.Event()

    async def drain() -> None:
        await admission.drain()
        drained.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        await wait_all_tasks_blocked()
        late = admission.call(Peer("10.0.0.1:1", ALICE))
        assert isinstance(late, Status)
        assert late.int_value == StatusCode.UNAVAILABLE.value
        assert late.status_message == "the server is shutting down"
        assert not drained.is_set()
        with call:
            pass
    assert drained.is_set()


async def test_drain_with_no_call_in_flight_returns_at_once() -> None:
    with trio.fail_after(1):
        await Admission(limits()).drain()


def test_transport_limits_must_be_positive_and_finite() -> None:
    with pytest.raises(ValueError, match="--max-calls-per-user must be a positive number"):
        limits(max_calls_per_user=0)
    with pytest.raises(ValueError, match="--refused-life must be a positive number"):
        limits(refused_life=float("inf"))

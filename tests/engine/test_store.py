"""The job store's worker: calls run one at a time, in order; those that queue up while one
runs share one pass of the worker thread; cancellation withdraws only what has not begun."""

import threading
from collections.abc import Callable

import pytest
import trio
import trio.testing

from jogger.engine import lane as lane_module
from jogger.engine.store import JobStore


def recorder(ran: list[int], index: int, gate: threading.Event | None = None) -> Callable[[], int]:
    def fn() -> int:
        if gate is not None:
            assert gate.wait(10)  # in the worker thread: hold the queue until the test lets go
        ran.append(index)
        return index

    return fn


async def test_calls_queued_behind_a_running_one_share_one_worker_pass(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes: list[int] = []
    real = lane_module.Lane._run_batch

    def counted(lane: lane_module.Lane, batch: list[lane_module.Call[object]]) -> None:
        passes.append(len(batch))
        real(lane, batch)

    monkeypatch.setattr(lane_module.Lane, "_run_batch", counted)
    gate = threading.Event()
    ran: list[int] = []
    results: dict[int, int] = {}

    async def call(index: int, gate: threading.Event | None = None) -> None:
        results[index] = await store._call(recorder(ran, index, gate))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, 0, gate)
            await trio.testing.wait_all_tasks_blocked()
            for index in range(1, 51):
                nursery.start_soon(call, index)
                await trio.testing.wait_all_tasks_blocked()  # queued in this order
            gate.set()
    assert ran == list(range(51))  # first come, first served
    assert results == {index: index for index in range(51)}
    assert passes == [1, 50]


async def test_a_cancelled_call_that_has_not_begun_never_runs(store: JobStore) -> None:
    gate = threading.Event()
    ran: list[int] = []
    waiting = trio.CancelScope()

    async def withdrawn() -> None:
        with waiting:
            await store._call(recorder(ran, 1))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store._call, recorder(ran, 0, gate))
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(withdrawn)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(store._call, recorder(ran, 2))
            await trio.testing.wait_all_tasks_blocked()
            waiting.cancel()  # call 1 is still queued: it is withdrawn
            await trio.testing.wait_all_tasks_blocked()
            gate.set()
    assert waiting.cancelled_caught
    assert ran == [0, 2]


async def test_a_cancelled_call_that_has_begun_completes_first(store: JobStore) -> None:
    first, second_may_finish, second_began = threading.Event(), threading.Event(), threading.Event()
    ran: list[int] = []
    seen: list[tuple[bool, list[int]]] = []
    scope = trio.CancelScope()

    def second() -> None:
        second_began.set()
        assert second_may_finish.wait(10)
        ran.append(1)

    async def cancelled() -> None:
        with scope:
            await store._call(second)
        seen.append((scope.cancelled_caught, list(ran)))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store._call, recorder(ran, 0, first))
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(cancelled)
            await trio.testing.wait_all_tasks_blocked()
            first.set()
            assert await trio.to_thread.run_sync(second_began.wait, 10)
            scope.cancel()  # call 1 is in the worker thread now
            await trio.testing.wait_all_tasks_blocked()
            assert ran == [0]
            assert not seen  # its caller waits for it
            second_may_finish.set()
    assert seen == [(True, [0, 1])]

"""Nothing a peer sends buys more than a bounded slice of the event loop's time.

The loop-lag probe (conftest.py) runs beside every test here; these are the attacks that
once stalled the server for everyone.
"""

from collections.abc import Callable

import pytest
import trio
from purerpc.grpclib.status import Status

from jogger.rpc.errors import RpcError, StatusCode
from jogger.rpc.protocol import MAX_STATUS_MESSAGE, capped
from tests.adversarial.test_transport import jog_run_works
from tests.servers import Server

BIG = 120_000
"""Just under the 128 KiB that argv, env and cwd may take together."""


async def timed_run(server: Server, latencies: list[float]) -> None:
    """bob's ``jog run -- echo``, which must work; its time goes to ``latencies``."""
    latencies.append(await jog_run_works(server))


async def well_behaved_runs(server: Server, latencies: list[float]) -> None:
    """bob's ``jog run -- echo`` again and again, until cancelled."""
    while True:
        await timed_run(server, latencies)
        await trio.sleep(0.2)


@pytest.mark.parametrize(
    ("argv", "cwd", "env"),
    [
        (["true"], "/" + "c" * BIG, {}),  # cannot use working directory '...'
        (["a" * BIG], "", {}),  # '...': command not found
        (["/" + "p" * BIG], "", {}),  # cannot execute '...'
        (["true"], "", {"e=" * (BIG // 2): "x"}),  # invalid environment variable name
        (["true"], "/" + "c" * 500_000, {}),  # past the size limit; never echoed
    ],
)
async def test_a_long_value_echoed_in_an_error_costs_no_loop_time(
    server: Server,
    argv: list[str],
    cwd: str,
    env: dict[str, str],
    record_property: Callable[[str, object], None],
) -> None:
    latencies: list[float] = []
    async with trio.open_nursery() as nursery, server.connect() as alice:
        nursery.start_soon(well_behaved_runs, server, latencies)
        for _ in range(3):
            with trio.fail_after(30), pytest.raises(RpcError) as info:
                await alice.start(argv, cwd=cwd, env=env)
            assert info.value.code == StatusCode.INVALID_ARGUMENT
            assert len(info.value.message) <= MAX_STATUS_MESSAGE
        await timed_run(server, latencies)
        assert await alice.list() == ([], False)
        nursery.cancel_scope.cancel()  # the attack is over: stop bob's runs
    shown = ", ".join(f"{t:.2f}" for t in latencies)
    record_property("jog_run_seconds", shown)
    print(f"bob's jog run during the attack took: {shown} s")


async def test_every_status_message_is_capped_on_the_wire() -> None:
    # The class fix: whatever a handler says, the trailer we encode stays short.
    long = Status(StatusCode.INVALID_ARGUMENT, "x" * 1_000_000)
    cut = capped(long)
    assert len(cut.status_message) == MAX_STATUS_MESSAGE
    assert cut.status_message.endswith("... (1000000 characters in all)")
    assert cut.int_value == long.int_value
    short = Status(StatusCode.NOT_FOUND, "job x not found")
    assert capped(short) is short

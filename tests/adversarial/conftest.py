"""Every attack in tests/adversarial runs beside an event-loop lag probe.

The server fixtures here (``server``, and those of test_transport and test_hostile_jobs)
depend on ``loop_lag``, so that it runs in every test that has a server. (pytest-trio runs
only the async fixtures a test asks for, directly or through another fixture: an autouse
one would silently never run.)
"""

import gc
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trio

from tests.adversarial.lag import MAX_P99, LoopLag
from tests.pki import Pki
from tests.servers import Server, server_config, start_server


@pytest.fixture
async def loop_lag(record_property: Callable[[str, object], None]) -> AsyncIterator[LoopLag]:
    """A lag probe on the loop the server runs on, for the whole test; its p99 must stay
    within MAX_P99."""
    lag = LoopLag()
    scope = trio.CancelScope()
    # What the session has piled up so far (pytest's, hypothesis's, earlier tests') goes to
    # the permanent generation: a full collection during the test then scans what this test
    # and its server made, not the whole session's heap. (Seen: gen-2 collections of 24 to
    # 130 ms, each one the test's worst lag.)
    gc.collect()
    gc.freeze()

    async def probe() -> None:
        with scope:
            await lag.run()

    # A system task, so that it outlives the test and the server fixtures' teardown, and
    # measures them too.
    trio.lowlevel.spawn_system_task(probe)
    yield lag
    scope.cancel()  # the test is over, and so is the measurement
    gc.unfreeze()
    record_property("loop_lag", lag.describe())
    assert lag.percentile(0.99) <= MAX_P99, f"event-loop lag: {lag.describe()}"


@pytest.fixture
async def server(pki: Pki, tmp_path: Path, nursery: trio.Nursery, loop_lag: LoopLag) -> Server:
    """The root conftest's server, beside the lag probe."""
    config = server_config(pki, tmp_path / "state")
    return await start_server(nursery, pki, config)

"""An event-loop lag probe: how late the loop wakes a task that sleeps a tick.

Everything the server does for every peer runs on one trio loop. A request that buys a long
stretch of loop time (an hpack encoding quadratic in a header's length, say) shows here as
lag, the time past its deadline at which a sleeping task gets to run again.
"""

import math
from dataclasses import dataclass, field

import trio

TICK = 0.01
"""How long the probe sleeps between measurements. (So a test beside it can no longer
``wait_all_tasks_blocked`` with a cushion longer than this: use none.)"""
MAX_P99 = 0.1
"""The most lag (seconds) the 99th percentile may show under any attack in these tests."""


@dataclass
class LoopLag:
    samples: list[float] = field(default_factory=list)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            start = trio.current_time()
            await trio.sleep(TICK)
            late = max(0.0, trio.current_time() - start - TICK)
            self.samples.append(late)
            # A stall of L seconds is also the ticks it swallowed, each of which would have
            # seen a little less of it (HdrHistogram's correction for coordinated omission):
            # otherwise one long stall would count as one sample.
            while late > TICK:
                late -= TICK
                self.samples.append(late)

    def percentile(self, fraction: float) -> float:
        """The lag below which ``fraction`` of the samples lie (nearest rank)."""
        ordered = sorted(self.samples)
        if not ordered:
            return 0.0
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]

    def describe(self) -> str:
        worst = max(self.samples, default=0.0)
        return (
            f"{len(self.samples)} samples: p50 {self.percentile(0.5) * 1e3:.1f} ms, "
            f"p99 {self.percentile(0.99) * 1e3:.1f} ms, max {worst * 1e3:.1f} ms"
        )

"""An event-loop lag probe: how late the loop wakes a task that sleeps a tick, counting only
the lateness the loop's own thread spent computing.

Everything the server does for every peer runs on one trio loop. A request that buys a long
stretch of loop time (an hpack encoding quadratic in a header's length, an argv of 100,000
strings checked one by one) shows here as lag, the time past its deadline at which a sleeping
task gets to run again.

A tick can also be late because the process was not running at all: the kernel gave both
cores of a loaded machine to other processes (a parallel build, another test run). That is
not something a peer bought, and it made the probe flake on a busy 2-core box (p99 over the
bound in tests that do nothing heavy, with the loop idle in epoll). So each tick's lateness
is capped by the CPU time the loop's thread used during the tick (CLOCK_THREAD_CPUTIME_ID):
work on the loop counts in full, however slowly a loaded machine runs it; time spent
descheduled, or waiting for the GIL, does not. The wall-clock figure is still reported.
"""

import math
import time
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
    """Lateness the loop's thread spent on CPU, one per tick (see the module's docstring)."""
    wall: list[float] = field(default_factory=list)
    """Lateness by the wall clock, whatever its cause; for the report only."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            start, cpu_start = trio.current_time(), time.thread_time()
            await trio.sleep(TICK)
            late = max(0.0, trio.current_time() - start - TICK)
            busy = time.thread_time() - cpu_start
            _add(self.wall, late)
            _add(self.samples, min(late, busy))

    def percentile(self, fraction: float) -> float:
        """The lag below which ``fraction`` of the samples lie (nearest rank)."""
        return _percentile(self.samples, fraction)

    def describe(self) -> str:
        return (
            f"{len(self.samples)} samples: p50 {self.percentile(0.5) * 1e3:.1f} ms, "
            f"p99 {self.percentile(0.99) * 1e3:.1f} ms, "
            f"max {max(self.samples, default=0.0) * 1e3:.1f} ms "
            f"(wall clock, descheduled time included: p99 "
            f"{_percentile(self.wall, 0.99) * 1e3:.1f} ms, "
            f"max {max(self.wall, default=0.0) * 1e3:.1f} ms)"
        )


def _add(samples: list[float], late: float) -> None:
    samples.append(late)
    # A stall of L seconds is also the ticks it swallowed, each of which would have seen a
    # little less of it (HdrHistogram's correction for coordinated omission): otherwise one
    # long stall would count as one sample.
    while late > TICK:
        late -= TICK
        samples.append(late)


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]

"""What the output's time index costs: log throughput with 10 followers, index on and off.

    python bench/timestamps.py [--quick] [--runs N]

The index (engine/times.py) is written by each job's supervisor before each write into the
log, at most one record a millisecond. "off" runs the same engine with
``jogger.engine.local.TIME_INDEX`` false, so the supervisor is given no index and writes
none: the only difference between the columns. The two alternate run by run, in one
process and one manager, so that a busy machine weighs on both alike. Each figure is the
median over the runs; overhead is 1 - on/off. Target: at most 5%.

1. bulk: ``dd bs=1M`` of /dev/zero into the log (64 KiB pipe reads, few and large).
2. lines: a job that writes 64-byte lines with one write(2) each, as fast as it can (many
   small moves: the case where a per-write record would cost most).
3. 10 followers with timestamps (the reader's side: chunks cut at the index's records),
   beside 10 plain followers, index on in both: not part of the target, shown for scale.

Also shown: the index's size beside the log's, for each workload.
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from jogger import JobManager, ManagerLimits
from jogger.engine import OutputWindow, local
from jogger.engine.times import times_path

OWNER = "bench"
LINES = """
import os, sys
line = b"x" * 63 + b"\\n"
for _ in range(int(sys.argv[1])):
    os.write(1, line)
"""


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}, trio {trio.__version__}"
    )


async def one_run(
    jobs: JobManager, state: Path, argv: list[str], size: int, *, stamped: bool = False
) -> tuple[float, int]:
    """MB/s from the start until 10 followers have every byte; the index's size."""
    counts: list[int] = []

    async def follow(job_id: str) -> None:
        total = 0
        if stamped:
            window = OutputWindow(timestamps=True)
            async with jobs.output_window(OWNER, job_id, window, chunk_size=1 << 20) as (_, it):
                async for piece in it:
                    total += len(piece.data)
        else:
            async with jobs.output(OWNER, job_id, chunk_size=1 << 20) as chunks:
                async for chunk in chunks:
                    total += len(chunk)
        counts.append(total)

    t0 = time.perf_counter()
    status = await jobs.start(OWNER, argv)
    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(follow, status.id)
    final = await jobs.wait(OWNER, status.id)
    rate = size / 1e6 / (time.perf_counter() - t0)
    assert counts == [size] * 10, counts
    assert final.output_bytes == size
    log = state / "logs" / f"{status.id}.log"
    index = times_path(log)
    index_size = index.stat().st_size if index.exists() else 0
    log.unlink()
    index.unlink(missing_ok=True)
    return rate, index_size


async def compare(
    runs: int, measure: Callable[[bool], Awaitable[tuple[float, int]]]
) -> tuple[list[float], list[float], int]:
    """``measure(flag)`` alternately with the flag true and false; the rates, and the
    largest index seen."""
    first: list[float] = []
    second: list[float] = []
    biggest = 0
    for k in range(runs):
        # Which goes first alternates too: neither always gets the warmer cache.
        for flag in (True, False) if k % 2 == 0 else (False, True):
            rate, size = await measure(flag)
            (first if flag else second).append(rate)
            biggest = max(biggest, size)
    return first, second, biggest


async def main(quick: bool, runs: int) -> None:
    mib = 128 if quick else 1024
    lines = 200_000 if quick else 2_000_000
    rows: list[tuple[str, float, float, str]] = []
    sizes: list[tuple[str, int, int]] = []
    with tempfile.TemporaryDirectory(prefix="jogger-bench-") as tmp:
        state = Path(tmp)
        limits = ManagerLimits(max_jobs=100, max_jobs_per_owner=100, max_output_bytes=2 << 30)
        async with JobManager(state, limits=limits, cgroups="none") as jobs:
            dd = ["dd", "if=/dev/zero", "bs=1M", f"count={mib}", "status=none"]
            writer = [sys.executable, "-c", LINES, str(lines)]
            workloads = [
                (f"bulk: dd {mib} MiB", dd, mib << 20),
                (f"lines: {lines} x 64 B", writer, lines * 64),
            ]
            warm_up = [*dd[:-2], "count=64", "status=none"]  # the first big file is slower
            await one_run(jobs, state, warm_up, 64 << 20)
            for name, argv, size in workloads:

                async def indexed(
                    flag: bool, argv: list[str] = argv, size: int = size
                ) -> tuple[float, int]:
                    local.TIME_INDEX = flag
                    try:
                        return await one_run(jobs, state, argv, size)
                    finally:
                        local.TIME_INDEX = True

                on, off, index_size = await compare(runs, indexed)
                rows.append((name, statistics.median(on), statistics.median(off), "index on / off"))
                sizes.append((name, size, index_size))

            async def stamped(flag: bool) -> tuple[float, int]:
                return await one_run(jobs, state, dd, mib << 20, stamped=flag)

            on, off, _ = await compare(runs, stamped)
            median_on, median_off = statistics.median(on), statistics.median(off)
            rows.append(("bulk, timestamped followers", median_on, median_off, "stamped / plain"))

    print(machine())
    print(f"10 followers each; medians of {runs} runs per column, alternating")
    header = f"{'workload':36} {'with':>9} {'without':>9} {'overhead':>9}  columns"
    print(header)
    print("-" * len(header))
    for name, with_, without, columns in rows:
        overhead = (1 - with_ / without) * 100
        print(f"{name:36} {with_:7.1f}MB/s {without:7.1f}MB/s {overhead:8.1f}%  {columns}")
    print()
    for name, size, index_size in sizes:
        share = index_size / size * 100 if size else 0
        print(f"index of {name}: {index_size} bytes for a {size}-byte log ({share:.4f}%)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    parser.add_argument("--runs", type=int, default=5, help="runs per column (default 5)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    trio.run(main, args.quick, args.runs)

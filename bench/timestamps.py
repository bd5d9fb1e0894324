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

Beside the rates: the supervisor's own CPU time per run (from our children's rusage once
it is reaped, less its job's, which its end record gives), a figure that other load on the
machine does not move as it moves the rates; and the largest index each workload made.
"""

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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


@dataclass
class Run:
    rate: float
    """MB/s from the start until 10 followers have every byte."""
    supervisor_cpu: float
    """CPU seconds of the supervisor itself (its children's, the job's, taken out)."""
    index_size: int


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def one_run(
    jobs: JobManager, state: Path, argv: list[str], size: int, *, stamped: bool = False
) -> Run:
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

    cpu = children_cpu()
    t0 = time.perf_counter()
    status = await jobs.start(OWNER, argv)
    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(follow, status.id)
    final = await jobs.wait(OWNER, status.id)
    rate = size / 1e6 / (time.perf_counter() - t0)
    assert counts == [size] * 10, counts
    assert final.output_bytes == size
    assert final.cpu_seconds is not None
    # The supervisor is reaped (and its CPU, with its job's, counted as our children's) as
    # its job's end is handled: a moment after wait() returns.
    with trio.fail_after(5):
        while children_cpu() - cpu < final.cpu_seconds:  # noqa: ASYNC110 - no event for it
            await trio.sleep(0.01)
    await trio.sleep(0.05)
    supervisor_cpu = children_cpu() - cpu - final.cpu_seconds
    log = state / "logs" / f"{status.id}.log"
    index = times_path(log)
    index_size = index.stat().st_size if index.exists() else 0
    log.unlink()
    index.unlink(missing_ok=True)
    return Run(rate, supervisor_cpu, index_size)


async def compare(runs: int, measure: Callable[[bool], Awaitable[Run]]) -> dict[bool, list[Run]]:
    """``measure(flag)`` alternately with the flag true and false, ``runs`` times each."""
    results: dict[bool, list[Run]] = {True: [], False: []}
    for k in range(runs):
        # Which goes first alternates too: neither always gets the warmer cache.
        for flag in (True, False) if k % 2 == 0 else (False, True):
            results[flag].append(await measure(flag))
    return results


def median(runs: list[Run], field: str) -> float:
    return float(statistics.median(getattr(run, field) for run in runs))


async def main(quick: bool, runs: int) -> None:
    mib = 128 if quick else 1024
    lines = 200_000 if quick else 2_000_000
    rows: list[tuple[str, dict[bool, list[Run]], str]] = []
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

                async def indexed(flag: bool, argv: list[str] = argv, size: int = size) -> Run:
                    local.TIME_INDEX = flag
                    try:
                        return await one_run(jobs, state, argv, size)
                    finally:
                        local.TIME_INDEX = True

                rows.append((name, await compare(runs, indexed), "index on / off"))

            async def stamped(flag: bool) -> Run:
                return await one_run(jobs, state, dd, mib << 20, stamped=flag)

            rows.append(
                ("bulk, timestamped followers", await compare(runs, stamped), "stamped / plain")
            )

    print(machine())
    print(f"10 followers each; medians of {runs} runs per column, the columns alternating")
    header = (
        f"{'workload':30} {'with':>11} {'without':>11} {'overhead':>8}"
        f" {'sup. CPU with':>13} {'without':>8}  columns"
    )
    print(header)
    print("-" * len(header))
    for name, results, columns in rows:
        with_, without = median(results[True], "rate"), median(results[False], "rate")
        cpu_with = median(results[True], "supervisor_cpu")
        cpu_without = median(results[False], "supervisor_cpu")
        print(
            f"{name:30} {with_:6.1f} MB/s {without:6.1f} MB/s {(1 - with_ / without) * 100:7.1f}%"
            f" {cpu_with:11.3f} s {cpu_without:6.3f} s  {columns}"
        )
    print()
    for name, results, _ in rows[:2]:
        size = max(run.index_size for run in results[True])
        print(f"largest index, {name}: {size} bytes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    parser.add_argument("--runs", type=int, default=5, help="runs per column (default 5)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    trio.run(main, args.quick, args.runs)

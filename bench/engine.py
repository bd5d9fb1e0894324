"""Job engine benchmarks, each beside a baseline measured in the same run.

    python bench/engine.py [--quick]

Prints one table. Figures are medians unless a row says otherwise; the ratio column is
engine / baseline (for latencies lower is better, for rates higher is better).
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from jogger import JobManager, ManagerLimits

# Writes its CLOCK_MONOTONIC time, then waits a little, ``n`` times.
STAMPER = """
import os, sys, time
for _ in range(int(sys.argv[1])):
    os.write(1, b"%d\\n" % time.monotonic_ns())
    time.sleep(0.002)
"""
OWNER = "bench"


@dataclass
class Row:
    what: str
    engine: float
    baseline: float
    baseline_name: str
    unit: str
    higher_is_better: bool = False

    def ratio(self) -> str:
        return f"{self.engine / self.baseline:.2f}" if self.baseline else "-"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def start_latency(jobs: JobManager, n: int) -> tuple[list[float], list[float]]:
    """start() returning means the command has been exec'd (subprocess waits for exec)."""
    ours, theirs = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        status = await jobs.start(OWNER, ["/bin/true"])
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        # The baseline is the raw call, blocking included.
        popen = subprocess.Popen(["/bin/true"], start_new_session=True)  # noqa: ASYNC220
        theirs.append(time.perf_counter() - t0)
        popen.wait()
        await jobs.wait(OWNER, status.id)
    return ours, theirs


async def write_to_reader(jobs: JobManager, n: int) -> tuple[list[float], list[float]]:
    ours: list[float] = []
    status = await jobs.start(OWNER, [sys.executable, "-c", STAMPER, str(n)])
    pending = b""
    async with jobs.output(OWNER, status.id) as chunks:
        async for chunk in chunks:
            now = time.monotonic_ns()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            ours.extend((now - int(line)) / 1e9 for line in lines)
    theirs: list[float] = []
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", STAMPER, str(n)], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    pending = b""
    while chunk := bytes(await process.stdout.receive_some(1 << 16)):
        now = time.monotonic_ns()
        pending += chunk
        *lines, pending = pending.split(b"\n")
        theirs.extend((now - int(line)) / 1e9 for line in lines)
    await process.wait()
    return ours, theirs


async def starts_per_second(jobs: JobManager, n: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    started = [await jobs.start(OWNER, ["/bin/true"]) for _ in range(n)]
    for status in started:
        await jobs.wait(OWNER, status.id)
    ours = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    # The baseline is the raw call, blocking included.
    popens = [subprocess.Popen(["/bin/true"], start_new_session=True) for _ in range(n)]  # noqa: ASYNC220
    for popen in popens:
        popen.wait()
    theirs = n / (time.perf_counter() - t0)
    return ours, theirs


async def throughput(jobs: JobManager, mib: int, followers: int, tmp: str) -> tuple[float, float]:
    dd = ["dd", "if=/dev/zero", "bs=1M", f"count={mib}", "status=none"]
    counts: list[int] = []

    async def follow(job_id: str) -> None:
        total = 0
        async with jobs.output(OWNER, job_id, chunk_size=1 << 20) as chunks:
            async for chunk in chunks:
                total += len(chunk)
        counts.append(total)

    t0 = time.perf_counter()
    status = await jobs.start(OWNER, dd)
    async with trio.open_nursery() as nursery:
        for _ in range(followers):
            nursery.start_soon(follow, status.id)
    final = await jobs.wait(OWNER, status.id)
    ours = mib * 1.048576 / (time.perf_counter() - t0)
    assert counts == [mib << 20] * followers, counts
    assert final.output_bytes == mib << 20
    os.unlink(os.path.join(tmp, "logs", f"{status.id}.log"))

    target = os.path.join(tmp, "baseline.out")
    t0 = time.perf_counter()
    await trio.run_process([*dd, f"of={target}"])
    theirs = mib * 1.048576 / (time.perf_counter() - t0)
    os.unlink(target)
    return ours, theirs


async def main(quick: bool) -> list[Row]:
    n = 50 if quick else 200
    mib = 128 if quick else 1024
    rows = []
    with tempfile.TemporaryDirectory(prefix="jogger-bench-") as tmp:
        limits = ManagerLimits(max_jobs=1000, max_jobs_per_owner=1000, max_output_bytes=2 << 30)
        # Process groups only: what a cgroup adds is bench/cgroups.py's subject.
        async with JobManager(tmp, limits=limits, cgroups="none") as jobs:
            ours, theirs = await start_latency(jobs, n)
            rows.append(
                Row(
                    "start() to exec'd, p50",
                    statistics.median(ours) * 1e3,
                    statistics.median(theirs) * 1e3,
                    "subprocess.Popen",
                    "ms",
                )
            )
            rows.append(
                Row(
                    "start() to exec'd, p99",
                    percentile(ours, 0.99) * 1e3,
                    percentile(theirs, 0.99) * 1e3,
                    "subprocess.Popen",
                    "ms",
                )
            )
            ours, theirs = await write_to_reader(jobs, 500 if not quick else 100)
            rows.append(
                Row(
                    "job write() to follower, p50",
                    statistics.median(ours) * 1e3,
                    statistics.median(theirs) * 1e3,
                    "trio pipe read",
                    "ms",
                )
            )
            rows.append(
                Row(
                    "job write() to follower, p99",
                    percentile(ours, 0.99) * 1e3,
                    percentile(theirs, 0.99) * 1e3,
                    "trio pipe read",
                    "ms",
                )
            )
            ours_rate, theirs_rate = await starts_per_second(jobs, n)
            rows.append(
                Row(
                    f"{n} short jobs, start to ended",
                    ours_rate,
                    theirs_rate,
                    "Popen + wait",
                    "jobs/s",
                    higher_is_better=True,
                )
            )
            await throughput(jobs, 64, 10, tmp)  # warm-up: the first big file is slower
            runs = [await throughput(jobs, mib, 10, tmp) for _ in range(3)]
            rows.append(
                Row(
                    f"{mib} MiB into the log, 10 followers (3 runs)",
                    statistics.median(r[0] for r in runs),
                    statistics.median(r[1] for r in runs),
                    "dd of=file",
                    "MB/s",
                    higher_is_better=True,
                )
            )
    return rows


def print_table(rows: list[Row], describe: Callable[[], str]) -> None:
    print(describe())
    header = f"{'measure':40} {'jogger':>10} {'baseline':>10} {'ratio':>6}  unit  baseline"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.what:40} {r.engine:10.2f} {r.baseline:10.2f} {r.ratio():>6}  "
            f"{r.unit:5} {r.baseline_name}"
        )


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}, trio {trio.__version__}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    args = parser.parse_args()
    print_table(trio.run(main, args.quick), machine)

"""What the output's time index costs: log throughput with 10 followers, index on and off.

    python bench/timestamps.py [--quick] [--runs N]

The index (engine/times.py) is written by each job's supervisor before each write into the
log, at most one record a millisecond (TIMES_EVERY_MS in times.h). Each round runs each
workload under four configurations, in an order that turns from round to round, in one
process, so that a busy machine weighs on all alike:

- **off**: ``jogger.engine.local.TIME_INDEX`` false: the supervisor is given no index and
  writes none (the only difference from "on, 1 ms");
- **off again (A/A)**: the same, a second time: how far two identical runs differ here,
  the noise floor that the other rows' figures stand on;
- **on, 1 ms (default)**: the supervisor as built;
- **on, 10 ms**: a supervisor built here with ``-DTIMES_EVERY_MS=10``, the coarser index.

Workloads: **bulk**, ``dd bs=1M`` of /dev/zero (64 KiB pipe reads, few and large); and
**lines**, a job that writes 64-byte lines with one write(2) each as fast as it can (many
small moves: where a per-write record would cost most). Figures are medians over the
rounds: the rate (MB/s from the start until 10 followers have every byte), its overhead
against "off" (of the medians, and "paired": the median of each round's own ratio), the
supervisor's own CPU time (our children's rusage once it is reaped, less its job's, which
its end record gives; other load moves it less than the rates), and the largest index.
Target: at most 5% overhead.

Last, 10 followers with timestamps (the reader's side: chunks cut at the index's records)
beside 10 plain ones, index on in both: not part of the target, shown for scale.
"""

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from jogger import JobManager, ManagerLimits
from jogger.engine import OutputWindow, local
from jogger.engine.times import times_path

OWNER = "bench"
REPO = Path(__file__).resolve().parent.parent
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


@dataclass(frozen=True)
class Config:
    name: str
    jobs: JobManager
    state: Path
    index: bool


async def measure(config: Config, argv: list[str], size: int, *, stamped: bool = False) -> Run:
    local.TIME_INDEX = config.index
    try:
        return await one_run(config.jobs, config.state, argv, size, stamped=stamped)
    finally:
        local.TIME_INDEX = True


def build_supervisor(where: Path, every_ms: int) -> Path:
    """jogger-supervise built as setup.py builds it, but with TIMES_EVERY_MS ``every_ms``."""
    source = REPO / "jogger" / "engine" / "supervise.c"
    program = where / f"jogger-supervise-{every_ms}ms"
    flags = ["-O2", "-Wall", "-Wextra", "-Werror", f"-DTIMES_EVERY_MS={every_ms}"]
    subprocess.run(["cc", *flags, str(source), "-o", str(program)], check=True)
    return program


def paired(on: list[Run], off: list[Run]) -> float:
    """The median over rounds of 1 - on/off, each round's runs side by side (a load that
    comes and goes weighs on both of a pair alike)."""
    return float(statistics.median(1 - a.rate / b.rate for a, b in zip(on, off, strict=True)))


def median(runs: list[Run], field: str) -> float:
    return float(statistics.median(getattr(run, field) for run in runs))


async def main(quick: bool, runs: int) -> None:
    mib = 128 if quick else 1024
    lines = 200_000 if quick else 2_000_000
    dd = ["dd", "if=/dev/zero", "bs=1M", f"count={mib}", "status=none"]
    writer = [sys.executable, "-c", LINES, str(lines)]
    workloads = [
        (f"bulk: dd {mib} MiB", dd, mib << 20),
        (f"lines: {lines} x 64 B", writer, lines * 64),
    ]
    limits = ManagerLimits(max_jobs=100, max_jobs_per_owner=100, max_output_bytes=2 << 30)
    results: dict[tuple[str, str], list[Run]] = {}
    stamped: dict[bool, list[Run]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="jogger-bench-") as tmp:
        coarse = build_supervisor(Path(tmp), 10)
        async with (
            JobManager(Path(tmp) / "a", limits=limits, cgroups="none") as jobs,
            JobManager(Path(tmp) / "b", limits=limits, cgroups="none", supervisor=coarse) as jobs10,
        ):
            configs = [
                Config("off", jobs, Path(tmp) / "a", False),
                Config("off again (A/A)", jobs, Path(tmp) / "a", False),
                Config("on, 1 ms (default)", jobs, Path(tmp) / "a", True),
                Config("on, 10 ms", jobs10, Path(tmp) / "b", True),
            ]
            for config in (configs[0], configs[3]):  # warm-up: the first big file is slower
                await measure(config, [*dd[:-2], "count=64", "status=none"], 64 << 20)
            for k in range(runs):
                # Each round in another order: none always gets the warmer cache.
                order = configs[k % len(configs) :] + configs[: k % len(configs)]
                for name, argv, size in workloads:
                    for config in order:
                        run = await measure(config, argv, size)
                        results.setdefault((name, config.name), []).append(run)
                for flag in (True, False) if k % 2 == 0 else (False, True):
                    stamped[flag].append(await measure(configs[2], dd, mib << 20, stamped=flag))

    print(machine())
    print(f"10 followers each; medians of {runs} rounds, each round running every column")
    header = (
        f"{'workload':24} {'index':18} {'rate':>11} {'overhead':>8} {'paired':>7}"
        f" {'sup. CPU':>9} {'index':>7}"
    )
    print(header)
    print("-" * len(header))
    for name, _, _ in workloads:
        off = results[(name, "off")]
        for config in configs:
            runs_of = results[(name, config.name)]
            rate = median(runs_of, "rate")
            overhead = (1 - rate / median(off, "rate")) * 100
            cpu = median(runs_of, "supervisor_cpu")
            index_size = max(r.index_size for r in runs_of)
            print(
                f"{name:24} {config.name:18} {rate:6.1f} MB/s {overhead:7.1f}%"
                f" {paired(runs_of, off) * 100:6.1f}% {cpu:7.3f} s {index_size:7d}"
            )
    print()
    plain, stamp = median(stamped[False], "rate"), median(stamped[True], "rate")
    stamp_paired = paired(stamped[True], stamped[False])
    print(
        f"bulk, 10 followers with timestamps: {stamp:.1f} MB/s, plain {plain:.1f} MB/s: "
        f"{(1 - stamp / plain) * 100:.1f}% (paired {stamp_paired * 100:.1f}%)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    parser.add_argument("--runs", type=int, default=5, help="runs per column (default 5)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    trio.run(main, args.quick, args.runs)

"""Cgroup benchmarks: what a cgroup costs a job start, and how fairly jobs share the machine.

    python bench/cgroups.py [--quick] [--seconds S]

1. Overhead: start() latency (to exec'd) and short jobs per second with each backend that
   works here, side by side in one run, against the "none" backend (process groups only).
   Target: a cgroup adds at most 3 ms to the start p50.
2. Fairness (the RFD's test): 10 concurrent CPU-bound jobs (bcrypt, cost 10), then 10
   memory-churning jobs (str.split of a long string), then 10 I/O loops (write, fsync, read
   4 KiB), each for S seconds; each job prints its loop count and we report each job's share
   of its kind's total (1/10 is fair). Then a weighted run: 4 CPU jobs at cpu weight 200 and
   4 at 100, whose shares should split 2:1.
3. Users, with the budgets jogger-server derives from this host: user A runs 16
   CPU-bound jobs and user B one; B's share of the CPU work (target: at least 45%; one job
   can use one core, half of this 2-core machine). Then user A runs a fork bomb (held by
   A's pids budget) while B starts jobs: B's start p50 beside the bomb against without it.

Needs root for the cgroup rows; prints what it skipped and why.
"""

import argparse
import glob
import os
import platform
import statistics
import sys
import tempfile
import time

import trio

from jogger import JobLimits, JobManager
from jogger.engine.cgroups import CgroupMode
from jogger.engine.limits import format_limit
from jogger.server.config import budgets

OWNER = "bench"
PYTHON = sys.executable

CPU_LOOP = """
import sys, time, bcrypt
end = time.monotonic() + float(sys.argv[1])
salt = bcrypt.gensalt(rounds=10)
n = 0
while time.monotonic() < end:
    bcrypt.hashpw(b"correct horse battery staple", salt)
    n += 1
print(n)
"""
MEMORY_LOOP = """
import sys, time
end = time.monotonic() + float(sys.argv[1])
text = "word " * 200_000
n = 0
while time.monotonic() < end:
    n += len(text.split(" ")) > 0
print(n)
"""
IO_LOOP = """
import os, sys, time
end = time.monotonic() + float(sys.argv[1])
path = os.path.join(sys.argv[2], f"io-{os.getpid()}")
block = os.urandom(4096)
n = 0
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
try:
    while time.monotonic() < end:
        os.pwrite(fd, block, 0)
        os.fsync(fd)
        os.pread(fd, 4096, 0)
        n += 1
finally:
    os.close(fd)
    os.unlink(path)
print(n)
"""


async def start_latency(jobs: JobManager, n: int) -> tuple[float, float]:
    """(start p50 in ms, short jobs per second)."""
    p50 = await start_p50(jobs, OWNER, n)
    t0 = time.perf_counter()
    for _ in range(n):
        status = await jobs.start(OWNER, ["/bin/true"])
        await jobs.wait(OWNER, status.id)
    rate = n / (time.perf_counter() - t0)
    return p50, rate


async def run_together(
    jobs: JobManager, argvs: list[tuple[list[str], JobLimits]], owners: list[str] | None = None
) -> list[int]:
    """Start every job at once (as ``owners``, one each; else all as OWNER); each prints one
    number, its loop count."""
    who = owners or [OWNER] * len(argvs)
    started = [
        await jobs.start(owner, argv, limits=limits)
        for owner, (argv, limits) in zip(who, argvs, strict=True)
    ]
    counts = []
    for owner, status in zip(who, started, strict=True):
        await jobs.wait(owner, status.id)
        out = b""
        async with jobs.output(owner, status.id, follow=False) as chunks:
            async for chunk in chunks:
                out += chunk
        try:
            counts.append(int(out.split()[-1]))
        except (IndexError, ValueError):
            raise SystemExit(f"a job failed: {out[-500:]!r}") from None
    return counts


def shares(counts: list[int]) -> str:
    total = sum(counts) or 1
    values = [c / total for c in counts]
    spread = max(abs(v * len(values) - 1) for v in values)
    return (
        f"min {min(values):.3f}  max {max(values):.3f}  (fair {1 / len(values):.3f}; "
        f"worst {spread:.0%} off)"
    )


async def overhead(modes: list[CgroupMode], n: int, tmp: str) -> None:
    print(f"\n## Start overhead ({n} starts each; medians)\n")
    print("| backend | start() p50 ms | short jobs/s | p50 added vs none |")
    print("|---|---|---|---|")
    base = None
    for mode in modes:
        try:
            async with JobManager(os.path.join(tmp, mode), cgroups=mode) as jobs:
                await start_latency(jobs, 20)  # warm-up
                p50, rate = await start_latency(jobs, n)
        except Exception as exc:  # noqa: BLE001 - a backend that does not work here is a row
            print(f"| {mode} | - | - | unavailable: {exc} |")
            continue
        if base is None:
            base = p50
        print(f"| {mode} | {p50:.2f} | {rate:.0f} | {p50 - base:+.2f} ms |")


async def fairness(seconds: float, tmp: str) -> None:
    async with JobManager(os.path.join(tmp, "fair"), cgroups="auto") as jobs:
        if jobs.containment == "none":
            print("\nfairness: skipped (no cgroup backend here)")
            return
        print(f"\n## Fairness on {jobs.containment} ({seconds:g} s per run)\n")
        none = JobLimits()
        s = str(seconds)
        for name, code, extra in (
            ("CPU (bcrypt)", CPU_LOOP, []),
            ("memory churn", MEMORY_LOOP, []),
            ("I/O (fsync)", IO_LOOP, [tmp]),
        ):
            counts = await run_together(jobs, [([PYTHON, "-c", code, s, *extra], none)] * 10)
            print(f"- {name}, 10 jobs: {shares(counts)}; loops {sorted(counts)}")
        heavy, light = JobLimits(cpu_weight=200), JobLimits(cpu_weight=100)
        argv = [PYTHON, "-c", CPU_LOOP, s]
        counts = await run_together(jobs, [(argv, heavy)] * 4 + [(argv, light)] * 4)
        ratio = sum(counts[:4]) / max(1, sum(counts[4:]))
        print(
            f"- CPU, 4 jobs at weight 200 and 4 at 100: heavy/light = {ratio:.2f} "
            f"(2.00 is exact); loops {counts}"
        )


FORK_BOMB = "b() { b | b & }; b; exec sleep 300"  # the main process stays: the job lives


async def users(seconds: float, tmp: str) -> None:
    user_limits, total_limits = budgets(None, JobLimits(), JobLimits())
    async with JobManager(
        os.path.join(tmp, "users"),
        cgroups="auto",
        default_limits=JobLimits(pids=4096),
        user_limits=user_limits,
        total_limits=total_limits,
    ) as jobs:
        if jobs.containment == "none":
            print("\nusers: skipped (no cgroup backend here)")
            return
        print(
            f"\n## Users on {jobs.containment} ({seconds:g} s per run; each user: "
            f"{limits_text(user_limits)}; all jobs: {limits_text(total_limits)})\n"
        )
        argv = [PYTHON, "-c", CPU_LOOP, str(seconds)]
        counts = await run_together(
            jobs, [(argv, JobLimits())] * 17, owners=["user-a"] * 16 + ["user-b"]
        )
        b_share = counts[-1] / max(1, sum(counts))
        print(
            f"- CPU, user A with 16 jobs and user B with 1: B did {b_share:.1%} of the work "
            f"(target >= 45%; one job can use one of {os.cpu_count()} cores); "
            f"A's jobs {sorted(counts[:-1])}, B's {counts[-1]}"
        )
        quiet = await start_p50(jobs, "user-b", 30)
        bomb = await jobs.start("user-a", ["sh", "-c", FORK_BOMB])
        held = await bomb_grown("user-a", user_limits.pids or 0)
        loud = await start_p50(jobs, "user-b", 30)
        final = await jobs.stop("user-a", bomb.id, grace=0)
        print(
            f"- Fork bomb of user A ({held} pids when B began; stopped: {final.state.value}): "
            f"user B's start p50 {loud:.2f} ms beside it, {quiet:.2f} ms without "
            f"({loud / quiet:.2f}x)"
        )


async def bomb_grown(owner: str, budget: int, patience: float = 30.0) -> int:
    """Wait until ``owner``'s pids reach 95% of ``budget`` (or ``patience`` seconds have
    passed); returns their number, read from the user's cgroup."""
    paths = glob.glob(f"/sys/fs/cgroup/**/user-{owner}/pids.current", recursive=True)
    held = 0
    deadline = time.monotonic() + patience
    while paths and time.monotonic() < deadline:
        held = read_int(paths[0])
        if held >= 0.95 * budget:
            break
        await trio.sleep(0.2)
    return held


def read_int(path: str) -> int:
    with open(path) as f:
        return int(f.read())


def limits_text(limits: JobLimits) -> str:
    return ", ".join(
        f"{name.replace('_', '-')} {format_limit(name, value)}"
        for name in ("memory", "pids", "cpu_weight")
        if (value := getattr(limits, name)) is not None
    )


async def start_p50(jobs: JobManager, owner: str, n: int) -> float:
    """The median time (ms) of ``n`` starts of /bin/true, one after another."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        status = await jobs.start(owner, ["/bin/true"])
        times.append(time.perf_counter() - t0)
        await jobs.wait(owner, status.id)
    return statistics.median(times) * 1e3


async def main(quick: bool, seconds: float) -> None:
    print(
        f"# bench/cgroups.py on {platform.node()}: {os.cpu_count()} cores, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )
    modes: list[CgroupMode] = ["none", "cgroup1", "cgroup2"]
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o700)
        await overhead(modes, 50 if quick else 300, tmp)
        await fairness(2.0 if quick else seconds, tmp)
        await users(2.0 if quick else seconds, tmp)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, 2 s loops")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each fairness run")
    args = parser.parse_args()
    trio.run(main, args.quick, args.seconds)

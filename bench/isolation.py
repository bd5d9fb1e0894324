"""What isolation costs: jobs with namespaces beside jobs without, in the same run.

    python bench/isolation.py [--quick] [--rounds N]

Needs root (namespaces, and the jobs run as nobody, as a root server runs them). One
manager runs every variant, alternating job by job and round by round, so that a busy
machine weighs on all alike. Prints one table: medians unless a row says otherwise, and the
difference or ratio against the same measure without isolation.

1. ``start()`` of ``/bin/true`` to exec'd, p50 and p99, each job awaited before the next:
   without isolation, with every namespace, with every namespace and a read-only root, and
   with each kind alone. Target: every namespace costs at most +3 ms at p50.
2. Output throughput: ``dd`` of 512 MiB (64 MiB with --quick) into the log, read to its end
   by one follower, MB/s. Target: the same as without isolation.
3. CPU: a shell loop of 200,000 iterations, seconds from start to end. Target: the same.
"""

import argparse
import os
import pwd
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

from jogger import Account, JobManager, ManagerLimits
from jogger.engine.isolation import ALL, Isolation, Namespace

VARIANTS = {
    "none": Isolation(),
    "all": Isolation(ALL),
    "all + read-only-root": Isolation(ALL, read_only_root=True),
    **{kind.value: Isolation(frozenset({kind})) for kind in Namespace},
}


def nobody() -> Account:
    entry = pwd.getpwnam("nobody")
    return Account("nobody", entry.pw_uid, entry.pw_gid, (entry.pw_gid,), entry.pw_dir)


async def timed_start(jobs: JobManager, isolation: Isolation, account: Account) -> float:
    begin = time.perf_counter()
    status = await jobs.start("bench", ["/bin/true"], isolation=isolation, account=account)
    took = time.perf_counter() - begin
    await jobs.wait("bench", status.id)
    return took


async def timed_run(
    jobs: JobManager, argv: list[str], isolation: Isolation, account: Account
) -> tuple[float, int]:
    """Seconds from start until the output has been read to its end; the bytes read."""
    begin = time.perf_counter()
    status = await jobs.start("bench", argv, isolation=isolation, account=account)
    size = 0
    async with jobs.output("bench", status.id, follow=True, chunk_size=1 << 20) as chunks:
        async for chunk in chunks:
            size += len(chunk)
    await jobs.wait("bench", status.id)
    return time.perf_counter() - begin, size


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def main(rounds: int, dd_mib: int) -> None:
    account = nobody()
    starts: dict[str, list[float]] = {name: [] for name in VARIANTS}
    throughput: dict[str, list[float]] = {"none": [], "all": []}
    cpu: dict[str, list[float]] = {"none": [], "all": []}
    loop = "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"
    with tempfile.TemporaryDirectory(prefix="jogger-bench-isolation-") as state:
        limits = ManagerLimits(max_output_bytes=4 << 30)
        async with JobManager(Path(state), limits=limits) as jobs:
            names = list(VARIANTS)
            for _ in range(3):  # warm-up: page cache, the supervisor's binary
                for name in names:
                    await timed_start(jobs, VARIANTS[name], account)
            for round_ in range(rounds):
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in order:
                    starts[name].append(await timed_start(jobs, VARIANTS[name], account))
            heavy = max(2, rounds // 40)
            dd = ["dd", "if=/dev/zero", "bs=1M", f"count={dd_mib}", "status=none"]
            for round_ in range(heavy):
                for name in ("none", "all") if round_ % 2 == 0 else ("all", "none"):
                    took, size = await timed_run(jobs, dd, VARIANTS[name], account)
                    assert size == dd_mib << 20, size
                    throughput[name].append(size / took / 1e6)
                    took, _ = await timed_run(jobs, ["sh", "-c", loop], VARIANTS[name], account)
                    cpu[name].append(took)
    base = statistics.median(starts["none"])
    print(f"# bench/isolation.py: {rounds} rounds; {os.cpu_count()} CPUs; {os.uname().release}")
    print(f"{'measure':<44} {'p50':>10} {'p99':>10} {'vs none':>10}")
    for name, samples in starts.items():
        p50 = statistics.median(samples)
        delta = f"{(p50 - base) * 1e3:+.2f} ms" if name != "none" else ""
        print(
            f"{'start, ' + name:<44} {p50 * 1e3:>7.2f} ms {p99(samples) * 1e3:>7.2f} ms {delta:>10}"
        )
    for label, table, unit, scale in (
        (f"output, dd {dd_mib} MiB", throughput, "MB/s", 1.0),
        ("cpu, sh loop of 200,000", cpu, "s", 1.0),
    ):
        none = statistics.median(table["none"])
        for name in ("none", "all"):
            value = statistics.median(table[name]) * scale
            ratio = f"{value / none:.2f}x" if name != "none" else ""
            print(f"{label + ', ' + name:<44} {value:>7.2f} {unit:<3} {'':>10} {ratio:>10}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, a smaller dd")
    parser.add_argument("--rounds", type=int, default=0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/isolation.py needs root: namespaces, and jobs run as nobody")
    rounds = args.rounds or (40 if args.quick else 200)
    trio.run(main, rounds, 64 if args.quick else 512)

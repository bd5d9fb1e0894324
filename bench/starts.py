"""Job starts through JobManager, beside plain process spawns measured in the same run.

    python bench/starts.py [--n 2000] [--rounds 3] [--callers 32] [--profile FILE]

Each round opens a fresh, durable manager (SQLite in WAL mode, ``synchronous=FULL``, so
every acknowledged start is fsynced before ``start()`` returns), with ``--cgroups auto``
(what a server uses) by default, and measures:

- starts/s with 1 caller, and with ``--callers`` concurrent callers: from the first call to
  the last ``start()`` returned (the jobs end meanwhile, and their ends count against us);
  then half as many again, while one more task asks for the status of an ended job (a
  read of the store) every millisecond: its latency is the reads' wait behind the writes;
- start-to-end jobs/s with ``--callers`` callers, each starting a job and waiting for its
  end, again and again;
- the baselines: ``trio.run_process(["/bin/true"])`` with the same callers, and a bare
  ``os.posix_spawn`` + ``waitpid`` loop (the fork/exec floor of one process; a job needs
  two, its supervisor and itself).

It prints one table of medians over the rounds, and what the store's calls did: how long
they waited for the worker (queued) against how long they ran, how many commits the
starts took (where the store counts them), and CPU time per start: the manager's own (all
its threads), and its supervisors' and their jobs' (reaped children), which a busy machine
disturbs far less than rates. Run it against another tree with that tree's
venv: ``cd /work/wt-base && .venv/bin/python /path/to/bench/starts.py``.
"""

import argparse
import cProfile
import os
import platform
import pstats
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field

import trio

import jogger
from jogger import JobManager, ManagerLimits
from jogger.engine.cgroups import CgroupMode
from jogger.engine.observer import EngineObserver

OWNER = "bench"
TRUE = ["/bin/true"]


@dataclass
class StoreTimes(EngineObserver):
    """Store calls heard: total time per operation, and (where the store tells) queued and
    running time."""

    total: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    queued: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    running: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def store_call(self, operation: str, seconds: float) -> None:
        self.total[operation].append(seconds)

    def store_timing(self, operation: str, queued: float, running: float) -> None:
        self.queued[operation].append(queued)
        self.running[operation].append(running)


async def _starts(
    jobs: JobManager, n: int, callers: int, ended: str = "", reads: list[float] | None = None
) -> tuple[float, list[str]]:
    """n starts from ``callers`` tasks; the rate of start() returns, and the ids. With
    ``ended``, a job on record, one more task asks for its status (a store read) over and
    over meanwhile, and puts each one's latency in ``reads``."""
    ids: list[str] = []
    per = [n // callers + (1 if k < n % callers else 0) for k in range(callers)]

    async def caller(count: int) -> None:
        for _ in range(count):
            ids.append((await jobs.start(OWNER, TRUE)).id)

    async def reader() -> None:
        assert reads is not None
        while True:
            t0 = time.perf_counter()
            await jobs.status(OWNER, ended)
            reads.append(time.perf_counter() - t0)
            await trio.sleep(0.001)

    t0 = time.perf_counter()
    async with trio.open_nursery() as outer:
        if ended:
            outer.start_soon(reader)
        async with trio.open_nursery() as nursery:
            for count in per:
                nursery.start_soon(caller, count)
        rate = n / (time.perf_counter() - t0)
        outer.cancel_scope.cancel()  # the starts are done: so is the reader
    return rate, ids


async def _wait_all(jobs: JobManager, ids: list[str]) -> None:
    for job_id in ids:
        await jobs.wait(OWNER, job_id)


async def _start_to_end(jobs: JobManager, n: int, callers: int) -> float:
    async def caller(count: int) -> None:
        for _ in range(count):
            status = await jobs.start(OWNER, TRUE)
            await jobs.wait(OWNER, status.id)

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for k in range(callers):
            nursery.start_soon(caller, n // callers + (1 if k < n % callers else 0))
    return n / (time.perf_counter() - t0)


async def _run_process_rate(n: int, callers: int) -> float:
    async def caller(count: int) -> None:
        for _ in range(count):
            await trio.run_process(TRUE)

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for k in range(callers):
            nursery.start_soon(caller, n // callers + (1 if k < n % callers else 0))
    return n / (time.perf_counter() - t0)


def _posix_spawn_rate(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        pid = os.posix_spawn(TRUE[0], TRUE, {})
        os.waitpid(pid, 0)
    return n / (time.perf_counter() - t0)


async def one_round(
    n: int, callers: int, cgroups: CgroupMode, times: StoreTimes, profile: cProfile.Profile | None
) -> dict[str, float]:
    found: dict[str, float] = {}
    limits = ManagerLimits(max_jobs=100_000, max_jobs_per_owner=100_000, max_queued=0)
    with tempfile.TemporaryDirectory(prefix="jogger-starts-") as tmp:
        async with JobManager(tmp, limits=limits, cgroups=cgroups, observer=times) as jobs:
            await _wait_all(jobs, (await _starts(jobs, 20, 4))[1])  # warm-up
            store = jobs._store
            rate, ids = await _starts(jobs, max(50, n // 4), 1)
            found["starts/s, 1 caller"] = rate
            await _wait_all(jobs, ids)
            commits = getattr(store, "commits", None)
            times.queued.clear()
            times.running.clear()
            times.total.clear()
            if profile is not None:
                profile.enable()
            ended = ids[0]
            before = os.times()
            rate, ids = await _starts(jobs, n, callers)
            after = os.times()
            if profile is not None:
                profile.disable()
            found[f"starts/s, {callers} callers"] = rate
            # CPU time is what the load of other processes leaves alone: the manager's own
            # (all its threads) per start, during the burst.
            used = after.user + after.system - before.user - before.system
            found["manager CPU ms per start"] = used / n * 1e3
            if commits is not None:
                found["commits per start"] = (store.commits - commits) / n
            found["store record_start, total p50 ms"] = (
                statistics.median(times.total["record_start"]) * 1e3
            )
            if times.queued["record_start"]:
                found["store record_start, queued p50 ms"] = (
                    statistics.median(times.queued["record_start"]) * 1e3
                )
                found["store record_start, running p50 ms"] = (
                    statistics.median(times.running["record_start"]) * 1e3
                )
            await _wait_all(jobs, ids)
            done = os.times()
            children = done.children_user + done.children_system
            children -= before.children_user + before.children_system
            found["supervisor+job CPU ms per job"] = children / n * 1e3
            # Again, half as many, with a task reading the store meanwhile (apart, so that
            # its own CPU does not count against the starts above).
            times.total.clear()
            times.queued.clear()
            times.running.clear()
            reads: list[float] = []
            _, ids = await _starts(jobs, n // 2, callers, ended=ended, reads=reads)
            found["status of an ended job during starts, p50 ms"] = statistics.median(reads) * 1e3
            found["status of an ended job during starts, p99 ms"] = (
                sorted(reads)[int(0.99 * (len(reads) - 1))] * 1e3
            )
            if times.queued["get"]:
                found["store get, queued p50 ms"] = statistics.median(times.queued["get"]) * 1e3
                found["store get, running p50 ms"] = statistics.median(times.running["get"]) * 1e3
            await _wait_all(jobs, ids)
            found[f"start-to-end jobs/s, {callers} callers"] = await _start_to_end(
                jobs, n // 2, callers
            )
    found[f"baseline: trio.run_process/s, {callers} callers"] = await _run_process_rate(
        n // 2, callers
    )
    found["baseline: posix_spawn+waitpid/s, 1 caller"] = _posix_spawn_rate(n // 2)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="starts per measure")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument(
        "--cgroups",
        default="auto",
        choices=["auto", "cgroup2", "cgroup1", "none"],
        help="the manager's containment (none: process groups, found by walking /proc)",
    )
    parser.add_argument("--profile", help="write the cProfile of the concurrent starts here")
    args = parser.parse_args()
    profile = cProfile.Profile() if args.profile else None
    rounds: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.rounds):
        times = StoreTimes()
        found = trio.run(one_round, args.n, args.callers, args.cgroups, times, profile)
        for key, value in found.items():
            rounds[key].append(value)
    head = subprocess.run(
        ["git", "-C", os.path.dirname(jogger.__file__), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(
        f"jogger at {os.path.dirname(os.path.dirname(jogger.__file__))} ({head}); "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"trio {trio.__version__}; n={args.n}, rounds={args.rounds}, cgroups={args.cgroups}, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    for key, values in rounds.items():
        shown = " ".join(f"{v:.1f}" for v in values)
        print(f"{key:48} {statistics.median(values):10.2f}   ({shown})")
    if profile is not None:
        profile.dump_stats(args.profile)
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()

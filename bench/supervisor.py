"""Per-job supervisor benchmarks: this engine beside the one before it, in the same run.

    python bench/supervisor.py [--quick] [--rounds N] [--cgroups auto|none]

"new" is this checkout, where each job has its own supervisor (jogger-supervise) that spawns
it and writes its log. "old" is commit 3983a33, the last where each job was a child of the
server itself; its tree is extracted from git into a temporary directory and its extension
(_spawn.c) compiled there. Every figure is measured in a child process of this script that
imports one engine or the other (PYTHONPATH), the two alternating measure by measure and
round by round, so that a busy machine weighs on both alike. A child prints its samples as
JSON; this script pools them, prints one table (medians unless a row says otherwise; ratio:
new / old), and checks that nothing is left behind: no process, no cgroup, no directory.

1. Memory per job, over 50 ``sleep 300`` jobs: each supervisor's PSS, and its private bytes
   (Private_Clean + Private_Dirty), from /proc/PID/smaps_rollup; its page tables (VmPTE,
   kernel memory that neither figure counts). The old engine has no supervisor: beside
   these stands the job's own process (``sleep``) under the old engine. Then what the server
   itself grows by, per running job: its private memory and its open fds, new and old.
   Target: a supervisor costs at most 1 MiB.
2. ``start()`` of ``/bin/true`` to exec'd, p50 and p99 (each job awaited before the next).
   Target: p50 at most 1 ms above the old engine's.
3. ``dd`` of 1 GiB into the log with 10 followers reading 1 MiB chunks, MB/s from the start
   until all of them have it all, each run after a 64 MiB warm-up (bench/engine.py's row).
   Target: at least the old engine's.
4. A job writes its CLOCK_MONOTONIC time every 2 ms, a follower subtracts it from the time
   it receives the line (bench/engine.py's row), p50 and p99. Target: p50 at most 1 ms.
5. Adoption: a manager with ``on_shutdown="keep"`` leaves 200 ``sleep 300`` jobs running;
   the time until ``async with JobManager(state)`` is entered by the next manager, which
   adopts them (each manager in a process of its own, as after a server restart). New
   engine only; baseline: entering a manager on an empty state dir. No target.
"""

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import trio

import jogger
from jogger import JobManager, JobState, ManagerLimits
from jogger.engine.cgroups import CgroupMode

OLD_COMMIT = "3983a33"
"""The last commit whose jobs are the server's own children (cgroups v2: _close_fds)."""
REPO = Path(__file__).resolve().parent.parent
SUPERVISOR = REPO / "jogger" / "engine" / "jogger-supervise"
OWNER = "bench"
LIMITS = ManagerLimits(max_jobs=1000, max_jobs_per_owner=1000, max_output_bytes=2 << 30)
CHILD_TIMEOUT = 600.0
"""Seconds one measurement child may take; then it is interrupted, and its jobs stopped."""
# bench/engine.py's: writes its CLOCK_MONOTONIC time, then waits a little, ``n`` times.
STAMPER = """
import os, sys, time
for _ in range(int(sys.argv[1])):
    os.write(1, b"%d\\n" % time.monotonic_ns())
    time.sleep(0.002)
"""
Result = dict[str, Any]


# ---- the measurements, in a child process that imports one engine --------------------------


def manager(state: Path, cgroups: CgroupMode, *, keep: bool = False) -> JobManager:
    if keep:  # the old engine has no on_shutdown: only the new one is asked to keep
        return JobManager(state, limits=LIMITS, cgroups=cgroups, on_shutdown="keep")
    return JobManager(state, limits=LIMITS, cgroups=cgroups)


def memory_kib(pid: int) -> dict[str, int]:
    """Pss, Private (clean + dirty) and VmPTE of process ``pid``, in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        fields[key] = int(value.split()[0])
    pte = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmPTE:"):
            pte = int(line.split()[1])
    return {
        "pss": fields["Pss"],
        "private": fields["Private_Clean"] + fields["Private_Dirty"],
        "pte": pte,
    }


def parent_of(pid: int) -> int:
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def memory(jobs: JobManager, count: int) -> Result:
    warm = await jobs.start(OWNER, ["/bin/true"])  # every code path of a start, once
    await jobs.wait(OWNER, warm.id)
    server_before, fds_before = memory_kib(os.getpid())["private"], open_fds()
    started = [await jobs.start(OWNER, ["sleep", "300"]) for _ in range(count)]
    await trio.sleep(0.5)  # past the jobs' own start-up
    server_after, fds_after = memory_kib(os.getpid())["private"], open_fds()
    supervisors: list[dict[str, int]] = []
    job_memory: list[dict[str, int]] = []
    for status in started:
        job_memory.append(memory_kib(status.pid))
        parent = parent_of(status.pid)
        if parent != os.getpid():
            supervisors.append(memory_kib(parent))
    return {
        "supervisors": supervisors,
        "jobs": job_memory,
        "server_private_per_job": (server_after - server_before) / count,
        "server_fds_per_job": (fds_after - fds_before) / count,
    }


async def start_latency(jobs: JobManager, count: int) -> Result:
    for _ in range(3):  # warm-up
        await jobs.wait(OWNER, (await jobs.start(OWNER, ["/bin/true"])).id)
    samples = []
    for _ in range(count):
        t0 = time.perf_counter()
        status = await jobs.start(OWNER, ["/bin/true"])
        samples.append(time.perf_counter() - t0)
        await jobs.wait(OWNER, status.id)
    return {"samples": samples}


async def write_to_follower(jobs: JobManager, count: int) -> Result:
    samples: list[float] = []
    status = await jobs.start(OWNER, [sys.executable, "-c", STAMPER, str(count)])
    pending = b""
    async with jobs.output(OWNER, status.id) as chunks:
        async for chunk in chunks:
            now = time.monotonic_ns()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            samples.extend((now - int(line)) / 1e9 for line in lines)
    return {"samples": samples}


async def log_rate(jobs: JobManager, state: Path, mib: int, followers: int) -> float:
    """MB/s of ``dd`` into the log, until each of ``followers`` has read all of it."""
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
    rate = mib * 1.048576 / (time.perf_counter() - t0)
    assert counts == [mib << 20] * followers, counts
    assert final.output_bytes == mib << 20
    os.unlink(state / "logs" / f"{status.id}.log")
    return rate


async def throughput(jobs: JobManager, state: Path, mib: int, warm_up: int) -> Result:
    await log_rate(jobs, state, warm_up, 10)  # the first big file is slower
    return {"rate": await log_rate(jobs, state, mib, 10)}


async def keep_running(jobs: JobManager, count: int) -> Result:
    for _ in range(count):
        await jobs.start(OWNER, ["sleep", "300"])
    return {"started": count}


async def child(measure: str, state: Path, cgroups: CgroupMode, count: int, mib: int) -> Result:
    keep = measure in ("keep", "adopt-and-keep")
    t0 = time.perf_counter()
    async with manager(state, cgroups, keep=keep) as jobs:
        entered = time.perf_counter() - t0
        result: Result = {"jogger": jogger.__file__, "containment": jobs.containment}
        if measure == "memory":
            result |= await memory(jobs, count)
        elif measure == "start":
            result |= await start_latency(jobs, count)
        elif measure == "stamp":
            result |= await write_to_follower(jobs, count)
        elif measure == "throughput":
            result |= await throughput(jobs, state, mib, warm_up=max(1, min(64, mib // 4)))
        elif measure == "keep":
            result |= await keep_running(jobs, count)
        else:  # "enter", "adopt-and-keep", "adopt-and-stop"
            page = await jobs.list(OWNER, page_size=1000)
            running = sum(s.state is JobState.RUNNING for s in page.jobs)
            result |= {"seconds": entered, "running": running}
    return result


# ---- the parent: two engines, alternating --------------------------------------------------


@dataclass(frozen=True)
class Engine:
    name: str
    root: Path


@dataclass
class Runner:
    """Runs measurement children in ``tmp``, and knows which state dirs may hold jobs."""

    tmp: Path
    cgroups: str
    states: list[Path] = field(default_factory=list)
    dirty: dict[Path, Engine] = field(default_factory=dict)
    containment: str = ""

    def new_state(self, label: str) -> Path:
        state = self.tmp / f"state-{len(self.states)}-{label}"
        self.states.append(state)
        return state

    def run(
        self, engine: Engine, measure: str, state: Path, *, count: int = 0, mib: int = 0
    ) -> Result:
        self.dirty[state] = engine
        argv = [sys.executable, __file__, "--child", measure, "--state", str(state)]
        argv += ["--count", str(count), "--mib", str(mib), "--cgroups", self.cgroups]
        env = dict(os.environ, PYTHONPATH=str(engine.root))
        # The child's cwd is our temporary directory, and so is that of every supervisor and
        # job it starts: leftovers are the processes whose cwd is under it.
        with subprocess.Popen(argv, cwd=self.tmp, env=env, stdout=subprocess.PIPE) as process:
            try:
                out, _ = process.communicate(timeout=CHILD_TIMEOUT)
            except BaseException:
                # Interrupted (Ctrl-C reached it too) or too slow: a child that leaves its
                # manager stops its jobs, so it gets the time to.
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=60)
                finally:
                    process.kill()
                raise
        if process.returncode != 0:
            raise RuntimeError(f"{engine.name} {measure}: the child exited {process.returncode}")
        result: Result = json.loads(out.decode().splitlines()[-1])
        if not Path(result["jogger"]).is_relative_to(engine.root):
            raise RuntimeError(f"{engine.name} {measure} imported {result['jogger']}")
        self.containment = result["containment"]
        if measure not in ("keep", "adopt-and-keep"):
            del self.dirty[state]  # left with on_shutdown="stop": every job stopped
        return result

    def clean_up(self) -> list[str]:
        """Stop whatever jobs a failed or interrupted run left in its state dirs, remove our
        temporary directory, and say what is left (on stderr too)."""
        for state, engine in list(self.dirty.items()):
            try:
                self.run(engine, "enter", state)
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                print(f"cannot clean up {state}: {exc}", file=sys.stderr)
        shutil.rmtree(self.tmp, ignore_errors=True)
        left = leftovers(self.tmp, self.states)
        for item in left:
            print(f"left behind: {item}", file=sys.stderr)
        return left


def build_old_engine(tmp: Path) -> Path:
    """Commit OLD_COMMIT's jogger package, with its extension built in place; its root.

    Extracted with git archive, not checked out as a worktree: the repository's worktree
    list is shared with other checkouts, and an interrupted run must not leave an entry.
    """
    root = tmp / "old"
    root.mkdir()
    archive = tmp / "old.tar"
    subprocess.run(
        ["git", "-C", str(REPO), "archive", f"--output={archive}", OLD_COMMIT, "jogger"],
        check=True,
    )
    subprocess.run(["tar", "-xf", str(archive), "-C", str(root)], check=True)
    archive.unlink()
    extension = "_spawn" + str(sysconfig.get_config_var("EXT_SUFFIX"))
    engine_dir = root / "jogger" / "engine"
    subprocess.run(
        [
            "cc",
            "-O2",
            "-shared",
            "-fPIC",
            f"-I{sysconfig.get_paths()['include']}",
            str(engine_dir / "_spawn.c"),
            "-o",
            str(engine_dir / extension),
        ],
        check=True,
    )
    return root


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Row:
    what: str
    new: float
    old: float | None
    unit: str
    baseline: str
    target: str = "-"
    met: Callable[[float, float], bool] | None = None

    def ratio(self) -> str:
        return f"{self.new / self.old:.2f}" if self.old else "-"

    def verdict(self) -> str:
        if self.met is None:
            return self.target
        return f"{self.target}: {'met' if self.met(self.new, self.old or 0.0) else 'NOT met'}"


@dataclass(frozen=True)
class Sizes:
    rounds: int
    jobs: int  # running at once, for the memory figures, in each round
    starts: int  # in all rounds together, as are stamps
    stamps: int
    mib: int
    adopted: int

    def per_round(self, total: int) -> int:
        return -(-total // self.rounds)


def measure_both(runner: Runner, engines: list[Engine], sizes: Sizes) -> list[Row]:
    found: dict[tuple[str, str], list[Result]] = {}
    plan: list[tuple[str, dict[str, int]]] = [
        ("memory", {"count": sizes.jobs}),
        ("start", {"count": sizes.per_round(sizes.starts)}),
        ("stamp", {"count": sizes.per_round(sizes.stamps)}),
        ("throughput", {"mib": sizes.mib}),
    ]
    for r in range(sizes.rounds):
        for m, (measure, options) in enumerate(plan):
            # Each engine goes first as often as the other.
            for engine in engines if (r + m) % 2 == 0 else engines[::-1]:
                state = runner.new_state(f"{engine.name}-{measure}")
                result = runner.run(engine, measure, state, **options)
                found.setdefault((engine.name, measure), []).append(result)
                shutil.rmtree(state)

    def pooled(engine: str, measure: str, key: str) -> list[Any]:
        return [x for result in found[(engine, measure)] for x in result[key]]

    def each(engine: str, measure: str, key: str) -> list[float]:
        return [float(result[key]) for result in found[(engine, measure)]]

    rows = []
    old_jobs = pooled("old", "memory", "jobs")
    supervisors = pooled("new", "memory", "supervisors")
    if not supervisors:
        raise RuntimeError("the new engine's jobs have no supervisor: is this checkout new?")
    for key, name in (("pss", "PSS"), ("private", "private (clean + dirty)")):
        rows.append(
            Row(
                f"supervisor {name} per job",
                statistics.median(s[key] for s in supervisors),
                statistics.median(j[key] for j in old_jobs),
                "KiB",
                f"the job's own (sleep, {OLD_COMMIT})",
                "<= 1024 KiB",
                lambda new, old: new <= 1024,
            )
        )
    rows.append(
        Row(
            "supervisor page tables (VmPTE) per job",
            statistics.median(s["pte"] for s in supervisors),
            statistics.median(j["pte"] for j in old_jobs),
            "KiB",
            f"the job's own (sleep, {OLD_COMMIT})",
        )
    )
    for key, name, unit in (
        ("server_private_per_job", "server private memory per running job", "KiB"),
        ("server_fds_per_job", "server fds per running job", "fds"),
    ):
        rows.append(
            Row(
                name,
                statistics.median(each("new", "memory", key)),
                statistics.median(each("old", "memory", key)),
                unit,
                OLD_COMMIT,
            )
        )
    new_starts, old_starts = pooled("new", "start", "samples"), pooled("old", "start", "samples")
    n = len(new_starts)
    rows.append(
        Row(
            f"start() to exec'd, p50 (n={n})",
            statistics.median(new_starts) * 1e3,
            statistics.median(old_starts) * 1e3,
            "ms",
            OLD_COMMIT,
            "<= old + 1 ms",
            lambda new, old: new <= old + 1,
        )
    )
    rows.append(
        Row(
            f"start() to exec'd, p99 (n={n})",
            percentile(new_starts, 0.99) * 1e3,
            percentile(old_starts, 0.99) * 1e3,
            "ms",
            OLD_COMMIT,
        )
    )
    new_stamps, old_stamps = pooled("new", "stamp", "samples"), pooled("old", "stamp", "samples")
    n = len(new_stamps)
    rows.append(
        Row(
            f"job write() to follower, p50 (n={n})",
            statistics.median(new_stamps) * 1e3,
            statistics.median(old_stamps) * 1e3,
            "ms",
            OLD_COMMIT,
            "<= 1 ms",
            lambda new, old: new <= 1,
        )
    )
    rows.append(
        Row(
            f"job write() to follower, p99 (n={n})",
            percentile(new_stamps, 0.99) * 1e3,
            percentile(old_stamps, 0.99) * 1e3,
            "ms",
            OLD_COMMIT,
        )
    )
    rows.append(
        Row(
            f"{sizes.mib} MiB into the log, 10 followers ({sizes.rounds} runs)",
            statistics.median(each("new", "throughput", "rate")),
            statistics.median(each("old", "throughput", "rate")),
            "MB/s",
            OLD_COMMIT,
            ">= old",
            lambda new, old: new >= old,
        )
    )
    return rows


def measure_adoption(runner: Runner, new: Engine, sizes: Sizes) -> Row:
    kept = runner.new_state("new-adopt")
    runner.run(new, "keep", kept, count=sizes.adopted)
    adopted: list[float] = []
    empty: list[float] = []

    def adopt(measure: str) -> None:
        result = runner.run(new, measure, kept)
        if result["running"] != sizes.adopted:
            raise RuntimeError(f"adopted {result['running']} jobs of {sizes.adopted}")
        adopted.append(result["seconds"])

    def enter_empty() -> None:
        state = runner.new_state("new-empty")
        empty.append(runner.run(new, "enter", state)["seconds"])
        shutil.rmtree(state)

    for r in range(sizes.rounds):
        for step in (adopt, enter_empty) if r % 2 == 0 else (enter_empty, adopt):
            if step is adopt:
                adopt("adopt-and-keep")
            else:
                enter_empty()
    adopt("adopt-and-stop")  # the last one stops them all
    return Row(
        f"enter a manager adopting {sizes.adopted} jobs ({len(adopted)} runs)",
        statistics.median(adopted) * 1e3,
        statistics.median(empty) * 1e3,
        "ms",
        f"an empty state dir, new ({len(empty)} runs)",
    )


# ---- nothing left behind -------------------------------------------------------------------


def cgroup_names(states: list[Path]) -> set[str]:
    """The cgroup each state dir's manager makes (JobManager's default cgroup_name)."""
    return {
        "jogger-" + hashlib.sha256(os.fsencode(os.path.realpath(s))).hexdigest()[:12]
        for s in states
    }


def leftovers(tmp: Path, states: list[Path]) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            exe = os.readlink(entry / "exe")
        except OSError:
            continue  # gone, or a kernel thread
        if cwd.startswith(str(tmp)) or exe == str(SUPERVISOR):
            found.append(f"process {entry.name} ({exe}, in {cwd})")
    names = cgroup_names(states)
    for top, dirs, _ in os.walk("/sys/fs/cgroup"):
        for name in dirs:
            if name in names:
                found.append(f"cgroup {top}/{name}")
        # Job groups are made under the server's own group: a few levels down at most.
        dirs[:] = [] if top.count("/") >= 7 else [d for d in dirs if d not in names]
    if tmp.exists():
        found.append(f"directory {tmp}")
    return found


# ---- the table -------------------------------------------------------------------------------


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine(containment: str) -> str:
    u = platform.uname()
    return (
        f"{u.system} {u.release} {u.machine}, nproc {len(os.sched_getaffinity(0))}, "
        f"Python {platform.python_version()}, trio {trio.__version__}, {containment} backend, "
        f"{'root' if os.geteuid() == 0 else 'not root'}; load average after: {load_average()}"
    )


def print_table(rows: list[Row]) -> None:
    header = f"{'measure':46} {'new':>9} {'old':>9} {'ratio':>6}  {'unit':6} {'target':22} old is"
    print(header)
    print("-" * len(header))
    for r in rows:
        old = f"{r.old:9.2f}" if r.old is not None else f"{'-':>9}"
        print(
            f"{r.what:46} {r.new:9.2f} {old} {r.ratio():>6}  {r.unit:6} {r.verdict():22} "
            f"{r.baseline}"
        )


def main(quick: bool, rounds: int | None, cgroups: str) -> int:
    if not SUPERVISOR.exists():
        sys.exit(f"{SUPERVISOR} is missing: build it with `make venv`")
    sizes = (
        Sizes(rounds or 2, jobs=10, starts=40, stamps=100, mib=64, adopted=20)
        if quick
        else Sizes(rounds or 8, jobs=50, starts=200, stamps=500, mib=1024, adopted=200)
    )
    print(f"load average before: {load_average()}", flush=True)
    began = time.perf_counter()
    runner = Runner(Path(tempfile.mkdtemp(prefix="jogger-bench-supervisor-")), cgroups)
    try:
        engines = [Engine("old", build_old_engine(runner.tmp)), Engine("new", REPO)]
        rows = measure_both(runner, engines, sizes)
        rows.append(measure_adoption(runner, engines[1], sizes))
    finally:
        left = runner.clean_up()
    print(machine(runner.containment))
    print(f"ran {time.perf_counter() - began:.0f} s, old = {OLD_COMMIT}, new = this checkout")
    print()
    print_table(rows)
    print()
    print("left behind:", "SEE ABOVE" if left else "no process, no cgroup, no directory")
    return 1 if left else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    parser.add_argument("--rounds", type=int, help="old/new alternations (default 8, quick 2)")
    parser.add_argument("--cgroups", choices=["auto", "none"], default="auto")
    # A measurement child's (see Runner.run).
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--mib", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode = cast(CgroupMode, args.cgroups)
        print(json.dumps(trio.run(child, args.child, args.state, mode, args.count, args.mib)))
    else:
        sys.exit(main(args.quick, args.rounds, args.cgroups))

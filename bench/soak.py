"""Soak: many users, many live jobs, many followers, for minutes, on loopback.

    python bench/soak.py [--duration 300] [--users 8] [--jobs 50] [--followers 5] [--unary-apart]
        [--trace JSON] [--profile PSTATS]

A real jogger-server (a subprocess, state and certificates in a temporary directory) serves
``--users`` users. Each user keeps ``--jobs`` jobs running at all times: a job prints a line
every 10 to 50 ms for 2 to 6 seconds and ends, and another takes its place. Each job has
``--followers`` followers that read its Output stream from byte 0 to the end and compare every
byte with what the job prints (known in advance), and its final status with "completed, exit
0"; once a follower has seen the end, the job's Status must say so too. A user's calls share
a handful of connections (at most about 100 streams on each; the server allows 128); with
``--unary-apart`` a user's Start, Status and List calls have one more to themselves, as a
``jog start`` has, instead of waiting behind the followers' data for the connection's
flow-control window. Once a second each user lists its newest 100 jobs.

Every 5 s a row: the server's RSS and open fds (from /proc), its CPU, the calls finished, jobs
started, bytes followed and errors in that interval. Then a summary: errors (each distinct one),
RSS over the first and last minute, fds, p50/p99 of Start, Status and List as the client sees
them. At ``--duration`` no job is started any more; jobs in flight finish (at most
``DRAIN`` seconds more), then the server gets SIGTERM, and the temporary directory goes.
Exits 1 if there was any error or anything was left behind.
"""

import argparse
import contextlib
import glob
import hashlib
import json
import math
import os
import platform
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from jogger.engine.cgroups import fs as cgroup_fs
from jogger.engine.procfs import live_processes
from jogger.rpc.client import JobsClient, connect
from jogger.rpc.errors import RpcError
from jogger.rpc.failures import TransportError
from jogger.rpc.tls import client_context
from jogger.v1 import jobs_pb2

BIN = Path(sys.executable).parent
SAMPLE_EVERY = 5.0
DRAIN = 20.0
"""After --duration: how long jobs in flight get to finish before everything is cancelled."""
CALL_TIMEOUT = 60.0
"""A unary call that takes longer is an error (the server is overloaded or stuck)."""
STREAMS_PER_CONNECTION = 100
"""Our own cap on the calls we put on one connection; the server allows 128."""
LINE_PAD = "." * 32

# One line every INTERVAL ms, N lines, each "TAG NNNNN ....": what we compare the output with.
JOB_SCRIPT = (
    "$| = 1; my ($tag, $n, $ms) = @ARGV; "
    'for my $i (0 .. $n - 1) { printf("%s %05d %s\\n", $tag, $i, \'' + LINE_PAD + "'); "
    "select(undef, undef, undef, $ms / 1000) }"
)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class SoakError(Exception):
    """What a follower or a slot saw that it should not have."""


@dataclass
class Interval:
    calls: int = 0
    starts: int = 0
    bytes: int = 0
    errors: int = 0
    latency: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class Sample:
    at: float
    rss_kib: int
    fds: int
    cpu_percent: float
    interval: Interval
    jobs_running: int
    followers: int


@dataclass
class Stats:
    started: float
    now: Interval = field(default_factory=Interval)
    samples: list[Sample] = field(default_factory=list)
    latency: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    jobs_started: int = 0
    jobs_checked: int = 0
    bytes_followed: int = 0
    jobs_running: int = 0
    followers: int = 0
    job_pids: set[int] = field(default_factory=set)
    lag: list[float] = field(default_factory=list)

    def timed(self, rpc: str, seconds: float) -> None:
        self.latency.setdefault(rpc, []).append(seconds)
        self.now.latency.setdefault(rpc, []).append(seconds)
        self.now.calls += 1

    def error(self, what: str, exc: BaseException) -> None:
        # Job ids differ from error to error; the distinct errors are what we want to see.
        text = UUID.sub("<id>", f"{what}: {type(exc).__name__}: {exc}")[:300]
        self.errors[text] += 1
        self.now.errors += 1


@dataclass(frozen=True)
class Job:
    tag: str
    lines: int
    interval_ms: int

    @property
    def argv(self) -> list[str]:
        return ["perl", "-e", JOB_SCRIPT, self.tag, str(self.lines), str(self.interval_ms)]

    def output(self) -> bytes:
        return "".join(f"{self.tag} {i:05d} {LINE_PAD}\n" for i in range(self.lines)).encode()


class Soak:
    def __init__(self, args: argparse.Namespace, port: int, certs: Path, stats: Stats) -> None:
        self.args = args
        self.port = port
        self.certs = certs
        self.stats = stats
        self.stop_starting_at = stats.started + args.duration
        calls_per_user = args.jobs * (args.followers + 1) + 1
        self.connections = max(4, math.ceil(calls_per_user / STREAMS_PER_CONNECTION))
        # With --unary-apart, one more: the user's Start, Status and List calls alone.
        self.apart = 1 if args.unary_apart else 0

    @asynccontextmanager
    async def clients(self, user: str) -> AsyncIterator[list[JobsClient]]:
        context = client_context(
            self.certs / "ca.pem", self.certs / f"{user}.pem", self.certs / f"{user}-key.pem"
        )
        async with AsyncExitStack() as stack:
            yield [
                await stack.enter_async_context(connect("127.0.0.1", self.port, context))
                for _ in range(self.connections + self.apart)
            ]

    async def user(self, index: int) -> None:
        user = f"soak{index}"
        while trio.current_time() < self.stop_starting_at:
            try:
                async with self.clients(user) as clients, trio.open_nursery() as nursery:
                    nursery.start_soon(self.lister, clients[-1] if self.apart else clients[0])
                    for slot in range(self.args.jobs):
                        nursery.start_soon(self.slot, clients, index, slot)
                return
            except TransportError as exc:
                # A connection that could not be made (an overloaded server may not finish
                # a handshake in time) is an error of the soak's, not its end: try again.
                # (What the calls raise comes as an ExceptionGroup, and goes on up.)
                self.stats.error(f"connect as {user}", exc)
                await trio.sleep(1.0)

    async def lister(self, client: JobsClient) -> None:
        while trio.current_time() < self.stop_starting_at:
            t0 = time.perf_counter()
            try:
                with trio.fail_after(CALL_TIMEOUT):
                    await client.list_page(page_size=100)
            except (RpcError, TransportError, trio.TooSlowError) as exc:
                self.stats.error("List", exc)
            else:
                self.stats.timed("List", time.perf_counter() - t0)
            await trio.sleep(1.0)

    async def slot(self, clients: list[JobsClient], user: int, slot: int) -> None:
        """One of the user's jobs at a time, for ever: start it, follow it, check its end."""
        rng = random.Random(user * 100_000 + slot)
        spread = slot * (self.args.followers + 1)  # the slot's calls, over the connections
        n = 0
        while trio.current_time() < self.stop_starting_at:
            interval = rng.randint(10, 50)
            job = Job(f"u{user}s{slot}n{n}", int(rng.uniform(2000, 6000) / interval), interval)
            n += 1
            try:
                await self.run_job(clients, spread, job)
            except (RpcError, TransportError, trio.TooSlowError, SoakError) as exc:
                self.stats.error(f"job {job.tag}", exc)
                await trio.sleep(1.0)  # a server in trouble is not hammered by a tight loop

    async def run_job(self, clients: list[JobsClient], spread: int, job: Job) -> None:
        followed = clients[: self.connections]
        owner = clients[-1] if self.apart else followed[spread % len(followed)]
        t0 = time.perf_counter()
        with trio.fail_after(CALL_TIMEOUT):
            status = await owner.start(job.argv)
        self.stats.timed("Start", time.perf_counter() - t0)
        self.stats.jobs_started += 1
        self.stats.now.starts += 1
        self.stats.job_pids.add(status.pid)
        self.stats.jobs_running += 1
        ended: list[str] = []  # the job's id, once for each follower that saw its end
        try:
            expected = job.output()
            async with trio.open_nursery() as nursery:
                for f in range(self.args.followers):
                    client = followed[(spread + 1 + f) % len(followed)]
                    nursery.start_soon(self.follow, client, status.job_id, job, expected, ended)
        finally:
            self.stats.jobs_running -= 1
        t0 = time.perf_counter()
        with trio.fail_after(CALL_TIMEOUT):
            final = await owner.status(status.job_id)
        self.stats.timed("Status", time.perf_counter() - t0)
        if not ended:
            # Every follower failed (each counted in Output's errors): the job may well
            # still run, so its status says nothing yet.
            return
        if (final.state, final.exit_code, final.output_bytes) != (
            jobs_pb2.JOB_STATE_COMPLETED,
            0,
            len(expected),
        ):
            raise SoakError(f"status: {describe(final)}; {len(expected)} bytes expected")
        self.stats.jobs_checked += 1

    async def follow(
        self, client: JobsClient, job_id: str, job: Job, expected: bytes, ended: list[str]
    ) -> None:
        """Read the job's output to the end; every byte and the final status must be right.
        Appends the job's id to ``ended`` if all was."""
        self.stats.followers += 1
        position = 0
        final: jobs_pb2.JobStatus | None = None
        try:
            # The job runs at most about 6 s; the rest is room for an overloaded machine.
            with trio.fail_after(CALL_TIMEOUT + job.lines * job.interval_ms / 1000):
                async with client.output(job_id) as chunks:
                    async for chunk in chunks:
                        if chunk.offset != position:
                            raise SoakError(f"chunk at {chunk.offset}, expected {position}")
                        if chunk.data != expected[position : position + len(chunk.data)]:
                            raise SoakError(f"wrong bytes at {position} of {job.tag}")
                        position += len(chunk.data)
                        self.stats.bytes_followed += len(chunk.data)
                        self.stats.now.bytes += len(chunk.data)
                        if chunk.HasField("final"):
                            final = chunk.final
            if position != len(expected):
                raise SoakError(f"followed {position} of {len(expected)} bytes")
            if final is None or (final.state, final.exit_code) != (
                jobs_pb2.JOB_STATE_COMPLETED,
                0,
            ):
                raise SoakError(f"final status in the stream: {final and describe(final)}")
            ended.append(job_id)
            self.stats.now.calls += 1
        except (RpcError, TransportError, trio.TooSlowError, SoakError) as exc:
            self.stats.error("Output", exc)
        finally:
            self.stats.followers -= 1


def describe(status: jobs_pb2.JobStatus) -> str:
    end = status.WhichOneof("end")
    return (
        f"{jobs_pb2.JobState.Name(status.state)} {end}={getattr(status, end) if end else '-'} "
        f"reason={status.reason or '-'} output_error={status.output_error or '-'} "
        f"output_bytes={status.output_bytes}"
    )


# ---- the server and what /proc says about it ---------------------------------------------------


def proc_sample(pid: int) -> tuple[int, int, float]:
    """RSS (KiB), open fds, and CPU seconds used so far, of process ``pid``."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, fds, cpu


async def sampler(pid: int, stats: Stats, stop_at: float) -> None:
    print(
        f"{'t s':>6} {'RSS MiB':>8} {'fds':>6} {'CPU %':>6} {'jobs':>5} {'follow':>6} "
        f"{'calls':>6} {'starts':>6} {'MiB out':>8} {'errors':>6} {'Start p99':>10} "
        f"{'load':>5}"
    )
    _, _, cpu_before = proc_sample(pid)
    while trio.current_time() < stop_at:
        await trio.sleep(SAMPLE_EVERY)
        rss, fds, cpu = proc_sample(pid)
        interval, stats.now = stats.now, Interval()
        sample = Sample(
            trio.current_time() - stats.started,
            rss,
            fds,
            (cpu - cpu_before) / SAMPLE_EVERY * 100,
            interval,
            stats.jobs_running,
            stats.followers,
        )
        cpu_before = cpu
        stats.samples.append(sample)
        starts = interval.latency.get("Start", [])
        p99 = f"{percentile(starts, 0.99) * 1000:8.1f}ms" if starts else "-"
        print(
            f"{sample.at:6.0f} {rss / 1024:8.1f} {fds:6d} {sample.cpu_percent:6.0f} "
            f"{sample.jobs_running:5d} {sample.followers:6d} {interval.calls:6d} "
            f"{interval.starts:6d} {interval.bytes / 2**20:8.2f} {interval.errors:6d} {p99:>10} "
            f"{os.getloadavg()[0]:5.1f}",
            flush=True,
        )


SERVER_RPC = re.compile(r"rpc method=/jogger\.v1\.Jobs/(\w+) .* status=OK duration_ms=([0-9.]+)")


def server_durations(server_log: str) -> dict[str, list[float]]:
    """How long the server took over each successful call, by method, in seconds."""
    durations: dict[str, list[float]] = {"Start": [], "Status": [], "List": [], "Output": []}
    for match in SERVER_RPC.finditer(server_log):
        durations.setdefault(match[1], []).append(float(match[2]) / 1000)
    return durations


async def lag_probe(stats: Stats, stop_at: float) -> None:
    """How late our own event loop wakes a sleeper: latency the client adds to every call."""
    while trio.current_time() < stop_at:
        t0 = trio.current_time()
        await trio.sleep(0.1)
        stats.lag.append(trio.current_time() - t0 - 0.1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@asynccontextmanager
async def jogger_server(
    tmp: Path, args: argparse.Namespace
) -> AsyncIterator[tuple[trio.Process, int]]:
    """The real server on a free loopback port; SIGTERM and reaped when the block ends."""
    log_path = tmp / "server.log"
    total = args.users * args.jobs
    env = dict(os.environ)
    server: list[str | Path] = [BIN / "jogger-server"]
    if args.trace or args.profile:
        # The same server, with its steps timed (bench/soak_trace.py).
        server = [sys.executable, Path(__file__).with_name("soak_trace.py")]
        env["JOGGER_SOAK_TRACE"] = args.trace or str(tmp / "trace.json")
        if args.profile:
            env["JOGGER_SOAK_PROFILE"] = args.profile
    with log_path.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            [
                *server,
                "--listen",
                "127.0.0.1:0",
                "--state-dir",
                tmp / "state",
                "--ca-cert",
                tmp / "certs" / "ca.pem",
                "--cert",
                tmp / "certs" / "server.pem",
                "--key",
                tmp / "certs" / "server-key.pem",
                # Room for a job that has ended while its successor starts.
                "--max-jobs",
                str(2 * total + 16),
                "--max-jobs-per-user",
                str(2 * args.jobs + 16),
                "--grace",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            env=env,
        )
    try:
        port = await _listening_port(log_path, process)
        yield process, port
    finally:
        # Shielded: the server must be stopped and reaped whatever ended the soak (Ctrl-C
        # included), or it would outlive us with its jobs. Bounded by the kill below.
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with trio.move_on_after(30):
                    await process.wait()
                if process.returncode is None:
                    print("jogger-server did not stop on SIGTERM within 30 s: SIGKILL")
                    process.kill()
                    await process.wait()
                    # Its supervisors and jobs outlive it by design (live restore); on a
                    # shared machine, the soak's must not outlive the soak.
                    print(f"killed what the server left: {kill_leftovers(tmp)} processes")
                    await remove_cgroups(tmp / "state")


def kill_leftovers(tmp: Path) -> int:
    """SIGKILL the supervisors that hold files under ``tmp`` (the soak's state), and every
    process in the sessions of their jobs (a job leads its own session: its pid). How many."""

    def holds_ours(pid: int) -> bool:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            return False
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(tmp)):
                    return True
        return False

    supervisors = set(live_processes(lambda stat: stat.sid != os.getsid(0)))
    supervisors = {pid for pid in supervisors if holds_ours(pid)}
    jobs = set(live_processes(lambda stat: stat.ppid in supervisors))
    doomed = set(live_processes(lambda stat: stat.sid in jobs)) | jobs | supervisors
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(doomed)


def cgroups_of(state_dir: Path) -> list[Path]:
    """The cgroups of the server of ``state_dir``: ``jogger-<hash of it>`` in every
    hierarchy (see JobManager)."""
    digest = hashlib.sha256(os.fsencode(os.path.realpath(state_dir))).hexdigest()[:12]
    return [Path(p) for p in glob.glob(f"/sys/fs/cgroup/**/jogger-{digest}", recursive=True)]


async def remove_cgroups(state_dir: Path) -> None:
    """Remove the cgroups a SIGKILLed server of ``state_dir`` left (its jobs killed)."""
    for root in cgroups_of(state_dir):
        try:
            await cgroup_fs.remove_tree(root)
        except OSError as exc:
            print(f"cannot remove {root}: {exc}")


async def _listening_port(log_path: Path, process: trio.Process) -> int:
    with trio.fail_after(30):
        while True:
            log = await trio.Path(log_path).read_text()
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", log)
            if match:
                return int(match[1])
            if process.returncode is not None:
                raise RuntimeError(f"jogger-server exited: {log[-2000:]}")
            await trio.sleep(0.05)


# ---- the run -----------------------------------------------------------------------------------


async def soak(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="jogger-soak-") as tmp_name:
        tmp = Path(tmp_name)
        users = [f"soak{i}" for i in range(args.users)]
        await trio.run_process(
            [BIN / "jogger", "certs", "--out", tmp / "certs", *(f"--user={u}" for u in users)],
            capture_stdout=True,
            capture_stderr=True,
        )
        async with jogger_server(tmp, args) as (server, port):
            idle_before = proc_sample(server.pid)
            stats = Stats(trio.current_time())
            soak = Soak(args, port, tmp / "certs", stats)
            print(
                f"soak: {args.users} users x {args.jobs} jobs x {args.followers} followers, "
                f"{args.duration:g} s, {soak.connections} connections per user; "
                f"jogger-server pid {server.pid} on 127.0.0.1:{port}",
                flush=True,
            )
            with trio.move_on_at(stats.started + args.duration + DRAIN) as drain:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(sampler, server.pid, stats, soak.stop_starting_at)
                    nursery.start_soon(lag_probe, stats, soak.stop_starting_at)
                    for index in range(args.users):
                        nursery.start_soon(soak.user, index)
            if drain.cancelled_caught:
                print(f"jobs still running {DRAIN:g} s after the end were cut short")
            ended = trio.current_time() - stats.started
            # Every job has ended and every connection is closed: what the server holds now
            # against what it held before the first one is what the soak left in it.
            await trio.sleep(1.0)
            idle_after = proc_sample(server.pid)
            print(
                f"server idle, before and after: RSS {idle_before[0] / 1024:.1f} and "
                f"{idle_after[0] / 1024:.1f} MiB, fds {idle_before[1]} and {idle_after[1]}"
            )
        server_log = await trio.Path(tmp / "server.log").read_text(errors="replace")
        # The server stopped every job at SIGTERM: nothing of any job's session may remain.
        left = _alive_in_sessions(stats.job_pids)
    return report(
        args, stats, ended=ended, returncode=server.returncode, server_log=server_log, left=left
    )


def _alive_in_sessions(sids: set[int]) -> list[int]:
    return live_processes(lambda stat: stat.sid in sids)


def report(
    args: argparse.Namespace,
    stats: Stats,
    *,
    ended: float,
    returncode: int | None,
    server_log: str,
    left: list[int],
) -> int:
    samples = stats.samples
    window = min(60.0, args.duration / 4)
    n = max(1, round(window / SAMPLE_EVERY))
    first = [s.rss_kib for s in samples[:n]]
    last = [s.rss_kib for s in samples[-n:]]
    server_errors = [line for line in server_log.splitlines() if "level=ERROR" in line]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print()
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}, trio {trio.__version__}"
    )
    print(f"ran {ended:.0f} s; jobs started {stats.jobs_started}, checked {stats.jobs_checked}")
    print(f"bytes followed: {stats.bytes_followed:,} ({stats.bytes_followed / 2**20:.1f} MiB)")
    print(f"client CPU: {usage.ru_utime + usage.ru_stime:.0f} s")
    if first and last:
        f_mean, l_mean = statistics.mean(first), statistics.mean(last)
        print(
            f"server RSS: first {window:.0f} s mean {f_mean / 1024:.1f} MiB, last {window:.0f} s "
            f"mean {l_mean / 1024:.1f} MiB, ratio {l_mean / f_mean:.2f}; "
            f"min {min(s.rss_kib for s in samples) / 1024:.1f}, "
            f"max {max(s.rss_kib for s in samples) / 1024:.1f} MiB"
        )
        fds = [s.fds for s in samples]
        print(f"server fds: min {min(fds)}, max {max(fds)}, last {fds[-1]}")
        print(f"server CPU: mean {statistics.mean(s.cpu_percent for s in samples):.0f} %")
    handled = server_durations(server_log)
    print("latency, at the client (call to answer) and in the server (its log's duration_ms):")
    for rpc in ("Start", "Status", "List"):
        for where, times in (("client", stats.latency.get(rpc, [])), ("server", handled[rpc])):
            if times:
                print(
                    f"  {rpc:7} {where}  n={len(times):7d}  "
                    f"p50 {percentile(times, 0.5) * 1000:8.1f} ms  "
                    f"p99 {percentile(times, 0.99) * 1000:8.1f} ms  "
                    f"max {max(times) * 1000:8.1f} ms"
                )
    if stats.lag:
        print(
            f"client event loop lag: p50 {percentile(stats.lag, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(stats.lag, 0.99) * 1000:.1f} ms"
        )
    print(f"errors: {sum(stats.errors.values())}")
    for text, count in stats.errors.most_common():
        print(f"  {count:6d}  {text}")
    print(f"server exit status: {returncode}; ERROR lines in its log: {len(server_errors)}")
    for line in server_errors[:10]:
        print(f"  {line[:300]}")
    unhappy = [
        line
        for line in server_log.splitlines()
        if "job ended" in line and "state=completed" not in line
    ]
    print(f"jobs that did not complete, in the server's log: {len(unhappy)}")
    for line in unhappy[:10]:
        print(f"  {line[:300]}")
    print(f"processes of jobs left: {len(left)}")
    if args.trace:
        print_trace(Path(args.trace))
    failed = stats.errors or server_errors or left or returncode != 0
    return 1 if failed else 0


def print_trace(path: Path) -> None:
    """The server's own timing of each step (bench/soak_trace.py): where its calls wait."""
    try:
        spans: dict[str, list[float]] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"no trace from the server ({path}): {exc}")
        return
    print(f"inside the server (bench/soak_trace.py; {path}):")
    for name in sorted(spans):
        values = spans[name]
        if not values:
            continue
        # Counts (tasks, threads, batch sizes) print as numbers, spans as milliseconds.
        scale, unit = (
            (1, "")
            if ("tasks" in name or "threads" in name or "size" in name)
            else (
                1000,
                " ms",
            )
        )
        print(
            f"  {name:48} n={len(values):7d}  mean {statistics.mean(values) * scale:8.2f}{unit}"
            f"  p50 {percentile(values, 0.5) * scale:8.2f}{unit}"
            f"  p99 {percentile(values, 0.99) * scale:8.2f}{unit}"
            f"  max {max(values) * scale:8.2f}{unit}  sum {sum(values) * scale:10.1f}{unit}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds (default 300)")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=50, help="running jobs per user")
    parser.add_argument("--followers", type=int, default=5, help="followers per job")
    parser.add_argument(
        "--unary-apart",
        action="store_true",
        help="each user's Start, Status and List on a connection of their own (as a jog "
        "start has), not behind the followers' streams",
    )
    parser.add_argument(
        "--trace",
        metavar="JSON",
        help="time the steps of the server's calls (bench/soak_trace.py) into JSON; report them",
    )
    parser.add_argument(
        "--profile",
        metavar="PSTATS",
        help="run the server's event-loop thread under cProfile, its stats into PSTATS",
    )
    args = parser.parse_args()
    # The server runs in another directory (state and certificates in a temporary one).
    args.trace = args.trace and os.path.abspath(args.trace)
    args.profile = args.profile and os.path.abspath(args.profile)
    return trio.run(soak, args)


if __name__ == "__main__":
    sys.exit(main())

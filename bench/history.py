"""Durable job records: what they cost, and how they scale, each beside a same-run baseline.

    python bench/history.py [--quick]

- start(): the durable manager (SQLite, WAL, synchronous=FULL) against the same manager
  with its records in memory (``durable=False``), alternating starts between the two.
- short jobs per second, start to ended (two record writes each), same pair.
- manager start-up with N finished jobs on record, after a clean shutdown and after a crash
  (the crash start-up also sweeps N output logs for orphans); baseline: an empty state dir.
- the real jogger-server, from exec to its "listening on" line, same N; same baseline.
- one page of 100 from ``list()`` at random depths in N jobs of one owner, the RPC's
  conversion to protobuf included (what the server does for ``jog list``); baseline: the
  same with 1,000 jobs on record.

Figures are medians unless a row says otherwise; ratio is jogger / baseline.
"""

import argparse
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine import Row, machine, percentile, print_table

from jogger import JobManager, JobState, JobStatus
from jogger.engine.rows import values
from jogger.engine.store import _INSERT
from jogger.server.service import status_to_proto

OWNER = "bench"
BIN = Path(sys.executable).parent


async def start_latency(durable: JobManager, memory: JobManager, n: int) -> list[Row]:
    times: dict[bool, list[float]] = {True: [], False: []}
    ids: list[tuple[JobManager, str]] = []
    for i in range(2 * n):
        jobs = durable if i % 2 == 0 else memory
        t0 = time.perf_counter()
        status = await jobs.start(OWNER, ["/bin/true"])
        times[jobs is durable].append(time.perf_counter() - t0)
        ids.append((jobs, status.id))
    for jobs, job_id in ids:
        await jobs.wait(OWNER, job_id)
    ms = {k: [t * 1000 for t in v] for k, v in times.items()}
    return [
        Row(
            f"start() p{q}",
            percentile(ms[True], q / 100),
            percentile(ms[False], q / 100),
            "records in memory",
            "ms",
        )
        for q in (50, 99)
    ]


async def jobs_per_second(jobs: JobManager, n: int) -> float:
    t0 = time.perf_counter()
    started = [await jobs.start(OWNER, ["/bin/true"]) for _ in range(n)]
    for status in started:
        await jobs.wait(OWNER, status.id)
    return n / (time.perf_counter() - t0)


def populate(state: Path, n: int, *, owners: int = 1, logs: bool = False) -> None:
    """Write ``n`` finished jobs straight into the database (and empty logs if asked)."""
    (state / "logs").mkdir(mode=0o700, parents=True, exist_ok=True)
    db = sqlite3.connect(state / "jobs.db")
    start = datetime.now(UTC) - timedelta(days=1)
    rows = []
    for i in range(n):
        job_id = str(uuid.uuid4())
        started = start + timedelta(milliseconds=i)
        status = JobStatus(
            id=job_id,
            owner=OWNER if owners == 1 else f"user{i % owners}",
            argv=("sh", "-c", f"echo {i}"),
            state=JobState.COMPLETED,
            pid=1000 + i,
            started_at=started,
            ended_at=started + timedelta(milliseconds=5),
            exit_code=0,
            output_bytes=len(str(i)) + 1,
            containment="none",
        )
        rows.append((*values(status, None), 0, 0, None))  # no supervisor, no request
        if logs:
            os.close(os.open(state / "logs" / f"{job_id}.log", os.O_CREAT | os.O_WRONLY, 0o600))
    with db:
        db.executemany(_INSERT, rows)
    db.close()


async def startup(state: Path, runs: int, *, crashed: bool) -> float:
    times = []
    for _ in range(runs):
        if crashed:  # what a manager killed by SIGKILL leaves in its lock file
            (state / "lock").write_text("12345\n")
        t0 = time.perf_counter()
        async with JobManager(state, cgroups="none"):
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def server_startup(state: Path, certs: Path, runs: int) -> float:
    """jogger-server from exec to its "listening on" line, median of ``runs``, in ms."""
    env = {
        **os.environ,
        "JOGGER_CA_CERT_FILE": str(certs / "ca.pem"),
        "JOGGER_SERVER_CERT_FILE": str(certs / "server.pem"),
        "JOGGER_SERVER_KEY_FILE": str(certs / "server-key.pem"),
    }
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        server = subprocess.Popen(
            [BIN / "jogger-server", "--listen", "127.0.0.1:0", "--state-dir", str(state)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert server.stderr is not None
        try:
            line = server.stderr.readline()
            times.append(time.perf_counter() - t0)
            if "listening on" not in line:
                raise RuntimeError(f"jogger-server did not start: {line}")
        finally:
            server.send_signal(signal.SIGTERM)
            server.communicate(timeout=30)
    return statistics.median(times) * 1000


async def list_latency(jobs: JobManager, total: int, samples: int) -> float:
    rng = random.Random(1)
    first = await jobs.list(OWNER, page_size=1)
    newest = int(first.next_token or "1") + 1
    times = []
    for _ in range(samples):
        token = str(rng.randint(101, max(102, newest)))
        t0 = time.perf_counter()
        page = await jobs.list(OWNER, page_size=100, page_token=token)
        [status_to_proto(s) for s in page.jobs]
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


async def main(quick: bool) -> list[Row]:
    n_start = 50 if quick else 200
    big = 10_000 if quick else 100_000
    rows = []
    with tempfile.TemporaryDirectory(prefix="jogger-bench-") as tmp:
        base = Path(tmp)
        async with (
            JobManager(base / "durable", cgroups="none") as durable,
            JobManager(base / "memory", cgroups="none", durable=False) as memory,
        ):
            rows += await start_latency(durable, memory, n_start)
            rates: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(3):
                for jobs, key in ((durable, True), (memory, False)):
                    rates[key].append(await jobs_per_second(jobs, n_start))
            rows.append(
                Row(
                    f"{n_start} short jobs, start to ended (3 runs)",
                    statistics.median(rates[True]),
                    statistics.median(rates[False]),
                    "records in memory",
                    "jobs/s",
                    higher_is_better=True,
                )
            )

        empty = base / "empty"
        await startup(empty, 1, crashed=False)
        await startup(base / "many", 1, crashed=False)  # creates the schema
        populate(base / "many", big, logs=True)
        empty_ms = await startup(empty, 5, crashed=False)
        rows.append(
            Row(
                f"start-up, {big:,} jobs on record",
                await startup(base / "many", 5, crashed=False),
                empty_ms,
                "empty state dir",
                "ms",
            )
        )
        rows.append(
            Row(
                f"start-up after a crash, {big:,} jobs",
                await startup(base / "many", 3, crashed=True),
                empty_ms,
                "empty state dir",
                "ms",
            )
        )

        await startup(base / "few", 1, crashed=False)
        certs = base / "certs"
        await trio.run_process([BIN / "jogger", "certs", "--out", certs], capture_stdout=True)
        rows.append(
            Row(
                f"jogger-server exec to listening, {big:,} jobs",
                await trio.to_thread.run_sync(server_startup, base / "many", certs, 3),
                await trio.to_thread.run_sync(server_startup, empty, certs, 3),
                "empty state dir",
                "ms",
            )
        )

        populate(base / "few", 1000)
        async with JobManager(base / "few", cgroups="none") as few:
            few_ms = await list_latency(few, 1000, 200)
        async with JobManager(base / "many", cgroups="none") as many:
            rows.append(
                Row(
                    f"list() page of 100 in {big:,}",
                    await list_latency(many, big, 200),
                    few_ms,
                    "in 1,000 jobs",
                    "ms",
                )
            )
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    args = parser.parse_args()
    print_table(trio.run(main, args.quick), machine)

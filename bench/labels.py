"""Filtered lists over a big history: what ``jog list --label`` costs the server.

    python bench/labels.py [--quick]

Fills a real state dir (SQLite as the server keeps it: WAL, the schema's indexes) with
100,000 finished jobs (10,000 with --quick) of 4 owners, written oldest first. Each job has a
name ``job-N`` and the labels ``env`` (prod, dev or test: a third of the jobs each),
``team`` (t0 to t9: a tenth) and, on one job in 1,000, ``rare=yes``; one in 50 failed.
Then it times one page of 100 jobs of one owner (``user0``) for each filter:

- **engine**: ``JobManager.list()`` plus the conversion of each job to protobuf, in this
  process: the List handler's work without the transport;
- **server**: the real jogger-server on that state dir, on loopback with mutual TLS, called
  by the rpc client (as ``jog list`` does); the time is what the server logs for each call
  (``rpc method=... duration_ms``: from the call's headers in to its answer flushed, so
  the query, the conversion, the encoding and TLS), read from its log;
- **client**: the same calls' round trip, at the client.

"newest" rows ask for the first page; "deep" rows for a page at a random place in the history
(a page token drawn at random). The baseline, measured in the same run, is the owner's
newest page unfiltered: what ``jog list`` asks for. A last pair times ``start()`` of a
``/bin/true`` job with a name and 4 labels against one without, alternating.

Figures are p50 and p90 in ms; ratio is p50 / the baseline's p50.
"""

import argparse
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine import machine, percentile

from jogger import JobFilter, JobManager, JobState, JobStatus
from jogger.engine.rows import INSERT_LABEL, values
from jogger.engine.store import _INSERT, JobStore
from jogger.rpc.client import JobsClient, open_client
from jogger.server.service import status_to_proto
from jogger.v1 import jobs_pb2

BIN = Path(sys.executable).parent
OWNERS = 4
PAGE = 100
ENVS = ("prod", "dev", "test")


@dataclass(frozen=True)
class Case:
    """A row: the List's filters, and whether its pages are drawn at random depths."""

    what: str
    labels: dict[str, str] = field(default_factory=dict)
    states: tuple[str, ...] = ()
    name: str = ""
    all_users: bool = False
    deep: bool = False

    @property
    def wanted(self) -> JobFilter:
        states = frozenset(JobState(s) for s in self.states)
        return JobFilter(labels=self.labels, states=states, name=self.name)


CASES = [
    Case("unfiltered (baseline)"),
    Case("unfiltered, deep", deep=True),
    Case("--label env=prod (1/3), newest", {"env": "prod"}),
    Case("--label env=prod (1/3), deep", {"env": "prod"}, deep=True),
    Case("--label team=t3 (1/10), deep", {"team": "t3"}, deep=True),
    Case("--label rare=yes (1/1000)", {"rare": "yes"}),
    Case("--label env=nope (none)", {"env": "nope"}),
    Case("--label env=prod --label team=t3, deep", {"env": "prod", "team": "t3"}, deep=True),
    Case("--label rare=yes --state failed", {"rare": "yes"}, ("failed",)),
    Case("--state failed (1/50), deep", states=("failed",), deep=True),
    Case("--state completed,failed, deep", states=("completed", "failed"), deep=True),
    Case("--name 'job-1234?' (a scan)", name="job-1234?"),
    Case("--all --label rare=yes (admin)", {"rare": "yes"}, all_users=True),
]
WIRE_STATES = {"completed": jobs_pb2.JOB_STATE_COMPLETED, "failed": jobs_pb2.JOB_STATE_FAILED}


def fill(state: Path, n: int) -> None:
    """``n`` finished jobs, with their labels, in one transaction (the store made the schema)."""
    start = datetime.now(UTC) - timedelta(days=2)
    rng = random.Random(7)
    jobs, labels = [], []
    for i in range(n):
        at = start + timedelta(milliseconds=i)
        failed = i % 50 == 0
        job_labels = {"env": rng.choice(ENVS), "team": f"t{rng.randrange(10)}"}
        if i % 1000 == 500:
            job_labels["rare"] = "yes"
        status = JobStatus(
            id=str(uuid.uuid4()),
            owner=f"user{i % OWNERS}",
            argv=("sh", "-c", f"make -j4 test-{i}"),
            state=JobState.FAILED if failed else JobState.COMPLETED,
            pid=1000 + i,
            started_at=at,
            ended_at=at + timedelta(milliseconds=5),
            exit_code=2 if failed else 0,
            output_bytes=100,
            containment="none",
            name=f"job-{i}",
            labels=job_labels,
        )
        jobs.append((*values(status, None), 0, 0, None))  # no supervisor, no request
        labels += [(i + 1, k, v, status.owner) for k, v in job_labels.items()]
    db = sqlite3.connect(state / "jobs.db")
    with db:
        db.executemany(_INSERT, jobs)
        db.executemany(INSERT_LABEL, labels)
    db.close()


def token_for(rng: random.Random, deep: bool, n: int) -> str:
    return str(rng.randint(PAGE * OWNERS, n)) if deep else ""


async def timed(samples: int, call: Callable[[int], Awaitable[None]]) -> list[float]:
    times = []
    for k in range(samples):
        t0 = time.perf_counter()
        await call(k)
        times.append((time.perf_counter() - t0) * 1000)
    return times


async def engine_times(state: Path, n: int, samples: int) -> dict[str, list[float]]:
    found = {}
    async with JobManager(state, cgroups="none") as jobs:
        for case in CASES:
            call = partial(_engine_page, jobs, case, random.Random(1), n)
            await timed(5, call)  # warm the page cache
            found[case.what] = await timed(samples, call)
    return found


async def _engine_page(jobs: JobManager, case: Case, rng: random.Random, n: int, _: int) -> None:
    got = await jobs.list(
        None if case.all_users else "user0",
        page_size=PAGE,
        page_token=token_for(rng, case.deep, n),
        wanted=case.wanted,
    )
    [status_to_proto(s) for s in got.jobs]


def certs_for(base: Path) -> Path:
    certs = base / "certs"
    subprocess.run(
        [BIN / "jogger", "certs", "--out", certs, "--user", "user0", "--admin", "root"],
        check=True,
        capture_output=True,
    )
    return certs


async def server_times(
    state: Path, certs: Path, n: int, samples: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(server, client) times of each case, through the real jogger-server."""
    env = {
        **os.environ,
        "JOGGER_CA_CERT_FILE": str(certs / "ca.pem"),
        "JOGGER_SERVER_CERT_FILE": str(certs / "server.pem"),
        "JOGGER_SERVER_KEY_FILE": str(certs / "server-key.pem"),
    }
    log_path = trio.Path(state.parent / "server.log")
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        server = await trio.lowlevel.open_process(
            [BIN / "jogger-server", "--listen", "127.0.0.1:0", "--state-dir", state],
            env=env,
            stderr=log_fd,
        )
    finally:
        os.close(log_fd)
    try:
        port = await _port(log_path)
        clients, servers = {}, {}
        for case in CASES:
            user = "root" if case.all_users else "user0"
            async with open_client(
                "localhost",
                port,
                ca=certs / "ca.pem",
                cert=certs / f"{user}.pem",
                key=certs / f"{user}-key.pem",
            ) as client:
                call = partial(_server_page, client, case, random.Random(1), n)
                await timed(5, call)
                before = len(await _durations(log_path))
                clients[case.what] = await timed(samples, call)
                # The server logs a call once its answer is out: the last may lag a little.
                with trio.fail_after(10):
                    while len(logged := await _durations(log_path)) < before + samples:  # noqa: ASYNC110 - only the log tells
                        await trio.sleep(0.01)
                servers[case.what] = logged[before:]
    finally:
        server.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            await server.wait()
    return servers, clients


async def _server_page(client: JobsClient, case: Case, rng: random.Random, n: int, _: int) -> None:
    await client.list_page(
        all_users=case.all_users,
        page_size=PAGE,
        page_token=token_for(rng, case.deep, n),
        labels=case.labels,
        states=[WIRE_STATES[s] for s in case.states],
        name=case.name,
    )


async def _port(log_path: trio.Path) -> int:
    with trio.fail_after(60):
        while True:
            found = re.search(r"listening on 127\.0\.0\.1:(\d+)", await log_path.read_text())
            if found:
                return int(found.group(1))
            await trio.sleep(0.05)


async def _durations(log_path: trio.Path) -> list[float]:
    """The duration_ms of each List call the server has logged so far."""
    text = await log_path.read_text()
    return [float(ms) for ms in re.findall(r"Jobs/List .*?duration_ms=([\d.]+)", text)]


async def start_times(base: Path, samples: int) -> tuple[list[float], list[float]]:
    """start() with a name and 4 labels, and without, alternating, in one manager."""
    labelled: list[float] = []
    plain: list[float] = []
    labels = {"env": "prod", "team": "t3", "ci.example.com/run": "12345", "stage": "test"}
    async with JobManager(base / "starts", cgroups="none") as jobs:
        started = []
        for k in range(2 * samples):
            t0 = time.perf_counter()
            if k % 2:
                status = await jobs.start("user0", ["/bin/true"], name=f"job-{k}", labels=labels)
            else:
                status = await jobs.start("user0", ["/bin/true"])
            (labelled if k % 2 else plain).append((time.perf_counter() - t0) * 1000)
            started.append(status.id)
        for job_id in started:
            await jobs.wait("user0", job_id)
    return labelled, plain


def print_rows(title: str, found: dict[str, list[float]]) -> None:
    """Each case's p50 and p90, and p50 against the first case's (the baseline)."""
    base = percentile(next(iter(found.values())), 0.5)
    print(f"\n{title}")
    header = f"{'':44} {'p50 ms':>8} {'p90 ms':>8} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for what, times in found.items():
        p50 = percentile(times, 0.5)
        print(f"{what:44} {p50:8.2f} {percentile(times, 0.9):8.2f} {p50 / base:6.2f}")


async def main(quick: bool) -> None:
    n = 10_000 if quick else 100_000
    samples = 30 if quick else 200
    print(machine())
    with tempfile.TemporaryDirectory(prefix="jogger-bench-") as tmp:
        base = Path(tmp)
        state = base / "state"
        state.mkdir(mode=0o700)
        (state / "logs").mkdir(mode=0o700)
        store = JobStore(state / "jobs.db")
        await store.open()
        await store.close()
        t0 = time.perf_counter()
        fill(state, n)
        size = sum(f.stat().st_size for f in state.glob("jobs.db*"))
        print(
            f"{n:,} jobs, {OWNERS} owners, written in {time.perf_counter() - t0:.1f} s; "
            f"database {size / 2**20:.1f} MiB"
        )
        found = await engine_times(state, n, samples)
        print_rows("engine: list() + conversion to protobuf, a page of 100 for user0", found)
        certs = await trio.to_thread.run_sync(certs_for, base)
        servers, clients = await server_times(state, certs, n, samples // 2)
        print_rows("server: the List call's duration_ms, real jogger-server", servers)
        print_rows("client: the same calls' round trip", clients)
        labelled, plain = await start_times(base, 25 if quick else 100)
        print_rows(
            "start() of /bin/true, alternating",
            {"without name or labels (baseline)": plain, "with a name and 4 labels": labelled},
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    args = parser.parse_args()
    trio.run(main, args.quick)

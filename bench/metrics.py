"""The job start path with metrics on and off, beside the server before metrics, in one run.

    python bench/metrics.py [--quick] [--rounds N]

Three jogger-servers, each a process of its own on loopback, started afresh each round:

- **before**: commit BEFORE, the last without metrics (its ``jogger`` tree extracted with
  git archive; ``jogger-supervise``, whose source has not changed since, copied from this
  checkout);
- **off**: this checkout without ``--metrics-listen`` (the engine and the transport call
  observers that do nothing);
- **on**: this checkout with ``--metrics-listen``, scraped over HTTP every SCRAPE_EVERY
  seconds by this script throughout (Prometheus scrapes every 15 s or so; the endpoint
  renders at most once a second, and serves that rendering to the scrapes in between).

Each server first gets SLEEPERS ``sleep 600`` jobs (each scrape walks them all). Then the
timed part: Start of ``/bin/true`` over one JobsClient connection per server, call to
answer, each job followed to its end before the next, the three servers taking turns call
by call (the order turns round by round), so that a machine whose load comes and goes
weighs on all three alike; the paired rows are the medians of the differences, call by
call. ``--cgroups none``: a cgroup adds its own noise and nothing metrics touch. Prints
p50 and p99 of the pooled samples and the scrapes' own call-to-answer time and size; at
the end of each round, two scrapes a rendering apart time a rendering of their own.
"""

import argparse
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import trio

from jogger.rpc import certs
from jogger.rpc.client import JobsClient, open_client
from jogger.server.scrape import RENDER_INTERVAL

BEFORE = "c522694"
"""The commit before metrics."""
REPO = Path(__file__).resolve().parent.parent
SUPERVISOR = REPO / "jogger" / "engine" / "jogger-supervise"
SCRAPE_EVERY = 0.1
"""Seconds between scrapes of the "on" server: 150 times Prometheus's usual rate."""
VARIANTS = ("before", "off", "on")


class Samples:
    def __init__(self) -> None:
        self.starts: dict[str, list[float]] = {name: [] for name in VARIANTS}
        self.scrapes: list[float] = []
        self.scrape_bytes: list[int] = []
        self.fresh: list[float] = []
        """Scrapes that each had the metrics rendered anew."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def make_certs(directory: Path) -> dict[str, Path]:
    ca = certs.make_ca()
    files = {"ca": directory / "ca.pem"}
    certs.write_cert(files["ca"], ca.cert)
    made = {
        "server": certs.make_server(ca, ["localhost"], ["127.0.0.1"]),
        "user": certs.make_user(ca, "bench"),
    }
    for name, (cert, key) in made.items():
        files[name] = directory / f"{name}.pem"
        files[name + "-key"] = directory / f"{name}-key.pem"
        certs.write_cert(files[name], cert)
        certs.write_key(files[name + "-key"], key)
    return files


def extract_before(tmp: Path) -> Path:
    """Commit BEFORE's jogger package, with this checkout's supervisor binary; its root."""
    root = tmp / "before"
    root.mkdir()
    archive = tmp / "before.tar"
    subprocess.run(
        ["git", "-C", str(REPO), "archive", f"--output={archive}", BEFORE, "jogger"], check=True
    )
    subprocess.run(["tar", "-xf", str(archive), "-C", str(root)], check=True)
    archive.unlink()
    shutil.copy2(SUPERVISOR, root / "jogger" / "engine" / "jogger-supervise")
    return root


@asynccontextmanager
async def server(
    root: Path, files: dict[str, Path], state: Path, metrics: bool
) -> AsyncIterator[tuple[int, int]]:
    """A jogger-server from the tree at ``root``; yields its port and its metrics port (0)."""
    log = state.with_suffix(".log")
    args = [
        *(sys.executable, "-m", "jogger.server.main", "--listen", "127.0.0.1:0"),
        *("--state-dir", str(state), "--cgroups", "none", "--run-as", "server"),
        *("--max-jobs", "10000", "--max-jobs-per-user", "10000"),
        *("--ca-cert", str(files["ca"]), "--cert", str(files["server"])),
        *("--key", str(files["server-key"])),
    ]
    if metrics:
        args += ["--metrics-listen", "127.0.0.1:0"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    with log.open("wb") as stderr:
        process = await trio.lowlevel.open_process(args, env=env, stderr=stderr)
    try:
        with trio.fail_after(60):
            while "listening on" not in (text := log.read_text()):
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited: {text}")
                await trio.sleep(0.05)
        port = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
        scrape = re.search(r"metrics on 127\.0\.0\.1:(\d+)", text)
        assert port is not None
        yield int(port.group(1)), int(scrape.group(1)) if scrape else 0
    finally:
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(60):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def scrape(port: int) -> tuple[float, int]:
    """GET /metrics: seconds from call to answer, and the answer's size."""
    began = time.perf_counter()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
        answer = b""
        while data := await stream.receive_some(1 << 16):
            answer += data
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
    return time.perf_counter() - began, len(answer)


async def scraper(
    port: int, samples: Samples, *, task_status: trio.TaskStatus[trio.CancelScope]
) -> None:
    """GET /metrics every SCRAPE_EVERY seconds, until the scope it reports is cancelled."""
    with trio.CancelScope() as scope:
        task_status.started(scope)
        while True:
            seconds, size = await scrape(port)
            samples.scrapes.append(seconds)
            samples.scrape_bytes.append(size)
            await trio.sleep(SCRAPE_EVERY)


async def until_ended(client: JobsClient, job_id: str) -> None:
    async with client.output(job_id) as chunks:
        async for _ in chunks:
            pass


async def measure(
    roots: dict[str, Path],
    files: dict[str, Path],
    tmp: Path,
    *,
    round_: int,
    sizes: tuple[int, int],
    samples: Samples,
) -> None:
    """One round: the three servers at once, their Starts interleaved one by one."""
    sleepers, starts = sizes
    order = VARIANTS[round_ % 3 :] + VARIANTS[: round_ % 3]
    async with AsyncExitStack() as stack:
        clients = {}
        scraping = await stack.enter_async_context(trio.open_nursery())
        scraped = 0
        scraper_scope = trio.CancelScope()
        for name in order:
            state = tmp / f"{name}-{round_}"
            port, metrics_port = await stack.enter_async_context(
                server(roots[name], files, state, metrics=name == "on")
            )
            clients[name] = await stack.enter_async_context(
                open_client(
                    "localhost", port, ca=files["ca"], cert=files["user"], key=files["user-key"]
                )
            )
            for _ in range(sleepers):
                await clients[name].start(["sleep", "600"])
            for _ in range(3):  # warm-up: every code path once
                await until_ended(clients[name], (await clients[name].start(["/bin/true"])).job_id)
            if metrics_port:
                scraper_scope = await scraping.start(scraper, metrics_port, samples)
                scraped = metrics_port
        for _ in range(starts):
            for name in order:
                began = time.perf_counter()
                job = await clients[name].start(["/bin/true"])
                samples.starts[name].append(time.perf_counter() - began)
                await until_ended(clients[name], job.job_id)
        # The Starts are done: the scraper stops, and a scrape once each rendering has
        # expired times a rendering of its own.
        scraper_scope.cancel()
        for _ in range(2):
            await trio.sleep(RENDER_INTERVAL + 0.2)
            samples.fresh.append((await scrape(scraped))[0])


async def main(rounds: int, sleepers: int, starts: int) -> Samples:
    samples = Samples()
    with tempfile.TemporaryDirectory(prefix="jogger-bench-metrics-") as tmp_name:
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o700)
        (tmp / "certs").mkdir()
        files = make_certs(tmp / "certs")
        roots = {"before": extract_before(tmp), "off": REPO, "on": REPO}
        for k in range(rounds):
            await measure(roots, files, tmp, round_=k, sizes=(sleepers, starts), samples=samples)
    return samples


def report(samples: Samples, load: tuple[float, float], seconds: float, sleepers: int) -> None:
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}, trio {trio.__version__}; load average "
        f"{load[0]:.2f} before, {load[1]:.2f} after; {seconds:.0f} s; before = {BEFORE}"
    )
    header = f"{'measure':44} {'p50 ms':>8} {'p99 ms':>8} {'p50 vs before':>14}"
    print(header)
    print("-" * len(header))
    before = statistics.median(samples.starts["before"])
    for name in VARIANTS:
        values = samples.starts[name]
        p50 = statistics.median(values)
        print(
            f"{f'Start, call to answer, {name} (n={len(values)})':44} {p50 * 1e3:8.2f} "
            f"{percentile(values, 0.99) * 1e3:8.2f} {f'{(p50 - before) * 1e3:+.2f} ms':>14}"
        )
    for name in ("off", "on"):
        paired = [
            a - b for a, b in zip(samples.starts[name], samples.starts["before"], strict=True)
        ]
        print(
            f"{f'Start, {name} minus before, paired (n={len(paired)})':44} "
            f"{statistics.median(paired) * 1e3:+8.2f}"
        )
    if samples.scrapes:
        print(
            f"{f'scrape, call to answer (n={len(samples.scrapes)})':44} "
            f"{statistics.median(samples.scrapes) * 1e3:8.2f} "
            f"{percentile(samples.scrapes, 0.99) * 1e3:8.2f}"
            f"   {statistics.median(samples.scrape_bytes) / 1024:.1f} KiB"
        )
        print(
            f"{f'scrape rendered anew, call to answer (n={len(samples.fresh)})':44} "
            f"{statistics.median(samples.fresh) * 1e3:8.2f} "
            f"{percentile(samples.fresh, 0.99) * 1e3:8.2f}   {sleepers} jobs running"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    parser.add_argument("--rounds", type=int, help="turns of the three servers (default 6)")
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 6)
    sleepers, starts = (10, 20) if args.quick else (100, 50)
    first = os.getloadavg()[0]
    began = time.perf_counter()
    result = trio.run(main, rounds, sleepers, starts)
    report(result, (first, os.getloadavg()[0]), time.perf_counter() - began, sleepers)

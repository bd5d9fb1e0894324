"""--metrics-listen: the real jogger-server, real jobs and calls through real clients, then
real HTTP scrapes read with prometheus_client's own parser."""

import contextlib
import os
import re
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from jogger.rpc.client import JobsClient, open_client
from jogger.rpc.errors import RpcError, StatusCode
from jogger.rpc.failures import TransportError
from jogger.server import scrape
from jogger.server.config import ConfigError, load
from jogger.v1 import jobs_pb2
from tests.e2e.conftest import BIN, Cli, launch, server_env, stop_server
from tests.pki import Pki
from tests.rpc.raw_h2 import message, raw_connection
from tests.servers import Server

JOBS = "/jogger.v1.Jobs/"
UNKNOWN_JOB = "5b4c1f5e-2f0c-4c38-9d8e-7f5b8a1d2c3e"


class Metrics:
    """A jogger-server with --metrics-listen, and its scrapes."""

    def __init__(self, cli: Cli, port: int, state_dir: Path) -> None:
        self.cli = cli
        self.port = port
        self.state_dir = state_dir

    def client(self, user: str = "alice") -> AbstractAsyncContextManager[JobsClient]:
        pair = self.cli.pki.user(user)
        return open_client(
            "localhost", self.cli.port, ca=self.cli.pki.ca, cert=pair.cert, key=pair.key
        )

    def grpc_server(self) -> Server:
        """For tests/rpc/raw_h2.py, which takes an in-process server's handle."""
        return Server("127.0.0.1", self.cli.port, self.cli.pki, self.state_dir)

    async def get(self, path: str = "/metrics", method: str = "GET") -> tuple[int, bytes]:
        """A real HTTP request, with the standard library's client: (status, body)."""

        def fetch() -> tuple[int, bytes]:
            request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    return answer.status, answer.read()
            except urllib.error.HTTPError as error:
                return error.code, error.read()

        return await trio.to_thread.run_sync(fetch)

    async def scrape(self) -> list[Sample]:
        status, body = await self.get()
        assert status == 200
        families = text_string_to_metric_families(body.decode())
        return [sample for family in families for sample in family.samples]

    async def until(self, check: Callable[[list[Sample]], bool]) -> list[Sample]:
        """Scrape until ``check`` holds (a call's metrics follow its answer by a moment)."""
        with trio.fail_after(30):
            while True:
                samples = await self.scrape()
                if check(samples):
                    return samples
                await trio.sleep(0.05)


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels`` (0 for none)."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


@asynccontextmanager
async def metrics_server(
    pki: Pki, state_dir: Path, nursery: trio.Nursery, *args: str
) -> AsyncIterator[Metrics]:
    cli = await launch(pki, state_dir, nursery, "--metrics-listen", "127.0.0.1:0", *args)
    try:
        line = next(line for line in cli.log if "metrics on" in line)
        found = re.search(r"metrics on 127\.0\.0\.1:(\d+)", line)
        assert found is not None, line
        yield Metrics(cli, int(found.group(1)), state_dir)
    finally:
        # No server outlives its test.
        await stop_server(cli.process)


async def follow(client: JobsClient, job_id: str) -> bytes:
    with trio.fail_after(30):
        async with client.output(job_id) as chunks:
            return b"".join([chunk.data async for chunk in chunks])


async def test_jobs_calls_and_output_are_counted(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with metrics_server(pki, tmp_path / "state", nursery) as server:
        before = await server.scrape()
        assert value(before, "jogger_jobs_started_total") == 0
        assert not any("user" in s.labels for s in before)  # only with --metrics-per-user
        async with server.client() as alice:
            completed = await alice.start(["echo", "hello"])
            failed = await alice.start(["sh", "-c", "exit 3"])
            sleeper = await alice.start(["sleep", "300"])
            running = await server.until(lambda s: value(s, "jogger_jobs_running") >= 1)
            assert value(running, "jogger_supervisors_alive") >= 1
            assert await follow(alice, completed.job_id) == b"hello\n"
            assert await follow(alice, failed.job_id) == b""
            stopped = await alice.stop(sleeper.job_id, grace=1.0)
            assert stopped.state == jobs_pb2.JOB_STATE_STOPPED
            with pytest.raises(RpcError) as missing:
                await alice.status(UNKNOWN_JOB)
            assert missing.value.code == StatusCode.NOT_FOUND
        status_path = JOBS + "Status"
        after = await server.until(
            lambda s: value(s, "jogger_rpc_calls_total", method=status_path) == 1
        )
    assert value(after, "jogger_jobs_started_total") == 3
    ended = "jogger_jobs_ended_total"
    assert value(after, ended, state="completed", reason="") == 1
    assert value(after, ended, state="failed", reason="") == 1
    assert value(after, ended, state="stopped", reason="") == 1
    assert value(after, ended) == 3
    calls = "jogger_rpc_calls_total"
    assert value(after, calls, method=JOBS + "Start", code="OK") == 3
    assert value(after, calls, method=JOBS + "Output", code="OK") == 2
    assert value(after, calls, method=JOBS + "Stop", code="OK") == 1
    assert value(after, calls, method=status_path, code="NOT_FOUND") == 1
    histogram = "jogger_rpc_call_duration_seconds_count"
    assert value(after, histogram, method=JOBS + "Start") == 3
    assert value(after, "jogger_rpc_call_duration_seconds_bucket", le="+Inf") == value(
        after, histogram
    )
    assert value(after, "jogger_output_written_bytes_total") == len(b"hello\n")
    assert value(after, "jogger_output_streamed_bytes_total") == len(b"hello\n")
    assert value(after, "jogger_jobs_running") == 0
    assert value(after, "jogger_supervisors_alive") == 0
    assert value(after, "jogger_store_duration_seconds_count", operation="record_start") == 3
    assert value(after, "jogger_store_duration_seconds_count", operation="record_end") == 3
    (backend,) = [s for s in after if s.name == "jogger_cgroup_backend_info"]
    assert backend.labels["backend"] in ("cgroup2", "cgroup1", "none")
    assert backend.value == 1
    assert value(after, "process_open_fds") > 0
    # Still connected to none of us: the levels are read at each scrape.
    assert value(after, "jogger_rpc_calls_in_flight") == 0


async def test_a_made_up_method_is_one_label_whatever_its_name(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with metrics_server(pki, tmp_path / "state", nursery) as server:
        async with raw_connection(server.grpc_server()) as raw:
            for n in range(3):
                outcome = await raw.call(f"/made.Up/Method{n}", message(b""))
                assert outcome.grpc_status == StatusCode.UNIMPLEMENTED.value
        samples = await server.until(
            lambda s: value(s, "jogger_rpc_calls_total", code="UNIMPLEMENTED") == 3
        )
    methods = {s.labels["method"] for s in samples if s.name == "jogger_rpc_calls_total"}
    assert methods == {"unknown"}


async def test_refused_handshakes_and_admission_refusals_are_counted(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    limit = ("--max-connections-per-user", "1")
    async with metrics_server(pki, tmp_path / "state", nursery, *limit) as server:
        # A certificate from another CA: TLS refuses it.
        with pytest.raises((TransportError, RpcError)):
            async with server.client("other-ca") as stranger:
                await stranger.health()
        # Not TLS at all.
        with trio.fail_after(30):
            tcp = await trio.open_tcp_stream("127.0.0.1", server.cli.port)
            async with tcp:
                await tcp.send_all(b"GET / HTTP/1.1\r\n\r\n")
                with contextlib.suppress(trio.BrokenResourceError):  # a reset is a close too
                    while await tcp.receive_some(1 << 16):
                        pass
        # alice's second connection, past her limit: its calls are refused.
        async with server.client() as first, server.client() as second:
            assert await first.health() == 1
            with pytest.raises(RpcError) as refused:
                await second.health()
            assert refused.value.code == StatusCode.RESOURCE_EXHAUSTED
        samples = await server.until(
            lambda s: (
                value(s, "jogger_rpc_handshakes_refused_total", cause="tls") >= 1
                and value(s, "jogger_rpc_handshakes_refused_total", cause="certificate") >= 1
                and value(s, "jogger_rpc_admission_refused_total", limit="max_connections_per_user")
                >= 1
            )
        )
        # The service went on for everyone else.
        async with server.client("bob") as bob:
            assert await bob.health() == 1
    assert value(samples, "jogger_rpc_handshakes_refused_total", cause="certificate") == 1
    assert value(samples, "jogger_rpc_handshakes_refused_total", cause="tls") == 1
    limits = "jogger_rpc_admission_refused_total"
    assert value(samples, limits, limit="max_connections_per_user") == 1
    assert value(samples, limits) == 1
    health = "/grpc.health.v1.Health/Check"
    assert value(samples, "jogger_rpc_calls_total", method=health, code="RESOURCE_EXHAUSTED") == 1


async def test_per_user_labels_only_with_the_flag(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with metrics_server(pki, tmp_path / "state", nursery, "--metrics-per-user") as server:
        for user in ("alice", "bob", "bob"):
            async with server.client(user) as client:
                job = await client.start(["echo", user])
                assert await follow(client, job.job_id) == f"{user}\n".encode()
        samples = await server.until(
            lambda s: value(s, "jogger_rpc_calls_total", method=JOBS + "Output") == 3
        )
    started = "jogger_jobs_started_total"
    assert value(samples, started, user="alice") == 1
    assert value(samples, started, user="bob") == 2
    assert value(samples, "jogger_output_streamed_bytes_total", user="bob") == 8
    assert value(samples, "jogger_rpc_calls_total", method=JOBS + "Start", user="bob") == 2
    # Never on a histogram: a series per bucket per user would be too many.
    assert not any(
        "user" in s.labels for s in samples if s.name.startswith("jogger_rpc_call_duration")
    )


async def test_bad_http_is_answered_or_closed_and_the_server_carries_on(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with metrics_server(pki, tmp_path / "state", nursery) as server:
        assert (await server.get("/"))[0] == 404
        assert (await server.get("/metrics/x"))[0] == 404
        assert (await server.get(method="POST"))[0] == 405
        assert (await server.get(method="HEAD")) == (200, b"")
        assert (await server.get("/metrics?name[]=x"))[0] == 200
        assert (await exchange(server.port, b"\x16\x03\x01garbage\r\n\r\n")).startswith(
            b"HTTP/1.1 400 "
        )
        assert (await exchange(server.port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")).startswith(
            b"HTTP/1.1 400 "
        )
        huge = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (4 * scrape.MAX_HEAD)
        assert (await exchange(server.port, huge)).startswith(b"HTTP/1.1 431 ")
        # A slowloris: a request head that drips in a byte at a time, never ending.
        async with trio.open_nursery() as drips:
            cut_off = trio.Event()
            drips.start_soon(drip, server.port, cut_off)
            silent = [
                await trio.open_tcp_stream("127.0.0.1", server.port)
                for _ in range(scrape.MAX_SCRAPES - 1)
            ]
            # Every slot is taken: one more is closed at once, unanswered.
            assert await exchange(server.port, b"") == b""
            with trio.fail_after(scrape.READ_TIMEOUT + 30):
                await cut_off.wait()
                for stream in silent:
                    assert await stream.receive_some(1 << 16) == b""  # closed, unanswered
                    await stream.aclose()
        assert value(await server.scrape(), "jogger_jobs_started_total") == 0
        async with server.client() as alice:
            job = await alice.start(["echo", "still here"])
            assert await follow(alice, job.job_id) == b"still here\n"
        assert server.cli.process.returncode is None


async def exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` on a new connection and read until the server closes it."""
    with trio.fail_after(30):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            # Closed on us mid-way, what it said is still there to read.
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(request)
            answer = b""
            try:
                while data := await stream.receive_some(1 << 16):
                    answer += data
            except trio.BrokenResourceError:
                pass  # reset: it did not read all we sent
            return answer


async def drip(port: int, cut_off: trio.Event) -> None:
    """A request head, a byte every 0.2 s, for ever; ``cut_off`` once the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        try:
            for byte in b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 100_000:
                await stream.send_all(bytes([byte]))
                with trio.move_on_after(0.2):
                    if await stream.receive_some(1 << 16) == b"":
                        break
        except trio.BrokenResourceError:
            pass
    cut_off.set()


async def test_ends_found_at_start_up_and_adopted_supervisors_are_counted(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    first = await launch(pki, state, nursery, "--on-shutdown", "keep")
    try:
        pair = pki.user("alice")
        async with open_client(
            "localhost", first.port, ca=pki.ca, cert=pair.cert, key=pair.key
        ) as alice:
            lost = await alice.start(["sleep", "300"])
            adopted = await alice.start(["sleep", "300"])
    finally:
        await stop_server(first.process)
    # The first job's supervisor dies while no server runs: the next one records it killed.
    os.kill(parent_of(lost.pid), signal.SIGKILL)
    async with metrics_server(pki, state, nursery) as server:
        samples = await server.scrape()
        assert value(samples, "jogger_jobs_running") == 1
        assert value(samples, "jogger_supervisors_alive") == 1
        assert value(samples, "jogger_jobs_started_total") == 0  # not by this server
        ended = "jogger_jobs_ended_total"
        assert value(samples, ended, state="killed", reason="supervisor-lost") == 1
        async with server.client() as alice:
            await alice.stop(adopted.job_id, grace=1.0)
        samples = await server.until(lambda s: value(s, "jogger_jobs_running") == 0)
        assert value(samples, "jogger_supervisors_alive") == 0
        assert value(samples, ended, state="stopped") == 1


def tls(pki: Pki) -> list[str]:
    return ["--ca-cert", str(pki.ca), "--cert", str(pki.server.cert), "--key", str(pki.server.key)]


def parent_of(pid: int) -> int:
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--metrics-listen", "127.0.0.1"], "--metrics-listen '127.0.0.1': give a port"),
        (["--metrics-listen", "127.0.0.1:99999"], "--metrics-listen: bad address"),
        (["--metrics-listen", "http://127.0.0.1:9100"], "without http://"),
        (["--metrics-listen", "127.0.0.1:9100/metrics"], "without a path"),
        (["--metrics-listen", ""], "--metrics-listen: empty address"),
        (["--metrics-per-user"], "--metrics-per-user needs --metrics-listen"),
    ],
)
def test_a_bad_metrics_flag_is_refused_by_name(pki: Pki, flags: list[str], error: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)):
        load([*tls(pki), *flags])


def test_metrics_flags_reach_the_config(pki: Pki) -> None:
    assert load(tls(pki)).metrics is None
    config = load(
        [
            *tls(pki),
            *("--metrics-listen", "127.0.0.1:9464", "--metrics-listen", "[::1]:0"),
            "--metrics-per-user",
        ]
    )
    assert config.metrics == scrape.MetricsSettings(
        (("127.0.0.1", 9464), ("::1", 0)), per_user=True
    )


async def test_a_metrics_address_in_use_is_one_line_and_leaves_nothing(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    state = tmp_path / "state"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with trio.fail_after(60):
            done = await trio.run_process(
                [
                    BIN / "jogger-server",
                    *("--listen", "127.0.0.1:0", "--state-dir", str(state), "--run-as", "server"),
                    *("--metrics-listen", f"127.0.0.1:{port}"),
                ],
                env=server_env(pki),
                capture_stderr=True,
                check=False,
            )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr.decode()
    assert done.stderr.decode().strip().splitlines()[-1] == (
        f"jogger-server: error: --metrics-listen 127.0.0.1:{port}: cannot listen: "
        "address already in use"
    )
    # Nothing held: the next server has the state dir.
    await stop_server((await launch(pki, state, nursery)).process)


async def test_queued_jobs_are_a_gauge_and_restart_is_counted_as_a_method(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with metrics_server(
        pki, tmp_path / "state", nursery, "--max-jobs", "1", "--metrics-per-user"
    ) as server:
        async with server.client() as alice:
            blocker = await alice.start(["sleep", "300"])
            queued = [await alice.start(["true"], queue=True) for _ in range(2)]
            samples = await server.scrape()
            assert value(samples, "jogger_jobs_queued", user="alice") == 2
            with pytest.raises(RpcError) as refused:
                await alice.restart(blocker.job_id)
            assert refused.value.code is StatusCode.FAILED_PRECONDITION
            await alice.stop(blocker.job_id, grace=0)
            for job in queued:
                with trio.fail_after(30):
                    async with alice.output(job.job_id) as chunks:
                        async for _ in chunks:
                            pass
        # A rendering serves scrapes for a while: until the one after the jobs ran.
        samples = await server.until(lambda s: value(s, "jogger_jobs_ended_total") == 3)
        assert value(samples, "jogger_jobs_queued", user="alice") == 0
        calls = "jogger_rpc_calls_total"
        assert (
            value(
                samples,
                calls,
                method="/jogger.v1.Jobs/Restart",
                code="FAILED_PRECONDITION",
                user="alice",
            )
            == 1
        )

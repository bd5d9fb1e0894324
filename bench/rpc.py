"""Unary RPC capacity of the server: Status calls over one connection, and new connections.

    python bench/rpc.py [--quick] [--repeats N] [--seconds S] [--profile OUT.prof]

Starts a real ``jogger-server`` (throw-away certificates, a temporary state directory), starts
one job, and then asks for its Status:

- over one connection: one call after another, then 8 and 32 callers at once;
- a new connection (TCP, mutual TLS, HTTP/2 preface) for each call: one after another, then
  several connectors at once, spread over several client processes.

What is measured is the server: the clients run in separate processes (``worker`` below), so
that where one trio client process would be the limit, more of them are used (the table says
how many). The grpcio column is grpcio's C client against the same server, a baseline that
costs the client less CPU than ours does. Each figure is the median of ``--repeats`` runs,
each ``--seconds`` long; the machine has 2 cores, shared by server and clients, so the server
never has a core to itself while the clients run.

``--profile OUT.prof`` runs the server under cProfile (stopped with SIGINT so that the profile
is written) for the whole run.
"""

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import trio

from jogger.rpc.channel import open_channel
from jogger.rpc.client import JobsClient
from jogger.rpc.tls import client_context
from jogger.v1 import jobs_pb2

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def jogger_server(tmp: Path, profile: str | None) -> Iterator[tuple[dict[str, str], int]]:
    certs = tmp / "certs"
    subprocess.run(
        [BIN / "jogger", "certs", "--out", certs, "--user", "bench"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    env = dict(
        os.environ,
        JOGGER_CA_CERT_FILE=str(certs / "ca.pem"),
        JOGGER_SERVER_CERT_FILE=str(certs / "server.pem"),
        JOGGER_SERVER_KEY_FILE=str(certs / "server-key.pem"),
        JOGGER_USER_CERT_FILE=str(certs / "bench.pem"),
        JOGGER_USER_KEY_FILE=str(certs / "bench-key.pem"),
        JOGGER_HOST=f"127.0.0.1:{port}",
    )
    prefix: list[str | Path] = [sys.executable, "-m", "cProfile", "-o", profile] if profile else []
    server = subprocess.Popen(
        [
            *prefix,
            BIN / "jogger-server",
            "--listen",
            f"127.0.0.1:{port}",
            "--state-dir",
            tmp / "state",
            "--run-as",
            "server",
        ],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(400):
            probe = subprocess.run([BIN / "jog", "list"], env=env, capture_output=True, check=False)
            if probe.returncode == 0:
                break
            time.sleep(0.05)
        else:
            raise SystemExit("the server did not come up")
        yield env, server.pid
    finally:
        # SIGINT: cProfile writes its profile on KeyboardInterrupt's way out; the server
        # takes it as it takes SIGTERM.
        server.send_signal(signal.SIGINT if profile else signal.SIGTERM)
        server.wait()


# --- the client processes -------------------------------------------------------------------


def ready_go(seconds: float) -> tuple[float, float]:
    """Tell the driver we are ready, wait for its go; the window to measure in."""
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.time()
    return start, start + seconds


def worker_trio(spec: dict[str, object]) -> float:
    """Calls per second this process made between ``start`` and ``start + seconds``."""
    env = os.environ
    context = client_context(
        Path(env["JOGGER_CA_CERT_FILE"]),
        Path(env["JOGGER_USER_CERT_FILE"]),
        Path(env["JOGGER_USER_KEY_FILE"]),
    )
    host, port = env["JOGGER_HOST"].rsplit(":", 1)
    job = str(spec["job"])
    concurrency = int(spec["concurrency"])  # type: ignore[call-overload]
    seconds = float(spec["seconds"])  # type: ignore[arg-type]
    start = end = 0.0
    done = 0

    async def reuse() -> None:
        nonlocal done, start, end
        async with open_channel(host, int(port), context) as channel:
            client = JobsClient(channel)
            await client.status(job)  # warm
            start, end = await trio.to_thread.run_sync(ready_go, seconds)

            async def caller() -> None:
                nonlocal done
                while time.time() < end:
                    await client.status(job)
                    done += time.time() < end

            async with trio.open_nursery() as nursery:
                for _ in range(concurrency):
                    nursery.start_soon(caller)

    async def connect() -> None:
        nonlocal done, start, end
        start, end = await trio.to_thread.run_sync(ready_go, seconds)

        async def connector() -> None:
            nonlocal done
            while time.time() < end:
                async with open_channel(host, int(port), context) as channel:
                    await JobsClient(channel).status(job)
                done += time.time() < end

        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(connector)

    trio.run(reuse if spec["mode"] == "reuse" else connect)
    return done / (end - start)


def worker_grpcio(spec: dict[str, object]) -> float:
    """As worker_trio, with grpcio's C client."""
    env = os.environ
    credentials = grpc.ssl_channel_credentials(
        Path(env["JOGGER_CA_CERT_FILE"]).read_bytes(),
        Path(env["JOGGER_USER_KEY_FILE"]).read_bytes(),
        Path(env["JOGGER_USER_CERT_FILE"]).read_bytes(),
    )
    target = env["JOGGER_HOST"]
    request = jobs_pb2.StatusRequest(job_id=str(spec["job"])).SerializeToString()
    concurrency = int(spec["concurrency"])  # type: ignore[call-overload]
    start = end = 0.0
    counts = [0] * concurrency
    # Each channel its own connection (grpcio shares subchannels between equal channels).
    options = [
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.ssl_target_name_override", "127.0.0.1"),
    ]

    def call(channel: grpc.Channel) -> None:
        channel.unary_unary("/jogger.v1.Jobs/Status")(request, timeout=10)

    def reuse(channel: grpc.Channel, i: int) -> None:
        while time.time() < end:
            call(channel)
            counts[i] += time.time() < end

    def connect(i: int) -> None:
        while time.time() < end:
            with grpc.secure_channel(target, credentials, options) as channel:
                call(channel)
            counts[i] += time.time() < end

    if spec["mode"] == "reuse":
        shared = grpc.secure_channel(target, credentials, options)
        call(shared)  # warm
        threads = [threading.Thread(target=reuse, args=(shared, i)) for i in range(concurrency)]
    else:
        threads = [threading.Thread(target=connect, args=(i,)) for i in range(concurrency)]
    start, end = ready_go(float(spec["seconds"]))  # type: ignore[arg-type]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (end - start)


def worker(spec_json: str) -> None:
    spec = json.loads(spec_json)
    rate = (worker_grpcio if spec["client"] == "grpcio" else worker_trio)(spec)
    print(rate)


# --- the driver -----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    env: dict[str, str],
    server: int,
    job: str,
    *,
    client: str,
    mode: str,
    processes: int,
    concurrency: int,
    seconds: float,
) -> tuple[float, float]:
    """Calls per second, all client processes together, and the server's CPU time per call
    (seconds) while they ran."""
    spec = dict(client=client, mode=mode, job=job, concurrency=concurrency, seconds=seconds)
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "worker", json.dumps(spec)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    # Every process imported, and connected where it reuses a connection, before any starts.
    for child in children:
        assert child.stdout is not None
        child.stdout.readline()
    cpu = cpu_seconds(server)
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    rates = []
    for child in children:
        out, _ = child.communicate()
        if child.returncode != 0:
            raise SystemExit(f"a {client} worker failed")
        rates.append(float(out))
    # The window's calls, against the CPU the server used from the go to the last report (a
    # little more than the window: an overestimate of the cost per call, if anything).
    cpu = cpu_seconds(server) - cpu
    return sum(rates), cpu / max(1.0, sum(rates) * seconds)


def protocol_floor(calls: int = 3000) -> tuple[float, float]:
    """CPU seconds per call that the protocol machine alone (h2, hpack, purerpc; no I/O, no
    trio) takes at the server for one unary call: parsing the request's frames, and making
    the answer's headers, message and trailers. The floor under any per-call figure."""
    from purerpc.grpclib.config import GRPCConfiguration  # noqa: PLC0415 - this mode only
    from purerpc.grpclib.status import Status, StatusCode  # noqa: PLC0415

    from jogger.rpc.protocol import ProtocolMachine  # noqa: PLC0415

    server = ProtocolMachine(GRPCConfiguration(client_side=False, max_message_length=1 << 20))
    client = ProtocolMachine(GRPCConfiguration(client_side=True, max_message_length=4 << 20))
    server.initiate_connection()
    client.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    request = jobs_pb2.StatusRequest(job_id="7d3e5a52-9c1b-4d0f-8a51-3f0c2b1e4d6a")
    body = request.SerializeToString()
    message = b"\0" + len(body).to_bytes(4, "big") + body
    answer = b"\0" + (300).to_bytes(4, "big") + b"x" * 300  # a JobStatus is some 300 bytes
    parse = respond = 0.0
    for _ in range(calls):
        stream = client.get_next_available_stream_id()
        client.start_request(
            stream,
            "https",
            "jogger.v1.Jobs",
            "Status",
            "jogger.v1.StatusRequest",
            "127.0.0.1:4433",
            None,
            "+proto",
        )
        client.send_data(stream, message, True)
        data = client.data_to_send()
        began = time.process_time()
        server.receive_data(data)
        parsed = time.process_time()
        server.start_response(stream, "+proto")
        server.send_data(stream, answer)
        server.end_response(stream, Status(StatusCode.OK))
        out = server.data_to_send()
        done = time.process_time()
        parse += parsed - began
        respond += done - parsed
        server.release(stream)
        for event in client.receive_data(out):
            length = getattr(event, "flow_controlled_length", 0)
            if length:
                client.acknowledge(stream, length)
        client.release(stream)
    return parse / calls, respond / calls


CASES = [
    # label, mode, processes, concurrency per process
    ("Status, one connection, 1 caller", "reuse", 1, 1),
    ("Status, one connection, 8 callers", "reuse", 1, 8),
    ("Status, one connection, 32 callers", "reuse", 1, 32),
    ("connect + Status, 1 connector", "connect", 1, 1),
    ("connect + Status, 4 procs x 2 connectors", "connect", 4, 2),
    ("connect + Status, 4 procs x 8 connectors", "connect", 4, 8),
]


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        worker(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat of 2 s")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--no-grpcio", action="store_true", help="skip the grpcio column")
    parser.add_argument("--only", default="", help="run only the cases whose label has this")
    parser.add_argument("--profile", metavar="OUT", help="cProfile the server into OUT")
    parser.add_argument(
        "--protocol",
        action="store_true",
        help="only the protocol machine's CPU time per call (no server, no I/O)",
    )
    args = parser.parse_args()
    if args.protocol:
        # The least disturbed of many short runs: on a shared machine, noise only adds.
        floors = [protocol_floor(500) for _ in range(20)]
        parse = min(f[0] for f in floors) * 1e6
        respond = min(f[1] for f in floors) * 1e6
        print("protocol machine, per unary call (CPU time, best of 20 runs of 500 calls):")
        print(f"  parse the request (h2 frames, hpack decode, checks) {parse:6.0f} us")
        print(f"  make the answer (headers, message, trailers)       {respond:6.0f} us")
        return
    repeats, seconds = (1, 2.0) if args.quick else (args.repeats, args.seconds)
    clients = ["trio"] if args.no_grpcio else ["trio", "grpcio"]
    cases = [case for case in CASES if args.only in case[0]]
    with (
        tempfile.TemporaryDirectory() as tmp,
        jogger_server(Path(tmp), args.profile) as (env, server),
    ):
        started = subprocess.run(
            [BIN / "jog", "start", "--", "true"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        found = re.search(r"[0-9a-f]{8}-[0-9a-f-]{27}", started.stdout)
        job = found[0] if found and started.returncode == 0 else ""
        if not job:
            raise SystemExit(f"jog start failed: {started.stderr.strip()}")
        results: dict[tuple[str, str], list[float]] = {}
        costs: dict[tuple[str, str], list[float]] = {}
        for _ in range(repeats):
            for label, mode, processes, concurrency in cases:
                for client in clients:
                    rate, cost = measure(
                        env,
                        server,
                        job,
                        client=client,
                        mode=mode,
                        processes=processes,
                        concurrency=concurrency,
                        seconds=seconds,
                    )
                    results.setdefault((label, client), []).append(rate)
                    costs.setdefault((label, client), []).append(cost)
    # calls/s: what the clients got; us/call: the server's CPU time per call (user and
    # system, all its threads), which a loaded machine disturbs less than the rate.
    head = "".join(f"{c + ' calls/s':>16}{'us/call':>9}" for c in clients)
    print(f"{'measure (median of ' + str(repeats) + ')':<42}{head}")
    print("-" * (42 + 25 * len(clients)))
    for label, *_ in cases:
        row = "".join(
            f"{statistics.median(results[label, c]):>16.0f}"
            f"{statistics.median(costs[label, c]) * 1e6:>9.0f}"
            for c in clients
        )
        print(f"{label:<42}{row}")


if __name__ == "__main__":
    main()

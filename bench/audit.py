"""What the audit log costs the start path: Start and Stop calls with --audit-log beside the
same calls without it, in the same run.

    python bench/audit.py [--quick] [--rounds N]

Two in-process servers (loopback, mutual TLS, development certificates), one with an audit log on
the state dir's file system and one without, each called over one connection, alternating
call by call so that a busy machine weighs on both alike. Prints the Start of ``/bin/true``
(call to answer) and the Stop of a running ``sleep`` at p50 and p99, and what one audit line
costs on its own (``AuditLog.record``, with json and the write).
"""

import argparse
import logging
import tempfile
import time
from functools import partial
from pathlib import Path

import trio

from jogger.engine import ManagerLimits
from jogger.rpc import certs
from jogger.rpc.auth import Identity
from jogger.rpc.client import open_client
from jogger.rpc.method import Call
from jogger.server.audit import AuditLog
from jogger.server.config import ServerConfig
from jogger.server.main import serve


def make_certs(directory: Path) -> None:
    """ca.pem, server.pem and alice.pem, with their keys, in ``directory``."""
    directory.mkdir()
    ca = certs.make_ca()
    certs.write_cert(directory / "ca.pem", ca.cert)
    for name, (cert, key) in (
        ("server", certs.make_server(ca, ["localhost"], ["127.0.0.1"])),
        ("alice", certs.make_user(ca, "alice")),
    ):
        certs.write_cert(directory / f"{name}.pem", cert)
        certs.write_key(directory / f"{name}-key.pem", key)


def config(pki: Path, state_dir: Path, audit_log: Path | None) -> ServerConfig:
    return ServerConfig(
        listen=[("127.0.0.1", 0)],
        state_dir=state_dir,
        ca_cert=pki / "ca.pem",
        cert=pki / "server.pem",
        key=pki / "server-key.pem",
        grace=2.0,
        drain_timeout=2.0,
        limits=ManagerLimits(max_jobs_per_owner=4096),
        audit_log=audit_log,
    )


def quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def calls(rounds: int) -> dict[tuple[str, str], list[float]]:
    took: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="jogger-bench-audit-") as tmp:
        base = Path(tmp)
        pki = base / "pki"
        make_certs(pki)
        tls = partial(
            open_client, ca=pki / "ca.pem", cert=pki / "alice.pem", key=pki / "alice-key.pem"
        )
        async with trio.open_nursery() as nursery:
            ports = {}
            for name, audit_log in (("without", None), ("with", base / "audit.log")):
                bound = await nursery.start(serve, config(pki, base / name, audit_log))
                ports[name] = bound[0][1]
            async with (
                tls("localhost", ports["without"]) as without,
                tls("localhost", ports["with"]) as wth,
            ):
                clients = {"without": without, "with": wth}
                for _ in range(rounds):
                    for name, client in clients.items():
                        begin = time.perf_counter()
                        await client.start(["/bin/true"])
                        took.setdefault(("Start", name), []).append(time.perf_counter() - begin)
                        job = await client.start(["sleep", "60"])
                        begin = time.perf_counter()
                        await client.stop(job.job_id, grace=0)
                        took.setdefault(("Stop", name), []).append(time.perf_counter() - begin)
            lines = len((base / "audit.log").read_text().splitlines())
            assert lines == 3 * rounds, lines
            nursery.cancel_scope.cancel()  # the servers: done with
    return took


def record_cost(count: int) -> float:
    """Seconds per AuditLog.record of a Start line, into a file in a temporary directory."""
    call = Call(
        Identity("alice", False, "72F18175AC30A12003C38D99E7C7C2B40DED643F", "3D:7C" * 16),
        "127.0.0.1:58700",
        "/jogger.v1.Jobs/Start",
    )
    argv = ["python3", "-c", "print('hello')"]
    with (
        tempfile.TemporaryDirectory(prefix="jogger-bench-audit-") as tmp,
        AuditLog(Path(tmp) / "audit.log") as audit,
    ):
        begin = time.perf_counter()
        for _ in range(count):
            audit.record(
                "start", call=call, job_id="497677b7-9f83-4347-9af2-8427f562d46d", argv=argv
            )
        return (time.perf_counter() - begin) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args()
    rounds = 20 if args.quick else args.rounds
    logging.getLogger("jogger").setLevel(logging.ERROR)  # the servers' start-up warnings
    took = trio.run(calls, rounds)
    print(f"{'call':<8}{'audit log':<12}{'p50 ms':>9}{'p99 ms':>9}{'p50 ratio':>11}")
    for method in ("Start", "Stop"):
        base = quantile(took[(method, "without")], 0.5)
        for name in ("without", "with"):
            samples = took[(method, name)]
            p50, p99 = quantile(samples, 0.5), quantile(samples, 0.99)
            print(f"{method:<8}{name:<12}{p50 * 1e3:>9.2f}{p99 * 1e3:>9.2f}{p50 / base:>11.2f}")
    per_line = record_cost(2000 if args.quick else 20000)
    print(f"one audit line (AuditLog.record, json and write): {per_line * 1e6:.1f} us")


if __name__ == "__main__":
    main()

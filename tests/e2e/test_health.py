"""grpc.health.v1 against the real jogger-server, with grpcio-health-checking's own stub: Check,
List, and Watch from SERVING to NOT_SERVING when the server is told to stop (SIGTERM)."""

import queue
import signal
from pathlib import Path
from typing import Any

import grpc
import trio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.conftest import Cli, launch, stop_server
from tests.pki import Pki

TIMEOUT = 60
UNKNOWN = "no.such.Service"
Seen = tuple[str, Any]
"""What a watcher saw: (service, a status), or (service, (code, details)) at its end."""


def channel_to(cli: Cli) -> Any:
    pair = cli.pki.user("alice")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=cli.pki.ca.read_bytes(),
        private_key=pair.key.read_bytes(),
        certificate_chain=pair.cert.read_bytes(),
    )
    return grpc.secure_channel(f"localhost:{cli.port}", credentials)


def watch(channel: Any, service: str, seen: "queue.Queue[Seen]") -> None:
    """Watch ``service`` until the stream ends, putting what comes on ``seen``."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        for response in stub.Watch(health_pb2.HealthCheckRequest(service=service)):
            seen.put((service, response.status))
    except grpc.RpcError as exc:
        seen.put((service, (exc.code(), exc.details())))
    else:
        seen.put((service, "ended with OK"))


def check_and_list(channel: Any) -> dict[str, Any]:
    stub = health_pb2_grpc.HealthStub(channel)
    answers: dict[str, Any] = {}
    for service in ("", "jogger.v1.Jobs"):
        answers[service] = stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT
        ).status
    try:
        stub.Check(health_pb2.HealthCheckRequest(service=UNKNOWN), timeout=TIMEOUT)
    except grpc.RpcError as exc:
        answers[UNKNOWN] = exc.code()
    listed = stub.List(health_pb2.HealthListRequest(), timeout=TIMEOUT)
    answers["list"] = {name: status.status for name, status in listed.statuses.items()}
    return answers


async def next_seen(seen: "queue.Queue[Seen]") -> Seen:
    return await trio.to_thread.run_sync(seen.get, True, TIMEOUT)


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_watch_sees_serving_then_not_serving_when_the_server_stops(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    # A job that ignores SIGTERM and ends once told to: the server's shutdown waits for it
    # (for up to --grace), and we look at the server while it does.
    cli = await launch(pki, tmp_path / "state", nursery, "--grace", "60")
    done = tmp_path / "done"
    script = f"trap '' TERM; while [ ! -e {done} ]; do sleep 0.05; done"
    channel = channel_to(cli)
    try:
        started = await cli.jog("start", "--", "sh", "-c", script)
        assert started.returncode == 0, started.stderr
        seen: queue.Queue[Seen] = queue.Queue()
        with trio.fail_after(TIMEOUT):
            for service in ("", UNKNOWN):
                nursery.start_soon(trio.to_thread.run_sync, watch, channel, service, seen)
            first = {await next_seen(seen), await next_seen(seen)}
            # An unknown service is no error to Watch: the stream stays open.
            assert first == {
                ("", SERVING),
                (UNKNOWN, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN),
            }
            assert await trio.to_thread.run_sync(check_and_list, channel) == {
                "": SERVING,
                "jogger.v1.Jobs": SERVING,
                UNKNOWN: grpc.StatusCode.NOT_FOUND,
                "list": {"": SERVING, "jogger.v1.Jobs": SERVING},
            }
            cli.process.send_signal(signal.SIGTERM)
            assert await next_seen(seen) == ("", NOT_SERVING)
            # The server is stopping its job, which does not go: still up, not serving.
            assert cli.process.returncode is None
            answers = await trio.to_thread.run_sync(check_and_list, channel)
            assert answers["list"] == {"": NOT_SERVING, "jogger.v1.Jobs": NOT_SERVING}
            assert seen.empty()
            done.touch()  # the job ends: the server drains, and ends the watches
            rest = {await next_seen(seen), await next_seen(seen)}
            await cli.process.wait()
        assert cli.process.returncode == 0
    finally:
        done.touch()  # the job ends by itself, whatever happened
        channel.close()
        await stop_server(cli.process)
    shutting_down = (grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
    assert rest == {("", shutting_down), (UNKNOWN, shutting_down)}

"""Start's isolation through the real server (in-process, real TLS): the policy applied,
refusals and their codes, and the isolation in force in every status.

What a job then sees of the host is tested with real jobs in tests/e2e/test_isolation.py.
"""

import dataclasses
import os
from pathlib import Path
from typing import cast

import pytest
import trio

from jogger.engine import Isolation
from jogger.rpc.errors import RpcError, StatusCode
from jogger.server.isolation import IsolationPolicy
from jogger.v1 import jobs_pb2
from tests.cli.test_isolation_options import ALL
from tests.pki import Pki
from tests.servers import Server, server_config, start_server

requires_root = pytest.mark.skipif(os.geteuid() != 0, reason="making namespaces needs root")

NONE = jobs_pb2.Isolation()


def asking(*namespaces: jobs_pb2.Namespace, read_only_root: bool = False) -> jobs_pb2.Isolation:
    return jobs_pb2.Isolation(namespaces=namespaces, read_only_root=read_only_root)


async def serve(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery, default: str = "", required: str = ""
) -> Server:
    """A server with this policy, as it is once the flags have been checked: not against
    this host here, so that a refusal by the policy can be seen without root."""
    policy = IsolationPolicy(Isolation.parse(default), Isolation.parse(required))
    config = dataclasses.replace(server_config(pki, tmp_path / "state"), isolation=policy)
    return await start_server(nursery, pki, config)


async def refused(server: Server, **start: object) -> RpcError:
    """The error a Start of ``true`` gets; that nothing was started."""
    async with server.connect() as client:
        with pytest.raises(RpcError) as info:
            await client.start(["true"], **start)  # type: ignore[arg-type]
        assert await client.list() == ([], False)
    return info.value


@pytest.mark.skipif(os.geteuid() == 0, reason="root can make namespaces")
@pytest.mark.parametrize(
    "start",
    [
        {"isolation": asking(*ALL)},
        {"isolation": asking(jobs_pb2.NAMESPACE_NET)},
        {"isolation": asking(read_only_root=True)},
        {"network": jobs_pb2.NETWORK_NONE},
    ],
    ids=["all", "net", "read-only-root", "network-none"],
)
async def test_without_root_isolation_is_failed_precondition_and_starts_nothing(
    server: Server, start: dict[str, object]
) -> None:
    error = await refused(server, **start)
    assert error.code == StatusCode.FAILED_PRECONDITION
    assert error.message == (
        "this server cannot isolate jobs: making namespaces needs root (CAP_SYS_ADMIN), and "
        f"it runs as uid {os.geteuid()} without it"
    )


async def test_asking_for_no_isolation_or_the_hosts_network_needs_no_root(server: Server) -> None:
    async with server.connect() as client:
        for start in ({"isolation": NONE}, {"network": jobs_pb2.NETWORK_HOST}, {}):
            status = await client.start(["true"], **start)
            assert status.HasField("isolation")  # present, and empty: none
            assert status.isolation == NONE


async def test_the_hosts_network_where_a_network_namespace_is_required_is_permission_denied(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    server = await serve(pki, tmp_path, nursery, required="net")
    for isolation in (None, NONE, asking(*ALL)):
        error = await refused(server, isolation=isolation, network=jobs_pb2.NETWORK_HOST)
        assert error.code == StatusCode.PERMISSION_DENIED
        assert "(--require-isolation net)" in error.message


@pytest.mark.parametrize(
    ("start", "told"),
    [
        ({"isolation": asking(jobs_pb2.NAMESPACE_UNSPECIFIED)}, "unknown namespace 0"),
        (
            {"isolation": asking(jobs_pb2.NAMESPACE_PID, cast(jobs_pb2.Namespace, 42))},
            "unknown namespace 42",
        ),
        ({"network": 7}, "unknown network 7"),
        (
            {"isolation": jobs_pb2.Isolation(hostname="mine")},
            "a job's hostname is the server's to give: leave isolation.hostname empty",
        ),
    ],
    ids=["unspecified", "unknown-namespace", "unknown-network", "hostname"],
)
async def test_what_the_server_does_not_know_is_invalid_argument(
    server: Server, start: dict[str, object], told: str
) -> None:
    error = await refused(server, **start)
    assert (error.code, error.message) == (StatusCode.INVALID_ARGUMENT, told)


async def statuses(server: Server, **start: object) -> jobs_pb2.Isolation:
    """The isolation in the Start's answer, the Status and the List of one job; all equal."""
    async with server.connect() as client:
        started = await client.start(["sleep", "30"], **start)  # type: ignore[arg-type]
        status = await client.status(started.job_id)
        listed, _ = await client.list(limit=1)
        await client.stop(started.job_id, grace=0)
    assert started.isolation == status.isolation == listed[0].isolation
    if jobs_pb2.NAMESPACE_UTS in status.isolation.namespaces:
        assert status.isolation.hostname == "jog-" + started.job_id[:8]
    return status.isolation


@requires_root
async def test_every_status_shows_the_isolation_in_force_and_the_hostname(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    server = await serve(pki, tmp_path, nursery)
    shown = await statuses(server, isolation=asking(jobs_pb2.NAMESPACE_UTS, *ALL))
    assert list(shown.namespaces) == ALL  # each once, in the enum's order
    assert (shown.read_only_root, shown.hostname[:4]) == (False, "jog-")
    shown = await statuses(server, isolation=asking(jobs_pb2.NAMESPACE_NET, read_only_root=True))
    assert shown == asking(jobs_pb2.NAMESPACE_MOUNT, jobs_pb2.NAMESPACE_NET, read_only_root=True)
    assert await statuses(server, network=jobs_pb2.NETWORK_NONE) == asking(jobs_pb2.NAMESPACE_NET)


@requires_root
async def test_the_servers_default_and_requirement_are_in_the_status(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    server = await serve(pki, tmp_path, nursery, default="pid,uts", required="ipc")
    default = await statuses(server)
    assert list(default.namespaces) == [
        jobs_pb2.NAMESPACE_PID,
        jobs_pb2.NAMESPACE_IPC,
        jobs_pb2.NAMESPACE_UTS,
    ]
    assert default.hostname.startswith("jog-")
    assert await statuses(server, isolation=NONE) == asking(jobs_pb2.NAMESPACE_IPC)
    assert await statuses(
        server, isolation=asking(jobs_pb2.NAMESPACE_PID), network=jobs_pb2.NETWORK_NONE
    ) == asking(jobs_pb2.NAMESPACE_PID, jobs_pb2.NAMESPACE_NET, jobs_pb2.NAMESPACE_IPC)


@requires_root
async def test_an_isolated_jobs_status_outlives_the_server(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    # The record keeps the isolation; the next server's answers have it, hostname included.
    asked = asking(jobs_pb2.NAMESPACE_PID, jobs_pb2.NAMESPACE_UTS, read_only_root=True)
    async with trio.open_nursery() as first:
        server = await serve(pki, tmp_path, first)
        async with server.connect() as client:
            job = await client.start(["true"], isolation=asked)
        first.cancel_scope.cancel()
    server = await serve(pki, tmp_path, nursery)
    async with server.connect() as client:
        status = await client.status(job.job_id)
    assert status.isolation == job.isolation
    assert status.isolation.hostname == "jog-" + job.job_id[:8]

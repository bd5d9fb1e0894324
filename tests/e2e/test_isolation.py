"""Isolated jobs end to end: the real jog and jogger-server as processes, and what a job then
sees of the host (its namespaces, hostname, network, processes, root file system).

The tests marked ``requires_root`` run real isolated jobs: they need root, and a supervisor
that makes the namespaces (issue 17's sandbox in supervise.c).
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from tests.e2e.conftest import BIN, Cli, launch, server_env, stop_server
from tests.e2e.test_cli import job_id_of
from tests.pki import Pki

# The system's python, not the venv's: a checkout under /tmp (CI's clone) is hidden by the
# job's private /tmp. The probe needs only the standard library.
PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "python3"
requires_root = pytest.mark.skipif(os.geteuid() != 0, reason="making namespaces needs root")
without_root = pytest.mark.skipif(os.geteuid() == 0, reason="root can make namespaces")

KERNEL_NAMES = ("pid", "mnt", "net", "ipc", "uts")
# What a job sees, as JSON: its namespaces, hostname and network links, whether it sees this
# test's process and a file of the host's /tmp, what writing to / and to /tmp gives, and what
# connecting to the server's port on 127.0.0.1 does.
PROBE = """
import json, os, socket, sys

def write(path):
    try:
        with open(path, "x"):
            pass
    except OSError as error:
        return error.strerror
    os.unlink(path)
    return "ok"

def connect(port):
    try:
        socket.create_connection(("127.0.0.1", int(port)), timeout=5).close()
    except OSError as error:
        return error.strerror
    return "ok"

test_pid, marker, port, *kinds = sys.argv[1:]
print(json.dumps({
    "ns": {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in kinds},
    "hostname": socket.gethostname(),
    "links": sorted(name for _, name in socket.if_nameindex()),
    "sees_the_test": os.path.exists(f"/proc/{test_pid}"),
    "sees_the_marker": os.path.exists(marker),
    "root": write(f"/.jogger-probe-{os.getpid()}"),
    "tmp": write(f"/tmp/.jogger-probe-{os.getpid()}"),
    "server": connect(port),
}))
"""


def host_namespaces() -> dict[str, str]:
    return {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in KERNEL_NAMES}


async def probe(cli: Cli, tmp_path: Path, *options: str) -> dict[str, object]:
    """What a job started with ``options`` sees; the job's id under "job_id"."""
    marker = tmp_path / "marker-on-the-hosts-tmp"
    marker.touch()
    result = await cli.jog(
        "run",
        "-n",
        *options,
        "--",
        PYTHON,
        "-c",
        PROBE,
        str(os.getpid()),
        str(marker),
        str(cli.port),
        *KERNEL_NAMES,
    )
    assert result.returncode == 0, result.stderr
    seen: dict[str, object] = json.loads(result.stdout)
    [listed] = json.loads((await cli.jog("list", "--json", "--limit", "1")).stdout)
    seen["job_id"] = listed["job_id"]
    return seen


def isolated(seen: dict[str, object]) -> set[str]:
    """The kernel's names of the namespaces the job does not share with this test."""
    mine = host_namespaces()
    theirs = seen["ns"]
    assert isinstance(theirs, dict)
    return {kind for kind in KERNEL_NAMES if theirs[kind] != mine[kind]}


@requires_root
async def test_a_bare_isolate_gives_the_job_every_namespace(cli: Cli, tmp_path: Path) -> None:
    seen = await probe(cli, tmp_path, "--isolate")
    assert isolated(seen) == set(KERNEL_NAMES)
    assert seen["hostname"] == "jog-" + str(seen["job_id"])[:8]
    assert seen["links"] == ["lo"]
    assert seen["sees_the_test"] is False
    assert seen["sees_the_marker"] is False  # a private /tmp
    assert seen["tmp"] == "ok"
    assert seen["root"] == "ok"  # no read-only root unless asked
    assert seen["server"] == "Connection refused"  # the server's own port, on the host's lo


@requires_root
@pytest.mark.parametrize(("kinds", "kernel"), [("uts", "uts"), ("ipc", "ipc")])
async def test_the_namespaces_not_asked_for_are_the_hosts(
    cli: Cli, tmp_path: Path, kinds: str, kernel: str
) -> None:
    seen = await probe(cli, tmp_path, f"--isolate={kinds}")
    assert isolated(seen) == {kernel}
    assert seen["sees_the_test"] is True
    assert seen["sees_the_marker"] is True


@requires_root
async def test_network_none_leaves_only_lo_and_nothing_else(cli: Cli, tmp_path: Path) -> None:
    seen = await probe(cli, tmp_path, "--network", "none")
    assert isolated(seen) == {"net"}
    assert seen["links"] == ["lo"]
    assert seen["server"] == "Connection refused"
    host = await probe(cli, tmp_path, "--isolate=ipc,net", "--network", "host")
    assert isolated(host) == {"ipc"}
    assert host["server"] == "ok"


@requires_root
async def test_a_read_only_root_leaves_tmp_writable(cli: Cli, tmp_path: Path) -> None:
    seen = await probe(cli, tmp_path, "--read-only-root")
    assert "mnt" in isolated(seen)
    assert seen["root"] == "Read-only file system"
    assert seen["tmp"] == "ok"
    assert seen["sees_the_marker"] is False


@requires_root
async def test_status_list_and_json_show_the_isolation_in_force(cli: Cli) -> None:
    job = job_id_of(
        await cli.jog("start", "--isolate=pid,uts", "--read-only-root", "--", "sleep", "30")
    )
    shown = (await cli.jog("status", job)).stdout.decode().splitlines()
    assert f"isolate: pid,mount,uts; hostname jog-{job[:8]}; read-only root" in shown
    listing = (await cli.jog("list")).stdout.decode().splitlines()
    assert listing[0].split()[-2:] == ["ISOLATE", "COMMAND"]
    assert listing[1].split()[-3:] == ["pid,uts,read-only-root", "sleep", "30"]
    expected = {
        "namespaces": ["pid", "mount", "uts"],
        "read_only_root": True,
        "hostname": f"jog-{job[:8]}",
    }
    assert json.loads((await cli.jog("status", "--json", job)).stdout)["isolation"] == expected
    [listed] = json.loads((await cli.jog("list", "--json")).stdout)
    assert listed["isolation"] == expected
    await cli.jog("stop", "--grace", "0", job)


async def test_a_job_that_does_not_ask_runs_as_the_server_says_and_shows_none(cli: Cli) -> None:
    job = job_id_of(await cli.jog("start", "--", "true"))
    assert "isolate: none" in (await cli.jog("status", job)).stdout.decode().splitlines()
    assert (await cli.jog("list")).stdout.decode().splitlines()[1].split()[-2:] == ["-", "true"]
    as_json = json.loads((await cli.jog("status", "--json", job)).stdout)
    assert as_json["isolation"] == {"namespaces": [], "read_only_root": False, "hostname": None}


@without_root
@pytest.mark.parametrize(
    "options", [["--isolate"], ["--isolate=net"], ["--read-only-root"], ["--network", "none"]]
)
async def test_without_root_isolation_is_refused_in_one_line_and_nothing_runs(
    cli: Cli, options: list[str]
) -> None:
    result = await cli.jog("run", *options, "--", "true")
    assert result.returncode == 1
    assert result.stderr.decode() == (
        "jog: error: this server cannot isolate jobs: making namespaces needs root "
        f"(CAP_SYS_ADMIN), and it runs as uid {os.geteuid()} without it\n"
    )
    assert json.loads((await cli.jog("list", "--json")).stdout) == []
    host = await cli.jog("run", "--network", "host", "--", "true")  # needs no namespace
    assert host.returncode == 0, host.stderr


@without_root
@pytest.mark.parametrize("flag", ["--isolate-default", "--require-isolation"])
async def test_without_root_a_server_with_an_isolation_policy_does_not_start(
    pki: Pki, tmp_path: Path, flag: str
) -> None:
    with trio.fail_after(30):
        result = await trio.run_process(
            [
                BIN / "jogger-server",
                "--listen",
                "127.0.0.1:0",
                "--state-dir",
                tmp_path,
                flag,
                "pid",
            ],
            env=server_env(pki),
            stdin=subprocess.DEVNULL,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"jogger-server: error: {flag} pid: this server cannot isolate jobs: making namespaces "
        f"needs root (CAP_SYS_ADMIN), and it runs as uid {os.geteuid()} without it\n"
    )


@requires_root
async def test_the_hosts_network_where_net_is_required_is_refused(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    server = await launch(
        pki,
        tmp_path / "state",
        nursery,
        "--require-isolation",
        "net",
        "--isolate-default",
        "pid",
    )
    try:
        assert any("isolate_default=pid require_isolation=net" in line for line in server.log), (
            server.log
        )
        result = await server.jog("run", "--network", "host", "--", "true")
        assert result.returncode == 1
        assert result.stderr.decode() == (
            "jog: error: this server gives every job a network namespace of its own "
            "(--require-isolation net): the host's network is not to be had\n"
        )
        assert json.loads((await server.jog("list", "--json")).stdout) == []
    finally:
        await stop_server(server.process)

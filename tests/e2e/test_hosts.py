"""jog across many hosts, end to end: two real jogger-servers on loopback and an address where
nothing listens, one of the servers named by a context of a config file; the real jog runs
and lists on all of them at once."""

import json
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from tests.e2e.conftest import BIN, Cli, launch, stop_server
from tests.e2e.test_cli import job_id_of, jog_into_closed_pipe
from tests.pki import Pki
from tests.procs import PYTHON

NOWHERE = "127.0.0.1:1"
"""Nothing listens there: connection refused."""

LINES = 3000
# Lines of 64 bytes, written in pieces of 997 bytes that end mid-line, as fast as the job can;
# then a last line without its newline.
WRITES_LINES = (
    "import os\n"
    f"data = b''.join(b'%05d ' % n + b'x' * 57 + b'\\n' for n in range({LINES}))\n"
    "for at in range(0, len(data), 997): os.write(1, data[at : at + 997])\n"
    "os.write(1, b'no newline')\n"
)


@dataclass
class Hosts:
    servers: list[Cli]
    config_home: Path

    @property
    def other(self) -> str:
        """The second server, named by its address."""
        return f"localhost:{self.servers[1].port}"

    def env(self, **extra: str) -> dict[str, str]:
        """alice's certificates in JOGGER_* (JOGGER_HOST: the second server), and the
        config file with context ``alpha``, the first server."""
        return self.servers[1].env(XDG_CONFIG_HOME=str(self.config_home), **extra)

    async def jog(
        self, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        with trio.fail_after(60):
            return await trio.run_process(
                [BIN / "jog", *args],
                env=env or self.env(),
                stdin=stdin,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )


@pytest.fixture
async def hosts(pki: Pki, tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Hosts]:
    servers: list[Cli] = []

    async def start(name: str) -> None:
        servers.append(await launch(pki, tmp_path / name, nursery))

    try:
        async with trio.open_nursery() as starting:
            starting.start_soon(start, "state-a")
            starting.start_soon(start, "state-b")
        alice = pki.user("alice")
        config = tmp_path / "config" / "jogger" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text(
            "[contexts.alpha]\n"
            f'host = "localhost:{servers[0].port}"\n'
            f'ca = "{pki.ca}"\ncert = "{alice.cert}"\nkey = "{alice.key}"\n'
        )
        config.chmod(0o600)
        yield Hosts(servers, tmp_path / "config")
    finally:
        for server in servers:
            await stop_server(server.process)


def by_host(stdout: bytes) -> dict[str, list[str]]:
    """Each host's lines of ``jog run --hosts``, in order; every line must have a prefix."""
    lines: dict[str, list[str]] = {}
    for line in stdout.decode().split("\n")[:-1]:
        host, sep, text = line.partition(": ")
        assert sep, f"a line without its host: {line!r}"
        lines.setdefault(host, []).append(text)
    return lines


async def test_run_on_every_host_prefixes_whole_lines_and_exits_with_the_worst(
    hosts: Hosts, tmp_path: Path
) -> None:
    # One host's job exits 0, the other's 5 (whichever makes the directory first); the
    # third host cannot be reached (3). The worst is 5.
    first = tmp_path / "first"
    script = WRITES_LINES + (
        f"try:\n    os.mkdir({str(first)!r})\nexcept FileExistsError:\n    raise SystemExit(5)\n"
    )
    done = await hosts.jog(
        "run", "--hosts", f"alpha,{hosts.other},{NOWHERE}", "--", PYTHON, "-c", script
    )
    assert done.returncode == 5, done.stderr
    assert done.stderr.decode().splitlines() == [
        f"jog: error: {NOWHERE}: cannot connect: Connection refused"
    ]
    lines = by_host(done.stdout)
    assert sorted(lines) == sorted(["alpha", hosts.other])
    expected = [f"{n:05d} " + "x" * 57 for n in range(LINES)] + ["no newline"]
    for host, seen in lines.items():
        assert seen == expected, host  # whole lines, in order, none torn by the other host's
    # The worst of 1, 1 and an unreachable host's 3 is 3.
    failed = await hosts.jog("run", "--hosts", f"alpha,{hosts.other},{NOWHERE}", "--", "false")
    assert (failed.returncode, failed.stdout) == (3, b"")


async def test_jobs_run_with_hosts_read_dev_null_and_a_refusal_names_its_host(
    hosts: Hosts,
) -> None:
    fed = await hosts.jog("run", "--hosts", f"alpha,{hosts.other}", "--", "cat", stdin=b"data\n")
    assert (fed.returncode, fed.stdout, fed.stderr) == (0, b"", b"")
    refused = await hosts.jog(
        "run", "--hosts", f"alpha,{hosts.other}", "--cwd", "rel", "--", "true"
    )
    assert refused.returncode == 1
    errors = refused.stderr.decode().splitlines()
    assert len(errors) == 2
    assert {line.split(": ")[2] for line in errors} == {
        f"alpha (localhost:{hosts.servers[0].port})",
        hosts.other,
    }


async def test_list_merges_every_hosts_jobs_newest_first_with_a_host_column(
    hosts: Hosts,
) -> None:
    older = job_id_of(await hosts.servers[0].jog("start", "--", "true"))
    newer = job_id_of(await hosts.servers[1].jog("start", "--", "true"))
    listed = await hosts.jog("list", "--hosts", f"{NOWHERE},alpha,{hosts.other}")
    assert listed.returncode == 3
    assert listed.stderr.decode() == f"jog: error: {NOWHERE}: cannot connect: Connection refused\n"
    table = listed.stdout.decode().splitlines()
    assert re.match(r"HOST +JOB ID +STATE", table[0])
    assert [row.split()[:2] for row in table[1:]] == [[hosts.other, newer], ["alpha", older]]
    as_json = json.loads(
        (await hosts.jog("list", "--json", "--hosts", f"alpha,{hosts.other}")).stdout
    )
    assert [(j["host"], j["job_id"]) for j in as_json] == [(hosts.other, newer), ("alpha", older)]
    newest = await hosts.jog("list", "--json", "--limit", "1", "--hosts", f"alpha,{hosts.other}")
    assert [j["job_id"] for j in json.loads(newest.stdout)] == [newer]
    assert newest.stderr == b"jog: showing the newest 1 jobs; --limit 0 shows all\n"


async def test_contexts_choose_the_server_and_its_certificates(hosts: Hosts) -> None:
    job = job_id_of(await hosts.servers[0].jog("start", "--", "true"))
    # Nothing in the environment but the config file: the context has it all.
    bare = {"XDG_CONFIG_HOME": str(hosts.config_home), "PATH": "/usr/bin:/bin"}
    listed = await hosts.jog("--context", "alpha", "list", "--json", env=bare)
    assert [j["job_id"] for j in json.loads(listed.stdout)] == [job], listed.stderr
    used = await hosts.jog("context", "use", "alpha", env=bare)
    assert used.stdout == b"current context: alpha\n"
    current = await hosts.jog("list", "--json", env=bare)
    assert [j["job_id"] for j in json.loads(current.stdout)] == [job], current.stderr
    # JOGGER_HOST wins over the context: the second server, which has no jobs.
    other = await hosts.jog("list", "--json", env={**bare, "JOGGER_HOST": hosts.other})
    assert json.loads(other.stdout) == []


async def test_ctrl_c_stops_the_job_on_every_host(hosts: Hosts) -> None:
    both = ["alpha", hosts.other]
    process = await trio.lowlevel.open_process(
        [BIN / "jog", "run", "--hosts", ",".join(both), "--", "sh", "-c", "echo ready; sleep 300"],
        env=hosts.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        seen = b""
        with trio.fail_after(30):
            while not all(f"{h}: ready\n".encode() in seen for h in both):
                data = await process.stdout.receive_some()
                assert data, seen
                seen += data
        process.send_signal(signal.SIGINT)
        with trio.fail_after(30):
            err = b"".join([chunk async for chunk in process.stderr]).decode()
            assert await process.wait() == 130, err
    finally:
        if process.returncode is None:
            process.kill()
    for host in both:
        assert re.search(rf"^jog: {re.escape(host)}: stopping job \S+$", err, re.M), err
        assert re.search(rf"^jog: {re.escape(host)}: job \S+ stopped \(signal SIGTERM", err, re.M)
    for server in hosts.servers:
        [job] = json.loads((await server.jog("list", "--json")).stdout)
        assert job["state"] == "stopped"


async def test_a_closed_stdout_stops_the_job_on_every_host(hosts: Hosts) -> None:
    cli = hosts.servers[0]
    addresses = f"localhost:{cli.port},{hosts.other}"
    code, got, err = await jog_into_closed_pipe(cli, "run", "--hosts", addresses, "--", "yes")
    assert (code, got, err) == (128 + signal.SIGTERM, b"localhost:", "")
    for server in hosts.servers:
        [job] = json.loads((await server.jog("list", "--json")).stdout)
        assert (job["argv"], job["state"]) == (["yes"], "stopped")
